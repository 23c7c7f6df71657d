"""Container reads into the lane: ``IdentitySeen(kind="container")`` from a local socket.

The agent runs no container OCR. Whatever reads the container door (a container OCR box, an
officer typing at a terminal, a remote operator's tool) connects to ``[containers] socket``
and writes one line of container numbers per read, separated by commas, semicolons or line
ends of their own lines; spaces inside a number are fine (``MSCU 123456 6``):

    $ printf 'MSCU1234566, TGHU9876542\\n' | nc -U /run/gatelane/containers.sock
    ok 2

Each line is answered ``ok N`` (N numbers handed to the lane) or ``error: WHY``. The lane
judges the reads (``identity/containers.py``) only while a transit is open, as for plates.
A socket that cannot be made is reported as ``IdentitySourceChanged(up=False)``: trucks are
then decided at once, with the container unread, held or flagged by the site's policy.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent import local_socket
from edge_agent.identity.containers import MAX_READ_CHARS
from edge_agent.lane.inputs import IdentitySeen, IdentitySourceChanged

log = logging.getLogger("edge_agent.containers")

KIND = "container"
MAX_LINE = 1024
MAX_NUMBERS = 8  # a truck carries at most a few containers
READ_TIMEOUT_S = 5.0
_SEPARATORS = re.compile(r"[,;]")

ContainerInput = IdentitySeen | IdentitySourceChanged
Put = Callable[[ContainerInput], None]


def parse_entry(line: bytes) -> tuple[tuple[str, ...], str | None]:
    """The container numbers of one line, or why it is refused: ``((), "why")``."""
    if len(line) > MAX_LINE:
        return (), f"a line is at most {MAX_LINE} bytes"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return (), "a line must be UTF-8 text"
    numbers = tuple(n.strip() for n in _SEPARATORS.split(text) if n.strip())
    if not numbers:
        return (), "no container number on the line"
    if len(numbers) > MAX_NUMBERS:
        return (), f"at most {MAX_NUMBERS} container numbers on a line"
    if too_long := [n for n in numbers if len(n) > MAX_READ_CHARS]:
        return (), f"{too_long[0][:24]!r}... is too long to be a container number"
    return numbers, None


class _Server(local_socket.UnixServer):
    entry: ContainerEntry


class _Handler(socketserver.StreamRequestHandler):
    timeout = READ_TIMEOUT_S
    server: _Server

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except OSError:
                return  # the client went away or sent nothing in time
            if not line:
                return
            reply = self.server.entry.take(line.rstrip(b"\r\n"))
            with contextlib.suppress(OSError):
                self.wfile.write(reply.encode() + b"\n")


class ContainerEntry:
    """The socket at ``path``: ``start`` serves it on daemon threads until ``close``."""

    def __init__(self, path: Path, put: Put, clock: Callable[[], float]) -> None:
        self.path, self._put, self._clock = path, put, clock
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.problem: str | None = None
        self.entries = 0
        self.refused = 0

    def take(self, line: bytes) -> str:
        """One line from a client: its reads handed to the lane; the reply."""
        numbers, why = parse_entry(line)
        if why is not None:
            self.refused += 1
            return f"error: {why}"
        self.entries += 1
        self._put(IdentitySeen(self._clock(), KIND, numbers))
        return f"ok {len(numbers)}"

    def start(self) -> None:
        """Serve the socket; one that cannot be made is logged and told to the lane."""
        try:
            server = local_socket.bind(self.path, _Server, _Handler)
        except OSError as exc:
            self.problem = f"[containers] socket = {str(self.path)!r}: {exc.strerror or exc}"
            log.error("%s; trucks get vehicle.container_unread", self.problem)
            self._put(IdentitySourceChanged(self._clock(), KIND, False, self.problem))
            return
        server.entry = self
        self._server = server
        self._thread = local_socket.serve(server, "containers")

    def status(self) -> dict[str, Any]:
        return {"ok": self.problem is None, "socket": str(self.path), "error": self.problem,
                "entries": self.entries, "refused": self.refused}

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            local_socket.close(server, self.path)

