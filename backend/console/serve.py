"""The console wired together: store, users, audit, the MQTT link, the HTTP(S) server.

``run`` checks every input before it listens (the store is there, the users file is usable,
the broker answers, the port can be bound), so a wrong setting is one clear line, and then
serves until ``stop`` is set.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.console.actions import OfficerActions
from backend.console.audit import AuditLog
from backend.console.auth import ConsoleAuth, LoginLimiter, Sessions, UsersFile
from backend.console.link import CommandLink, StoreReader
from backend.console.server import Console, handler_for
from backend.errors import BackendSetupError
from backend.store import EventStore
from backend.store_url import open_store
from edge_agent.telemetry.mqtt import TlsFiles

log = logging.getLogger("backend.console")
HANDSHAKE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    store: str
    broker: str
    site: str
    key: Ed25519PrivateKey
    kid: str
    users: Path
    host: str
    port: int
    state_dir: Path
    client_id: str = "console"
    mqtt_tls: tuple[Path | None, Path | None, Path | None] = (None, None, None)
    page_tls: tuple[Path, Path] | None = None
    idle_s: float = 15 * 60
    absolute_s: float = 12 * 3600


class _Server(ThreadingHTTPServer):
    """The console's server; with a TLS context the handshake runs in the request's own
    thread, so a slow or silent client cannot hold up everyone else's."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.tls is None:
            return sock, address
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), \
            address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (OSError, ssl.SSLError):
                return  # not a TLS client, or it went away: nothing to answer
            request.settimeout(None)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("console connection from %s failed", client_address, exc_info=True)


class _Ipv6Server(_Server):
    address_family = socket.AF_INET6


def open_event_store(url: str) -> EventStore:
    """The store the ingest workers write; a SQLite path must already exist (a new empty file
    would only show an empty desk)."""
    if "://" not in url and url != ":memory:" and not Path(url).is_file():
        raise BackendSetupError(
            f"--store {url}: no such file; give the SQLite file the ingest workers write, or "
            "a postgresql:// URL")
    return open_store(url)


def build(options: ServeOptions, link: CommandLink | None = None) -> tuple[Console, CommandLink]:
    """The console and its link (started), from checked options."""
    users = UsersFile(options.users)
    if not users.load():
        raise BackendSetupError(f"{options.users} lists no officer: add one with add-user")
    reader = StoreReader(open_event_store(options.store))
    try:
        audit = AuditLog(options.state_dir / "audit.sqlite")
        ca, cert, key = options.mqtt_tls
        tls = TlsFiles(ca, cert, key) if any(options.mqtt_tls) else None
        if link is None:
            link = CommandLink(options.broker, reader, client_id=options.client_id, tls=tls)
            link.start()
    except BaseException:
        reader.close()
        raise
    auth = ConsoleAuth(users, Sessions(idle_s=options.idle_s, absolute_s=options.absolute_s),
                       LoginLimiter(), secure_cookie=options.page_tls is not None)
    actions = OfficerActions(site=options.site, key=options.key, kid=options.kid, backend=link,
                             audit=audit)
    console = Console(site=options.site, reader=reader, auth=auth, audit=audit,
                      actions=actions, link_up=lambda: link.connected,
                      https=options.page_tls is not None)
    return console, link


def bind(console: Console, options: ServeOptions) -> _Server:
    server_class = _Ipv6Server if ":" in options.host else _Server
    try:
        server = server_class((options.host, options.port), handler_for(console))
    except OSError as exc:
        raise BackendSetupError(f"--listen {options.host}:{options.port}: "
                                f"{exc.strerror or exc}") from exc
    if options.page_tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(options.page_tls[0]), str(options.page_tls[1]))
        except (OSError, ssl.SSLError) as exc:
            server.server_close()
            raise BackendSetupError(f"--tls-cert/--tls-key unusable: {exc}") from exc
        server.tls = context
    return server


def run(options: ServeOptions, stop: threading.Event, *,
        announce: Callable[[str], None]) -> int:  # fmt: skip
    """Serve until ``stop`` is set; 0 on a clean stop."""
    console, link = build(options)
    try:
        server = bind(console, options)
    except BaseException:
        link.stop()
        console.reader.close()
        console.audit.close()
        raise
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="console", daemon=True)
    thread.start()
    scheme = "https" if options.page_tls is not None else "http"
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    announce(f"console for site {options.site} ready on {scheme}://{shown}:{port}/ "
             f"(key {options.kid}, audit {options.state_dir / 'audit.sqlite'})")
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        with contextlib.suppress(Exception):
            link.stop()
        console.reader.close()
        console.audit.close()
    announce("console stopped")
    return 0
