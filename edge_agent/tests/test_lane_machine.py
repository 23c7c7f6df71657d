"""The lane state machine, through handle()/handle_timer() only."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.lane.actions import CloseWhenClear, MarkPassUsed, OpenBarrier, Publish
from edge_agent.lane.fakes import step
from edge_agent.lane.inputs import RemoteRelease
from edge_agent.lane.machine import LaneMachine, LaneState
from edge_agent.protocols.iolink_session import LinkLost, LinkUp
from edge_agent.tests.lane_builders import (
    PassSpec,
    abnormal,
    board,
    cleared,
    link,
    shown,
    truck_on,
    weight,
)
from edge_agent.tests.lane_play import strict_machine

GOOD_PASS = PassSpec(
    valid=True,
    reason=None,
    release_no="RL-1",
    plates=("SU-1",),
    declared_gross_kg=30_000,
    tolerance_kg=300,
    cti_hex="00" * 16,
    exp=2_000_000_000,
)
FORGED_PASS = PassSpec(valid=False, reason="pass.unknown_key")


def published(commands: list[object], kind: str) -> list[Publish]:
    return [c for c in commands if isinstance(c, Publish) and c.type == kind]


def run(m: LaneMachine, *events: object, now: float = 10.0) -> list[object]:
    out: list[object] = []
    for event in events:
        out += step(m, event, now)  # type: ignore[arg-type]
    return out


def test_valid_pass_then_weight_opens_at_the_weight() -> None:
    m = strict_machine()
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS))
    assert not any(isinstance(c, OpenBarrier) for c in out)
    out = step(m, weight(3.0, 30_040.0, 10.0), 3.0)
    # L3: the use is recorded before the barrier opens.
    assert [type(c) for c in out if not isinstance(c, Publish)] == [MarkPassUsed, OpenBarrier]
    decision = published(out, "decision")[0]
    assert decision.data["decision"] == "open"
    assert decision.data["input_at_mono"] == 3.0
    assert m.state is LaneState.OPENING


def test_weight_then_pass_opens_at_the_pass() -> None:
    m = strict_machine()
    run(m, truck_on(1.0), weight(2.0, 29_900.0, 10.0))
    out = step(m, shown(4.0, GOOD_PASS), 4.0)
    assert any(isinstance(c, OpenBarrier) for c in out)
    assert published(out, "decision")[0].data["input_at_mono"] == 4.0


def test_forged_pass_holds_with_its_code_and_a_challenge() -> None:
    m = strict_machine()
    out = run(m, truck_on(1.0), shown(2.0, FORGED_PASS))
    decision = published(out, "decision")[0]
    assert decision.data["decision"] == "hold"
    assert decision.data["reasons"] == ["pass.unknown_key"]
    assert decision.data["challenge"]
    assert m.state is LaneState.HOLD
    assert not any(isinstance(c, OpenBarrier) for c in out)


def test_declared_weight_mismatch_holds() -> None:
    m = strict_machine()
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3, 31_000, 10))
    decision = published(out, "decision")[-1]
    assert decision.data["decision"] == "hold"
    assert "weight.declared_mismatch" in decision.data["reasons"]


def test_abnormality_before_decision_holds_and_a_later_pass_does_not_open() -> None:
    m = strict_machine()
    out = run(m, truck_on(1.0), abnormal(2.0, "weight.not_on_deck", "front beam"))
    assert published(out, "abnormality")[0].data["code"] == "weight.not_on_deck"
    out = run(m, weight(3.0, 30_000.0, 10.0), shown(4.0, GOOD_PASS))
    assert m.state is LaneState.HOLD
    assert not any(isinstance(c, OpenBarrier) for c in out)


def test_remote_release_needs_the_published_challenge() -> None:
    m = strict_machine()
    out = run(m, truck_on(1.0), shown(2.0, FORGED_PASS))
    challenge = published(out, "decision")[0].data["challenge"]
    refused = step(m, RemoteRelease(5.0, "cmd-1", "not-the-challenge"), 5.0)
    assert published(refused, "release_refused")
    assert not any(isinstance(c, OpenBarrier) for c in refused)
    out = step(m, RemoteRelease(6.0, "cmd-2", challenge, officer="officer-7"), 6.0)
    assert any(isinstance(c, OpenBarrier) for c in out)
    assert published(out, "released")[0].data["by"] == "remote"
    assert not any(isinstance(c, MarkPassUsed) for c in out)  # a forged pass is never "used"


def test_a_remote_release_needs_a_truck_on_the_deck() -> None:
    # A forged pass waved at the camera on foot: the officer cannot see that no truck is
    # there, and an arm opened now would let the next truck through unchecked.
    m = strict_machine()
    out = run(m, shown(2.0, FORGED_PASS))
    challenge = published(out, "decision")[0].data["challenge"]
    refused = step(m, RemoteRelease(5.0, "cmd-1", challenge), 5.0)
    assert published(refused, "release_refused")[0].data["reason"] == "no truck on the deck"
    assert not any(isinstance(c, OpenBarrier) for c in refused)
    run(m, truck_on(6.0))
    out = step(m, RemoteRelease(7.0, "cmd-2", challenge), 7.0)
    assert any(isinstance(c, OpenBarrier) for c in out)


def test_technician_key_releases_a_hold_on_its_rising_edge() -> None:
    m = strict_machine()
    run(m, truck_on(1.0), shown(2.0, FORGED_PASS))
    out = run(m, board(3.0, "closed", loop_b=False, tech_key=False))
    assert not any(isinstance(c, OpenBarrier) for c in out)
    out = step(m, board(4.0, "closed", loop_b=False, tech_key=True), 4.0)
    assert any(isinstance(c, OpenBarrier) for c in out)


def test_truck_backing_off_ends_the_transit_as_withdrawn() -> None:
    m = strict_machine()
    run(m, truck_on(1.0), shown(2.0, FORGED_PASS))
    out = step(m, cleared(9.0, 0.0), 9.0)
    assert published(out, "transit_closed")[0].data["outcome"] == "withdrawn"
    assert m.state is LaneState.IDLE and m.transit is None


def test_full_passage_closes_the_transit_once_passed_and_deck_clear() -> None:
    m = strict_machine()
    run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3, 30_000, 10))
    run(m, board(4.0, "open", loop_b=False))
    assert m.state is LaneState.OPEN
    run(m, board(5.0, "open", loop_b=True))
    out = run(m, cleared(6.0, 0.0))
    assert not published(out, "transit_closed")
    out = run(m, board(7.0, "closing", loop_b=False))
    assert published(out, "vehicle_passed")
    assert published(out, "transit_closed")[0].data["outcome"] == "passed"
    assert m.state is LaneState.IDLE


def test_io_link_down_at_decision_holds_until_it_returns() -> None:
    m = strict_machine()
    run(m, link(0.5, up=False, reason="unplugged"))
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3, 30_000, 10))
    assert published(out, "decision")[-1].data["reasons"] == ["lane.io_link_lost"]
    out = step(m, link(4.0, up=True), 4.0)
    assert any(isinstance(c, OpenBarrier) for c in out)


def test_barrier_that_never_opens_turns_into_a_hold_after_the_timeout() -> None:
    m = strict_machine()
    run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3, 30_000, 10))
    deadline = m.next_deadline()
    assert deadline is not None
    assert m.handle_timer(deadline - 0.01) == []
    out = m.handle_timer(deadline)
    assert published(out, "decision")[0].data["reasons"] == ["lane.barrier_timeout"]
    out = step(m, cleared(deadline + 5, 0.0), deadline + 5)
    assert any(isinstance(c, CloseWhenClear) for c in out)


# -- property: rule L2, whatever the order of inputs ------------------------------------------
_events = st.one_of(
    st.builds(truck_on, at=st.just(0.0)),
    st.builds(shown, at=st.just(0.0), spec=st.sampled_from([GOOD_PASS, FORGED_PASS])),
    st.builds(
        weight,
        at=st.just(0.0),
        kg=st.sampled_from([30_000.0, 36_000.0]),
        uncertainty_kg=st.just(10.0),
    ),
    st.builds(abnormal, at=st.just(0.0), code=st.just("weight.frozen"), detail=st.just("")),
    st.builds(cleared, at=st.just(0.0), zero_kg=st.just(0.0)),
    st.builds(
        board,
        at=st.just(0.0),
        barrier=st.sampled_from(["closed", "open"]),
        loop_b=st.booleans(),
    ),
    st.builds(link, at=st.just(0.0), up=st.booleans()),
    st.builds(RemoteRelease, at=st.just(0.0), cmd_id=st.just("c"), challenge=st.just("wrong")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_events, max_size=30))
def test_barrier_opens_only_with_valid_pass_weight_in_tolerance_no_abnormality_and_link(
    events: list[object],
) -> None:
    m = strict_machine()
    link_up = True
    for now, event in enumerate(events):
        transit_before = m.transit
        out = step(m, event, float(now))  # type: ignore[arg-type]
        if isinstance(event, LinkUp | LinkLost):
            link_up = isinstance(event, LinkUp)
        if any(isinstance(c, OpenBarrier) for c in out):
            transit = m.transit
            assert transit is not None and transit is (transit_before or transit)
            assert transit.pass_presented is not None and transit.pass_presented.valid
            assert transit.weight_kg is not None and abs(transit.weight_kg - 30_000) <= 300
            assert not transit.abnormal
            assert link_up


def test_hold_takes_a_snapshot_and_its_event_references_it_with_the_weight_trace() -> None:
    from edge_agent.lane.actions import TakeSnapshot

    m = strict_machine()
    trace = ((2.0, 30_900.0), (2.1, 30_920.0))
    heavy = weight(3.0, 31_000.0, 10.0, trace)
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), heavy)
    [snapshot] = [c for c in out if isinstance(c, TakeSnapshot)]
    decision = published(out, "decision")[-1]
    assert decision.data["snapshot"] == snapshot.ref
    assert decision.data["trace"] == [[2.0, 30_900.0], [2.1, 30_920.0]]
    assert out.index(snapshot) < out.index(decision)


def test_an_officer_refusal_keeps_the_arm_down_and_ends_the_transit_refused() -> None:
    m = strict_machine()
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3, 31_000, 10))
    challenge = published(out, "decision")[-1].data["challenge"]
    wrong = step(m, RemoteRelease(4.0, "cmd-0", "other", verdict="refuse"), 4.0)
    assert published(wrong, "release_refused")[0].data["reason"] == "challenge mismatch"
    out = step(m, RemoteRelease(5.0, "cmd-1", challenge, officer="officer-7",
                                verdict="refuse", reason="seal broken"), 5.0)
    told = published(out, "remote_verdict")[0].data
    assert (told["verdict"], told["officer"], told["reason"]) == ("refuse", "officer-7",
                                                                 "seal broken")
    assert "back off" in told["instruction"]
    assert not any(isinstance(c, OpenBarrier) for c in out)
    assert m.state is LaneState.HOLD
    out = step(m, cleared(9.0, 0.0), 9.0)
    assert published(out, "transit_closed")[0].data["outcome"] == "refused"
    assert not any(isinstance(c, MarkPassUsed) for c in out)
    assert m.state is LaneState.IDLE


def test_a_reweigh_sends_the_truck_back_with_its_pass_unused() -> None:
    m = strict_machine()
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3, 31_000, 10))
    challenge = published(out, "decision")[-1].data["challenge"]
    out = step(m, RemoteRelease(5.0, "cmd-1", challenge, verdict="reweigh"), 5.0)
    assert published(out, "remote_verdict")[0].data["verdict"] == "reweigh"
    out = step(m, cleared(9.0, 0.0), 9.0)
    assert published(out, "transit_closed")[0].data["outcome"] == "reweigh"
    # Driven on again with the same pass and now within tolerance: weighed and let through.
    out = run(m, truck_on(20.0), shown(21.0, GOOD_PASS), weight(22, 30_000, 10), now=22.0)
    assert published(out, "decision")[-1].data["decision"] == "open"
    assert any(isinstance(c, OpenBarrier) for c in out)
