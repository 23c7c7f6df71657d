"""Rule L2's identity condition: the plate read must be one the pass names (handle/timers only)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.identity.plate_match import PLATE_MISMATCH, PLATE_UNREAD, match_plate
from edge_agent.lane.actions import KeepCrop, Publish
from edge_agent.lane.identity import IdentityPolicy
from edge_agent.lane.inputs import IdentitySeen, IdentitySourceChanged, RemoteRelease
from edge_agent.lane.machine import LaneMachine, LaneState, MachineConfig
from edge_agent.lane.policy import PolicyConfig
from edge_agent.tests.lane_builders import (
    PassSpec,
    abnormal,
    board,
    deck_and_link,
    shown,
    truck_on,
    weight,
)
from edge_agent.tests.lane_play import (
    decisions,
    opened,
    play,
    policy_opens,
    run,
    strict_machine,
    timers,
)

PLATE = "沪A·12345"
GOOD_PASS = PassSpec(valid=True, reason=None, release_no="RL-1", plates=(PLATE, "沪B99999"),
                     declared_gross_kg=30_000, tolerance_kg=300, cti_hex="00" * 16,
                     exp=2_000_000_000)
FORGED_PASS = PassSpec(valid=False, reason="pass.unknown_key")
WAIT_S = 2.0


def machine(unread: str = "hold", wait_s: float = WAIT_S) -> LaneMachine:
    identity = IdentityPolicy(checks=("plate",), wait_s=wait_s,
                              unread={"plate": unread})  # type: ignore[dict-item]
    return strict_machine(MachineConfig(policy=PolicyConfig(identity=identity)))


def plate(at: float, *texts: str, crop: str | None = "plate-1") -> IdentitySeen:
    return IdentitySeen(at, "plate", texts, crop)


def test_a_plate_read_before_the_weight_opens_at_the_weight_with_the_check_stated() -> None:
    m = machine()
    run(m, truck_on(1.0), plate(1.5, "沪A12345"), shown(2.0, GOOD_PASS))
    out = run(m, weight(3.0, 30_000.0, 10.0))
    assert opened(out)
    [decision] = decisions(out)
    assert decision["input_at_mono"] == 3.0 and decision["flags"] == []
    [check] = decision["identity"]
    assert check["check"] == "plate" and check["code"] is None
    assert check["matched"] == PLATE and check["read"] == "沪A12345"


def test_the_usual_ocr_confusions_still_match() -> None:
    m = machine()
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), plate(2.5, "沪8 99999"),
              weight(3.0, 30_000.0, 10.0))
    assert opened(out) and decisions(out)[0]["identity"][0]["matched"] == "沪B99999"


def test_no_plate_holds_as_unread_exactly_when_the_wait_ends() -> None:
    m = machine()
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3.0, 30_000.0, 10.0))
    assert decisions(out) == [] and m.state is LaneState.LOADING
    assert m.next_deadline() == 3.0 + WAIT_S
    assert m.handle_timer(3.0 + WAIT_S - 0.01) == []
    out = timers(m, 10.0)
    [hold] = decisions(out)
    assert hold["decision"] == "hold" and hold["reasons"] == [PLATE_UNREAD]
    assert "pass names 沪A·12345, 沪B99999" in hold["detail"]
    assert m.state is LaneState.HOLD and not opened(out)


def test_a_plate_read_during_the_wait_opens_at_once() -> None:
    m = machine()
    run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3.0, 30_000.0, 10.0))
    out = run(m, plate(4.2, "沪A12345"))
    assert opened(out) and decisions(out)[0]["input_at_mono"] == 4.2


def test_a_wrong_plate_holds_with_the_crop_and_the_pass_plates_as_evidence() -> None:
    m = machine()
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), plate(2.5, "沪C55555", crop="plate-7"),
              weight(3.0, 30_000.0, 10.0))
    assert decisions(out) == []  # a later read may still be the right one
    out = timers(m, 10.0)
    [hold] = decisions(out)
    assert hold["reasons"] == [PLATE_MISMATCH]
    [check] = hold["identity"]
    assert check["expected"] == [PLATE, "沪B99999"] and check["reads"] == ["沪C55555"]
    assert check["crop"] == "plate-7"
    [crop] = [a for a in out if isinstance(a, KeepCrop)]
    assert (crop.crop_ref, crop.kind, crop.transit_id) == ("plate-7", "plate", "id1")


def test_a_misread_then_the_right_plate_within_the_wait_opens() -> None:
    m = machine()
    run(m, truck_on(1.0), shown(2.0, GOOD_PASS), plate(2.5, "沪A1234"),
        weight(3.0, 30_000.0, 10.0))
    assert opened(run(m, plate(3.5, "沪A12345")))


def test_under_the_flag_policy_an_unread_plate_opens_with_the_flag_in_the_decision() -> None:
    m = machine(unread="flag")
    run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3.0, 30_000.0, 10.0))
    out = timers(m, 10.0)
    assert opened(out)
    [decision] = decisions(out)
    assert decision["decision"] == "open" and decision["flags"] == [PLATE_UNREAD]


def test_under_the_flag_policy_a_wrong_plate_still_holds() -> None:
    m = machine(unread="flag")
    run(m, truck_on(1.0), shown(2.0, GOOD_PASS), plate(2.0, "沪C55555"),
        weight(3.0, 30_000.0, 10.0))
    out = timers(m, 10.0)
    assert not opened(out) and decisions(out)[0]["reasons"] == [PLATE_MISMATCH]


@pytest.mark.parametrize(("unread", "decision"), [("hold", "hold"), ("flag", "open")])
def test_a_plate_source_that_is_down_decides_without_waiting(unread: str, decision: str) -> None:
    m = machine(unread=unread)
    out = run(m, IdentitySourceChanged(0.5, "plate", False, "plate engine missing: no models"))
    assert [a.data["code"] for a in out if isinstance(a, Publish)] == [
        "lane.identity_source_lost"]
    out = run(m, truck_on(1.0), shown(2.0, GOOD_PASS), weight(3.0, 30_000.0, 10.0))
    [made] = decisions(out)
    assert made["decision"] == decision and made["input_at_mono"] == 3.0
    back = run(m, IdentitySourceChanged(9.0, "plate", True))
    assert [a.type for a in back if isinstance(a, Publish)] == ["identity_source_restored"]


def test_a_plate_seen_before_the_transit_is_not_the_truck_s() -> None:
    m = machine()
    run(m, plate(0.5, "沪A12345"), truck_on(1.0), shown(2.0, GOOD_PASS),
        weight(3.0, 30_000.0, 10.0))
    assert decisions(timers(m, 10.0))[0]["reasons"] == [PLATE_UNREAD]


def test_a_remote_release_opens_a_plate_hold() -> None:
    m = machine()
    run(m, truck_on(1.0), shown(2.0, GOOD_PASS), plate(2.0, "沪C55555"),
        weight(3.0, 30_000.0, 10.0))
    challenge = decisions(timers(m, 10.0))[0]["challenge"]
    assert opened(run(m, RemoteRelease(11.0, "cmd-1", challenge)))


def test_without_identity_checks_the_lane_decides_on_pass_and_weight_as_before() -> None:
    m = LaneMachine(MachineConfig(), new_id=lambda: "t", strict=True)
    out = run(m, truck_on(1.0), plate(1.5, "沪C55555"), shown(2.0, GOOD_PASS),
              weight(3.0, 30_000.0, 10.0))
    assert opened(out) and decisions(out)[0]["identity"] == []


# -- properties: whatever the order and timing of inputs ---------------------------------------
_READS = [("沪A12345",), ("沪A 12345",), ("A12345",), ("沪C55555",), ("沪C55555", "沪B99999"),
          ("",), ()]
# A truck's own inputs come often, the lane's other events now and then (weights by count).
_event = st.sampled_from([
    truck_on(0.0), truck_on(0.0), shown(0.0, GOOD_PASS), shown(0.0, GOOD_PASS),
    weight(0.0, 30_000.0, 10.0), weight(0.0, 30_000.0, 10.0),
    *(plate(0.0, *reads) for reads in _READS), *(plate(0.0, *reads) for reads in _READS[:4]),
    shown(0.0, FORGED_PASS), weight(0.0, 36_000.0, 10.0), abnormal(0.0, "weight.frozen", ""),
    *deck_and_link(0.0), board(0.0, "closed", loop_b=False),
    IdentitySourceChanged(0.0, "plate", False, "lost"), IdentitySourceChanged(0.0, "plate", True),
])
_timeline = st.lists(st.tuples(st.floats(0.0, 1.5 * WAIT_S), _event), max_size=30)


@pytest.mark.parametrize("unread", ["hold", "flag"])
@settings(max_examples=300, deadline=None)
@given(timeline=_timeline)
def test_the_barrier_never_opens_by_policy_for_a_wrong_plate_nor_an_unread_one_under_hold(
    unread: str, timeline: list[tuple[float, Any]],
) -> None:
    for made, transit, reads in policy_opens(machine(unread=unread), timeline):
        verdict = match_plate(reads.get(transit.transit_id, []), GOOD_PASS.plates)
        assert verdict.reason != PLATE_MISMATCH
        if unread == "hold":
            assert verdict.reason is None
        else:
            assert verdict.reason is None or made["flags"] == [PLATE_UNREAD]


@settings(max_examples=300, deadline=None)
@given(timeline=_timeline, wait_s=st.sampled_from([0.5, WAIT_S, 5.0]))
def test_a_decision_never_waits_longer_than_the_plate_wait(
    timeline: list[tuple[float, Any]], wait_s: float,
) -> None:
    m = machine(wait_s=wait_s)
    for played in play(m, timeline):
        transit, now = m.transit, played.now
        if played.waited_since is not None and decisions(played.out):  # it ended a wait
            assert now - played.waited_since <= wait_s + 1e-9
        if transit is not None and transit.identity_deadline is not None:
            # Still waiting: only inside the wait, and the shell is told when it ends.
            assert transit.identity_since is not None
            assert now < transit.identity_deadline <= transit.identity_since + wait_s + 1e-9
            assert m.next_deadline() == transit.identity_deadline
