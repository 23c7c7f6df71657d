"""Lane section: the demo scenario end to end, decision latency from input to relay change."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from simulators.harness import SimLane
from simulators.lane_sim import render_table
from simulators.scenarios import DEMO


def run(results: dict[str, Any]) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="gatelane-bench-") as tmp,
        SimLane(DEMO, workdir=Path(tmp), log=lambda _line: None) as lane,
    ):
        outcomes = [lane.run_truck(plan) for plan in DEMO.trucks]
    print(render_table(outcomes))
    latencies = sorted(o.latency_ms for o in outcomes if o.latency_ms is not None)
    section = {
        "scenario": DEMO.name,
        "trucks": len(outcomes),
        "as_expected": sum(o.ok for o in outcomes),
        "decision_to_relay_ms": latencies,
        "decision_to_relay_ms_median": statistics.median(latencies) if latencies else None,
        "decision_to_relay_ms_max": max(latencies) if latencies else None,
        "seconds_per_truck": [round(o.seconds, 1) for o in outcomes],
    }
    results["lane"] = section
    print(
        f"\ndecision -> open relay: median {section['decision_to_relay_ms_median']} ms, "
        f"max {section['decision_to_relay_ms_max']} ms over {len(latencies)} opened trucks"
    )
