"""Plate reading in a supervised child process, like the QR decoders (``worker.py``).

The plate engine is OpenCV's DNN module on native code; a crash or a hang there must not stop
the lane. Each frame goes to a child process (spawned: the agent has threads) over a pipe and
the answer is awaited at most ``timeout_s``; a child that dies or hangs is killed,
``PlateReadFailed`` is raised for that frame and a fresh child starts on the next call. A child
that cannot build its engine (models or OpenCV missing) says so in its greeting and the parent
raises ``PlateEngineMissing``: restarting it would not help.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import struct
import subprocess
import sys
import time
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.errors import DeviceError
from edge_agent.vision.plates import PlateEngineMissing, PlateRead

DEFAULT_ENGINE = "edge_agent.vision.plates:default_engine"
_REQUEST = struct.Struct(">HHB")  # height, width, channels; then the pixels
_REPLY = struct.Struct(">I")  # length of the JSON reply that follows
_READY = b"ready\n"
_MISSING = b"missing "
_GREETING_MAX = 4096


class PlateReadFailed(DeviceError):
    """The plate process crashed or hung on a frame; it is replaced on the next read."""


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("request stream closed")
    return data


def _factory(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(stdin: IO[bytes], stdout: IO[bytes], engine_spec: str = DEFAULT_ENGINE) -> None:
    """Child main loop: frames in, plate reads out, until stdin closes."""
    try:
        engine = _factory(engine_spec)()
    except PlateEngineMissing as exc:
        reason = " ".join(str(exc).split())[: _GREETING_MAX - 16]
        stdout.write(_MISSING + reason.encode() + b"\n")
        stdout.flush()
        return
    stdout.write(_READY)
    stdout.flush()
    while True:
        try:
            h, w, channels = _REQUEST.unpack(_read_exact(stdin, _REQUEST.size))
            pixels = _read_exact(stdin, h * w * channels)
        except EOFError:
            return
        shape = (h, w) if channels == 1 else (h, w, channels)
        image = np.frombuffer(pixels, np.uint8).reshape(shape)
        reads = engine.read(image)
        reply = json.dumps([[r.text, r.confidence, list(r.box)] for r in reads]).encode()
        stdout.write(_REPLY.pack(len(reply)) + reply)
        stdout.flush()


class PlateWorker:
    """Reads plates in a child process, restarting it after a crash or hang.

    Raises ``PlateEngineMissing`` (at start, or on the read that restarts it) when the child
    cannot build its engine; ``PlateReadFailed`` when it crashed or hung on a frame.
    """

    def __init__(self, *, engine: str = DEFAULT_ENGINE, timeout_s: float = 5.0,
                 start_timeout_s: float = 60.0) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.restarts = 0
        self.failures = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._start()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        cmd = [sys.executable, "-m", "edge_agent.vision.plate_worker", self.engine]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      bufsize=0)
        try:
            greeting = self._greeting()
        except (EOFError, TimeoutError, OSError) as exc:
            self._kill()
            raise PlateReadFailed(f"plate process did not start: {exc}") from exc
        if greeting.startswith(_MISSING):
            self._kill()
            raise PlateEngineMissing(greeting[len(_MISSING):].decode(errors="replace").strip())
        if greeting != _READY:
            self._kill()
            raise PlateReadFailed(f"plate process did not start: greeting {greeting[:40]!r}")

    def _greeting(self) -> bytes:
        line = b""
        deadline = time.monotonic() + self.start_timeout_s
        while not line.endswith(b"\n") and len(line) < _GREETING_MAX:
            line += self._receive(1, max(0.0, deadline - time.monotonic()))
        return line

    def _receive(self, n: int, timeout_s: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"no answer within {timeout_s:g} s")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError("plate process closed its output")
            buf += chunk
        return bytes(buf)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait(timeout=5)

    def read(self, image: NDArray[Any]) -> list[PlateRead]:
        """Read the plates of one BGR or gray uint8 image in the child."""
        if self._proc is None:
            self.restarts += 1
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
        if pixels.ndim not in (2, 3) or pixels.shape[0] > 0xFFFF or pixels.shape[1] > 0xFFFF:
            return []
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        try:
            self._proc.stdin.write(_REQUEST.pack(pixels.shape[0], pixels.shape[1], channels))
            self._proc.stdin.write(pixels.data)
            (length,) = _REPLY.unpack(self._receive(_REPLY.size, self.timeout_s))
            result = json.loads(self._receive(length, self.timeout_s))
        except (EOFError, OSError, TimeoutError, ValueError) as exc:
            self.failures += 1
            exitcode = self._proc.poll()
            if exitcode is None and not isinstance(exc, TimeoutError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    exitcode = self._proc.wait(timeout=1.0)  # it is dying: learn how
            self._kill()
            why = f"exit code {exitcode}" if exitcode is not None else str(exc) or "hung"
            raise PlateReadFailed(f"plate process failed ({why}); restarting") from exc
        return [PlateRead(str(text), float(confidence), (int(b[0]), int(b[1]), int(b[2]),
                                                         int(b[3])))
                for text, confidence, b in result]

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> PlateWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ENGINE)
