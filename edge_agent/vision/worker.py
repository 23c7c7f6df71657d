"""Decoding in a supervised child process: a native decoder crash or hang cannot stop the lane.

ZBar has known aborts and double frees, and any native decoder can spin on a pathological
image. The lane therefore sends each frame to a child process (``supervised.py``) and waits at
most ``timeout_s``. If the child dies or hangs, it is killed, ``DecoderFailed`` is raised for
that frame, and a fresh child is started on the next call. Cost per frame is one copy of the
pixels through the pipe (~1 ms at 720p).
"""

from __future__ import annotations

import os
import struct
import sys
import time
from typing import IO

import numpy as np

from edge_agent.errors import DeviceError
from edge_agent.vision.engines import Gray, RawRead
from edge_agent.vision.supervised import READY, SupervisedWorker, read_exact, send_line, send_reply

# Request: header, stage names (comma separated), then height*width pixels.
_REQUEST = struct.Struct(">HHdH")  # height, width, budget ms (0 = none), length of names
# Stages that exist only to prove the supervision works (tests, bench); off unless asked for.
FAULT_STAGES = ("fault-abort", "fault-hang")


class DecoderFailed(DeviceError):
    """The decoder process crashed or hung on a frame; it has been replaced."""


def serve(stdin: IO[bytes], stdout: IO[bytes], *, allow_faults: bool = False) -> None:
    """Child main loop: frames in, raw reads out, until stdin closes."""
    from edge_agent.vision.stages import run_stages

    send_line(stdout, READY)
    while True:
        try:
            h, w, budget_ms, names_len = _REQUEST.unpack(read_exact(stdin, _REQUEST.size))
            names = read_exact(stdin, names_len).decode().split(",")
            pixels = read_exact(stdin, h * w)
        except EOFError:
            return
        if allow_faults and "fault-abort" in names:
            os.abort()
        if allow_faults and "fault-hang" in names:
            time.sleep(3600)
        gray = np.frombuffer(pixels, np.uint8).reshape(h, w)
        deadline = time.perf_counter() + budget_ms / 1000 if budget_ms else None
        reads = run_stages(gray, [n for n in names if n not in FAULT_STAGES], deadline)
        send_reply(stdout, [[r.text, r.polygon, r.engine, r.modules] for r in reads])


class DecodeWorker(SupervisedWorker):
    """Runs named decoding stages in a child process, restarting it after a crash or hang."""

    what = "decoder process"
    failed = DecoderFailed

    def __init__(self, *, timeout_s: float = 2.0, start_timeout_s: float = 30.0,
                 allow_faults: bool = False) -> None:
        self.allow_faults = allow_faults
        cmd = [sys.executable, "-m", "edge_agent.vision.worker"]
        if allow_faults:
            cmd.append("--allow-faults")
        super().__init__(cmd, timeout_s=timeout_s, start_timeout_s=start_timeout_s)

    def run(self, gray: Gray, stages: tuple[str, ...], budget_ms: float = 0.0) -> list[RawRead]:
        """Decode one frame in the child; raise ``DecoderFailed`` if it crashes or hangs."""
        h, w = gray.shape
        names = ",".join(stages).encode()
        result = self._exchange(_REQUEST.pack(h, w, budget_ms, len(names)) + names,
                                np.ascontiguousarray(gray).data)
        return [RawRead(t, tuple((int(x), int(y)) for x, y in p), e, int(m))
                for t, p, e, m in result]


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, allow_faults="--allow-faults" in sys.argv)
