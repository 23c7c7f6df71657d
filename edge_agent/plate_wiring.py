"""The agent's side of the plate reader (``plate_source.py``), mixed into ``LaneAgent``.

With ``[plates]`` naming a source or a region, the reader runs on its own thread (a plate read
never delays a QR read) and puts its reads on the device inbox like any reader; without it
``plates`` is None and the lane runs as it does without a plate check. A held truck's plate
crop is kept as evidence (``KeepCrop``). Nothing here may stop the lane: the reader's own
failures are counted by the agent's containment and the reader starts over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.backoff import Backoff
from edge_agent.catalogue import EventType
from edge_agent.plate_source import RETRY_S, Frame, PlateSource
from edge_agent.readers import run_contained

if TYPE_CHECKING:
    from edge_agent.assembly import LaneDevices
    from edge_agent.config import AgentConfig
    from edge_agent.containment import Faults
    from edge_agent.lane.actions import KeepCrop
    from edge_agent.translate import DeviceInput


class PlateWiring:
    config: AgentConfig
    faults: Faults
    _clock: Callable[[], float]
    _stop: threading.Event
    plates: PlateSource | None = None
    _plate_thread: threading.Thread | None = None

    if TYPE_CHECKING:  # the agent's own, used here

        def _put_device(self, item: DeviceInput) -> None: ...

        def _record(self, type: EventType, data: dict[str, Any], transit_id: str | None,
                    now: float, *, sheddable: bool = False) -> dict[str, Any] | None: ...

    def _plates_attach(self) -> None:
        plates = self.config.plates
        self.plates = PlateSource(plates) if plates.configured else None

    def _plates_start(self, devices: LaneDevices) -> None:
        """The reader thread, on the plate camera or on the pass camera's newest frames."""
        plates = self.plates
        if plates is None:
            return

        def latest() -> Frame | None:
            shown = devices.evidence.latest()
            return None if shown is None else (shown[0], shown[1])

        self._plate_thread = self._start_reader(
            "plates", lambda: plates.run(self._put_device, self._clock, self._stop, latest),
            RETRY_S)

    def _start_reader(self, name: str, run: Callable[[], None],
                      retry_s: float) -> threading.Thread:
        """``run`` on its own daemon thread until the agent stops, started over after a
        back-off (0.2 s up to ``retry_s``) whenever it raises: the containment counts it."""

        thread = threading.Thread(
            target=run_contained, args=(name, run, self._stop, self.faults, Backoff(0.2, retry_s)),
            name=name, daemon=True)
        thread.start()
        return thread

    def _plates_stop(self) -> None:
        if self._plate_thread is not None:
            self._plate_thread.join(timeout=2.0)
        if self.plates is not None:
            with self.faults.guard("stop"):
                self.plates.close()

    def _plates_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """The devices' status with the plate reader's (health names a missing engine)."""
        if self.plates is not None:
            status["plates"] = self.plates.status()
        return status

    def _plates_crop(self, devices: LaneDevices, action: KeepCrop, now: float) -> None:
        if self.plates is None or devices.outbox.space_short():
            return
        self.plates.save_crop(action, devices.evidence, lambda chunk: self._record(
            EventType.EVIDENCE, chunk, action.transit_id, now, sheddable=True))
