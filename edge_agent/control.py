"""The lane's local control socket: ``lanectl lane`` asks, the main loop decides, it answers.

A unix stream socket (``[control] socket``) made 0660: only the agent's user and the members
of its group (``gatelane``) can connect, so the file's permissions are the authorisation.
Each connection carries one JSON line and gets one JSON line back::

    {"op": "show"}
    {"op": "mode", "mode": "out_of_service", "reason": "TEXT", "by": "NAME"}   by optional
    {"op": "barrier", "action": "open" | "close", "by": "NAME"}                by optional
    {"op": "sign_in", "name": "NAME"}

    -> {"ok": true | false, "detail": "TEXT", "mode": {...}, "state": "idle"}

The peer's uid (``SO_PEERCRED``, from the kernel, not from the request) is recorded with every
change, and ``by`` defaults to that user's name. The server's threads only read and check a
request; it goes into the agent's inbox as a ``ControlRequest`` and the main loop, which owns
the lane machine, answers it (``answer``). A request the client stopped waiting for is
dropped unrun, so a timeout never hides a change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pwd
import socket
import socketserver
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent import local_socket
from edge_agent.errors import DeviceError
from edge_agent.inbox import Kind
from edge_agent.lane.actions import Answer, LaneAction, OpenBarrier, Publish
from edge_agent.lane.inputs import BarrierRequested, LaneInput, ModeRequested, SignedIn
from edge_agent.lane.machine import LaneMachine
from edge_agent.lane.modes import MAX_NAME, MAX_REASON, LaneMode, Via, parse_mode, text_problems

log = logging.getLogger("edge_agent.control")

CONTROL = "lane-control"  # the inbox's name for a local request (no MQTT command is named so)
MAX_LINE = 4096
ANSWER_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 2.0
OPS = ("show", "mode", "barrier", "sign_in")


@dataclass
class ControlRequest:
    """One checked request from the socket, waiting for the main loop's answer."""

    op: str
    uid: int
    by: str
    mode: LaneMode | None = None
    reason: str = ""
    open: bool = False
    name: str = ""
    ref: str = field(default_factory=lambda: f"local-{uuid.uuid4().hex[:12]}")
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _reply: dict[str, Any] | None = None
    _state: str = "waiting"  # -> running (the main loop took it) | gone (the client gave up)

    def claim(self) -> bool:
        """The main loop takes the request; False when the client stopped waiting."""
        with self._lock:
            if self._state != "waiting":
                return False
            self._state = "running"
            return True

    def reply(self, reply: dict[str, Any]) -> None:
        self._reply = reply
        self._done.set()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        """The answer, or None after ``timeout`` (then it is never run)."""
        if self._done.wait(timeout):
            return self._reply
        with self._lock:
            if self._state == "waiting":
                self._state = "gone"
                return None
        self._done.wait()  # the main loop is running it: its answer comes at once
        return self._reply


def parse_request(line: bytes, uid: int) -> ControlRequest:
    """The request in ``line`` from the peer ``uid``.

    Raises:
        ValueError: what is wrong with it, in words for the technician.
    """
    try:
        doc = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("the request is not one line of JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("the request must be a JSON object")
    op = doc.get("op")
    if op not in OPS:
        raise ValueError(f"unknown op {str(op)[:32]!r}: one of {', '.join(OPS)}")
    by = doc.get("by") or _user(uid)
    problems = text_problems("by", by, MAX_NAME)
    request = ControlRequest(op, uid, str(by))
    if op == "mode":
        request.mode = parse_mode(doc.get("mode"))
        request.reason = doc.get("reason", "")
        problems += text_problems("reason", request.reason, MAX_REASON)
    elif op == "barrier":
        action = doc.get("action")
        if action not in ("open", "close"):
            raise ValueError(f"barrier action must be open or close, not {str(action)[:16]!r}")
        request.open = action == "open"
    elif op == "sign_in":
        request.name = doc.get("name", "")
        problems += text_problems("name", request.name, MAX_NAME)
    if problems:
        raise ValueError("; ".join(problems))
    return request


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


# -- the main loop's side ----------------------------------------------------------------------
Step = Callable[[LaneInput, float], list[LaneAction]]


def answer(
    request: ControlRequest, machine: LaneMachine, step: Step, now: float, wall: float
) -> None:
    """Run ``request`` through the lane machine (on the main loop) and hand back the outcome."""
    if not request.claim():
        log.info("control request %s dropped: its client stopped waiting", request.op)
        return
    try:
        request.reply(_outcome(request, machine, step, now, wall))
    except Exception as exc:  # containment: the client still gets an answer
        log.exception("control request %s failed", request.op)
        request.reply({"ok": False, "detail": f"the agent failed on the request: {exc}"})


def _outcome(
    request: ControlRequest, machine: LaneMachine, step: Step, now: float, wall: float
) -> dict[str, Any]:
    event: LaneInput
    match request.op:
        case "show":
            return _reply(machine, True, f"lane mode {machine.modes.mode}")
        case "mode":
            assert request.mode is not None
            event = ModeRequested(now, request.mode, request.by, request.reason, Via.LOCAL,
                                  request.ref, wall, request.uid)  # fmt: skip
        case "barrier":
            event = BarrierRequested(now, request.open, request.by, request.ref)
        case _:
            event = SignedIn(now, request.name, request.ref, wall)
    done = step(event, now)
    answers = [a for a in done if isinstance(a, Answer) and a.ref == request.ref]
    if not answers:
        why = f"the lane did not take the request (state {machine.state.value}); try again"
        return _reply(machine, False, why)
    ok, detail = answers[0].accepted, answers[0].detail
    if request.op == "barrier" and request.open and ok and "already" not in detail:
        ok, detail = _opened(done)
    log.info("control %s by %s (uid %s): %s", request.op, request.by, request.uid, detail)
    return _reply(machine, ok, detail)


def _opened(done: list[LaneAction]) -> tuple[bool, str]:
    if any(isinstance(a, OpenBarrier) for a in done):
        return True, "OPEN sent to the IO board"
    held = [a for a in done if isinstance(a, Publish) and a.data.get("decision") == "hold"]
    if held:
        return False, f"not opened, held: {', '.join(held[-1].data['reasons'])}"
    return False, "not opened"


def _reply(machine: LaneMachine, ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail, "mode": machine.modes.to_status(),
            "state": machine.state.value}  # fmt: skip


# -- the server ---------------------------------------------------------------------------------
class _Server(local_socket.UnixServer):
    submit: Callable[[ControlRequest], bool]


class _Handler(socketserver.StreamRequestHandler):
    timeout = READ_TIMEOUT_S
    server: _Server

    def handle(self) -> None:
        try:
            line = self.rfile.readline(MAX_LINE + 1)
        except OSError:
            return  # the client went away or sent nothing in time
        reply = self._reply(line)
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(reply).encode() + b"\n")

    def _reply(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            why = f"a request is one JSON line of at most {MAX_LINE} bytes"
            return {"ok": False, "detail": why}
        try:
            request = parse_request(line, _peer_uid(self.request))
        except ValueError as exc:
            return {"ok": False, "detail": str(exc)}
        if not self.server.submit(request):
            return {"ok": False, "detail": "the agent's command queue is full; try again"}
        reply = request.wait(ANSWER_TIMEOUT_S)
        if reply is None:
            return {"ok": False, "detail": f"the agent did not answer in {ANSWER_TIMEOUT_S:g} s; "
                                           "nothing was changed"}  # fmt: skip
        return reply


class ControlServer:
    """The socket at ``path``, served on daemon threads until ``close``."""

    def __init__(self, path: Path, submit: Callable[[ControlRequest], bool]) -> None:
        """``submit`` hands a request to the main loop (False: it could not be queued).

        Raises:
            DeviceError: the socket cannot be made, or another agent serves it.
        """
        self.path = path
        try:
            self._server = local_socket.bind(path, _Server, _Handler)
        except OSError as exc:
            raise DeviceError(f"[control] socket = {str(path)!r}: {exc.strerror or exc}") from exc
        self._server.submit = submit
        self._thread = local_socket.serve(self._server, "control")

    def close(self) -> None:
        local_socket.close(self._server, self.path)


class _Unserved:
    def close(self) -> None:
        return


def serve_control(path: Path, put: Callable[[Kind, Any], bool]) -> ControlServer | _Unserved:
    """Serve the control socket; requests go to the inbox as ``(CONTROL, request)`` commands
    (``put`` is ``LaneInbox.put``). A socket that cannot be made is logged and the lane runs
    on without it: trucks matter more than ``lanectl lane``."""
    try:
        return ControlServer(path, lambda request: put("command", (CONTROL, request)))
    except DeviceError as exc:
        log.error("%s; lanectl lane cannot reach this agent", exc)
        return _Unserved()
