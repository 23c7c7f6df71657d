"""The agent's reader threads: each owns one device and only hands typed input to the inbox.

A reader never dies: a device error is reported to the lane (link lost, camera lost) and the
device is reopened after a back-off; any other exception is counted by the agent's
containment and the reader starts over. The camera counts as up only once a frame arrived:
a source that opens lazily and then fails must not look like a recovery each time, or a
missing camera floods the outbox with lost/restored pairs.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from typing import Any

from edge_agent.containment import Faults
from edge_agent.drivers.camera import CameraState
from edge_agent.drivers.ioboard import LinkLost
from edge_agent.errors import EdgeAgentError
from edge_agent.wiring import LaneDevices

Put = Callable[[str, Any], None]


class Backoff:
    """Reconnect delays: 0.2 s doubling to 5 s, with jitter so a fleet does not stampede."""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self._first, self._cap, self._delay = first, cap, first

    def peek(self) -> float:
        return self._delay

    def next(self) -> float:
        delay = self._delay * random.uniform(0.8, 1.2)
        self._delay = min(self._cap, self._delay * 2)
        return delay

    def reset(self) -> None:
        self._delay = self._first


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
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                loop()
            except Exception as exc:  # containment: a reader bug must not blind the lane
                self._faults.record(f"reader {name}", exc)
                self._stop.wait(backoff.next())

    def _io_loop(self) -> None:
        board = self._devices.board
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                board.open()
                backoff.reset()
                while not self._stop.is_set():
                    for event in board.read_events(0.05):
                        self._put("io", event)
            except EdgeAgentError as exc:
                self._put("io", LinkLost(self._clock(), str(exc)))
                self._log.warning("IO board: %s; retrying in %.1f s", exc, backoff.peek())
                self._stop.wait(backoff.next())

    def _weigh_loop(self) -> None:
        reader = self._devices.weighbridge
        while not self._stop.is_set():
            for item in reader.read(0.1):
                self._put("weigh", item)

    def _camera_loop(self) -> None:
        from edge_agent.drivers.camera import open_frame_source

        url, pipeline = self._devices.camera_url, self._devices.pipeline
        evidence = self._devices.evidence
        seen_polygons: list[Any] = []
        seen_at = -math.inf
        backoff = Backoff()
        up: bool | None = None

        def report(state: bool, reason: str = "") -> None:
            nonlocal up
            if state != up:  # only changes: a camera that stays away is reported once
                up = state
                self._put("camera", CameraState(self._clock(), state, reason))

        while not self._stop.is_set():
            try:
                source = open_frame_source(url)
            except EdgeAgentError as exc:
                report(False, str(exc))
                self._stop.wait(backoff.next())
                continue
            try:
                while not self._stop.is_set():
                    frame = source.read(0.5)
                    if frame is None:
                        continue
                    report(True)
                    backoff.reset()
                    if self.new_truck.is_set():
                        self.new_truck.clear()
                        pipeline.forget_all()
                    reads = pipeline.process(frame.image, frame.at)
                    polygons = [raw.polygon for raw in pipeline.last_raw]
                    # Frames the motion gate skipped carry no polygon: keep the last second's.
                    if polygons:
                        seen_polygons, seen_at = polygons, frame.at
                    elif frame.at - seen_at < 1.0:
                        polygons = seen_polygons
                    evidence.remember(frame.image, polygons)
                    for read in reads:
                        self._put("qr", read)
            except EdgeAgentError as exc:
                report(False, str(exc))
                if up is not False or backoff.peek() <= 0.2:
                    self._log.warning("camera %s lost: %s", url, exc)
                self._stop.wait(backoff.next())
            finally:
                source.close()
