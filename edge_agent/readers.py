"""The agent's reader threads: each owns one device and only hands its typed events to the inbox.

A reader never dies: a device error is reported to the lane (link lost, camera lost) and the
device is reopened after a back-off; any other exception is counted by the agent's
containment and the reader starts over. The camera counts as up only once a frame arrived:
a source that opens lazily and then fails must not look like a recovery each time, or a
missing camera floods the outbox with lost/restored pairs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from edge_agent.assembly import LaneDevices
from edge_agent.backoff import Backoff
from edge_agent.containment import Faults
from edge_agent.drivers.camera import FrameSource, open_frame_source
from edge_agent.drivers.serial_reader import reopen_backoff
from edge_agent.errors import EdgeAgentError
from edge_agent.lane.inputs import CameraChanged
from edge_agent.protocols.iolink_session import LinkLost
from edge_agent.translate import DeviceInput

Put = Callable[[DeviceInput], None]


def run_contained(name: str, loop: Callable[[], None], stop: threading.Event, faults: Faults,
                  backoff: Backoff) -> None:
    """``loop`` until ``stop`` is set, started over after ``backoff`` whenever it raises: a
    reader's bug is counted by the containment and never stops the lane."""
    while not stop.is_set():
        try:
            loop()
        except Exception as exc:  # containment: a reader bug must not blind the lane
            faults.record(f"reader {name}", exc)
            stop.wait(backoff.next())


class Readers:
    """Starts one thread per device; ``new_truck`` makes the camera forget the passes it read."""

    def __init__(
        self,
        devices: LaneDevices,
        put: Put,
        clock: Callable[[], float],
        stop: threading.Event,
        faults: Faults,
        log: Any,
    ) -> None:
        self._devices, self._put, self._clock = devices, put, clock
        self._stop, self._faults, self._log = stop, faults, log
        self.new_truck = threading.Event()
        self.camera_up: bool | None = None  # None: no frame and no failure yet
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        loops = {"io": self._io_loop, "weigh": self._weigh_loop, "camera": self._camera_loop}
        for name, target in loops.items():
            thread = threading.Thread(target=self._forever, args=(name, target), name=name,
                                      daemon=True)
            self.threads.append(thread)
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def _forever(self, name: str, loop: Callable[[], None]) -> None:
        run_contained(name, loop, self._stop, self._faults, reopen_backoff())

    def _io_loop(self) -> None:
        board = self._devices.board
        backoff = reopen_backoff()
        while not self._stop.is_set():
            try:
                board.open()
                backoff.reset()
                while not self._stop.is_set():
                    for event in board.read_events(0.05):
                        self._put(event)
            except EdgeAgentError as exc:
                self._put(LinkLost(self._clock(), str(exc)))
                self._log.warning("IO board: %s; retrying in %.1f s", exc, backoff.peek())
                self._stop.wait(backoff.next())

    def _weigh_loop(self) -> None:
        reader = self._devices.weighbridge
        while not self._stop.is_set():
            for arrival in reader.read(0.1):
                self._put(arrival)

    def _camera_loop(self) -> None:
        url = self._devices.camera_url
        backoff = reopen_backoff()

        def report(state: bool, reason: str = "") -> None:
            if state != self.camera_up:  # only changes: a camera that stays away is reported once
                self.camera_up = state
                self._put(CameraChanged(self._clock(), state, reason))

        while not self._stop.is_set():
            try:
                source = open_frame_source(url)
            except EdgeAgentError as exc:
                report(False, str(exc))
                self._stop.wait(backoff.next())
                continue
            try:
                while not self._stop.is_set():
                    if self.pump_camera(source, timeout=0.5):
                        report(True)
                        backoff.reset()
            except EdgeAgentError as exc:
                report(False, str(exc))
                if self.camera_up is not False or backoff.peek() <= 0.2:
                    self._log.warning("camera %s lost: %s", url, exc)
                self._stop.wait(backoff.next())
            finally:
                source.close()

    def pump_camera(self, source: FrameSource, *, timeout: float) -> bool:
        """Decode one frame of ``source`` (if one comes within ``timeout``) and hand its
        confirmed reads to the lane; True when a frame came."""
        pipeline, evidence = self._devices.pipeline, self._devices.evidence
        frame = source.read(timeout)
        if frame is None:
            return False
        if self.new_truck.is_set():
            self.new_truck.clear()
            pipeline.forget_all()
        reads = pipeline.process(frame.image, frame.at)
        evidence.remember(frame.image, frame.at, [raw.polygon for raw in pipeline.last_raw])
        for read in reads:
            self._put(read)
        return True
