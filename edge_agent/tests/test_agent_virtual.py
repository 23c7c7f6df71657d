"""The whole LaneAgent on the in-package fakes, in virtual time: no broker, no process, no sleep.

The fake IO board runs the real firmware core, the fake indicator the real encoders; the agent
is the one ``edge-agent`` runs (translation, lane machine, pass ledger, outbox, commands). Each
demo truck takes milliseconds of real time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from edge_agent.lane.machine import LaneState
from edge_agent.protocols.iolink import MsgType
from simulators.scenarios import DEMO, TruckPlan
from simulators.virtual_lane import VirtualLane

VALID = DEMO.trucks[0]
MISMATCH = next(p for p in DEMO.trucks if p.name == "mismatch")


def test_every_demo_truck_gets_the_outcome_the_scenario_expects(lane: VirtualLane) -> None:
    outcomes = [lane.run_truck(plan) for plan in DEMO.trucks]
    assert [(o.name, o.problems) for o in outcomes] == [(p.name, []) for p in DEMO.trucks]
    assert all(o.transit_id for o in outcomes)
    assert len({o.transit_id for o in outcomes}) == len(DEMO.trucks)


def test_the_barrier_command_goes_out_before_the_records_of_why(
    lane: VirtualLane, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    board, outbox = lane.devices.board, lane.devices.outbox
    open_barrier, add_event = board.open_barrier, outbox.add_event

    def spy_open(**kwargs: Any) -> int:
        calls.append("OPEN")
        return open_barrier(**kwargs)

    def spy_add(type: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(type)
        return add_event(type, *args, **kwargs)

    monkeypatch.setattr(board, "open_barrier", spy_open)
    monkeypatch.setattr(outbox, "add_event", spy_add)
    assert lane.run_truck(VALID).ok
    # The pass's use is durable first (L3), then the relay, then the records of the decision.
    opened = calls.index("OPEN")
    assert calls[opened + 1: opened + 3] == ["decision", "pass_used"]
    assert "weight_committed" in calls[:opened] or "pass_read" in calls[:opened]
    assert lane.board.received(MsgType.OPEN)


def test_a_remote_release_reads_back_as_accepted_and_a_wrong_challenge_as_refused(
    lane: VirtualLane,
) -> None:
    plan = replace(MISMATCH, release=None, truck=replace(MISMATCH.truck, back_off_after_s=None))
    lane._current_pass = lane.issue_pass(plan)
    lane.world.send(plan.truck)
    assert lane.run_until(lambda: lane._hold_since(0) is not None, timeout_s=30)
    hold = lane._hold_since(0)
    assert hold is not None and hold["data"]["reasons"] == ["weight.declared_mismatch"]

    wrong = lane.release(hold, challenge="not-the-challenge")
    lane.step()
    assert lane.result(wrong) == {
        "cmd_id": wrong, "name": "remote_release", "accepted": False,
        "code": "cmd.precondition", "detail": "challenge mismatch"}
    assert lane.agent.machine.state is LaneState.HOLD

    right = lane.release(hold)
    lane.step()
    result = lane.result(right)
    assert result is not None and result["accepted"] and result["detail"] == "barrier opened"
    assert lane.run_until(lambda: lane.agent.machine.transit is None, timeout_s=30)
    released = [r for r in lane.transit_records(hold["transit_id"]) if r["type"] == "released"]
    assert released and released[0]["data"]["officer"] == "officer-7"


def test_a_lost_io_link_holds_the_truck_and_its_return_decides_it_again(
    lane: VirtualLane,
) -> None:
    plan = replace(VALID, truck=replace(VALID.truck, plate="SU-L0001"))
    lane._current_pass = lane.issue_pass(plan)
    lane.board.unplug()
    lane.world.send(plan.truck)
    assert lane.run_until(lambda: lane._hold_since(0) is not None, timeout_s=30)
    hold = lane._hold_since(0)
    assert hold is not None and hold["data"]["reasons"] == ["lane.io_link_lost"]
    assert not lane.board.received(MsgType.OPEN)  # nothing reached the board while unplugged
    lane.board.replug()
    outcome_done = lane.run_until(lambda: lane.agent.machine.transit is None, timeout_s=40)
    assert outcome_done
    types = [r["type"] for r in lane.transit_records(hold["transit_id"])]
    assert "io_link_restored" in types and "vehicle_passed" in types
    assert types[-1] == "transit_closed"


def test_camera_loss_and_return_are_reported_once_each(lane: VirtualLane) -> None:
    from edge_agent.lane.inputs import CameraChanged

    now = lane.clock()
    for up in (False, False, True):
        lane.agent.handle(CameraChanged(now, up, "" if up else "no frames"), now)
    records = [r for r in lane.records() if r["type"] in ("abnormality", "camera_restored")]
    assert [(r["type"], r["data"].get("code")) for r in records] == [
        ("abnormality", "lane.camera_lost"), ("camera_restored", None)]


def test_a_truck_plan_with_an_unmodelled_fault_is_refused_clearly(lane: VirtualLane) -> None:
    from simulators.errors import SimulatorError

    plan = TruckPlan("odd", VALID.truck, faults=("flipped_bits",))
    with pytest.raises(SimulatorError, match="not modelled"):
        lane.run_truck(plan)


def test_the_ledger_forgets_passes_expired_a_day_ago_but_only_on_a_synced_clock(
    lane: VirtualLane,
) -> None:
    assert lane.run_truck(VALID).ok
    ledger = lane.devices.ledger
    used = ledger.count()
    day, old = 86400.0, b"\x01" * 16
    # A pass that expired two days ago, as the ledger holds them after a long run.
    ledger.mark_used(old, exp=lane.wall() - 2 * day, now=lane.wall() - 3 * day, lane="exit-03")
    assert ledger.count() == used + 1

    def an_hour_later() -> None:  # only the agent's timers: no truck, no board loop needed
        lane.clock.advance(3601.0)
        lane.agent.tick(lane.clock())
        lane.clock.advance(1.0)
        lane.agent.tick(lane.clock())

    lane.clock_synced = False
    an_hour_later()  # a purge is due, but a clock that is not synced may be far ahead
    assert ledger.is_used(old) and ledger.count() == used + 1
    lane.clock_synced = True
    an_hour_later()
    assert not ledger.is_used(old) and ledger.count() == used  # the truck's own use is kept
