"""What the soak samples of the lane, and how a sampled series is judged flat.

Each sample is the lane process's own: RSS, open descriptors, threads, outbox rows, evidence
bytes on disk, and each SQLite store's file and WAL. A series is judged after the warm-up by
its least-squares slope per 1,000 trucks (``numpy.polyfit``) against a bound stated with its
reason in ``BOUNDS``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulators.virtual_lane import VirtualLane


def _proc_status(field_name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return float(line.split()[1])
    return 0.0


def _size_mb(path: Path) -> float:
    return (path.stat().st_size if path.exists() else 0) / 1e6


def open_files() -> list[str]:
    """What this process's descriptors point at (sockets and pipes by kind, not inode)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the descriptor listdir itself used, gone by now
        found.append(target.split(":[")[0])
    return sorted(found)


def sample(lane: VirtualLane, truck: int, wall_s: float) -> dict[str, float]:
    """The lane's resources now: memory, descriptors, threads, queued rows and files."""
    state = lane.config.lane.state_dir
    stats = lane.devices.outbox.stats()
    row = {
        "truck": float(truck),
        "virtual_h": (lane.clock() - 1000.0) / 3600,
        "wall_s": wall_s,
        "rss_mb": _proc_status("VmRSS") / 1024,
        "fds": float(len(os.listdir("/proc/self/fd"))),
        "threads": _proc_status("Threads"),
        "outbox_rows": float(stats["events"] + stats["health"]),
        "evidence_mb": lane.devices.evidence.total_bytes() / 1e6,
    }
    for db in STORES:
        row[f"{db}_mb"] = _size_mb(state / db)
        row[f"{db}-wal_mb"] = _size_mb(state / f"{db}-wal")
    return row


STORES = ("outbox.sqlite", "passes.sqlite", "commands.sqlite")
# SQLite checkpoints a WAL at 1,000 pages and then writes it again from its start (the file
# keeps its size): a WAL is bounded by that, plus the transaction that crossed it.
WAL_CAP_MB = 1000 * 4096 / 1e6 + 0.5

# Flat: the least-squares slope per 1,000 trucks after warm-up below the first bound; a WAL
# also counts as flat while its peak is within the checkpoint size (it grows to that, then is
# reused, and may reach it only late in a run). Why each bound:
BOUNDS: dict[str, tuple[float | None, float | None, str]] = {
    "rss_mb": (2.0, None, "a lane restarted monthly (updates) at ~1,000 trucks a day "
               "grows < 60 MB"),
    "fds": (0.5, None, "one descriptor leaked per outage or loss would show as >= 2"),
    "threads": (0.5, None, "one thread leaked per outage or loss would show as >= 2"),
    "outbox_rows": (100.0, None, "1% of the ~12,000 rows 1,000 trucks write: backlogs drain"),
    "evidence_mb": (1.0, None, "the snapshot cap holds while ~80 MB per 1,000 trucks "
                    "is written"),
    "outbox.sqlite_mb": (2.0, None, "without page reuse it would grow by all it stores, "
                         "~65 MB per 1,000 trucks; with it, it steps up only to a larger backlog"),
    "passes.sqlite_mb": (0.5, None, "a ~150-byte row per pass used (kept until purged): "
                         "~0.1 MB"),
    "commands.sqlite_mb": (0.5, None, "a row per command (~1 in 9 trucks is released "
                           "remotely)"),
    **{f"{db}-wal_mb": (0.5, WAL_CAP_MB, "SQLite checkpoints at 1,000 pages and reuses the "
                        "file: it grows to that (past it once if a reader holds a checkpoint "
                        "off), then stays") for db in STORES},
}


@dataclass(frozen=True)
class Series:
    name: str
    start: float
    peak: float
    end: float
    slope: float  # per 1,000 trucks, after warm-up
    slope_bound: float | None
    peak_bound: float | None
    why: str

    @property
    def flat(self) -> bool:
        within_peak = self.peak_bound is not None and self.peak <= self.peak_bound
        return within_peak or self.slope_bound is None or self.slope < self.slope_bound

    @property
    def bound(self) -> str:
        slope = f"<{self.slope_bound:g}/1k" if self.slope_bound is not None else ""
        peak = f"peak<={self.peak_bound:.1f}" if self.peak_bound is not None else ""
        return " or ".join(b for b in (slope, peak) if b)


def series(samples: Sequence[dict[str, float]], warmup: int) -> list[Series]:
    """Each sampled figure's start, peak, end and slope (numpy.polyfit) after ``warmup``."""
    late = [s for s in samples if s["truck"] >= warmup] or list(samples)
    found = []
    for name, (slope_bound, peak_bound, why) in BOUNDS.items():
        if name not in samples[0]:
            continue
        values = [s[name] for s in samples]
        x = np.array([s["truck"] for s in late])
        y = np.array([s[name] for s in late])
        slope = float(np.polyfit(x, y, 1)[0]) * 1000 if len(late) >= 2 else 0.0
        found.append(Series(name, values[0], max(values), values[-1], slope, slope_bound,
                            peak_bound, why))
    return found


def difference(now: list[str], before: list[str]) -> tuple[list[str], list[str]]:
    """(open now and not before, open before and not now), counting repeats."""
    gained, lost = list(now), []
    for name in before:
        if name in gained:
            gained.remove(name)
        else:
            lost.append(name)
    return gained, lost
