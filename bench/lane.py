"""Lane section: the demo scenario end to end, decision latency from input to relay change."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import truck_figures
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
    section = {"scenario": DEMO.name, **truck_figures(outcomes, "decision_to_relay_ms")}
    results["lane"] = section
    print(
        f"\ndecision -> open relay: median {section['decision_to_relay_ms_median']} ms, "
        f"max {section['decision_to_relay_ms_max']} ms "
        f"over {len(section['decision_to_relay_ms'])} opened trucks"
    )
