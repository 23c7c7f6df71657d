"""The agent's side of the seal reader and the container entry, with the plate reader's.

Mixed into ``LaneAgent`` in place of ``PlateWiring``: each of the plate reader's hooks (attach,
start, stop, status) also attaches, starts, stops and reports the e-seal reader
(``seal_source.py``, with ``[eseal] url``) and the container entry socket
(``container_entry.py``, with ``[containers] check = true``). Either one off is None and the
lane runs without that check. Nothing here may stop the lane: a reader's own failures are
counted by the agent's containment and the reader starts over.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from edge_agent.container_entry import ContainerEntry
from edge_agent.plate_wiring import PlateWiring
from edge_agent.seal_source import OpenTransit, SealSource

if TYPE_CHECKING:
    from edge_agent.assembly import LaneDevices
    from edge_agent.lane.machine import LaneMachine


class IdentityWiring(PlateWiring):
    machine: LaneMachine
    seals: SealSource | None = None
    containers: ContainerEntry | None = None
    _seal_thread: threading.Thread | None = None

    def _plates_attach(self) -> None:
        super()._plates_attach()
        eseal, containers = self.config.eseal, self.config.containers
        self.seals = SealSource(eseal, clock=self._clock) if eseal.url is not None else None
        self.containers = (ContainerEntry(containers.socket, self._put_device, self._clock)
                           if containers.check else None)

    def _open_transit(self) -> OpenTransit | None:
        """The transit the lane has open, read from the seal thread: two fields set once."""
        transit = self.machine.transit
        return None if transit is None else (transit.transit_id, transit.started_at)

    def _plates_start(self, devices: LaneDevices) -> None:
        super()._plates_start(devices)
        if self.containers is not None:
            with self.faults.guard("start containers"):
                self.containers.start()
        seals = self.seals
        if seals is not None:
            self._seal_thread = self._start_reader(
                "eseal",
                lambda: seals.run(self._put_device, self._clock, self._stop, self._open_transit),
                5.0)

    def _plates_stop(self) -> None:
        super()._plates_stop()
        if self._seal_thread is not None:
            self._seal_thread.join(timeout=2.0)
        for source in (self.seals, self.containers):
            if source is not None:
                with self.faults.guard("stop"):
                    source.close()

    def _plates_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """The devices' status with the identity readers' (health names a silent reader)."""
        status = super()._plates_status(status)
        if self.seals is not None:
            status["eseal"] = self.seals.status(self._clock())
        if self.containers is not None:
            status["containers"] = self.containers.status()
        return status
