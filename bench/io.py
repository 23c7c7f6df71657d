"""IO section: the agent's command to the relay pin, and an input pin to the agent's event.

The real firmware runs in the MicroPython unix port behind a raw pty; the agent side is the
real ``IoBoard`` driver. Pin changes are timestamped by the fake ``machine`` module's host side
in this process's monotonic clock, so both ends are measured on one clock.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edge_agent.drivers.ioboard import IoBoard
from edge_agent.protocols.iolink_session import BoardSnapshot
from simulators.iohost import IoBoardHost

CYCLES = 500  # one OPEN and one CLOSE_WHEN_CLEAR each: 1,000 commands
SAFETY_WALKS = 10  # randomized safety walks of the CPython firmware core...
SAFETY_STEPS = 10_000  # ...each this many 5 ms loop iterations, S1-S9 checked after every one
INPUT_TOGGLES = 200
TARGET_P99_MS = 5.0


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p99": pick(0.99),
        "max": round(ordered[-1], 3),
    }


class _Collector:
    """Reads the driver's events on its own thread, as the agent does, stamping arrival, and
    keeps the worst firmware loop the board's periodic frames reported."""

    def __init__(self, board: IoBoard) -> None:
        self._board = board
        self.events: list[tuple[float, Any]] = []
        self.loop_max_us = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for event in self._board.read_events(0.02):
                with self._lock:
                    self.events.append((time.monotonic(), event))
            snapshot = self._board.snapshot  # the latest frame, changed or not
            if snapshot is not None:
                self.loop_max_us = max(self.loop_max_us, snapshot.loop_max_us)

    def wait(self, predicate: Any, after: int, timeout: float = 2.0) -> float | None:
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            with self._lock:
                for arrived, event in self.events[after:]:
                    if predicate(event):
                        return arrived
            time.sleep(0.0002)
        return None

    def count(self) -> int:
        with self._lock:
            return len(self.events)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _relay_change_after(host: IoBoardHost, name: str, value: bool, since: float) -> float | None:
    if not host.wait_for_output(name, value, timeout=2.0):
        return None
    for at, changed, level in reversed(host.output_changes()):
        if changed == name and level == value and at >= since:
            return at
    return None


def _settle(host: IoBoardHost, **inputs: bool) -> None:
    host.set_inputs(**inputs)
    time.sleep(0.03)  # a few firmware loop periods: debounced, and the dead time has passed


def safety_walks() -> dict[str, Any]:
    """Run the firmware core's randomized safety walk; count steps and invariant violations."""
    firmware = Path(__file__).resolve().parent.parent / "firmware"
    sys.path[:0] = [str(firmware), str(firmware / "tests")]
    try:
        from fw_rig import InvariantError, random_walk  # type: ignore[import-not-found]

        violations: list[str] = []
        started = time.monotonic()
        for seed in range(1, SAFETY_WALKS + 1):
            try:
                random_walk(seed * 7919, SAFETY_STEPS)
            except InvariantError as exc:
                violations.append(f"seed {seed}: {exc}")
    finally:
        del sys.path[:2]
    return {
        "walks": SAFETY_WALKS,
        "steps": SAFETY_WALKS * SAFETY_STEPS,
        "violations": len(violations),
        "violation_details": violations[:5],
        "seconds": round(time.monotonic() - started, 1),
    }


def run(results: dict[str, Any]) -> None:
    open_ms: list[float] = []
    close_ms: list[float] = []
    input_ms: list[float] = []
    loop_max_us = 0
    with IoBoardHost() as host:
        host.set_inputs(
            loop_a=False, loop_b=False, photo_eye=False, limit_open=False, limit_closed=True,
            deck_front=True, deck_rear=True, tech_key=False,
        )
        board = IoBoard(host.port, t_clear_s=0.1, dead_time_s=0.01)
        board.open()
        collector = _Collector(board)
        try:
            time.sleep(0.5)
            for _ in range(CYCLES):
                sent = time.monotonic()
                board.open_barrier(valid_for_s=1.0)
                changed = _relay_change_after(host, "barrier_open", True, sent)
                if changed is not None:
                    open_ms.append((changed - sent) * 1000)
                _settle(host, limit_closed=False, limit_open=True)
                sent = time.monotonic()
                board.close_when_clear(valid_for_s=1.0)
                changed = _relay_change_after(host, "barrier_close", True, sent)
                if changed is not None:
                    close_ms.append((changed - sent) * 1000)
                _settle(host, limit_open=False, limit_closed=True)
            for i in range(INPUT_TOGGLES):
                blocked = i % 2 == 0
                mark = collector.count()
                changed_at = time.monotonic()
                host.set_inputs(photo_eye=blocked)
                arrived = collector.wait(  # the board's state after the change
                    lambda e, b=blocked: isinstance(e, BoardSnapshot)
                    and e.inputs["photo_eye"] == b,
                    mark,
                )
                if arrived is not None:
                    input_ms.append((arrived - changed_at) * 1000)
                time.sleep(0.01)
            loop_max_us = collector.loop_max_us
        finally:
            collector.stop()
            board.close()
    commands = open_ms + close_ms
    section: dict[str, Any] = {
        "command_to_relay_ms": _percentiles(commands),
        "open_to_relay_ms": _percentiles(open_ms),
        "close_to_relay_ms": _percentiles(close_ms),
        "commands_sent": 2 * CYCLES,
        "commands_seen_at_relay": len(commands),
        "input_to_event_ms": _percentiles(input_ms),
        "firmware_loop_max_us": loop_max_us,
        "target_p99_ms": TARGET_P99_MS,
    }
    section["safety_walk"] = safety_walks()
    results["io"] = {**results.get("io", {}), **section}
    rows = [
        ("command -> relay pin", section["command_to_relay_ms"]),
        ("input pin -> agent event", section["input_to_event_ms"]),
    ]
    print(f"{'path':<26}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, stats in rows:
        print(
            f"{name:<26}{stats.get('n', 0):>6}{stats.get('p50', 0):>10.2f}"
            f"{stats.get('p99', 0):>10.2f}{stats.get('max', 0):>10.2f}"
        )
    walk = section["safety_walk"]
    print(f"safety walk (CPython core): {walk['steps']} steps, {walk['violations']} violations "
          f"of S1-S9 ({walk['seconds']} s)")
    p99 = section["command_to_relay_ms"].get("p99", float("inf"))
    print(f"firmware loop worst case: {loop_max_us} us; p99 target {TARGET_P99_MS} ms: "
          f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'} ({p99} ms)")
