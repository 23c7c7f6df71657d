"""Soak section: a compressed day of one lane (``simulators.soak``), 2,000 trucks in virtual time.

The real agent on the in-package fakes, its real publisher delivering through a fault proxy to
Mosquitto and the backend simulator (in a child process), with broker outages, indicator drops
and camera losses spread over the run. The lane's RSS, open descriptors, threads, outbox rows,
evidence on disk and SQLite files (each with its WAL) are sampled every 20 trucks; each is
printed with its start, peak, end and least-squares slope per 1,000 trucks after the warm-up,
and "flat" when that slope is below its stated bound. The ratio printed against this run's own
baseline: seconds of wall time per truck over the last 200 trucks against the 200 after the
warm-up (a lane whose stores slow down as they fill shows above 1).

The section fails when anything was lost (a truck not as its plan expects, a seq not at the
backend, an event left in the outbox); a series that is not flat is reported, not failed.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from simulators.soak import SoakPlan, render, run_soak

PLAN = SoakPlan()
WINDOW = 200  # trucks in each of the two windows the per-truck time compares


class SoakLost(AssertionError):
    """The soak lost something: the section fails with what."""


def run(results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        result = run_soak(Path(tmp), PLAN, progress=print)
    print(render(result))
    times = result.truck_wall_s
    early = times[PLAN.warmup:PLAN.warmup + WINDOW]
    late = times[-WINDOW:]
    ratio = statistics.mean(late) / statistics.mean(early) if early and late else None
    if ratio is not None:
        print(f"\nwall time per truck, last {WINDOW} / first {WINDOW} after warm-up: "
              f"{statistics.mean(late) * 1000:.0f} ms / {statistics.mean(early) * 1000:.0f} ms"
              f" = {ratio:.2f}")
    results["soak"] = {
        "trucks": result.trucks,
        "as_expected": result.as_expected,
        "virtual_hours": round(result.virtual_h, 2),
        "wall_s": round(result.wall_s, 1),
        "faults": result.faults,
        "events": result.events,
        "nothing_lost": result.nothing_lost,
        "lost": result.lost,
        "problems": result.problems[:20],
        "outage_backlogs": result.backlogs,
        "truck_wall_ratio_late_early": None if ratio is None else round(ratio, 3),
        "series": {
            s.name: {"start": round(s.start, 3), "peak": round(s.peak, 3),
                     "end": round(s.end, 3), "slope_per_1k": round(s.slope, 4),
                     "slope_bound_per_1k": s.slope_bound, "peak_bound": s.peak_bound,
                     "flat": s.flat, "why": s.why}
            for s in result.figures()
        },
        "baseline": result.baseline,
        "end": result.end,
        "samples": result.samples,
    }
    if not result.nothing_lost:
        raise SoakLost("; ".join(result.lost + result.problems[:5]) or "trucks not as expected")
