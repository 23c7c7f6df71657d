"""The lane state machine: the one place that owns the lane's transitions.

Rules (every change to this file keeps them true; tests in edge_agent/tests/test_lane_*.py):
  L1 Everything that changes the lane's state lives in this file, in TRANSITIONS: each
     (state, input type) names its handler and the states it may leave the machine in, or
     says why that input is ignored there. A strict machine (tests) raises on any other pair
     and on a handler that lands elsewhere; in production such a pair is logged and ignored.
  L2 The barrier is opened only for a transit with (a valid pass and a committed weight and no
     open abnormality and the truck's identity confirmed and the IO link up), or by a signed
     remote release echoing the challenge published with the hold, or by the technician key.
     Nothing else opens it. The lane's mode (``modes.py``) narrows this: in service all
     three; in manual only the technician (the key or ``BarrierRequested``); out of service
     and in maintenance nothing. A shown pass in a mode where no decision opens holds the
     truck with the mode's code, unmarked.
     Identity (``identity.py``): every check the site's policy names (the plate) confirmed by
     a read during the transit; a read that matches none of the pass's values holds
     (``vehicle.plate_mismatch``); no read holds (``vehicle.plate_unread``) or, under the
     site's ``flag`` policy, opens with the code in the decision's ``flags``. The decision
     waits for a read at most ``wait_s`` after everything else was in.
  L3 OpenBarrier is emitted only by ``_commit_open``; a pass is marked used at most once per
     transit (a retry after a barrier timeout re-sends OpenBarrier, nothing else), and its use
     is recorded before the barrier opens: ``_open`` asks for MarkPassUsed and waits in
     RECORDING for the shell's PassUseRecorded; a use that could not be recorded (or that the
     ledger already held) holds the truck instead.
  L4 The decision is taken the moment the later of pass and weight arrives (with identity
     checks: the moment a read confirms it, or its wait ends); an abnormality seen before the
     barrier is commanded open turns the transit into a hold at once.
  L5 Every decision, hold and release is published, with the codes that caused it.
  L6 No clocks, no I/O: ``handle(input, now)`` returns actions; ``next_deadline()`` says when
     ``handle_timer(now)`` must be called. The shell executes barrier actions first, then the
     rest in the order given.
  L7 The firmware closes the barrier on its own after the truck passed; the machine asks for a
     close only when a truck backed off with the barrier open (CloseWhenClear), or when the
     technician asks in manual mode.
  L8 A transit with a pass whose deck has carried no load (a pass shown on foot, a truck that
     turned away before the deck) ends as ``abandoned`` (``lane.no_truck``) once
     ``pass_without_truck_s`` passed since its last pass read and nothing was decided: no
     barrier, no ledger mark, so the pass still works for the truck. A truck that drove on and
     off again ends as ``withdrawn`` when the deck is empty.
  L9 Fail closed on storage: while the lane's records cannot be written (StorageChanged), no
     decision opens the barrier; the truck is held with ``lane.storage_fault`` and decided
     again when storage is back.
  L10 Every mode change is published (``lane_mode``) and persisted (``PersistMode``).
The handlers of the decision (``decision.py``), of the lane's conditions (``conditions.py``)
and of its modes and technician (``technician.py``) are the machine's too: TRANSITIONS names
them like the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from edge_agent.catalogue import Code, EventType
from edge_agent.lane.actions import CloseWhenClear, LaneAction, Publish
from edge_agent.lane.conditions import ConditionRules
from edge_agent.lane.decision import DecisionRules
from edge_agent.lane.inputs import (
    BarrierRequested,
    CameraChanged,
    IdentitySeen,
    IdentitySourceChanged,
    LaneInput,
    ModeRequested,
    PassPresented,
    PassUseRecorded,
    RemoteRelease,
    SignedIn,
    StorageChanged,
)
from edge_agent.lane.modes import HOLD_DETAIL, ModeBook, remote_may_release
from edge_agent.lane.policy import PolicyConfig
from edge_agent.lane.state import LaneState, MachineConfig
from edge_agent.lane.table import DeadlinePassed, Ignored, On, check_landing, handler_for
from edge_agent.lane.technician import TechnicianRules
from edge_agent.lane.transit import Transit, abnormality_data, pass_read_data
from edge_agent.protocols.iolink import Barrier
from edge_agent.protocols.iolink_session import BoardSnapshot, LinkLost, LinkUp
from edge_agent.weighing.events import DeckCleared, TruckOnDeck, WeightAbnormality, WeightCommitted

__all__ = ["TRANSITIONS", "LaneMachine", "LaneState", "MachineConfig"]


class LaneMachine(DecisionRules, ConditionRules, TechnicianRules):
    """Inputs in, actions out. See the rules at the top of this module."""

    def __init__(
        self, config: MachineConfig, new_id: Callable[[], str], *, strict: bool = False
    ) -> None:
        self._config = config
        self._new_id = new_id
        self._strict = strict
        self.state = LaneState.IDLE
        self.transit: Transit | None = None
        self._io_up = True
        self._storage_ok = True
        self._camera_up = True
        self._identity_down: dict[str, str] = {}  # identity readers down: kind -> why
        self._loop_b = False
        self._tech_key = False
        self._faults: frozenset[str] = frozenset()
        self._barrier = Barrier.UNKNOWN
        self._opening_deadline: float | None = None
        self._input_at = 0.0  # when the input being handled happened: decision latency starts here
        self.modes = ModeBook()
        self._wall_ref: tuple[float, float] | None = None  # (now, wall) of the last wall seen

    # -- public interface ------------------------------------------------------------------
    def set_policy(self, policy: PolicyConfig) -> None:
        """New decision settings (a remote config); a decision already taken stands."""
        self._config = dataclasses.replace(self._config, policy=policy)

    def restore_modes(self, book: ModeBook) -> None:
        """The mode persisted before a restart."""
        self.modes = book

    def handle(
        self, event: LaneInput, now: float, *, wall: float | None = None
    ) -> list[LaneAction]:
        """``wall``: the wall clock (UTC seconds) at ``now``, for the times modes record."""
        if wall is not None:
            self._wall_ref = (now, wall)
        entry = self._entry(type(event))
        if entry is None:
            return []
        self._input_at = event.at
        return self._run(entry, event, now)

    def next_deadline(self) -> float | None:
        if self.state is LaneState.OPENING:
            return self._opening_deadline
        transit = self.transit
        if self.state is LaneState.LOADING and transit and transit.identity_deadline is not None:
            return transit.identity_deadline
        if (
            self.state in (LaneState.LOADING, LaneState.HOLD)
            and transit is not None
            and not transit.loaded
            and transit.pass_at is not None
        ):
            return transit.pass_at + self._config.pass_without_truck_s
        return None

    def handle_timer(self, now: float) -> list[LaneAction]:
        actions: list[LaneAction] = []
        # Each expiry moves on (OPENING -> HOLD, LOADING/HOLD -> IDLE), so this ends; looping
        # leaves no deadline overdue when a hold after a barrier timeout is also truck-less.
        while (deadline := self.next_deadline()) is not None and now >= deadline:
            entry = self._entry(DeadlinePassed)
            if entry is None:
                break
            actions += self._run(entry, DeadlinePassed(deadline), now)
        return actions

    # -- the table's enforcement (L1) --------------------------------------------------------
    def _entry(self, kind: type) -> On | None:
        return handler_for(TRANSITIONS[self.state], kind, self.state, strict=self._strict)

    def _run(self, entry: On, event: Any, now: float) -> list[LaneAction]:
        before = self.state
        actions: list[LaneAction] = entry.handler(self, event, now)
        check_landing(entry, type(event), before, self.state, strict=self._strict)
        return actions

    @property
    def _transit_id(self) -> str | None:
        return self.transit.transit_id if self.transit else None

    # -- transit life ------------------------------------------------------------------------
    def _start(self, now: float) -> list[LaneAction]:
        self.transit = Transit(transit_id=self._new_id(), started_at=now)
        self.state = LaneState.LOADING
        return [Publish(EventType.TRUCK_ARRIVED, {}, self.transit.transit_id)]

    def _end(self, outcome: str, now: float, **extra: Any) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        self.transit = None
        self.state = LaneState.IDLE
        self._opening_deadline = None
        data = {"outcome": outcome, "duration_s": round(now - transit.started_at, 3), **extra}
        return [Publish(EventType.TRANSIT_CLOSED, data, transit.transit_id)]

    def _end_unpassed(self, outcome: str, now: float, **extra: Any) -> list[LaneAction]:
        # No truck went through: close behind an open that was commanded (then timed out).
        transit = self.transit
        assert transit is not None
        close = [CloseWhenClear(transit.transit_id)] if transit.opened_by is not None else []
        return [*close, *self._end(outcome, now, **extra)]

    # -- handlers (named <state>_<input>, or <input> when several states share it) --------------
    def _idle_arrived(self, event: TruckOnDeck, now: float) -> list[LaneAction]:
        actions = self._start(now)
        assert self.transit is not None
        self.transit.loaded = True
        return actions

    def _transit_arrived(
        self, event: TruckOnDeck | WeightCommitted, now: float
    ) -> list[LaneAction]:
        # The truck for a pass shown before it drove on; the transit (and its id) goes on.
        # A weight taken while the barrier moves (a release without a truck seen) counts too.
        assert self.transit is not None
        self.transit.loaded = True
        return []

    def _loading_pass(self, event: PassPresented, now: float) -> list[LaneAction]:
        actions = self._start(now) if self.transit is None else []
        assert self.transit is not None
        self.transit.pass_presented = event
        self.transit.pass_at = now
        actions.append(Publish(EventType.PASS_READ, pass_read_data(event), self._transit_id))
        return actions + self._try_decide(now)

    def _hold_pass(self, event: PassPresented, now: float) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        actions: list[LaneAction] = [
            Publish(EventType.PASS_READ, pass_read_data(event), transit.transit_id)
        ]
        transit.pass_at = now
        before = transit.pass_presented
        previous_was_bad = before is not None and not before.valid
        if event.valid or before is None or not before.valid:
            transit.pass_presented = event
        pass_only_hold = all(code.startswith("pass.") for code in transit.hold_reasons)
        if event.valid and previous_was_bad and pass_only_hold:
            self.state = LaneState.LOADING
            transit.hold_reasons = ()
            actions += self._try_decide(now)
        return actions

    def _take_weight(self, event: WeightCommitted, now: float) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        data = transit.take_weight(event)
        return [Publish(EventType.WEIGHT_COMMITTED, data, transit.transit_id)]

    def _loading_weight(self, event: WeightCommitted, now: float) -> list[LaneAction]:
        actions = self._start(now) if self.transit is None else []
        actions += self._take_weight(event, now)
        return actions + self._try_decide(now)

    def _pending_abnormal(self, event: WeightAbnormality, now: float) -> list[LaneAction]:
        actions = self._record_abnormality(event, now)
        if self.transit is not None:
            self.transit.abnormal.append(event.code)
            reasons = [*self.transit.hold_reasons, *self.transit.abnormal]
            actions += self._hold(reasons, now, event.detail)
        return actions

    def _record_abnormality(self, event: WeightAbnormality, now: float) -> list[LaneAction]:
        # Published only: with no truck, or with the barrier commanded open (it is leaving).
        data = abnormality_data(event.code, event.detail, event.evidence)
        if self.transit is not None:
            self.transit.weight_evidence = event.evidence or self.transit.weight_evidence
        return [Publish(EventType.ABNORMALITY, data, self._transit_id)]

    def _deck_cleared_waiting(self, event: DeckCleared, now: float) -> list[LaneAction]:
        # The truck backed off.
        assert self.transit is not None
        if not self.transit.loaded:
            return []  # nothing left the deck; a truck-less pass is ended by the L8 timer
        verdict = self.transit.remote_verdict
        outcome = {"refuse": "refused", "reweigh": "reweigh"}.get(verdict or "", "withdrawn")
        return self._end_unpassed(outcome, now)

    def _deck_cleared_moving(self, event: DeckCleared, now: float) -> list[LaneAction]:
        assert self.transit is not None
        self.transit.deck_clear = True
        return self._end("passed", now) if self.transit.passed else []

    def _board_opening(self, event: BoardSnapshot, now: float) -> list[LaneAction]:
        actions = self._track_board(event, now)
        if event.barrier == Barrier.OPEN and self.transit is not None:
            self.state = LaneState.OPEN
            self._opening_deadline = None
        return actions

    def _board_hold(self, event: BoardSnapshot, now: float) -> list[LaneAction]:
        release = event.input("tech_key") and not self._tech_key and self.transit is not None
        actions = self._track_board(event, now, key_used=release)
        if release and self.state is LaneState.HOLD:
            actions += self._key_release(now)
        return actions

    def _track_board(
        self, event: BoardSnapshot, now: float, *, key_used: bool = False
    ) -> list[LaneAction]:
        actions: list[LaneAction] = []
        rising = event.input("tech_key") and not self._tech_key
        barrier_changed = event.barrier != self._barrier
        transit = self.transit
        loop_b = event.input("loop_b")
        left_loop_b = self._loop_b and not loop_b
        if left_loop_b and transit is not None and transit.opened_by and not transit.passed:
            transit.passed = True
            actions.append(Publish(EventType.VEHICLE_PASSED, {}, transit.transit_id))
        if event.barrier != self._barrier and event.barrier != Barrier.UNKNOWN:
            data = {"state": str(event.barrier)}
            actions.append(Publish(EventType.BARRIER, data, self._transit_id))
            self._barrier = event.barrier
        if event.faults and event.faults != self._faults:
            data = abnormality_data(Code.LANE_SAFETY_FAULT, ",".join(sorted(event.faults)))
            actions.append(Publish(EventType.ABNORMALITY, data, self._transit_id))
        self._loop_b, self._tech_key = loop_b, event.input("tech_key")
        self._faults = frozenset(event.faults)
        if transit is not None and transit.passed and transit.deck_clear:
            actions += self._end("passed", now)
        return actions + self._board_mode(event, rising=rising, key_used=key_used,
                                          barrier_changed=barrier_changed, now=now)

    def _hold_release(self, event: RemoteRelease, now: float) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        # The officer cannot see the deck: an open arm with no truck on it would be taken by
        # whichever truck comes next, unchecked.
        mode = self.modes.mode
        refused = (
            HOLD_DETAIL[mode] if not remote_may_release(mode)
            else "challenge mismatch" if event.challenge != transit.challenge
            else "no truck on the deck" if not transit.loaded
            else None
        )
        if refused is not None:
            data = {"cmd_id": event.cmd_id, "accepted": False, "reason": refused}
            return [Publish(EventType.RELEASE_REFUSED, data, transit.transit_id)]
        if event.verdict != "release":
            # The arm stays down; the truck backs off, and the transit ends with the verdict.
            transit.remote_verdict = event.verdict
            data = {"verdict": event.verdict, "cmd_id": event.cmd_id, "officer": event.officer,
                    "reason": event.reason, "instruction": _BACK_OFF[event.verdict]}
            return [Publish(EventType.REMOTE_VERDICT, data, transit.transit_id)]
        data = {"by": "remote", "cmd_id": event.cmd_id, "officer": event.officer}
        released = Publish(EventType.RELEASED, data, transit.transit_id)
        return [released, *self._open(now, by="remote")]

    def _opening_expired(self, event: DeadlinePassed, now: float) -> list[LaneAction]:
        self._opening_deadline = None
        return self._hold([Code.LANE_BARRIER_TIMEOUT], now, "barrier did not report open")

    def _no_truck_expired(self, event: DeadlinePassed, now: float) -> list[LaneAction]:
        limit = self._config.pass_without_truck_s
        why = f"no truck on the deck {limit:g} s after the pass was shown"
        return self._end_unpassed("abandoned", now, reason=Code.LANE_NO_TRUCK, detail=why)


M, S = LaneMachine, LaneState
_NO_HOLD = "only a hold can be released"
_BACK_OFF = {
    "refuse": "entry refused: back off the deck",
    "reweigh": "back off the deck, then drive on again to be weighed again",
}
_NOT_ASKED = "answers a MarkPassUsed, which only RECORDING waits for"
_SAME_STEP = "the shell answers MarkPassUsed in the same step: nothing comes between"
_NO_DEADLINE = "no deadline is set in this state"
_LEAVING = "the barrier is commanded open: the truck is leaving"
_NO_TRANSIT = "no truck in the lane: a read is matched only against a transit's pass"
_DECIDING = (S.LOADING, S.HOLD, S.RECORDING, S.OPENING)  # a decision may land in these


def _conditions(state: LaneState) -> dict[type, On | Ignored]:
    """The lane's conditions, followed in every state without leaving it; HOLD, where one
    coming back decides the truck again, lists its own."""
    return {
        LinkUp: On(M._link_up, state),
        LinkLost: On(M._link_lost, state),
        CameraChanged: On(M._camera, state),
        StorageChanged: On(M._storage, state),
        IdentitySourceChanged: On(M._identity_source, state),
    }


def _ignored(why: str, *kinds: type) -> dict[type, On | Ignored]:
    return dict.fromkeys(kinds, Ignored(why))


def _requests(state: LaneState, *, mode: tuple[LaneState, ...] = (),
              barrier: tuple[LaneState, ...] = ()) -> dict[type, On | Ignored]:  # fmt: skip
    """The lane's mode and the technician's requests (technician.py); a mode change may
    decide a held truck again, a barrier request start or end a transit."""
    return {
        ModeRequested: On(M._mode_requested, state, *mode),
        BarrierRequested: On(M._hand_barrier, state, *barrier),
        SignedIn: On(M._signed_in, state),
    }


# L1: the whole transition table. Every input type has its entry in every state.
TRANSITIONS: dict[LaneState, dict[type, On | Ignored]] = {
    S.IDLE: {
        TruckOnDeck: On(M._idle_arrived, S.LOADING),
        PassPresented: On(M._loading_pass, S.LOADING, S.HOLD),
        WeightCommitted: On(M._loading_weight, S.LOADING),
        WeightAbnormality: On(M._record_abnormality, S.IDLE),
        DeckCleared: Ignored("no transit to end: the deck was empty already"),
        BoardSnapshot: On(M._track_board, S.IDLE),
        IdentitySeen: Ignored(_NO_TRANSIT),
        **_conditions(S.IDLE),
        **_requests(S.IDLE, barrier=(S.OPENING,)),
        RemoteRelease: Ignored(_NO_HOLD),
        PassUseRecorded: Ignored(_NOT_ASKED),
        DeadlinePassed: Ignored(_NO_DEADLINE),
    },
    S.LOADING: {
        TruckOnDeck: On(M._transit_arrived, S.LOADING),
        PassPresented: On(M._loading_pass, S.LOADING, S.HOLD, S.RECORDING),
        WeightCommitted: On(M._loading_weight, S.LOADING, S.HOLD, S.RECORDING),
        WeightAbnormality: On(M._pending_abnormal, S.HOLD),
        DeckCleared: On(M._deck_cleared_waiting, S.LOADING, S.IDLE),
        BoardSnapshot: On(M._track_board, S.LOADING),
        IdentitySeen: On(M._identity_seen, *_DECIDING),
        **_conditions(S.LOADING),
        IdentitySourceChanged: On(M._identity_source, *_DECIDING),
        **_requests(S.LOADING, barrier=(S.RECORDING, S.OPENING)),
        RemoteRelease: Ignored(_NO_HOLD),
        PassUseRecorded: Ignored(_NOT_ASKED),
        # The end of an identity wait (a decision), or L8's truck-less pass.
        DeadlinePassed: On(M._loading_expired, S.IDLE, S.HOLD, S.RECORDING, S.OPENING),
    },
    S.HOLD: {
        TruckOnDeck: On(M._transit_arrived, S.HOLD),
        PassPresented: On(M._hold_pass, S.HOLD, S.LOADING, S.RECORDING),
        WeightCommitted: On(M._take_weight, S.HOLD),
        WeightAbnormality: On(M._pending_abnormal, S.HOLD),
        DeckCleared: On(M._deck_cleared_waiting, S.HOLD, S.IDLE),
        BoardSnapshot: On(M._board_hold, S.HOLD, S.IDLE, S.RECORDING, S.OPENING, S.LOADING),
        IdentitySeen: On(M._identity_seen, S.HOLD),  # kept as evidence; the hold stands
        # A hold lifted before the weight came (a release asked before it) waits in LOADING.
        LinkUp: On(M._link_up, S.HOLD, S.RECORDING, S.LOADING),
        LinkLost: On(M._link_lost, S.HOLD),
        CameraChanged: On(M._camera, S.HOLD),
        StorageChanged: On(M._storage, S.HOLD, S.RECORDING, S.LOADING),
        IdentitySourceChanged: On(M._identity_source, S.HOLD),
        RemoteRelease: On(M._hold_release, S.HOLD, S.RECORDING, S.OPENING),
        **_requests(S.HOLD, mode=(S.LOADING, S.RECORDING, S.OPENING),
                    barrier=(S.RECORDING, S.OPENING)),
        PassUseRecorded: Ignored(_NOT_ASKED),
        DeadlinePassed: On(M._no_truck_expired, S.IDLE),
    },
    S.RECORDING: {
        **_ignored(
            _SAME_STEP,
            TruckOnDeck, PassPresented, WeightCommitted, WeightAbnormality, DeckCleared,
            BoardSnapshot, IdentitySeen, ModeRequested, BarrierRequested, SignedIn,
        ),
        **_conditions(S.RECORDING),
        RemoteRelease: Ignored(_NO_HOLD),
        PassUseRecorded: On(M._recording_result, S.OPENING, S.HOLD),
        DeadlinePassed: Ignored(_NO_DEADLINE),
    },
    S.OPENING: {
        TruckOnDeck: On(M._transit_arrived, S.OPENING),
        PassPresented: Ignored(_LEAVING),
        WeightCommitted: On(M._transit_arrived, S.OPENING),
        WeightAbnormality: On(M._record_abnormality, S.OPENING),
        DeckCleared: On(M._deck_cleared_moving, S.OPENING, S.IDLE),
        BoardSnapshot: On(M._board_opening, S.OPENING, S.OPEN, S.IDLE),
        IdentitySeen: Ignored(_LEAVING),
        **_conditions(S.OPENING),
        **_requests(S.OPENING, barrier=(S.IDLE,)),
        RemoteRelease: Ignored(_NO_HOLD),
        PassUseRecorded: Ignored(_NOT_ASKED),
        DeadlinePassed: On(M._opening_expired, S.HOLD),
    },
    S.OPEN: {
        TruckOnDeck: On(M._transit_arrived, S.OPEN),
        PassPresented: Ignored(_LEAVING),
        WeightCommitted: On(M._transit_arrived, S.OPEN),
        WeightAbnormality: On(M._record_abnormality, S.OPEN),
        DeckCleared: On(M._deck_cleared_moving, S.OPEN, S.IDLE),
        BoardSnapshot: On(M._track_board, S.OPEN, S.IDLE),
        IdentitySeen: Ignored(_LEAVING),
        **_conditions(S.OPEN),
        **_requests(S.OPEN, barrier=(S.IDLE,)),
        RemoteRelease: Ignored(_NO_HOLD),
        PassUseRecorded: Ignored(_NOT_ASKED),
        DeadlinePassed: Ignored(_NO_DEADLINE),
    },
}
