"""Random sequences of lane inputs and mode changes through a strict LaneMachine.

After every input: no OPEN in service without a stored pass use for the transit or a release
(remote with the challenge, or the technician); no OPEN and no pass marked out of service or
in maintenance; in manual an OPEN only on the technician's request; every OPEN published as
an ``open`` decision (L5); a pass stored as used at most once per transit (L3); no decision
opens while storage is down (L9); and the
strict machine itself raises on any input its table does not name or a landing it does not
allow (L1).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.lane.actions import MarkPassUsed, OpenBarrier, Publish
from edge_agent.lane.fakes import answer_ledger, step
from edge_agent.lane.inputs import (
    BarrierRequested,
    ModeRequested,
    RemoteRelease,
    SignedIn,
    StorageChanged,
)
from edge_agent.lane.machine import LaneMachine
from edge_agent.lane.modes import LaneMode, Via
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

PASSES = {
    "good": PassSpec(valid=True, reason=None, release_no="RL-1", declared_gross_kg=30_000,
                     tolerance_kg=300, cti_hex="22" * 16, exp=2_000_000_000),
    "forged": PassSpec(valid=False, reason="pass.unknown_key"),
    "used": PassSpec(valid=True, reason="pass.already_used", release_no="RL-2",
                     declared_gross_kg=30_000, cti_hex="33" * 16, exp=2_000_000_000),
}  # fmt: skip

_MODE = st.tuples(st.just("mode"), st.sampled_from(list(LaneMode)),
                 st.sampled_from([Via.LOCAL, Via.REMOTE]))
_PASS = st.tuples(st.just("pass"), st.sampled_from(["good", "good", "forged", "used"]))
_WEIGHT = st.tuples(st.just("weight"), st.sampled_from([30_000.0, 30_000.0, 41_000.0]))
# Repeated branches are drawn more often: enough passes, weights and mode changes for trucks
# to be decided in every mode.
_VISIT = st.tuples(st.just("visit"))  # a truck that drives on, shows a good pass, is weighed
OPS = st.one_of(
    _MODE, _MODE, _MODE, _PASS, _PASS, _PASS, _WEIGHT, _WEIGHT, _WEIGHT, _VISIT, _VISIT,
    st.tuples(st.just("truck")),
    st.tuples(st.just("abnormal")),
    st.tuples(st.just("cleared")),
    st.tuples(st.just("board"), st.sampled_from(["closed", "opening", "open", "stopped",
                                                 "maintenance"]),
              st.booleans(), st.booleans()),
    st.tuples(st.just("link"), st.booleans()),
    st.tuples(st.just("storage"), st.booleans()),
    st.tuples(st.just("hand"), st.booleans()),
    st.tuples(st.just("hand"), st.just(True)),
    st.tuples(st.just("release"), st.just(True)),
    st.tuples(st.just("release"), st.booleans()),
    st.tuples(st.just("signin")),
    st.tuples(st.just("time"), st.sampled_from([0.5, 7.0, 130.0])),
)


@dataclass
class Lane:
    machine: LaneMachine
    now: float = 0.0
    stored: set[str] = field(default_factory=set)  # transits whose pass use is stored
    storage_ok: bool = True
    counter: Any = field(default_factory=lambda: itertools.count(1))

    def event(self, op: tuple[Any, ...]) -> Any:
        now, m = self.now, self.machine
        match op:
            case ("truck",):
                return truck_on(now)
            case ("pass", kind):
                return shown(now, PASSES[kind])
            case ("weight", kg):
                return weight(now, kg, 10.0)
            case ("abnormal",):
                return abnormal(now, "weight.unstable_timeout", "no stable weight")
            case ("cleared",):
                return cleared(now, 0.0)
            case ("board", barrier, loop_b, key):
                return board(now, barrier, loop_b=loop_b, tech_key=key)
            case ("link", up):
                return link(now, up, "" if up else "cable")
            case ("storage", ok):
                self.storage_ok = ok
                return StorageChanged(now, ok, "" if ok else "disk full")
            case ("mode", mode, via):
                return ModeRequested(now, mode, "tech", "random", via, f"m{next(self.counter)}",
                                     1_800_000_000.0 + now)  # fmt: skip
            case ("hand", is_open):
                return BarrierRequested(now, is_open, "tech", f"h{next(self.counter)}")
            case ("release", right):
                transit = m.transit
                challenge = transit.challenge if transit and right and transit.challenge else "x"
                return RemoteRelease(now, f"c{next(self.counter)}", challenge or "x", "officer")
            case ("signin",):
                return SignedIn(now, "tech", f"s{next(self.counter)}")
        raise AssertionError(op)


def check(lane: Lane, op: tuple[Any, ...], out: list[Any], ledger_ok: bool) -> None:
    mode = lane.machine.modes.mode
    marks = [a for a in out if isinstance(a, MarkPassUsed)]
    if mode in (LaneMode.OUT_OF_SERVICE, LaneMode.MAINTENANCE):
        assert not marks, f"pass marked used in {mode}"
    for mark in marks if ledger_ok else []:
        assert mark.transit_id not in lane.stored, "L3: a pass use stored twice in a transit"
        lane.stored.add(mark.transit_id)
    released = {a.transit_id for a in out if isinstance(a, Publish) and a.type == "released"}
    technician = {a.transit_id for a in out if isinstance(a, Publish) and a.type == "released"
                  and a.data.get("by") == "technician"}  # fmt: skip
    decided = {a.transit_id for a in out if isinstance(a, Publish) and a.type == "decision"
               and a.data["decision"] == "open"}  # fmt: skip
    by_policy = [a for a in out if isinstance(a, Publish) and a.type == "decision"
                 and a.data.get("by") == "policy"]
    assert lane.storage_ok or not by_policy, "L9: a decision opened while storage is down"
    for opened in (a for a in out if isinstance(a, OpenBarrier)):
        tid = opened.transit_id
        assert mode not in (LaneMode.OUT_OF_SERVICE, LaneMode.MAINTENANCE), f"OPEN in {mode}"
        if mode is LaneMode.MANUAL:
            assert tid in technician, f"OPEN in manual without the technician: {op}"
        else:
            assert tid in lane.stored or tid in released, f"OPEN with no stored use: {op}"
        assert tid in decided, "L5: an OPEN without its open decision"


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(OPS, st.booleans() | st.just(True)), min_size=10, max_size=60))
def test_no_mode_and_no_input_sequence_breaks_the_lane_rules(
    ops: list[tuple[tuple[Any, ...], bool]],
) -> None:
    lane = Lane(strict_machine())
    for op, ledger_ok in ops:
        if op[0] == "visit":
            for part in (("truck",), ("pass", "good"), ("weight", 30_000.0)):
                lane.now += 0.25
                check(lane, part, step(lane.machine, lane.event(part), lane.now), True)
            continue
        if op[0] == "time":
            lane.now += op[1]
            m = lane.machine
            out = answer_ledger(m, m.handle_timer(lane.now), lane.now, ok=ledger_ok)
        else:
            lane.now += 0.25
            out = step(lane.machine, lane.event(op), lane.now, ledger_ok=ledger_ok)
        check(lane, op, out, ledger_ok)
