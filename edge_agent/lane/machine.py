"""The lane state machine: the one place that owns the lane's transitions.

Rules (every change to this file keeps them true; tests in edge_agent/tests/test_lane_machine.py):
  L1 Everything that changes the lane's state lives in this file, in TRANSITIONS.
  L2 The barrier is opened only for a transit with (a valid pass and a committed weight and no
     open abnormality and the IO link up), or by a signed remote release echoing the challenge
     published with the hold, or by the technician key. Nothing else opens it.
  L3 OpenBarrier is emitted only by ``_commit_open``; a pass is marked used at most once per
     transit (a retry after a barrier timeout re-sends OpenBarrier, nothing else), and its use
     is recorded before the barrier opens: ``_open`` asks for MarkPassUsed and waits in
     RECORDING for the shell's PassUseRecorded; a use that could not be recorded (or that the
     ledger already held) holds the truck instead.
  L4 The decision is taken the moment the later of pass and weight arrives; an abnormality seen
     before the barrier is commanded open turns the transit into a hold at once.
  L5 Every decision, hold and release is published, with the codes that caused it.
  L6 No clocks, no I/O: ``handle(event, now)`` returns commands; ``next_deadline()`` says when
     ``handle_timer(now)`` must be called. The shell executes barrier commands first, then the
     rest in the order given.
  L7 The firmware closes the barrier on its own after the truck passed; the machine asks for a
     close only when a truck backed off with the barrier open (CloseWhenClear).
  L8 A transit with a pass whose deck has carried no load (a pass shown on foot, a truck that
     turned away before the deck) ends as ``abandoned`` (``lane.no_truck``) once
     ``pass_without_truck_s`` passed since its last pass read and nothing was decided: no
     barrier, no ledger mark, so the pass still works for the truck. A truck that drove on and
     off again ends as ``withdrawn`` when the deck is empty.
  L9 Fail closed on storage: while the lane's records cannot be written (StorageChanged), no
     decision opens the barrier; the truck is held with ``lane.storage_fault`` and decided
     again when storage is back.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.lane.commands import (
    CloseWhenClear,
    LaneCommand,
    MarkPassUsed,
    OpenBarrier,
    Publish,
    TakeSnapshot,
)
from edge_agent.lane.events import (
    BoardStatus,
    CameraChanged,
    DeckCleared,
    IoLinkChanged,
    LaneEvent,
    PassInfo,
    PassPresented,
    PassUseRecorded,
    RemoteRelease,
    StorageChanged,
    TruckArrived,
    WeightAbnormal,
    WeightCommitted,
)
from edge_agent.lane.policy import PolicyConfig, decide


class LaneState(enum.Enum):
    IDLE = "idle"  # deck empty, barrier closed
    LOADING = "loading"  # truck on deck; waiting for pass and weight
    RECORDING = "recording"  # decided to open; waiting for the pass's use to be durable
    OPENING = "opening"  # OpenBarrier sent; waiting for the board to report open
    OPEN = "open"  # barrier open; waiting for the truck to pass and leave the deck
    HOLD = "hold"  # abnormality published; waiting for release or the truck backing off


@dataclass
class Transit:
    """One truck's passage through the lane."""

    transit_id: str
    started_at: float
    pass_info: PassInfo | None = None
    weight_kg: float | None = None
    uncertainty_kg: float | None = None
    weight_evidence: tuple[tuple[float, float], ...] = ()
    abnormal: list[str] = field(default_factory=list)
    hold_reasons: tuple[str, ...] = ()
    challenge: str | None = None
    passed: bool = False
    deck_clear: bool = False
    decided_at: float | None = None
    opened_by: str | None = None
    loaded: bool = False  # a load was seen on the deck during this transit
    pass_at: float | None = None  # when the last pass was read
    pass_marked: bool = False  # the pass's use is in the ledger (L3: once per transit)


@dataclass(frozen=True, slots=True)
class MachineConfig:
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    opening_timeout_s: float = 6.0
    # Rule L8: long enough for a driver who shows the pass while still driving up, short
    # enough that the next truck finds the lane idle.
    pass_without_truck_s: float = 120.0

    def __post_init__(self) -> None:
        for name in ("opening_timeout_s", "pass_without_truck_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise ConfigError(f"lane {name} must be a positive number of seconds: {value!r}")


# Holds for these reasons lift by themselves when the condition clears (the link comes back).
_SELF_CLEARING = frozenset({"lane.io_link_lost", "lane.storage_fault"})


class LaneMachine:
    """Events in, commands out. See the rules at the top of this module."""

    def __init__(self, config: MachineConfig, new_id: Callable[[], str]) -> None:
        self._config = config
        self._new_id = new_id
        self.state = LaneState.IDLE
        self.transit: Transit | None = None
        self._io_up = True
        self._storage_ok = True
        self._camera_up = True
        self._loop_b = False
        self._tech_key = False
        self._faults: frozenset[str] = frozenset()
        self._barrier = "unknown"
        self._opening_deadline: float | None = None
        self._input_at = 0.0  # when the input being handled happened: decision latency starts here

    # -- public interface ------------------------------------------------------------------
    def set_policy(self, policy: PolicyConfig) -> None:
        """New decision settings (a remote config); a decision already taken stands."""
        self._config = dataclasses.replace(self._config, policy=policy)

    def handle(self, event: LaneEvent, now: float) -> list[LaneCommand]:
        handler = TRANSITIONS[self.state].get(type(event)) or _ANY_STATE.get(type(event))
        if handler is None:
            return []
        self._input_at = event.at
        return handler(self, event, now)

    def next_deadline(self) -> float | None:
        if self.state is LaneState.OPENING:
            return self._opening_deadline
        transit = self.transit
        if (
            self.state in (LaneState.LOADING, LaneState.HOLD)
            and transit is not None
            and not transit.loaded
            and transit.pass_at is not None
        ):
            return transit.pass_at + self._config.pass_without_truck_s
        return None

    def handle_timer(self, now: float) -> list[LaneCommand]:
        commands: list[LaneCommand] = []
        # Each expiry moves on (OPENING -> HOLD, LOADING/HOLD -> IDLE), so this ends; looping
        # leaves no deadline overdue when a hold after a barrier timeout is also truck-less.
        while (deadline := self.next_deadline()) is not None and now >= deadline:
            assert self.transit is not None
            if self.state is LaneState.OPENING:
                self._opening_deadline = None
                commands += self._hold(["lane.barrier_timeout"], now, "barrier did not report open")
            else:
                limit = self._config.pass_without_truck_s
                why = f"no truck on the deck {limit:g} s after the pass was shown"
                commands += self._end_unpassed("abandoned", now, reason="lane.no_truck", detail=why)
        return commands

    @property
    def _transit_id(self) -> str | None:
        return self.transit.transit_id if self.transit else None

    # -- transit life ------------------------------------------------------------------------
    def _start(self, now: float) -> list[LaneCommand]:
        self.transit = Transit(transit_id=self._new_id(), started_at=now)
        self.state = LaneState.LOADING
        return [Publish("truck_arrived", {}, self.transit.transit_id)]

    def _ensure_transit(self, now: float) -> list[LaneCommand]:
        return self._start(now) if self.transit is None else []

    def _end(self, outcome: str, now: float, **extra: Any) -> list[LaneCommand]:
        transit = self.transit
        assert transit is not None
        self.transit = None
        self.state = LaneState.IDLE
        self._opening_deadline = None
        data = {"outcome": outcome, "duration_s": round(now - transit.started_at, 3), **extra}
        return [Publish("transit_closed", data, transit.transit_id)]

    def _end_unpassed(self, outcome: str, now: float, **extra: Any) -> list[LaneCommand]:
        # No truck went through: close behind an open that was commanded (then timed out).
        transit = self.transit
        assert transit is not None
        close = [CloseWhenClear(transit.transit_id)] if transit.opened_by is not None else []
        return [*close, *self._end(outcome, now, **extra)]

    # -- decision ------------------------------------------------------------------------------
    def _try_decide(self, now: float) -> list[LaneCommand]:
        transit = self.transit
        assert transit is not None
        info, weight = transit.pass_info, transit.weight_kg
        if info is not None and not info.valid:
            return self._hold([info.reason or "pass.bad_format"], now, "pass rejected")
        if transit.abnormal:
            return self._hold(list(transit.abnormal), now, "weighing abnormality")
        if info is None or weight is None:
            return []
        decision, mismatch = decide(
            info, weight, transit.uncertainty_kg or 0.0, transit.abnormal, self._config.policy
        )
        transit.decided_at = now
        if not decision.open:
            return self._hold(list(decision.reasons), now, mismatch or "policy")
        if not self._io_up:
            return self._hold(["lane.io_link_lost"], now, "IO board link is down")
        if not self._storage_ok:
            return self._hold(["lane.storage_fault"], now, "the lane cannot record the transit")
        return self._open(now, by="policy")

    def _decision_data(self, verdict: str, reasons: list[str]) -> dict[str, Any]:
        transit = self.transit
        assert transit is not None
        info = transit.pass_info
        return {
            "decision": verdict,
            "reasons": reasons,
            "weight_kg": transit.weight_kg,
            "uncertainty_kg": transit.uncertainty_kg,
            "release_no": info.release_no if info else None,
            "declared_gross_kg": info.declared_gross_kg if info else None,
            "input_at_mono": round(self._input_at, 6),
        }

    def _open(self, now: float, *, by: str) -> list[LaneCommand]:
        """L3: a valid pass is recorded as used first; the barrier opens on PassUseRecorded."""
        transit = self.transit
        assert transit is not None
        info = transit.pass_info
        if info is None or not info.valid or transit.pass_marked:
            return self._commit_open(now, by=by)
        transit.opened_by = by
        self.state = LaneState.RECORDING
        return [MarkPassUsed(info.cti_hex, info.exp, transit.transit_id)]

    def _commit_open(self, now: float, *, by: str) -> list[LaneCommand]:
        transit = self.transit
        assert transit is not None
        transit.opened_by = by
        self.state = LaneState.OPENING
        self._opening_deadline = now + self._config.opening_timeout_s
        return [
            Publish("decision", {**self._decision_data("open", []), "by": by}, transit.transit_id),
            OpenBarrier(transit.transit_id),
        ]

    def _recording_result(self, event: PassUseRecorded, now: float) -> list[LaneCommand]:
        transit = self.transit
        assert transit is not None
        by = transit.opened_by or "policy"
        if event.ok:
            transit.pass_marked = True
            info = transit.pass_info
            used = Publish("pass_used", {
                "pass_hash": info.use_hash if info else "",
                "release_no": info.release_no if info else "",
            }, transit.transit_id)
            return [*self._commit_open(now, by=by), used]
        transit.opened_by = None
        code = event.code or "lane.storage_fault"
        return self._hold([code], now, event.detail or "the pass's use could not be recorded")

    def _hold(self, reasons: list[str], now: float, detail: str) -> list[LaneCommand]:
        transit = self.transit
        assert transit is not None
        reasons = list(dict.fromkeys(reasons))
        if self.state is LaneState.HOLD and tuple(reasons) == transit.hold_reasons:
            return []
        self.state = LaneState.HOLD
        transit.hold_reasons = tuple(reasons)
        transit.challenge = self._new_id()
        snapshot_ref = f"{transit.transit_id}-{reasons[0]}"
        data = self._decision_data("hold", reasons)
        data.update(detail=detail, challenge=transit.challenge, snapshot=snapshot_ref)
        if transit.weight_evidence and any(r.startswith("weight.") for r in reasons):
            data["trace"] = [[round(t, 3), kg] for t, kg in transit.weight_evidence]
        return [
            TakeSnapshot(transit.transit_id, reasons[0], snapshot_ref),
            Publish("decision", data, transit.transit_id),
        ]

    # -- handlers (named <state>_<event>, or any_<event>) ---------------------------------------
    def _idle_arrived(self, event: TruckArrived, now: float) -> list[LaneCommand]:
        commands = self._start(now)
        assert self.transit is not None
        self.transit.loaded = True
        return commands

    def _transit_arrived(
        self, event: TruckArrived | WeightCommitted, now: float
    ) -> list[LaneCommand]:
        # The truck for a pass shown before it drove on; the transit (and its id) goes on.
        # A weight taken while the barrier moves (a release without a truck seen) counts too.
        assert self.transit is not None
        self.transit.loaded = True
        return []

    def _loading_pass(self, event: PassPresented, now: float) -> list[LaneCommand]:
        commands = self._ensure_transit(now)
        assert self.transit is not None
        self.transit.pass_info = event.info
        self.transit.pass_at = now
        commands.append(Publish("pass_read", _pass_data(event), self.transit.transit_id))
        return commands + self._try_decide(now)

    def _hold_pass(self, event: PassPresented, now: float) -> list[LaneCommand]:
        transit = self.transit
        assert transit is not None
        commands: list[LaneCommand] = [Publish("pass_read", _pass_data(event), transit.transit_id)]
        transit.pass_at = now
        previous_was_bad = transit.pass_info is not None and not transit.pass_info.valid
        if event.info.valid or transit.pass_info is None or not transit.pass_info.valid:
            transit.pass_info = event.info
        pass_only_hold = all(code.startswith("pass.") for code in transit.hold_reasons)
        if event.info.valid and previous_was_bad and pass_only_hold:
            self.state = LaneState.LOADING
            transit.hold_reasons = ()
            commands += self._try_decide(now)
        return commands

    def _loading_weight(self, event: WeightCommitted, now: float) -> list[LaneCommand]:
        commands = self._ensure_transit(now)
        assert self.transit is not None
        self.transit.loaded = True
        self.transit.weight_kg = event.kg
        self.transit.uncertainty_kg = event.uncertainty_kg
        self.transit.weight_evidence = event.evidence
        data = {"kg": event.kg, "uncertainty_kg": event.uncertainty_kg}
        commands.append(Publish("weight_committed", data, self.transit.transit_id))
        return commands + self._try_decide(now)

    def _hold_weight(self, event: WeightCommitted, now: float) -> list[LaneCommand]:
        assert self.transit is not None
        self.transit.loaded = True
        self.transit.weight_kg = event.kg
        self.transit.uncertainty_kg = event.uncertainty_kg
        self.transit.weight_evidence = event.evidence
        data = {"kg": event.kg, "uncertainty_kg": event.uncertainty_kg}
        return [Publish("weight_committed", data, self.transit.transit_id)]

    def _pending_abnormal(self, event: WeightAbnormal, now: float) -> list[LaneCommand]:
        commands = self._publish_abnormality(event)
        if self.transit is not None:
            self.transit.abnormal.append(event.code)
            reasons = [*self.transit.hold_reasons, *self.transit.abnormal]
            commands += self._hold(reasons, now, event.detail)
        return commands

    def _idle_abnormal(self, event: WeightAbnormal, now: float) -> list[LaneCommand]:
        return self._publish_abnormality(event)

    def _moving_abnormal(self, event: WeightAbnormal, now: float) -> list[LaneCommand]:
        # The barrier is already commanded open: the truck is leaving, record only.
        return self._publish_abnormality(event)

    def _publish_abnormality(self, event: WeightAbnormal) -> list[LaneCommand]:
        data: dict[str, Any] = {"code": event.code, "detail": event.detail}
        if event.evidence:
            data["trace"] = [[round(t, 3), kg] for t, kg in event.evidence]
        transit_id = self._transit_id
        if self.transit is not None:
            self.transit.weight_evidence = event.evidence or self.transit.weight_evidence
        return [Publish("abnormality", data, transit_id)]

    def _deck_cleared_waiting(self, event: DeckCleared, now: float) -> list[LaneCommand]:
        # The truck backed off.
        assert self.transit is not None
        if not self.transit.loaded:
            return []  # nothing left the deck; a truck-less pass is ended by the L8 timer
        return self._end_unpassed("withdrawn", now)

    def _deck_cleared_moving(self, event: DeckCleared, now: float) -> list[LaneCommand]:
        assert self.transit is not None
        self.transit.deck_clear = True
        return self._end("passed", now) if self.transit.passed else []

    def _board_opening(self, event: BoardStatus, now: float) -> list[LaneCommand]:
        commands = self._track_board(event, now)
        if event.barrier == "open" and self.transit is not None:
            self.state = LaneState.OPEN
            self._opening_deadline = None
        return commands

    def _board_open(self, event: BoardStatus, now: float) -> list[LaneCommand]:
        return self._track_board(event, now)

    def _board_hold(self, event: BoardStatus, now: float) -> list[LaneCommand]:
        rising_key = event.tech_key and not self._tech_key
        commands = self._track_board(event, now)
        if rising_key and self.transit is not None:
            commands.append(Publish("released", {"by": "technician"}, self.transit.transit_id))
            commands += self._open(now, by="technician")
        return commands

    def _track_board(self, event: BoardStatus, now: float) -> list[LaneCommand]:
        commands: list[LaneCommand] = []
        transit = self.transit
        left_loop_b = self._loop_b and not event.loop_b
        if left_loop_b and transit is not None and transit.opened_by and not transit.passed:
            transit.passed = True
            commands.append(Publish("vehicle_passed", {}, transit.transit_id))
        if event.barrier != self._barrier and event.barrier != "unknown":
            commands.append(Publish("barrier", {"state": event.barrier}, self._transit_id))
            self._barrier = event.barrier
        if event.faults and event.faults != self._faults:
            data = {"code": "lane.safety_fault", "detail": ",".join(sorted(event.faults))}
            commands.append(Publish("abnormality", data, self._transit_id))
        self._loop_b, self._tech_key, self._faults = event.loop_b, event.tech_key, event.faults
        if transit is not None and transit.passed and transit.deck_clear:
            commands += self._end("passed", now)
        return commands

    def _any_link(self, event: IoLinkChanged, now: float) -> list[LaneCommand]:
        if event.up == self._io_up:
            return []
        self._io_up = event.up
        return self._condition_changed(
            event.up, "lane.io_link_lost", event.reason, "io_link_restored", now
        )

    def _any_storage(self, event: StorageChanged, now: float) -> list[LaneCommand]:
        if event.ok == self._storage_ok:
            return []
        self._storage_ok = event.ok
        return self._condition_changed(
            event.ok, "lane.storage_fault", event.reason, "storage_restored", now
        )

    def _condition_changed(
        self, ok: bool, code: str, reason: str, restored: str, now: float
    ) -> list[LaneCommand]:
        """A lane condition (IO link, storage) failed or came back; a hold that only it caused
        is decided again once it is back."""
        transit_id = self._transit_id
        if not ok:
            return [Publish("abnormality", {"code": code, "detail": reason}, transit_id)]
        commands: list[LaneCommand] = [Publish(restored, {}, transit_id)]
        transit = self.transit
        if (
            self.state is LaneState.HOLD
            and transit is not None
            and transit.hold_reasons
            and set(transit.hold_reasons) <= _SELF_CLEARING
        ):
            self.state = LaneState.LOADING
            transit.hold_reasons = ()
            commands += self._try_decide(now)
        return commands

    def _any_camera(self, event: CameraChanged, now: float) -> list[LaneCommand]:
        if event.up == self._camera_up:
            return []
        self._camera_up = event.up
        transit_id = self._transit_id
        if event.up:
            return [Publish("camera_restored", {}, transit_id)]
        data = {"code": "lane.camera_lost", "detail": event.reason}
        return [Publish("abnormality", data, transit_id)]

    def _hold_release(self, event: RemoteRelease, now: float) -> list[LaneCommand]:
        transit = self.transit
        assert transit is not None
        # The officer cannot see the deck: an open arm with no truck on it would be taken by
        # whichever truck comes next, unchecked.
        refused = (
            "challenge mismatch" if event.challenge != transit.challenge
            else "no truck on the deck" if not transit.loaded
            else None
        )
        if refused is not None:
            data = {"cmd_id": event.cmd_id, "accepted": False, "reason": refused}
            return [Publish("release_refused", data, transit.transit_id)]
        data = {"by": "remote", "cmd_id": event.cmd_id, "officer": event.officer}
        return [Publish("released", data, transit.transit_id), *self._open(now, by="remote")]


def _pass_data(event: PassPresented) -> dict[str, Any]:
    info = event.info
    data: dict[str, Any] = {"valid": info.valid, "reason": info.reason}
    if info.release_no:
        data.update(
            release_no=info.release_no,
            enterprise=info.enterprise,
            plates=list(info.plates),
            declared_gross_kg=info.declared_gross_kg,
            tolerance_kg=info.tolerance_kg,
        )
    if event.snapshot_ref:
        data["snapshot"] = event.snapshot_ref
    return data


_Handler = Callable[[LaneMachine, Any, float], list[LaneCommand]]
M = LaneMachine

# L1: the whole transition table. Events missing from a state's row fall back to _ANY_STATE,
# and are ignored otherwise (e.g. a pass shown while the barrier is opening).
TRANSITIONS: dict[LaneState, dict[type, _Handler]] = {
    LaneState.IDLE: {
        TruckArrived: M._idle_arrived,
        PassPresented: M._loading_pass,
        WeightCommitted: M._loading_weight,
        WeightAbnormal: M._idle_abnormal,
        BoardStatus: M._track_board,
    },
    LaneState.LOADING: {
        TruckArrived: M._transit_arrived,
        PassPresented: M._loading_pass,
        WeightCommitted: M._loading_weight,
        WeightAbnormal: M._pending_abnormal,
        DeckCleared: M._deck_cleared_waiting,
        BoardStatus: M._track_board,
    },
    LaneState.HOLD: {
        TruckArrived: M._transit_arrived,
        PassPresented: M._hold_pass,
        WeightCommitted: M._hold_weight,
        WeightAbnormal: M._pending_abnormal,
        DeckCleared: M._deck_cleared_waiting,
        BoardStatus: M._board_hold,
        RemoteRelease: M._hold_release,
    },
    # Only for the instant between MarkPassUsed and the shell's answer, in the same step.
    LaneState.RECORDING: {
        PassUseRecorded: M._recording_result,
    },
    LaneState.OPENING: {
        TruckArrived: M._transit_arrived,
        WeightCommitted: M._transit_arrived,
        WeightAbnormal: M._moving_abnormal,
        DeckCleared: M._deck_cleared_moving,
        BoardStatus: M._board_opening,
    },
    LaneState.OPEN: {
        TruckArrived: M._transit_arrived,
        WeightCommitted: M._transit_arrived,
        WeightAbnormal: M._moving_abnormal,
        DeckCleared: M._deck_cleared_moving,
        BoardStatus: M._board_open,
    },
}

_ANY_STATE: dict[type, _Handler] = {
    IoLinkChanged: M._any_link,
    CameraChanged: M._any_camera,
    StorageChanged: M._any_storage,
}
