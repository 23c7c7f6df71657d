"""``lanectl status`` in a child process against a real HTTP status endpoint: one read, and
``--watch`` refreshing until Ctrl-C (SIGINT), through an agent that goes away."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

DOC = {"site": "BZ01", "lane": "exit-03", "agent_version": "0.1.0", "uptime_s": 12,
       "state": "idle", "devices": {"io_board": {"link": "up"}}, "recent_events": []}


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(DOC).encode()
        self.send_response(200 if self.path == "/status" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def agent() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def lanectl(*argv: str, ignoring_ctrl_c: bool = False) -> subprocess.Popen[str]:
    def ignore_ctrl_c() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec, like `cmd &`

    return subprocess.Popen([sys.executable, "-m", "host_tools.lanectl", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ignore_ctrl_c if ignoring_ctrl_c else None)


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/status"


def test_status_reads_the_agent_once(agent: ThreadingHTTPServer) -> None:
    out, err = lanectl("status", "--url", url(agent)).communicate(timeout=60)
    assert "BZ01/exit-03" in out and "state     idle" in out and err == ""


def test_watch_refreshes_until_ctrl_c_and_exits_cleanly(agent: ThreadingHTTPServer) -> None:
    proc = lanectl("status", "--url", url(agent), "--watch", "0.1", "--json")
    assert proc.stdout is not None
    first, second = json.loads(proc.stdout.readline()), json.loads(proc.stdout.readline())
    assert first["status"] == second["status"] == DOC and first["error"] is None
    agent.shutdown()
    agent.server_close()  # the agent stops: the watch shows it and goes on
    while (record := json.loads(proc.stdout.readline()))["error"] is None:
        pass
    assert record["status"] is None and "is edge-agent running?" in record["error"]
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert err == "" and "Traceback" not in rest


def test_a_watch_started_with_ctrl_c_ignored_still_stops_on_it(
        agent: ThreadingHTTPServer) -> None:
    proc = lanectl("status", "--url", url(agent), "--watch", "0.1", "--json",
                   ignoring_ctrl_c=True)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["status"] == DOC
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == "" and "Traceback" not in rest


def test_an_unreachable_agent_is_exit_1_with_what_to_do() -> None:
    proc = lanectl("status", "--url", "http://127.0.0.1:9/status")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == ""
    [line] = err.splitlines()
    assert line.startswith("lanectl status: cannot read the agent's status")
    assert "systemctl status gatelane-agent" in line
