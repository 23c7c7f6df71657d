"""The lane page's HTTP server: the page, its live JSON, the frame, metrics and probes.

``GET /`` the page (plain HTML, CSS and JS from ``static/``, the plot library vendored: nothing
comes from the internet); ``GET /api/live?after=N`` what the page polls; ``GET /frame.jpg`` the
latest camera frame; ``GET /status`` the status document (``lanectl status``); ``GET /metrics``
OpenMetrics or Prometheus text; ``GET /healthz`` and ``/readyz`` 200 "ok" or 503 with one
reason a line. With a token every request needs it (``auth.py``), except the login form.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge_agent.errors import ConfigError, DeviceError
from edge_agent.status import StatusBoard
from edge_agent.web.auth import PageAuth

log = logging.getLogger("edge_agent.web")

Probe = Callable[[], list[str]]
MAX_FORM_BYTES = 4096
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
          ".txt": "text/plain; charset=utf-8"}
# Everything the page uses is served from here: no inline script, no other origin.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


_ALIASES = {"/favicon.ico": "/static/icon.svg"}
_PUBLIC = frozenset({"/static/page.css", "/static/icon.svg"})


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files by URL path, read once: a request can only name one of these."""
    root = resources.files("edge_agent.web") / "static"
    files: dict[str, tuple[bytes, str]] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
                continue
            suffix = "." + child.name.rpartition(".")[2]
            if suffix in _TYPES:
                files[f"/static/{prefix}{child.name}"] = (child.read_bytes(), _TYPES[suffix])

    walk(root, "")
    return files


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:8787
    if not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ConfigError(f"[status] listen = {listen!r}: expected host:port")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Ipv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve_page(
    listen: str,
    board: StatusBoard,
    *,
    token: str | None = None,
    liveness: Probe | None = None,
    readiness: Probe | None = None,
) -> ThreadingHTTPServer:
    """Serve the lane page on ``listen`` (``host:port``) in daemon threads; ``shutdown()`` it.

    Beyond loopback a ``token`` is required (ConfigError otherwise); a port that cannot be
    bound is a DeviceError naming the setting.
    """
    host, port = split_listen(listen)
    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"[status] listen = {listen!r} is reachable from the network: set [status] "
            "token_file so the page asks for a token, or listen on 127.0.0.1")
    handler = _handler(board, PageAuth(token), liveness or list, readiness or list,
                       _static_files())
    server_class = _Ipv6Server if ":" in host else ThreadingHTTPServer
    try:
        server = server_class((host, port), handler)
    except OSError as exc:
        raise DeviceError(f"[status] listen = {listen!r}: {exc.strerror or exc}") from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     name="lane-page", daemon=True).start()
    return server


def _handler(
    board: StatusBoard, auth: PageAuth, liveness: Probe, readiness: Probe,
    static: dict[str, tuple[bytes, str]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gatelane"
        sys_version = ""

        def do_GET(self) -> None:
            self._guarded(self._get)

        def do_POST(self) -> None:
            self._guarded(self._post)

        def _guarded(self, route: Callable[[str, dict[str, list[str]]], None]) -> None:
            url = urlsplit(self.path)
            try:
                route(url.path, parse_qs(url.query))
            except (BrokenPipeError, ConnectionResetError):
                return  # the browser went away mid-answer
            except Exception as exc:  # containment: a bad request must not reach the lane
                log.warning("lane page %s %s failed: %r", self.command, url.path, exc)
                self._send(500, b"internal error\n", "text/plain; charset=utf-8")

        def _get(self, path: str, query: dict[str, list[str]]) -> None:
            if path == "/login":
                self._send(200, _login_page(""), _TYPES[".html"])
                return
            path = _ALIASES.get(path, path)
            if path in _PUBLIC:  # the login form's look: no lane data in it
                body, kind = static[path]
                self._send(200, body, kind, cache="no-cache")
                return
            if not auth.allows(self.headers):
                self._refuse()
                return
            if path in ("/", "/index.html"):
                body, kind = static["/static/index.html"]
                self._send(200, body, kind)
            elif path in static:
                body, kind = static[path]
                self._send(200, body, kind, cache="max-age=3600" if "/vendor/" in path
                           else "no-cache")
            elif path == "/status":
                self._json(board.document())
            elif path == "/api/live":
                after = (query.get("after") or ["0"])[0]
                live = board.live(int(after) if after.isdigit() else 0)
                live["login"] = auth.required  # the page offers to log out
                self._json(live)
            elif path == "/frame.jpg":
                frame = board.frames.current()
                if frame is None:
                    self._send(404, b"no camera frame yet\n", "text/plain; charset=utf-8")
                else:
                    self._send(200, frame.jpeg, "image/jpeg")
            elif path == "/metrics":
                body, kind = board.metrics.exposition(self.headers.get("Accept") or "")
                self._send(200, body, kind)
            elif path in ("/healthz", "/readyz"):
                self._probe(liveness if path == "/healthz" else readiness)
            else:
                self._send(404, f"not found: {path}\n".encode(), "text/plain; charset=utf-8")

        def _post(self, path: str, query: dict[str, list[str]]) -> None:
            if path == "/logout":
                self.send_response(303)
                self.send_header("Set-Cookie", auth.logout())
                self.send_header("Location", "/login")
                self._end(b"", "text/plain; charset=utf-8")
                return
            if path != "/login":
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
                return
            if not auth.required:  # a loopback page has nothing to log in to
                self.send_response(303)
                self.send_header("Location", "/")
                self._end(b"", "text/plain; charset=utf-8")
                return
            length_text = self.headers.get("Content-Length") or "0"
            if not length_text.isdigit():
                self._send(400, b"Content-Length is not a number\n", "text/plain; charset=utf-8")
                return
            length = int(length_text)
            if length > MAX_FORM_BYTES:
                self._send(413, b"login form too large\n", "text/plain; charset=utf-8")
                return
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            cookie = auth.login((form.get("token") or [""])[0].strip())
            if cookie is None:
                self._send(401, _login_page("That token is not this lane's. Try again."),
                           _TYPES[".html"])
                return
            self.send_response(303)
            self.send_header("Set-Cookie", cookie)
            self.send_header("Location", "/")
            self._end(b"", "text/plain; charset=utf-8")

        def _refuse(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="gatelane lane page"')
            self.send_header("Cache-Control", "no-store")
            if "text/html" in (self.headers.get("Accept") or ""):
                self._end(_login_page(""), _TYPES[".html"])  # a browser: the form at once
                return
            self._end(b"this lane's page needs its token: Authorization: Bearer TOKEN, "
                      b"or log in at /login\n", "text/plain; charset=utf-8")

        def _probe(self, probe: Probe) -> None:
            reasons = probe()
            if not reasons:
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                body = "".join(f"{reason}\n" for reason in reasons).encode()
                self._send(503, body, "text/plain; charset=utf-8")

        def _json(self, doc: dict[str, Any]) -> None:
            self._send(200, json.dumps(doc, default=str).encode(), "application/json")

        def _send(self, code: int, body: bytes, kind: str, *, cache: str = "no-store") -> None:
            self.send_response(code)
            self.send_header("Cache-Control", cache)
            self._end(body, kind)

        def _end(self, body: bytes, kind: str) -> None:
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", _CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the lane log is for the lane, not for page polls

    return Handler


def _login_page(message: str) -> bytes:
    note = f'<p class="error">{escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lane page: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/page.css"></head>
<body class="login"><form method="post" action="/login">
<h1>Lane page</h1><p>This lane's page needs its token (the file named by
<code>[status] token_file</code> in the agent's config).</p>{note}
<label>Token <input name="token" type="password" autocomplete="current-password" autofocus
required></label><button type="submit">Log in</button></form></body></html>
""".encode()
