"""Decoding in a supervised child process: a native decoder crash or hang cannot stop the lane.

ZBar has known aborts and double frees, and any native decoder can spin on a pathological
image. The lane therefore sends each frame to a child process (spawned, not forked, because
the agent has threads) over a pipe and waits at most ``timeout_s``. If the child dies or
hangs, it is killed, ``DecoderFailed`` is raised for that frame, and a fresh child is started
on the next call. Cost per frame is one copy of the pixels through the pipe (~1 ms at 720p).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import struct
import subprocess
import sys
import time
from typing import IO

import numpy as np

from edge_agent.errors import DeviceError
from edge_agent.vision.engines import Gray, RawRead

# Request: header, stage names (comma separated), then height*width pixels.
_REQUEST = struct.Struct(">HHdH")  # height, width, budget ms (0 = none), length of names
_REPLY = struct.Struct(">I")  # length of the JSON reply that follows
# Stages that exist only to prove the supervision works (tests, bench); off unless asked for.
FAULT_STAGES = ("fault-abort", "fault-hang")
_READY = b"ready\n"


class DecoderFailed(DeviceError):
    """The decoder process crashed or hung on a frame; it has been replaced."""


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("request stream closed")
    return data


def serve(stdin: IO[bytes], stdout: IO[bytes], *, allow_faults: bool = False) -> None:
    """Child main loop: frames in, raw reads out, until stdin closes."""
    from edge_agent.vision.stages import run_stages

    stdout.write(_READY)
    stdout.flush()
    while True:
        try:
            h, w, budget_ms, names_len = _REQUEST.unpack(_read_exact(stdin, _REQUEST.size))
            names = _read_exact(stdin, names_len).decode().split(",")
            pixels = _read_exact(stdin, h * w)
        except EOFError:
            return
        if allow_faults and "fault-abort" in names:
            os.abort()
        if allow_faults and "fault-hang" in names:
            time.sleep(3600)
        gray = np.frombuffer(pixels, np.uint8).reshape(h, w)
        deadline = time.perf_counter() + budget_ms / 1000 if budget_ms else None
        reads = run_stages(gray, [n for n in names if n not in FAULT_STAGES], deadline)
        reply = json.dumps([[r.text, r.polygon, r.engine, r.modules] for r in reads]).encode()
        stdout.write(_REPLY.pack(len(reply)) + reply)
        stdout.flush()


class DecodeWorker:
    """Runs named decoding stages in a child process, restarting it after a crash or hang."""

    def __init__(self, *, timeout_s: float = 2.0, start_timeout_s: float = 30.0,
                 allow_faults: bool = False) -> None:
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.allow_faults = allow_faults
        self.restarts = 0
        self.failures = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._start()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        cmd = [sys.executable, "-m", "edge_agent.vision.worker"]
        if self.allow_faults:
            cmd.append("--allow-faults")
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self._proc = proc
        try:
            if self._receive(len(_READY), self.start_timeout_s) != _READY:
                raise EOFError("unexpected greeting")
        except (EOFError, TimeoutError, OSError) as exc:
            self._kill()
            raise DecoderFailed(f"decoder process did not start: {exc}") from exc

    def _receive(self, n: int, timeout_s: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"no answer within {timeout_s} s")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError("decoder process closed its output")
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

    def run(self, gray: Gray, stages: tuple[str, ...], budget_ms: float = 0.0) -> list[RawRead]:
        """Decode one frame in the child; raise ``DecoderFailed`` if it crashes or hangs."""
        if self._proc is None:
            self.restarts += 1
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        h, w = gray.shape
        names = ",".join(stages).encode()
        try:
            self._proc.stdin.write(_REQUEST.pack(h, w, budget_ms, len(names)) + names)
            self._proc.stdin.write(np.ascontiguousarray(gray).data)
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
            raise DecoderFailed(f"decoder process failed ({why}); restarting") from exc
        return [RawRead(t, tuple((int(x), int(y)) for x, y in p), e, int(m))
                for t, p, e, m in result]

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> DecodeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, allow_faults="--allow-faults" in sys.argv)
