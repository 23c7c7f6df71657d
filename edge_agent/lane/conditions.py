"""The lane machine's handlers for the lane's conditions (a mixin of LaneMachine).

The IO link, the records' storage and the camera are followed in every state without
leaving it; a hold that only such conditions caused is decided again when they come back
(HOLD's entries in ``machine.TRANSITIONS`` name where that may lead).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from edge_agent.catalogue import Code, EventType
from edge_agent.lane.actions import LaneAction, Publish
from edge_agent.lane.inputs import CameraChanged, StorageChanged
from edge_agent.lane.state import LaneState
from edge_agent.lane.transit import Transit, abnormality_data
from edge_agent.protocols.iolink_session import LinkLost, LinkUp

# Holds for these reasons lift by themselves when the condition clears (the link comes back).
_SELF_CLEARING = frozenset({Code.LANE_IO_LINK_LOST, Code.LANE_STORAGE_FAULT})


class ConditionRules:
    """Handlers ``(self, input, now) -> actions`` of the lane's conditions."""

    state: LaneState
    transit: Transit | None
    _io_up: bool
    _storage_ok: bool
    _camera_up: bool

    if TYPE_CHECKING:  # the machine's own, used here

        @property
        def _transit_id(self) -> str | None: ...

        def _try_decide(self, now: float) -> list[LaneAction]: ...

    def _link_lost(self, event: LinkLost, now: float) -> list[LaneAction]:
        if not self._io_up:
            return []
        self._io_up = False
        return self._condition_lost(Code.LANE_IO_LINK_LOST, event.reason)

    def _link_up(self, event: LinkUp, now: float) -> list[LaneAction]:
        if self._io_up:
            return []
        self._io_up = True
        return self._condition_back(EventType.IO_LINK_RESTORED, now)

    def _storage(self, event: StorageChanged, now: float) -> list[LaneAction]:
        if event.ok == self._storage_ok:
            return []
        self._storage_ok = event.ok
        if not event.ok:
            return self._condition_lost(Code.LANE_STORAGE_FAULT, event.reason)
        return self._condition_back(EventType.STORAGE_RESTORED, now)

    def _condition_lost(self, code: Code, reason: str) -> list[LaneAction]:
        return [Publish(EventType.ABNORMALITY, abnormality_data(code, reason), self._transit_id)]

    def _condition_back(self, restored: EventType, now: float) -> list[LaneAction]:
        """A lane condition (IO link, storage) came back; a hold that only such conditions
        caused is decided again."""
        return [Publish(restored, {}, self._transit_id),
                *self._redecide_hold(_SELF_CLEARING, now)]

    def _redecide_hold(self, clearable: AbstractSet[str], now: float) -> list[LaneAction]:
        """A hold whose every reason is in ``clearable`` is decided again (its cause is gone)."""
        transit = self.transit
        if (
            self.state is LaneState.HOLD
            and transit is not None
            and transit.hold_reasons
            and set(transit.hold_reasons) <= clearable
        ):
            self.state = LaneState.LOADING
            transit.hold_reasons = ()
            return self._try_decide(now)
        return []

    def _camera(self, event: CameraChanged, now: float) -> list[LaneAction]:
        if event.up == self._camera_up:
            return []
        self._camera_up = event.up
        if event.up:
            return [Publish(EventType.CAMERA_RESTORED, {}, self._transit_id)]
        data = abnormality_data(Code.LANE_CAMERA_LOST, event.reason)
        return [Publish(EventType.ABNORMALITY, data, self._transit_id)]
