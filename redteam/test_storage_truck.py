"""Red team: storage that fails under a truck must hold it, never release it unrecorded.

The lane's state lives on its own small filesystem (a tmpfs mounted over the agent's state
folder before it starts). Before a valid truck drives on, that filesystem is filled to the
last byte: what the lane must record (the pass's use, the decision) cannot be. The truck must
be held with ``lane.storage_fault``, the barrier must stay shut, and once the disk
takes writes again the same truck is decided again and let go, with every event of its
transit delivered in order.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redteam.small_disk import fill, small_tmpfs
from simulators.harness import SimLane, TruckOutcome
from simulators.polling import wait_until
from simulators.scenarios import Scenario, TruckPlan
from simulators.world import Phase, TruckSpec

pytestmark = pytest.mark.slow


@pytest.fixture
def lane_on_small_disk(tmp_path: Path) -> Iterator[tuple[SimLane, Path]]:
    disks = contextlib.ExitStack()

    def own_disk(state_dir: Path) -> None:
        disks.enter_context(small_tmpfs(state_dir, "16m"))

    scenario = Scenario(name="storage", description="red team: storage", trucks=())
    lines: list[str] = []
    with disks, SimLane(scenario, workdir=tmp_path / "lane", log=lines.append,
                        prepare_state=own_disk) as lane:
        yield lane, lane.state_dir


def _decisions(lane: SimLane, transit_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in lane.backend.events(lane.scenario.lane)
            if e.get("transit_id") == transit_id and e["type"] == "decision"]


def test_a_disk_that_fails_under_a_truck_holds_it_and_lets_it_go_once_back(
    lane_on_small_disk: tuple[SimLane, Path],
) -> None:
    lane, state_dir = lane_on_small_disk
    spec = TruckSpec(plate="SU-R0001", gross_kg=30_000, back_off_after_s=120.0)
    plan = TruckPlan("storage-fails", spec, expect_decision="open")
    outcome: list[TruckOutcome] = []
    filler = fill(state_dir)
    runner = threading.Thread(target=lambda: outcome.append(lane.run_truck(plan, timeout_s=90.0)))
    runner.start()
    try:
        def held_for_storage() -> bool:
            transit = lane.status().get("transit") or {}
            return "lane.storage_fault" in (transit.get("hold_reasons") or [])

        assert wait_until(held_for_storage, timeout=40.0), lane.agent_log()
        truck = lane.world.truck
        assert truck is not None and truck.phase is Phase.STOPPED  # waiting on the deck
        opened = [c for c in lane.iohost.output_changes() if c[1] == "barrier_open" and c[2]]
        assert opened == []  # nothing unrecorded went through
    finally:
        filler.unlink()
        runner.join(120.0)
    assert outcome, lane.agent_log()
    transit_id = outcome[0].transit_id
    assert transit_id is not None, (outcome[0].problems, lane.agent_log())
    assert wait_until(lambda: len(_decisions(lane, transit_id)) >= 2, timeout=30.0)
    decisions = _decisions(lane, transit_id)
    assert decisions[0]["decision"] == "hold"
    assert decisions[0]["reasons"] == ["lane.storage_fault"]
    assert decisions[-1]["decision"] == "open"
    seqs = [e["seq"] for e in lane.backend.events(lane.scenario.lane)]
    assert seqs == list(range(1, len(seqs) + 1))  # every event kept, none lost or reordered
    assert any(e["type"] == "pass_used" and e.get("transit_id") == transit_id
               for e in lane.backend.events(lane.scenario.lane))
