"""The lane machine's handlers for its modes and for the technician (a mixin of LaneMachine).

``machine.TRANSITIONS`` names these handlers like its own; they live here so that the
machine's file stays the decision's. What each mode allows is ``modes.py``; here is what the
machine does about it: a mode change (published as ``lane_mode``, persisted, the board told
about maintenance, a hold that only a mode caused decided again), the technician key, the
hand-driven barrier of manual mode and the technician's sign-in. Every request is answered
(``Answer``) with what was done or why not.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from edge_agent.catalogue import EventType
from edge_agent.lane.actions import (
    Answer,
    BoardMaintenance,
    CloseWhenClear,
    LaneAction,
    PersistMode,
    Publish,
)
from edge_agent.lane.inputs import BarrierRequested, ModeRequested, SignedIn
from edge_agent.lane.modes import (
    HOLD_CODE,
    HOLD_DETAIL,
    MODE_CODES,
    LaneMode,
    ModeBook,
    Via,
    hand_driven,
    policy_may_open,
    technician_may_release,
)
from edge_agent.lane.state import LaneState
from edge_agent.lane.transit import Transit
from edge_agent.protocols.iolink import Barrier
from edge_agent.protocols.iolink_session import BoardSnapshot

_REST = frozenset({Barrier.CLOSED, Barrier.OPEN, Barrier.STOPPED, Barrier.FAULT})
_MOVING = (LaneState.OPENING, LaneState.OPEN)


class TechnicianRules:
    """Handlers ``(self, input, now) -> actions`` of the lane's modes; see the module doc."""

    state: LaneState
    transit: Transit | None
    modes: ModeBook
    _io_up: bool
    _loop_b: bool
    _barrier: Barrier
    _wall_ref: tuple[float, float] | None

    if TYPE_CHECKING:  # the machine's own, used here

        @property
        def _transit_id(self) -> str | None: ...

        def _start(self, now: float) -> list[LaneAction]: ...

        def _open(self, now: float, *, by: str) -> list[LaneAction]: ...

        def _hold(self, reasons: list[str], now: float, detail: str) -> list[LaneAction]: ...

        def _redecide_hold(self, clearable: AbstractSet[str], now: float) -> list[LaneAction]: ...

        def _end_unpassed(self, outcome: str, now: float, **extra: Any) -> list[LaneAction]: ...

    def _wall(self, now: float) -> float | None:
        """The wall time at ``now``, from the last input that carried one."""
        if self._wall_ref is None:
            return None
        mono, wall = self._wall_ref
        return wall + (now - mono)

    # -- modes ---------------------------------------------------------------------------------
    def _mode_requested(self, event: ModeRequested, now: float) -> list[LaneAction]:
        book = self.modes
        if event.mode is book.mode:
            return [Answer(event.ref, True, f"the lane is already {event.mode}")]
        refused = book.refusal(event.mode, event.via, unsafe=self._unsafe())
        if refused is not None:
            return [Answer(event.ref, False, refused)]
        previous = book.mode
        wall = event.wall if event.wall is not None else self._wall(now)
        actions = self._change_mode(event.mode, now, by=event.by, reason=event.reason,
                                    via=event.via, wall=wall, uid=event.uid)  # fmt: skip
        return [*actions, Answer(event.ref, True, f"lane mode {event.mode} (was {previous})")]

    def _change_mode(
        self, mode: LaneMode, now: float, *, by: str, reason: str, via: Via,
        wall: float | None, uid: int | None = None,
    ) -> list[LaneAction]:
        previous = self.modes.mode
        self.modes.change(mode, by=by, reason=reason, via=via, wall=wall, uid=uid)
        actions: list[LaneAction] = []
        if mode is LaneMode.MAINTENANCE:
            actions.append(BoardMaintenance(True))
        elif previous is LaneMode.MAINTENANCE:
            actions.append(BoardMaintenance(False))
        actions += [Publish(EventType.LANE_MODE, self.modes.event_data(), self._transit_id),
                    PersistMode(self.modes.to_doc())]  # fmt: skip
        return actions + self._redecide_hold(MODE_CODES, now)  # a mode-only hold

    def _mode_hold(self, now: float) -> list[LaneAction] | None:
        """The hold a shown pass gets in a mode where no decision opens; None in service."""
        mode = self.modes.mode
        if policy_may_open(mode):
            return None
        return self._hold([HOLD_CODE[mode]], now, HOLD_DETAIL[mode])

    def _unsafe(self) -> str | None:
        """Why the lane is not in its safe state (barrier closed, nothing in the lane)."""
        if self.transit is not None:
            return f"transit {self.transit.transit_id} is in the lane"
        if not self._io_up:
            return "the IO board link is down"
        if self._loop_b:
            return "a vehicle is at the barrier (loop B)"
        if self._barrier not in (Barrier.CLOSED, Barrier.MAINTENANCE):
            return f"the barrier is {self._barrier}, not closed"
        return None

    # -- the board and the technician key -----------------------------------------------------
    def _board_mode(
        self, event: BoardSnapshot, *, rising: bool, key_used: bool, barrier_changed: bool,
        now: float,
    ) -> list[LaneAction]:
        """The key's manual mode, and maintenance asked again of a board that left it (it
        restarted, or the agent did)."""
        key = event.input("tech_key")
        current = self.modes.current
        wall = self._wall(now)
        if current.via is Via.KEY and current.mode is LaneMode.MANUAL and not key:
            return self._change_mode(LaneMode.IN_SERVICE, now, by=self.modes.key_name(),
                                     reason="technician key returned", via=Via.KEY, wall=wall)
        if rising and not key_used and current.mode is LaneMode.IN_SERVICE:
            return self._change_mode(LaneMode.MANUAL, now, by=self.modes.key_name(),
                                     reason="technician key turned", via=Via.KEY, wall=wall)
        if barrier_changed and current.mode is LaneMode.MAINTENANCE and event.barrier in _REST:
            return [BoardMaintenance(True)]
        return []

    def _key_release(self, now: float) -> list[LaneAction]:
        """The key turned while a truck is held: released by the technician, if the mode lets."""
        transit_id, mode = self._transit_id, self.modes.mode
        data: dict[str, Any] = {"by": "technician", "technician": self.modes.technician()}
        if not technician_may_release(mode):
            data.update(accepted=False, reason=HOLD_DETAIL[mode])
            return [Publish(EventType.RELEASE_REFUSED, data, transit_id)]
        return [Publish(EventType.RELEASED, data, transit_id), *self._open(now, by="technician")]

    # -- manual mode: the barrier by hand ------------------------------------------------------
    def _hand_barrier(self, event: BarrierRequested, now: float) -> list[LaneAction]:
        mode = self.modes.mode
        if not hand_driven(mode):
            why = f"the barrier is driven by hand only in manual mode; the lane is {mode}"
            return [Answer(event.ref, False, why)]
        return self._hand_open(event, now) if event.open else self._hand_close(event, now)

    def _hand_open(self, event: BarrierRequested, now: float) -> list[LaneAction]:
        if self.state in _MOVING:
            return [Answer(event.ref, True, "the barrier is already commanded open")]
        actions = self._start(now) if self.transit is None else []
        data = {"by": "technician", "technician": event.by}
        actions += [Publish(EventType.RELEASED, data, self._transit_id),
                    *self._open(now, by="technician")]  # fmt: skip
        return [*actions, Answer(event.ref, True, "open requested of the IO board")]

    def _hand_close(self, event: BarrierRequested, now: float) -> list[LaneAction]:
        transit = self.transit
        if self.state in _MOVING and transit is not None and not transit.passed:
            actions = self._end_unpassed("closed", now, by="technician", technician=event.by)
        else:
            actions = [CloseWhenClear(self._transit_id)]
        detail = "close requested: the IO board closes once the barrier's path is clear"
        return [*actions, Answer(event.ref, True, detail)]

    def _signed_in(self, event: SignedIn, now: float) -> list[LaneAction]:
        wall = event.wall if event.wall is not None else self._wall(now)
        self.modes.sign_in(event.name, wall)
        return [PersistMode(self.modes.to_doc()),
                Answer(event.ref, True, f"technician {event.name} signed in")]  # fmt: skip

