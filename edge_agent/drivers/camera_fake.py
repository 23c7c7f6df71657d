"""A lane camera in-process, opened as ``fake-camera://NAME``: the test holds images up to it.

    camera = CAMERAS.register("gate1", FakeCamera(clock=clock))
    source = open_frame_source("fake-camera://gate1")
    camera.show(image)

The camera takes a frame of what it is shown every ``1 / fps`` seconds of its clock, stamped
with that time, and keeps the latest-frame rule of every source: a read returns the newest
frame not yet read (the ones it replaced are counted in ``dropped``) or None. ``fail`` makes
the next read raise ``CameraLost`` (a glitch the reader recovers from by reopening); ``lose``
keeps the camera away, reads and opens alike, until ``restore``.

Nothing runs in the background: frames are taken when the source is read. On a virtual clock
a read returns at once with what is due by then; on the wall clock (or with ``sleep`` given)
a read waits for the next frame up to its timeout, as a camera does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from edge_agent.drivers.camera import CameraLost, Frame, FrameSource
from edge_agent.drivers.fakes import FakeRegistry

BLANK_GREY = 128
TICK_EPSILON = 1e-9  # a frame due at exactly ``now`` is due despite float rounding


class FakeCamera(FrameSource):
    """A frame source showing what the test holds up.

    Args:
        clock: the fake's time (monotonic seconds); frames are taken and stamped on it.
        fps: frames per second.
        size: ``(width, height)`` of the blank scene it shows before anything else.
        sleep: how a read waits for the next frame; default: ``time.sleep`` on the wall
            clock, no waiting on any other clock.
        url: what the source calls itself in errors (set when opened by URL).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        fps: float = 10.0,
        size: tuple[int, int] = (640, 360),
        sleep: Callable[[float], None] | None = None,
        url: str = "fake-camera://",
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, not {fps}")
        self.url = url
        self._clock = clock
        if sleep is None and clock is time.monotonic:
            sleep = time.sleep  # on the wall clock a read waits, as a device does
        self._sleep = sleep
        self._fps = fps
        self._size = size
        self._lock = threading.Lock()
        self._t0 = clock()
        self._ticks_done = 0  # frames due at t0 + k / fps for k < this are taken
        self._scene = _readonly(np.full((size[1], size[0]), BLANK_GREY, np.uint8))
        self._unread: Frame | None = None
        self._seq = 0
        self._glitch: str | None = None
        self._lost: str | None = None
        self._closed = False
        self.dropped = 0
        self.frames_read = 0

    # -------------------------------------------------------------------- what it sees
    def show(self, image: npt.NDArray[np.uint8]) -> None:
        """The scene from now on: a greyscale ``H x W`` uint8 image (copied).

        Raises:
            ValueError: not a 2-D uint8 image.
        """
        array = np.asarray(image)
        if array.ndim != 2 or array.dtype != np.uint8:
            raise ValueError(f"a greyscale H x W uint8 image, not {array.dtype} {array.shape}")
        with self._lock:
            self._take_due(self._clock())
            self._scene = _readonly(array.copy())

    def blank(self) -> None:
        """Nothing held up: a plain grey scene of the camera's size."""
        self.show(np.full((self._size[1], self._size[0]), BLANK_GREY, np.uint8))

    def fail(self, reason: str = "camera glitch") -> None:
        """The next read raises ``CameraLost(reason)``; the camera works again after it."""
        with self._lock:
            self._glitch = reason

    def lose(self, reason: str = "camera unplugged") -> None:
        """The camera goes away: reads and opens raise ``CameraLost`` until ``restore``."""
        with self._lock:
            self._take_due(self._clock())
            self._lost = reason
            self._unread = None

    def restore(self) -> None:
        with self._lock:
            self._take_due(self._clock())
            self._lost = None

    # ---------------------------------------------------------------------- the source
    def open(self, *, url: str | None = None) -> FakeCamera:
        """Open the camera again as a fresh source (what ``open_frame_source`` returns).

        Raises:
            CameraLost: the camera is lost.
        """
        with self._lock:
            self.url = url or self.url
            if self._lost is not None:
                raise CameraLost(f"{self.url}: {self._lost}")
            self._closed, self._unread = False, None
            self._take_due(self._clock())  # the newest frame due by now, if it was not taken
            return self

    def read(self, timeout: float) -> Frame | None:
        deadline: float | None = None
        while True:
            with self._lock:
                reason = "source closed" if self._closed else self._glitch or self._lost
                if reason is not None:
                    self._glitch = None
                    raise CameraLost(f"{self.url}: {reason}")
                now = self._clock()
                self._take_due(now)
                frame, self._unread = self._unread, None
                if frame is not None:
                    self.frames_read += 1
                    return frame
                if timeout <= 0 or self._sleep is None:
                    return None
                if deadline is None:
                    deadline = now + timeout
                if now >= deadline:
                    return None
                wait = min(deadline, self._t0 + self._ticks_done / self._fps) - now
            self._sleep(max(0.0, wait))

    def close(self) -> None:
        with self._lock:
            self._closed, self._unread = True, None

    def _take_due(self, now: float) -> None:
        """Take the newest frame due by ``now``; older ones it replaces count as dropped."""
        due = math.floor((now - self._t0) * self._fps + TICK_EPSILON) + 1
        if due <= self._ticks_done:
            return
        if not self._closed and self._lost is None:
            self.dropped += due - self._ticks_done - 1 + (self._unread is not None)
            self._seq += 1
            self._unread = Frame(self._scene, self._t0 + (due - 1) / self._fps, self._seq)
        self._ticks_done = due


def _readonly(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    image.setflags(write=False)  # frames share the scene: nobody may draw on it
    return image


CAMERAS: FakeRegistry[FakeCamera] = FakeRegistry(
    "fake-camera", lambda name: FakeCamera(url=f"fake-camera://{name}")
)
"""Fake cameras by name; a name nobody registered gets a blank camera on the wall clock."""


def open_fake_source(url: str) -> FakeCamera:
    """Open the fake camera ``fake-camera://NAME`` names (``camera.open_frame_source``).

    Raises:
        CameraLost: the camera is lost.
        ConfigError: the URL names no camera.
    """
    return CAMERAS.lookup(url).open(url=url)
