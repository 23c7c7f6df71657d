"""Plate reading in a supervised child process, like the QR decoders (``supervised.py``).

The plate engine is OpenCV's DNN module on native code; a crash or a hang there must not stop
the lane. Each frame goes to a child process over a pipe and the answer is awaited at most
``timeout_s``; a child that dies or hangs is killed, ``PlateReadFailed`` is raised for that
frame and a fresh child starts on the next call. A child that cannot build its engine (models
or OpenCV missing) says so in its greeting and the parent raises ``PlateEngineMissing``:
restarting it would not help.
"""

from __future__ import annotations

import importlib
import struct
import sys
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.errors import DeviceError
from edge_agent.vision.plates import PlateEngineMissing, PlateRead
from edge_agent.vision.supervised import (
    GREETING_MAX,
    READY,
    SupervisedWorker,
    read_exact,
    send_line,
    send_reply,
)

DEFAULT_ENGINE = "edge_agent.vision.plates:default_engine"
_REQUEST = struct.Struct(">HHB")  # height, width, channels; then the pixels
_MISSING = b"missing "


class PlateReadFailed(DeviceError):
    """The plate process crashed or hung on a frame; it is replaced on the next read."""


def _factory(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(stdin: IO[bytes], stdout: IO[bytes], engine_spec: str = DEFAULT_ENGINE) -> None:
    """Child main loop: frames in, plate reads out, until stdin closes."""
    try:
        engine = _factory(engine_spec)()
    except PlateEngineMissing as exc:
        reason = " ".join(str(exc).split())[: GREETING_MAX - 16]
        send_line(stdout, _MISSING + reason.encode() + b"\n")
        return
    send_line(stdout, READY)
    while True:
        try:
            h, w, channels = _REQUEST.unpack(read_exact(stdin, _REQUEST.size))
            pixels = read_exact(stdin, h * w * channels)
        except EOFError:
            return
        shape = (h, w) if channels == 1 else (h, w, channels)
        image = np.frombuffer(pixels, np.uint8).reshape(shape)
        send_reply(stdout, [[r.text, r.confidence, list(r.box)] for r in engine.read(image)])


class PlateWorker(SupervisedWorker):
    """Reads plates in a child process, restarting it after a crash or hang.

    Raises ``PlateEngineMissing`` (at start, or on the read that restarts it) when the child
    cannot build its engine; ``PlateReadFailed`` when it crashed or hung on a frame.
    """

    what = "plate process"
    failed = PlateReadFailed

    def __init__(self, *, engine: str = DEFAULT_ENGINE, timeout_s: float = 5.0,
                 start_timeout_s: float = 60.0) -> None:
        self.engine = engine
        super().__init__([sys.executable, "-m", "edge_agent.vision.plate_worker", engine],
                         timeout_s=timeout_s, start_timeout_s=start_timeout_s)

    def check_greeting(self, greeting: bytes) -> None:
        if greeting.startswith(_MISSING):
            raise PlateEngineMissing(greeting[len(_MISSING):].decode(errors="replace").strip())
        super().check_greeting(greeting)

    def read(self, image: NDArray[Any]) -> list[PlateRead]:
        """Read the plates of one BGR or gray uint8 image in the child."""
        self._ensure_running()  # even for an image it will not send: a missing engine says so
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        if pixels.ndim not in (2, 3) or pixels.shape[0] > 0xFFFF or pixels.shape[1] > 0xFFFF:
            return []
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        result = self._exchange(_REQUEST.pack(pixels.shape[0], pixels.shape[1], channels),
                                pixels.data)
        return [PlateRead(str(text), float(confidence), (int(b[0]), int(b[1]), int(b[2]),
                                                         int(b[3])))
                for text, confidence, b in result]


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ENGINE)
