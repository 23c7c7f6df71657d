"""Pieces more than one bench area uses: process memory, a background sampler, truck figures."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from simulators.outcomes import TruckOutcome

Probe = Callable[[], float | None]


def rss_mb(pid: int | str | None = "self", field: str = "VmRSS") -> float | None:
    """A figure of ``/proc/<pid>/status`` in MB: the resident set, or e.g. its high-water mark
    (``VmHWM``); None without a pid, once the process is gone, or without the field."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


class Sampler:
    """While the ``with`` block runs, every ``every`` seconds (the first on entering) a row in
    ``samples``: ``t_s`` since the start and each probe's value under its keyword."""

    def __init__(self, every: float, **probes: Probe) -> None:
        self._every = every
        self._probes = probes
        self.samples: list[dict[str, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        started = time.monotonic()
        while True:
            row: dict[str, float | None] = {"t_s": round(time.monotonic() - started, 1)}
            row.update((key, probe()) for key, probe in self._probes.items())
            self.samples.append(row)
            if self._stop.wait(self._every):
                return

    def values(self, key: str) -> list[float]:
        """The probe's values in sample order, those it could not take (None) left out."""
        return [v for s in self.samples if (v := s[key]) is not None]


def truck_figures(outcomes: Sequence[TruckOutcome], latency_key: str) -> dict[str, Any]:
    """How many trucks, how many as expected, their decision latencies sorted (under
    ``latency_key``, with ``_median`` and ``_max``) and seconds each."""
    latencies = sorted(o.latency_ms for o in outcomes if o.latency_ms is not None)
    return {
        "trucks": len(outcomes),
        "as_expected": sum(o.ok for o in outcomes),
        latency_key: latencies,
        f"{latency_key}_median": statistics.median(latencies) if latencies else None,
        f"{latency_key}_max": max(latencies) if latencies else None,
        "seconds_per_truck": [round(o.seconds, 1) for o in outcomes],
    }
