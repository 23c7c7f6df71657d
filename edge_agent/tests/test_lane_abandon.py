"""Rule L8: a pass shown with no truck on the deck ends as an abandoned transit, in time."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_agent.errors import ConfigError
from edge_agent.lane.actions import (
    CloseWhenClear,
    LaneAction,
    MarkPassUsed,
    OpenBarrier,
    Publish,
)
from edge_agent.lane.fakes import step
from edge_agent.lane.inputs import LaneInput, RemoteRelease
from edge_agent.lane.machine import LaneMachine, LaneState, MachineConfig
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

LIMIT = 120.0
GOOD_PASS = PassSpec(
    valid=True,
    reason=None,
    release_no="RL-7",
    plates=("SU-7",),
    declared_gross_kg=30_000,
    tolerance_kg=300,
    cti_hex="ab" * 16,
    exp=2_000_000_000,
)
FORGED_PASS = PassSpec(valid=False, reason="pass.bad_signature")


def machine(limit: float = LIMIT) -> LaneMachine:
    return strict_machine(MachineConfig(pass_without_truck_s=limit))


def feed(m: LaneMachine, event: LaneInput) -> list[LaneAction]:
    """Hand one event to the machine at its own time, then let due timers fire."""
    return step(m, event, event.at) + m.handle_timer(event.at)


def published(commands: list[LaneAction], kind: str) -> list[Publish]:
    return [c for c in commands if isinstance(c, Publish) and c.type == kind]


def closed(commands: list[LaneAction]) -> Publish:
    [event] = published(commands, "transit_closed")
    return event


def is_lane_action(command: LaneAction) -> bool:
    return isinstance(command, OpenBarrier | MarkPassUsed | CloseWhenClear)


# -- the timeout ----------------------------------------------------------------------------------
def test_pass_with_no_truck_is_abandoned_at_the_timeout_and_not_before() -> None:
    m = machine()
    out = feed(m, shown(10.0, GOOD_PASS))
    transit_id = published(out, "pass_read")[0].transit_id
    assert m.next_deadline() == 10.0 + LIMIT
    assert m.handle_timer(10.0 + LIMIT - 0.001) == []
    assert m.state is LaneState.LOADING

    out = m.handle_timer(10.0 + LIMIT)
    event = closed(out)
    assert event.transit_id == transit_id
    assert event.data["outcome"] == "abandoned"
    assert event.data["reason"] == "lane.no_truck"
    assert event.data["duration_s"] == LIMIT
    assert "120 s" in event.data["detail"]
    assert not any(is_lane_action(c) for c in out)  # no barrier, pass not marked used
    assert m.state is LaneState.IDLE and m.transit is None
    assert m.next_deadline() is None
    assert m.handle_timer(10.0 + 10 * LIMIT) == []


def test_the_timeout_counts_from_the_last_pass_read() -> None:
    m = machine()
    feed(m, shown(10.0, FORGED_PASS))
    feed(m, shown(100.0, GOOD_PASS))
    assert m.handle_timer(10.0 + LIMIT) == []
    assert m.next_deadline() == 100.0 + LIMIT
    assert closed(m.handle_timer(100.0 + LIMIT)).data["outcome"] == "abandoned"


def test_a_forged_pass_with_no_truck_is_held_then_abandoned() -> None:
    m = machine()
    out = feed(m, shown(10.0, FORGED_PASS))
    assert m.state is LaneState.HOLD
    assert published(out, "decision")[0].data["reasons"] == ["pass.bad_signature"]
    out = m.handle_timer(10.0 + LIMIT)
    assert closed(out).data["reason"] == "lane.no_truck"
    assert not any(is_lane_action(c) for c in out)
    assert m.state is LaneState.IDLE


def test_an_empty_deck_abnormality_does_not_keep_a_truckless_pass_alive() -> None:
    m = machine()
    feed(m, shown(10.0, GOOD_PASS))
    feed(m, abnormal(20.0, "weight.zero_drift", "zero moved"))
    assert m.state is LaneState.HOLD
    assert closed(m.handle_timer(10.0 + LIMIT)).data["outcome"] == "abandoned"


def test_an_empty_deck_zero_does_not_end_a_truckless_pass_early() -> None:
    # DeckCleared only says the deck is empty, which it was all along: no truck "withdrew".
    m = machine()
    feed(m, shown(10.0, GOOD_PASS))
    assert feed(m, cleared(15.0, 0.0)) == []
    assert m.state is LaneState.LOADING
    assert closed(m.handle_timer(10.0 + LIMIT)).data["outcome"] == "abandoned"


def test_a_shorter_configured_timeout_is_honoured() -> None:
    m = machine(limit=30.0)
    feed(m, shown(10.0, GOOD_PASS))
    assert m.handle_timer(39.9) == []
    assert closed(m.handle_timer(40.0)).data["detail"].startswith("no truck on the deck 30 s")


@pytest.mark.parametrize("bad", [0, -5.0, math.nan, math.inf, True, "120"])
def test_the_timeout_must_be_a_positive_finite_number(bad: object) -> None:
    with pytest.raises(ConfigError, match="pass_without_truck_s"):
        MachineConfig(pass_without_truck_s=bad)  # type: ignore[arg-type]


def test_the_default_timeout_is_two_minutes() -> None:
    assert MachineConfig().pass_without_truck_s == 120.0


# -- the truck comes -----------------------------------------------------------------------------
def test_pass_then_truck_in_time_is_the_normal_flow_in_one_transit() -> None:
    m = machine()
    out = feed(m, shown(10.0, GOOD_PASS))
    transit_id = published(out, "pass_read")[0].transit_id
    assert feed(m, truck_on(10.0 + LIMIT - 1.0)) == []
    assert m.next_deadline() is None
    assert m.handle_timer(10.0 + 5 * LIMIT) == []  # no abandonment once a load is on the deck
    out = feed(m, weight(10.0 + 5 * LIMIT, 30_050.0, 10.0))
    assert [c for c in out if is_lane_action(c)] == [
        MarkPassUsed(GOOD_PASS.cti_hex, GOOD_PASS.exp, transit_id),
        OpenBarrier(transit_id),
    ]
    assert published(out, "decision")[0].data["decision"] == "open"


def test_a_committed_weight_also_proves_a_load() -> None:
    m = machine()
    feed(m, shown(10.0, FORGED_PASS))
    feed(m, weight(50.0, 30_000.0, 10.0))
    assert m.next_deadline() is None
    assert m.handle_timer(10.0 + LIMIT) == []
    assert m.state is LaneState.HOLD  # the forged pass still holds the truck


def test_the_returning_truck_can_use_the_pass_of_the_abandoned_transit() -> None:
    m = machine()
    first = feed(m, shown(10.0, GOOD_PASS))
    abandoned = m.handle_timer(10.0 + LIMIT)
    assert closed(abandoned).data["outcome"] == "abandoned"

    back = 10.0 + 3 * LIMIT
    later = feed(m, truck_on(back))
    later += feed(m, shown(back + 5, GOOD_PASS))
    later += feed(m, weight(back + 10, 29_980.0, 10.0))

    old_id = published(first, "pass_read")[0].transit_id
    new_id = published(later, "truck_arrived")[0].transit_id
    assert new_id != old_id
    # The ledger mark comes once, for the transit the truck really made.
    assert [c for c in first + abandoned + later if isinstance(c, MarkPassUsed)] == [
        MarkPassUsed(GOOD_PASS.cti_hex, GOOD_PASS.exp, new_id)
    ]
    assert any(isinstance(c, OpenBarrier) for c in later)


def test_a_truck_that_drives_off_before_a_decision_is_withdrawn_and_the_pass_stays_unused() -> None:
    m = machine()
    out = feed(m, shown(10.0, GOOD_PASS))
    out += feed(m, truck_on(20.0))
    out += feed(m, cleared(40.0, 0.0))  # backed off before the weight was committed
    assert closed(out).data["outcome"] == "withdrawn"
    assert not any(is_lane_action(c) for c in out)
    assert m.state is LaneState.IDLE and m.next_deadline() is None

    out = feed(m, truck_on(60.0))
    assert published(out, "truck_arrived")[0].transit_id == "id2"
    assert m.transit is not None and m.transit.pass_presented is None  # a fresh transit


def test_after_abandonment_the_next_pass_starts_a_fresh_transit_with_a_fresh_timer() -> None:
    m = machine()
    feed(m, shown(10.0, GOOD_PASS))
    m.handle_timer(10.0 + LIMIT)
    out = feed(m, shown(500.0, GOOD_PASS))
    assert published(out, "truck_arrived")[0].transit_id == "id2"
    assert m.next_deadline() == 500.0 + LIMIT


def test_a_released_truckless_hold_whose_barrier_never_opened_is_closed_and_abandoned() -> None:
    # A technician lifted a hold with nobody on the deck; the barrier never reported open.
    m = machine()
    feed(m, shown(10.0, FORGED_PASS))
    feed(m, board(20.0, "closed", loop_b=False))
    out = feed(m, board(21.0, "closed", loop_b=False, tech_key=True))
    assert any(isinstance(c, OpenBarrier) for c in out)
    out = m.handle_timer(10.0 + LIMIT + 60.0)  # barrier timeout and no-truck timeout both due
    assert published(out, "decision")[0].data["reasons"] == ["lane.barrier_timeout"]
    assert closed(out).data["outcome"] == "abandoned"
    assert any(isinstance(c, CloseWhenClear) for c in out)
    assert not any(isinstance(c, MarkPassUsed) for c in out)
    assert m.state is LaneState.IDLE and m.next_deadline() is None


# -- random walks ---------------------------------------------------------------------------------
_KINDS = st.sampled_from(
    ["truck", "good", "forged", "weight", "heavy", "abnormal", "cleared", "board", "key",
     "link_down", "link_up", "release", "wait"]
)
_GAPS = st.sampled_from([0.0, 0.5, 5.0, LIMIT - 1.0, LIMIT, LIMIT + 1.0, 400.0])


def _event(kind: str, at: float) -> LaneInput | None:
    return {
        "truck": truck_on(at),
        "good": shown(at, GOOD_PASS),
        "forged": shown(at, FORGED_PASS),
        "weight": weight(at, 30_000.0, 10.0),
        "heavy": weight(at, 36_000.0, 10.0),
        "abnormal": abnormal(at, "weight.frozen", ""),
        "cleared": cleared(at, 0.0),
        "board": board(at, "open", loop_b=False),
        "key": board(at, "closed", loop_b=False, tech_key=True),
        "link_down": link(at, up=False),
        "link_up": link(at, up=True),
        "release": RemoteRelease(at, "c", "wrong"),
    }.get(kind)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_KINDS, _GAPS), max_size=40))
# A technician's release of a forged-pass hold, then the truck weighed while the arm moves:
# that transit has its truck and must not be abandoned.
@example(steps=[("forged", 0.0), ("key", 0.0), ("weight", 120.0)])
def test_random_walk_no_stale_truckless_pass_and_abandonment_never_acts(
    steps: list[tuple[str, float]],
) -> None:
    m = machine()
    now = 0.0
    loaded: set[str] = set()  # transits that had a load on the deck
    closed_ids: list[str] = []
    last_pass: dict[str, float] = {}
    for kind, gap in steps:
        now += gap
        event = _event(kind, now)
        out = step(m, event, now) if event is not None else []
        if m.transit is not None:
            if kind in ("truck", "weight", "heavy"):
                loaded.add(m.transit.transit_id)
            if kind in ("good", "forged") and m.state in (LaneState.LOADING, LaneState.HOLD):
                last_pass[m.transit.transit_id] = now
        out += m.handle_timer(now)

        for event_out in published(out, "transit_closed"):
            assert event_out.transit_id is not None
            closed_ids.append(event_out.transit_id)
            if event_out.data["outcome"] == "abandoned":
                assert event_out.transit_id not in loaded
                assert now >= last_pass[event_out.transit_id] + LIMIT
                assert not any(isinstance(c, OpenBarrier | MarkPassUsed) for c in out)
        # Liveness: nothing is left overdue once the timers had their turn.
        deadline = m.next_deadline()
        assert deadline is None or deadline > now
        transit = m.transit
        if (
            transit is not None
            and m.state in (LaneState.LOADING, LaneState.HOLD)
            and transit.transit_id not in loaded
            and transit.transit_id in last_pass
        ):
            assert now < last_pass[transit.transit_id] + LIMIT
    assert len(closed_ids) == len(set(closed_ids))  # each transit closes once
