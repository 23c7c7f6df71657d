"""The control socket in-process: real unix sockets, the request checks, the answer hand-over."""

from __future__ import annotations

import json
import os
import queue
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.control import ControlRequest, ControlServer, parse_request, serve_control
from edge_agent.errors import DeviceError
from edge_agent.lane.modes import LaneMode


def talk(path: Path, line: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(line)
        reply: dict[str, Any] = json.loads(client.makefile("rb").readline())
        return reply


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ControlServer, queue.Queue[ControlRequest]]]:
    taken: queue.Queue[ControlRequest] = queue.Queue()

    def submit(request: ControlRequest) -> bool:
        taken.put(request)
        return True

    server = ControlServer(tmp_path / "run" / "control.sock", submit)
    try:
        yield server, taken
    finally:
        server.close()


def test_a_request_reaches_the_loop_with_the_peer_s_uid_and_its_answer_comes_back(
    served: tuple[ControlServer, queue.Queue[ControlRequest]],
) -> None:
    server, taken = served
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o660

    def loop() -> None:
        request = taken.get(timeout=10)
        assert request.claim()
        request.reply({"ok": True, "detail": f"{request.mode} by {request.by} uid {request.uid}"})

    worker = threading.Thread(target=loop)
    worker.start()
    line = json.dumps({"op": "mode", "mode": "manual", "reason": "arm test", "by": "ivy"})
    reply = talk(server.path, line.encode() + b"\n")
    worker.join()
    assert reply == {"ok": True, "detail": f"manual by ivy uid {os.getuid()}"}


def test_bad_requests_are_answered_at_once_and_never_queued(
    served: tuple[ControlServer, queue.Queue[ControlRequest]],
) -> None:
    server, taken = served
    cases = {
        b"not json\n": "the request is not one line of JSON",
        b'{"op": "reboot"}\n': "unknown op 'reboot': one of show, mode, barrier, sign_in",
        b'{"op": "mode", "mode": "closed", "reason": "x"}\n': "unknown lane mode 'closed'",
        b'{"op": "mode", "mode": "manual"}\n': "reason must be a non-empty text",
        b'{"op": "barrier", "action": "up"}\n': "barrier action must be open or close",
        b'{"op": "sign_in", "name": "a\\u0007b"}\n': "name holds control characters",
        b"x" * 5000 + b"\n": "a request is one JSON line of at most 4096 bytes",
    }
    for line, detail in cases.items():
        reply = talk(server.path, line)
        assert not reply["ok"] and detail in reply["detail"], (line[:40], reply)
    assert taken.empty()


def test_a_request_its_client_gave_up_on_is_never_run() -> None:
    request = parse_request(b'{"op": "mode", "mode": "out_of_service", "reason": "x"}', 0)
    assert request.mode is LaneMode.OUT_OF_SERVICE and request.by == "root"  # uid 0's name
    assert request.wait(0.0) is None  # nobody answered in time
    assert not request.claim()  # the loop finds it abandoned and leaves it


def test_a_stale_socket_is_replaced_and_a_live_one_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a stopped agent's
    first = ControlServer(path, lambda request: False)
    try:
        reply = talk(path, b'{"op": "show"}\n')
        assert reply == {"ok": False, "detail": "the agent's command queue is full; try again"}
        with pytest.raises(DeviceError, match="another agent is serving it"):
            ControlServer(path, lambda request: False)
    finally:
        first.close()
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(DeviceError, match="exists and is not a socket"):
        ControlServer(path, lambda request: False)


def test_a_socket_that_cannot_be_made_leaves_the_lane_running_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "control.sock"
    path.write_text("not a socket")
    taken: list[object] = []
    unserved = serve_control(path, lambda kind, item: taken.append(item) is None)
    unserved.close()
    assert "exists and is not a socket; lanectl lane cannot reach this agent" in caplog.text
    assert path.read_text() == "not a socket" and not taken
