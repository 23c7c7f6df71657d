"""A plate engine that reads what it is told, opened as ``fake-plates://NAME`` (tests, a laptop
lane): the real engine's shape, ``read(image) -> list[PlateRead]``, with scripted reads.

    engine = ENGINES.register("gate1", ScriptedPlates())
    engine.show("沪A12345")          # every read from now on finds this plate
    engine.queue([], ["沪A12345"])   # or: the next reads, one list per frame, then show's

``missing`` makes opening it fail like an engine whose models are not installed.
``faulty_engine`` is for the worker's supervision tests: it aborts or hangs on marked images.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray

from edge_agent.drivers.fakes import FakeRegistry
from edge_agent.vision.plates import PlateEngineMissing, PlateRead

ABORT_MARK = 255  # image[0, 0] that makes faulty_engine's read abort the process
HANG_MARK = 254  # ... hang


class ScriptedPlates:
    """Reads scripted plates, whatever the image; thread-safe. Counts ``calls``."""

    def __init__(self, *, missing: str | None = None) -> None:
        self.missing = missing  # opening fails with this reason
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []  # of the images read, in order
        self._lock = threading.Lock()
        self._queue: deque[list[str]] = deque()
        self._shown: list[str] = []

    def show(self, *texts: str) -> None:
        """Every read from now on (after the queued ones) finds these plates; none: nothing."""
        with self._lock:
            self._shown = list(texts)

    def queue(self, *frames: Sequence[str]) -> None:
        """The plates of the next reads, one sequence per frame."""
        with self._lock:
            self._queue.extend(list(frame) for frame in frames)

    def open(self) -> ScriptedPlates:
        if self.missing is not None:
            raise PlateEngineMissing(self.missing)
        return self

    def read(self, image: NDArray[Any]) -> list[PlateRead]:
        with self._lock:
            self.calls += 1
            self.shapes.append(tuple(image.shape))
            texts = self._queue.popleft() if self._queue else list(self._shown)
        h, w = image.shape[:2]
        box = (w // 4, h // 4, max(w // 4 + 1, 3 * w // 4), max(h // 4 + 1, 3 * h // 4))
        return [PlateRead(text, 0.9, box) for text in texts]

    def close(self) -> None:
        pass


ENGINES: FakeRegistry[ScriptedPlates] = FakeRegistry("fake-plates", lambda name: ScriptedPlates())


class _Faulty:
    def read(self, image: NDArray[Any]) -> list[PlateRead]:
        mark = int(image.reshape(-1)[0]) if image.size else 0
        if mark == ABORT_MARK:
            os.abort()
        if mark == HANG_MARK:
            time.sleep(3600)
        return [PlateRead("沪A12345", 0.9, (1, 1, 10, 5))]


def faulty_engine() -> _Faulty:
    """An engine for the worker process's tests: aborts or hangs on marked images."""
    return _Faulty()


def missing_engine() -> _Faulty:
    """An engine that is not installed, for the worker's start-up test."""
    raise PlateEngineMissing("test engine: models not installed")
