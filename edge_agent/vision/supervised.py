"""A native engine in a supervised child process: its crash or hang costs one frame, not the lane.

Both sides of the pipe protocol live here. The child greets with one line (``ready``, or a
reason it cannot run), then answers each request with a length-prefixed JSON reply. The parent
spawns it (not forks: the agent has threads), waits at most ``timeout_s`` for each reply, and
kills a child that dies or hangs; a fresh one starts on the next request.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import struct
import subprocess
import time
from typing import IO, Any, ClassVar, Self

from edge_agent.errors import DeviceError

READY = b"ready\n"
GREETING_MAX = 4096
_REPLY = struct.Struct(">I")  # length of the JSON reply that follows


def read_exact(stream: IO[bytes], n: int) -> bytes:
    """Child side: the next ``n`` bytes of a request, or ``EOFError`` once the parent is gone."""
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("request stream closed")
    return data


def send_line(stdout: IO[bytes], line: bytes) -> None:
    """Child side: the greeting, ``READY`` or a reason it cannot run."""
    stdout.write(line)
    stdout.flush()


def send_reply(stdout: IO[bytes], reply: Any) -> None:
    """Child side: one JSON reply, length first so the parent knows when it is whole."""
    data = json.dumps(reply).encode()
    stdout.write(_REPLY.pack(len(data)) + data)
    stdout.flush()


class SupervisedWorker:
    """Parent side: speaks to a child over its pipes, restarting it after a crash or hang.

    A subclass names the child (``what``, used in messages) and the error raised for a frame
    the child failed on (``failed``); it may override ``check_greeting`` to turn a child's
    reason for not running into its own exception.
    """

    what: ClassVar[str] = "worker process"
    failed: ClassVar[type[DeviceError]] = DeviceError

    def __init__(self, cmd: list[str], *, timeout_s: float, start_timeout_s: float) -> None:
        self._cmd = cmd
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.restarts = 0
        self.failures = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._start()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def check_greeting(self, greeting: bytes) -> None:
        """Raise unless the child's first line says it is ready (the child is already killed)."""
        if greeting != READY:
            raise self.failed(f"{self.what} did not start: greeting {greeting[:40]!r}")

    def _start(self) -> None:
        self._proc = subprocess.Popen(self._cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      bufsize=0)
        try:
            greeting = self._greeting()
        except (EOFError, TimeoutError, OSError) as exc:
            self._kill()
            raise self.failed(f"{self.what} did not start: {exc}") from exc
        if greeting != READY:
            self._kill()
            self.check_greeting(greeting)

    def _greeting(self) -> bytes:
        line = b""
        deadline = time.monotonic() + self.start_timeout_s
        while not line.endswith(b"\n") and len(line) < GREETING_MAX:
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
                raise EOFError(f"{self.what} closed its output")
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

    def _ensure_running(self) -> None:
        if self._proc is None:
            self.restarts += 1
            self._start()

    def _exchange(self, *request: bytes | memoryview) -> Any:
        """Send one request (its parts in order) and return the child's decoded JSON reply."""
        self._ensure_running()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            for part in request:
                self._proc.stdin.write(part)
            (length,) = _REPLY.unpack(self._receive(_REPLY.size, self.timeout_s))
            return json.loads(self._receive(length, self.timeout_s))
        except (EOFError, OSError, TimeoutError, ValueError) as exc:
            self.failures += 1
            exitcode = self._proc.poll()
            if exitcode is None and not isinstance(exc, TimeoutError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    exitcode = self._proc.wait(timeout=1.0)  # it is dying: learn how
            self._kill()
            why = f"exit code {exitcode}" if exitcode is not None else str(exc) or "hung"
            raise self.failed(f"{self.what} failed ({why}); restarting") from exc

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
