"""The lane's modes: the ModeBook core, and the lane machine in each mode (strict machine)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from edge_agent.lane.actions import (
    Answer,
    BoardMaintenance,
    CloseWhenClear,
    MarkPassUsed,
    OpenBarrier,
    PersistMode,
    Publish,
)
from edge_agent.lane.fakes import step
from edge_agent.lane.inputs import BarrierRequested, ModeRequested, RemoteRelease, SignedIn
from edge_agent.lane.machine import LaneMachine, LaneState, MachineConfig
from edge_agent.lane.modes import LaneMode, ModeBook, Via, parse_mode
from edge_agent.tests.lane_builders import PassSpec, board, shown, truck_on, weight

GOOD_PASS = PassSpec(valid=True, reason=None, release_no="RL-1", plates=("SU-1",),
                     declared_gross_kg=30_000, tolerance_kg=300, cti_hex="11" * 16,
                     exp=2_000_000_000)  # fmt: skip
WALL = 1_800_000_000.0


def machine() -> LaneMachine:
    counter = itertools.count(1)
    m = LaneMachine(MachineConfig(), new_id=lambda: f"id{next(counter)}", strict=True)
    step(m, board(0.5, "closed"), 0.5)
    return m


def ask(m: LaneMachine, mode: LaneMode, now: float = 1.0, *, via: Via = Via.LOCAL,
        by: str = "alice", reason: str = "test") -> list[Any]:  # fmt: skip
    return step(m, ModeRequested(now, mode, by, reason, via, f"r{now}", WALL + now, 1000), now)


def answer(out: list[Any]) -> Answer:
    found = [a for a in out if isinstance(a, Answer)]
    assert len(found) == 1, out
    return found[0]


def published(out: list[Any], kind: str) -> list[Publish]:
    return [a for a in out if isinstance(a, Publish) and a.type == kind]


def opens(out: list[Any]) -> int:
    return sum(isinstance(a, OpenBarrier) for a in out)


# -- the core --------------------------------------------------------------------------------
def test_an_unknown_mode_is_refused_with_the_modes_there_are() -> None:
    assert parse_mode("manual") is LaneMode.MANUAL
    with pytest.raises(ValueError, match="unknown lane mode 'closed': one of in_service, "
                                         "out_of_service, maintenance, manual"):
        parse_mode("closed")


def test_remote_may_only_move_between_in_service_and_out_of_service() -> None:
    book = ModeBook()
    assert book.refusal(LaneMode.OUT_OF_SERVICE, Via.REMOTE, unsafe=None) is None
    assert book.refusal(LaneMode.MANUAL, Via.REMOTE, unsafe=None) == (
        "manual is set at the lane, not remotely")
    book.change(LaneMode.MAINTENANCE, by="bob", reason="relays", via=Via.LOCAL, wall=WALL)
    assert book.refusal(LaneMode.IN_SERVICE, Via.REMOTE, unsafe=None) == (
        "the lane is in maintenance (set at the lane by bob): only the lane ends it")
    assert book.refusal(LaneMode.IN_SERVICE, Via.LOCAL, unsafe=None) is None


def test_the_technician_is_who_last_took_the_lane_locally_or_unknown() -> None:
    book = ModeBook()
    assert book.technician() == "unknown"
    book.change(LaneMode.OUT_OF_SERVICE, by="ops", reason="x", via=Via.REMOTE, wall=WALL)
    assert book.technician() == "unknown"  # the backend is not at the lane
    book.sign_in("carol", WALL)
    assert book.technician() == "carol"
    book.change(LaneMode.MANUAL, by="dave", reason="x", via=Via.LOCAL, wall=WALL)
    assert book.technician() == "dave"


def test_the_mode_document_round_trips_and_a_bad_one_names_what_is_wrong() -> None:
    book = ModeBook()
    book.change(LaneMode.MANUAL, by="dave", reason="arm test", via=Via.LOCAL, wall=WALL, uid=7)
    book.sign_in("carol", WALL + 1)
    again = ModeBook.from_doc(book.to_doc())
    assert again.to_status() == book.to_status()
    assert again.to_status()["since"] == "2027-01-15T08:00:00.000Z"
    assert again.current.uid == 7 and again.current.previous is LaneMode.IN_SERVICE
    with pytest.raises(ValueError, match="unknown lane mode 'open'"):
        ModeBook.from_doc({"current": {"mode": "open"}})
    with pytest.raises(ValueError, match="since must be a number"):
        ModeBook.from_doc({"current": {"mode": "manual", "since": "yesterday"}})


# -- out of service ---------------------------------------------------------------------------
def test_out_of_service_refuses_a_valid_pass_without_burning_it_and_service_decides_again() -> None:
    m = machine()
    out = ask(m, LaneMode.OUT_OF_SERVICE, reason="deck repair")
    event = published(out, "lane_mode")[0].data
    assert event | {"since": None} == {
        "mode": "out_of_service", "previous": "in_service", "by": "alice", "uid": 1000,
        "reason": "deck repair", "since": None, "via": "local", "technician": "unknown"}
    assert event["since"] == "2027-01-15T08:00:01.000Z"
    assert any(isinstance(a, PersistMode) for a in out)
    assert answer(out).accepted
    out = step(m, truck_on(2.0), 2.0) + step(m, shown(3.0, GOOD_PASS), 3.0)
    out += step(m, weight(4.0, 30_000.0, 10.0), 4.0)
    hold = published(out, "decision")[0].data
    assert hold["decision"] == "hold" and hold["reasons"] == ["lane.out_of_service"]
    assert hold["detail"] == "lane out of service"
    assert not any(isinstance(a, MarkPassUsed | OpenBarrier) for a in out)
    assert m.state is LaneState.HOLD
    out = ask(m, LaneMode.IN_SERVICE, now=5.0)
    assert [type(a) for a in out if isinstance(a, MarkPassUsed | OpenBarrier)] == [
        MarkPassUsed, OpenBarrier]
    assert m.state is LaneState.OPENING


def test_nothing_releases_a_truck_held_out_of_service() -> None:
    m = machine()
    step(m, truck_on(1.0), 1.0)
    step(m, weight(2.0, 40_000.0, 10.0), 2.0)
    out = step(m, shown(3.0, GOOD_PASS), 3.0)  # mismatch: held, in service
    challenge = published(out, "decision")[0].data["challenge"]
    ask(m, LaneMode.OUT_OF_SERVICE, now=4.0)
    out = step(m, RemoteRelease(5.0, "c1", challenge, "officer"), 5.0)
    assert published(out, "release_refused")[0].data["reason"] == "lane out of service"
    out = step(m, board(6.0, "closed", tech_key=True), 6.0)
    refused = published(out, "release_refused")[0].data
    assert refused["by"] == "technician" and not refused["accepted"]
    assert opens(out) == 0 and m.state is LaneState.HOLD
    assert m.modes.mode is LaneMode.OUT_OF_SERVICE  # the key does not undo it


def test_asking_for_the_mode_in_force_changes_nothing() -> None:
    m = machine()
    out = ask(m, LaneMode.IN_SERVICE)
    assert out == [Answer("r1.0", True, "the lane is already in_service")]


# -- maintenance --------------------------------------------------------------------------------
def test_maintenance_is_entered_only_from_the_safe_state() -> None:
    m = machine()
    step(m, truck_on(1.0), 1.0)
    refused = answer(ask(m, LaneMode.MAINTENANCE, now=2.0))
    assert not refused.accepted
    assert refused.detail == "maintenance is entered only from the safe state: transit id1 " \
                             "is in the lane"
    m = machine()
    step(m, board(1.0, "open"), 1.0)
    assert answer(ask(m, LaneMode.MAINTENANCE, now=2.0)).detail.endswith(
        "the barrier is open, not closed")
    assert m.modes.mode is LaneMode.IN_SERVICE


def test_maintenance_tells_the_board_and_leaving_it_does_too() -> None:
    m = machine()
    out = ask(m, LaneMode.MAINTENANCE, by="erin")
    assert out[0] == BoardMaintenance(True)
    assert answer(out).accepted and m.modes.technician() == "erin"
    step(m, board(2.0, "maintenance"), 2.0)
    out = step(m, shown(3.0, GOOD_PASS), 3.0) + step(m, weight(3.5, 30_000.0, 10.0), 3.5)
    assert published(out, "decision")[0].data["reasons"] == ["lane.maintenance"]
    assert not any(isinstance(a, MarkPassUsed | OpenBarrier) for a in out)
    out = ask(m, LaneMode.IN_SERVICE, now=4.0)
    assert out[0] == BoardMaintenance(False)


def test_a_board_that_left_maintenance_by_itself_is_asked_again() -> None:
    m = machine()
    ask(m, LaneMode.MAINTENANCE)
    step(m, board(2.0, "maintenance"), 2.0)
    out = step(m, board(3.0, "wait_host"), 3.0) + step(m, board(3.5, "closed"), 3.5)
    assert out.count(BoardMaintenance(True)) == 1


# -- manual ---------------------------------------------------------------------------------------
def test_manual_holds_a_shown_pass_for_the_technician_who_opens_and_burns_it() -> None:
    m = machine()
    ask(m, LaneMode.MANUAL, by="frank")
    step(m, truck_on(2.0), 2.0)
    out = step(m, shown(3.0, GOOD_PASS), 3.0) + step(m, weight(4.0, 30_000.0, 10.0), 4.0)
    assert published(out, "decision")[0].data["reasons"] == ["lane.manual"]
    assert opens(out) == 0
    out = step(m, BarrierRequested(5.0, True, "frank", "b1"), 5.0)
    assert published(out, "released")[0].data == {"by": "technician", "technician": "frank"}
    assert [type(a) for a in out if isinstance(a, MarkPassUsed | OpenBarrier)] == [
        MarkPassUsed, OpenBarrier]
    assert answer(out).accepted


def test_the_barrier_by_hand_is_refused_outside_manual_mode() -> None:
    m = machine()
    out = step(m, BarrierRequested(1.0, True, "frank", "b1"), 1.0)
    assert out == [Answer("b1", False, "the barrier is driven by hand only in manual mode; "
                                       "the lane is in_service")]


def test_manual_open_without_a_truck_and_close_end_a_transit_of_their_own() -> None:
    m = machine()
    ask(m, LaneMode.MANUAL)
    out = step(m, BarrierRequested(2.0, True, "frank", "b1"), 2.0)
    assert opens(out) == 1 and m.state is LaneState.OPENING
    step(m, board(3.0, "open"), 3.0)
    out = step(m, BarrierRequested(4.0, False, "frank", "b2"), 4.0)
    assert any(isinstance(a, CloseWhenClear) for a in out)
    closed = published(out, "transit_closed")[0].data
    assert closed["outcome"] == "closed" and closed["technician"] == "frank"
    assert m.state is LaneState.IDLE
    out = step(m, BarrierRequested(5.0, False, "frank", "b3"), 5.0)
    assert out[0] == CloseWhenClear(None) and answer(out).accepted


# -- the technician key ---------------------------------------------------------------------------
def test_the_key_releases_a_held_truck_as_the_signed_in_technician() -> None:
    m = machine()
    step(m, SignedIn(0.7, "gina", "s1", WALL), 0.7)
    step(m, truck_on(1.0), 1.0)
    step(m, weight(2.0, 40_000.0, 10.0), 2.0)
    step(m, shown(3.0, GOOD_PASS), 3.0)
    out = step(m, board(4.0, "closed", tech_key=True), 4.0)
    assert published(out, "released")[0].data == {"by": "technician", "technician": "gina"}
    assert opens(out) == 1
    assert m.modes.mode is LaneMode.IN_SERVICE  # a release, not a mode change


def test_a_release_by_key_with_nobody_signed_in_says_unknown() -> None:
    m = machine()
    step(m, truck_on(1.0), 1.0)
    step(m, weight(2.0, 40_000.0, 10.0), 2.0)
    step(m, shown(3.0, GOOD_PASS), 3.0)
    out = step(m, board(4.0, "closed", tech_key=True), 4.0)
    assert published(out, "released")[0].data["technician"] == "unknown"


def test_the_key_turned_on_an_idle_lane_is_manual_until_it_is_returned() -> None:
    m = machine()
    out = step(m, board(1.0, "closed", tech_key=True), 1.0)
    assert published(out, "lane_mode")[0].data["reason"] == "technician key turned"
    assert m.modes.mode is LaneMode.MANUAL and m.modes.current.via is Via.KEY
    assert m.modes.current.by == "technician key" and m.modes.technician() == "unknown"
    out = step(m, board(2.0, "closed"), 2.0)
    back = published(out, "lane_mode")[0].data
    assert (back["mode"], back["previous"]) == ("in_service", "manual")


def test_the_key_does_not_take_a_lane_out_of_service_into_manual() -> None:
    m = machine()
    ask(m, LaneMode.OUT_OF_SERVICE)
    out = step(m, board(2.0, "closed", tech_key=True), 2.0)
    assert not published(out, "lane_mode") and m.modes.mode is LaneMode.OUT_OF_SERVICE
