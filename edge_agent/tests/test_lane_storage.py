"""Rules L3 and L9: a pass's use is durable before the barrier opens; no storage, no opening."""

from __future__ import annotations

import itertools

from edge_agent.lane.actions import LaneAction, MarkPassUsed, OpenBarrier, Publish
from edge_agent.lane.fakes import step
from edge_agent.lane.inputs import PassUseRecorded, StorageChanged
from edge_agent.lane.machine import LaneMachine, LaneState, MachineConfig
from edge_agent.tests.lane_builders import PassSpec, shown, truck_on, weight

PASS = PassSpec(
    valid=True, reason=None, release_no="R1", declared_gross_kg=30_000, tolerance_kg=300,
    cti_hex="cd" * 16, exp=2_000_000_000,
)


def machine() -> LaneMachine:
    counter = itertools.count(1)
    return LaneMachine(MachineConfig(), new_id=lambda: f"id{next(counter)}", strict=True)


def decisions(commands: list[LaneAction]) -> list[dict[str, object]]:
    return [c.data for c in commands if isinstance(c, Publish) and c.type == "decision"]


def opened(commands: list[LaneAction]) -> bool:
    return any(isinstance(c, OpenBarrier) for c in commands)


def test_the_barrier_waits_for_the_ledger_and_opens_once_the_use_is_recorded() -> None:
    m = machine()
    m.handle(truck_on(1.0), 1.0)
    m.handle(shown(2.0, PASS), 2.0)
    out = m.handle(weight(3.0, 30_010.0, 10.0), 3.0)
    assert [type(c) for c in out if not isinstance(c, Publish)] == [MarkPassUsed]
    assert m.state is LaneState.RECORDING and not decisions(out)
    out = m.handle(PassUseRecorded(3.0, True), 3.0)
    assert opened(out) and decisions(out)[0]["decision"] == "open"


def test_a_ledger_that_cannot_be_written_holds_the_truck_with_storage_fault() -> None:
    m = machine()
    step(m, truck_on(1.0), 1.0)
    step(m, shown(2.0, PASS), 2.0)
    out = step(m, weight(3.0, 30_010.0, 10.0), 3.0, ledger_ok=False)
    assert not opened(out)
    assert m.state is LaneState.HOLD
    assert decisions(out)[-1]["reasons"] == ["lane.storage_fault"]


def test_a_pass_the_ledger_already_holds_is_held_as_already_used() -> None:
    m = machine()
    step(m, truck_on(1.0), 1.0)
    step(m, shown(2.0, PASS), 2.0)
    m.handle(weight(3.0, 30_010.0, 10.0), 3.0)
    out = m.handle(PassUseRecorded(3.0, False, "pass.already_used", "used at exit-04"), 3.0)
    assert not opened(out)
    assert decisions(out)[-1]["reasons"] == ["pass.already_used"]


def test_no_decision_opens_while_storage_is_down_and_the_truck_goes_once_it_is_back() -> None:
    m = machine()
    out = step(m, StorageChanged(0.5, False, "disk full"), 0.5)
    assert [c.data["code"] for c in out if isinstance(c, Publish)] == ["lane.storage_fault"]
    step(m, truck_on(1.0), 1.0)
    step(m, shown(2.0, PASS), 2.0)
    out = step(m, weight(3.0, 30_010.0, 10.0), 3.0)
    assert not opened(out)
    assert decisions(out)[-1]["reasons"] == ["lane.storage_fault"]
    out = step(m, StorageChanged(9.0, True), 9.0)
    assert opened(out)
    marks = [c for c in out if isinstance(c, MarkPassUsed)]
    assert [(c.cti_hex, c.exp) for c in marks] == [(PASS.cti_hex, PASS.exp)]
