"""The agent's live status, served as JSON on a loopback port for ``lanectl status``.

The main loop publishes the lane's part (state, transit) a few times a second: a few fields,
no I/O. The devices' part (IO link, weighbridge, camera, telemetry with the outbox figures) is
read when a request comes, on the server's thread, so the decision loop never waits for it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    from edge_agent.lane.machine import LaneMachine


class StatusBoard:
    """A thread-safe snapshot of the lane that the main loop updates and the server reads."""

    def __init__(
        self, config: AgentConfig, devices: Callable[[], dict[str, Any]] = dict
    ) -> None:
        self._devices = devices
        self._lock = threading.Lock()
        self._started = time.time()
        self._doc: dict[str, Any] = {
            "site": config.lane.site,
            "lane": config.lane.lane,
            "agent_version": __version__,
            "state": "starting",
        }
        self._recent: deque[dict[str, Any]] = deque(maxlen=20)

    def update_lane(self, machine: LaneMachine) -> None:
        transit = machine.transit
        lane = {
            "state": machine.state.value,
            "transit": None if transit is None else transit.to_status(),
        }
        with self._lock:
            self._doc.update(lane)

    def record_event(self, envelope: dict[str, Any]) -> None:
        brief = {k: envelope.get(k) for k in ("seq", "type", "occurred_at", "transit_id")}
        with self._lock:
            self._recent.append(brief)

    def document(self) -> dict[str, Any]:
        with self._lock:
            doc = dict(self._doc)
            doc["recent_events"] = list(self._recent)
        try:
            doc["devices"] = self._devices()
        except Exception as exc:  # a device being reopened must not break the status page
            doc["devices"] = {"error": repr(exc)}
        doc["uptime_s"] = round(time.time() - self._started, 1)
        return doc


class _Ipv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve_status(listen: str, board: StatusBoard) -> ThreadingHTTPServer:
    """Serve ``GET /status`` on ``listen`` (``host:port``) in a daemon thread."""
    host, _, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:8787
    if not host or not port_text.isdigit():
        raise ConfigError(f"[status] listen = {listen!r}: expected host:port")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") not in ("", "/status"):
                self.send_error(404, "only /status is served")
                return
            body = json.dumps(board.document(), default=str).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the lane log is for the lane, not for status polls

    server_class = _Ipv6Server if ":" in host else ThreadingHTTPServer
    try:
        server = server_class((host, int(port_text)), Handler)
    except OSError as exc:
        raise DeviceError(f"[status] listen = {listen!r}: {exc.strerror or exc}") from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="status", daemon=True).start()
    return server
