"""The console's HTTP server: the officer's pages, their JSON, the evidence, and the actions.

    GET  /login, POST /login, POST /logout        the door (``auth.py``)
    GET  /queue          held trucks across the site's lanes (live: polls /api/queue)
    GET  /truck/L/T      one held truck: reasons, numbers, snapshots, trace, pass, reads
    POST /truck/L/T/release | refuse | reweigh    an action (``actions.py``)
    GET  /lanes          each lane's mode, health, backlog and last event (polls /api/lanes)
    GET  /audit          the last actions and logins
    GET  /evidence/L/REF a snapshot, reassembled from the lane's evidence events
    GET  /healthz        "ok" (no login): the console runs

Every page but the login form needs a session; every POST its CSRF token, and a browser's
``Origin`` must be the console's own. Everything is served from the package (the plot
library is the lane page's vendored uPlot): no inline script, nothing from another origin.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from backend.console import desk, pages
from backend.console.actions import OfficerActions
from backend.console.audit import AuditEntry, AuditLog
from backend.console.auth import ConsoleAuth, Session, csrf_ok
from backend.console.link import StoreReader
from backend.store import EventStore
from edge_agent.errors import RemoteProtocolError
from edge_agent.telemetry.evidence_chunks import assemble_evidence

log = logging.getLogger("backend.console")

MAX_FORM_BYTES = 8192
SNAPSHOT_TTL_S = 0.25  # many browsers polling share one read of the store
SENT_WINDOW_S = 7 * 86_400  # how far back the audit's commands are matched with answers
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_TYPES = {".html": _HTML, ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_IMAGES = frozenset({"image/jpeg", "image/png", "image/webp"})
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_PUBLIC = frozenset({"/static/console.css", "/static/icon.svg"})


def static_files() -> dict[str, tuple[bytes, str]]:
    """The console's files, plus the lane page's icon and vendored uPlot (one copy, its
    licence beside it in ``edge_agent/web/static/vendor/uplot``)."""
    files: dict[str, tuple[bytes, str]] = {}
    lane_static = resources.files("edge_agent.web") / "static"
    files["/static/icon.svg"] = ((lane_static / "icon.svg").read_bytes(), _TYPES[".svg"])
    uplot = lane_static / "vendor" / "uplot"
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        kind = _TYPES["." + name.rpartition(".")[2]]
        files[f"/static/vendor/uplot/{name}"] = ((uplot / name).read_bytes(), kind)
    for child in (resources.files("backend.console") / "static").iterdir():
        suffix = "." + child.name.rpartition(".")[2]
        if child.is_file() and suffix in _TYPES:
            files[f"/static/{child.name}"] = (child.read_bytes(), _TYPES[suffix])
    return files


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of the store: the desk's events and each lane's facts."""

    events: list[dict[str, Any]]
    facts: dict[str, desk.LaneFacts]
    sent: list[desk.SentAction]


class Console:
    """What the handler serves from: the store, the door, the audit and the actions."""

    def __init__(self, *, site: str, reader: StoreReader, auth: ConsoleAuth, audit: AuditLog,
                 actions: OfficerActions, link_up: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time, https: bool = False) -> None:  # fmt: skip
        self.site, self.reader, self.auth, self.audit = site, reader, auth, audit
        self.actions, self.link_up, self.clock, self.https = actions, link_up, clock, https
        self.static = static_files()
        self._lock = threading.Lock()
        self._acting = threading.Lock()
        self._snapshot: tuple[float, Snapshot] | None = None

    def snapshot(self, *, fresh: bool = False) -> Snapshot:
        """The store as read at most ``SNAPSHOT_TTL_S`` ago (``fresh``: now)."""
        now = time.monotonic()
        with self._lock:
            if not fresh and self._snapshot is not None and \
                    now - self._snapshot[0] < SNAPSHOT_TTL_S:
                return self._snapshot[1]
            snap = Snapshot(self.reader.read(_read_events), self.reader.read(_read_facts),
                            self.audit.sent(self.clock() - SENT_WINDOW_S))
            self._snapshot = (now, snap)
            return snap

    def queue(self) -> dict[str, Any]:
        snap, now = self.snapshot(), self.clock()
        held = desk.held_queue(snap.events, site=self.site, sent=snap.sent, now=now)
        lanes = desk.lanes(snap.events, snap.facts, site=self.site, now=now)
        return {"site": self.site, "now": now, "broker": self.link_up(),
                "held": [view.to_json(now) for view in held],
                "lanes": [lane.to_json() for lane in lanes]}

    def lanes(self) -> dict[str, Any]:
        snap, now = self.snapshot(), self.clock()
        lanes = desk.lanes(snap.events, snap.facts, site=self.site, now=now)
        return {"site": self.site, "now": now, "broker": self.link_up(),
                "lanes": [lane.to_json() for lane in lanes]}

    def truck(self, lane: str, transit_id: str, *, fresh: bool = False) -> desk.TruckView | None:
        snap = self.snapshot(fresh=fresh)
        return desk.truck(snap.events, lane, transit_id, site=self.site, sent=snap.sent,
                          now=self.clock())

    def evidence(self, lane: str, ref: str) -> tuple[str, bytes] | None:
        """A reassembled, hash-checked evidence file; from its chunks if the ingest worker has
        not kept the file (yet)."""
        found = self.reader.read(lambda store: store.evidence(lane, ref))
        if found is not None:
            return found
        chunks = self.reader.read(lambda store: store.evidence_chunks(lane, ref))
        try:
            data = assemble_evidence(chunks, ref)
        except (RemoteProtocolError, ValueError, KeyError, TypeError):
            return None
        if data is None:
            return None
        return str(chunks[0].get("media_type", "")), data

    def act(self, session: Session, lane: str, transit_id: str, verb: str,
            form: dict[str, str], client: str) -> tuple[int, str, str | None]:  # fmt: skip
        # One action at a time: a second officer's click sees the first as waiting.
        with self._acting:
            view = self.truck(lane, transit_id, fresh=True)
            result = self.actions.act(
                session, view, verb, lane=lane, transit_id=transit_id,
                hold_event_id=form.get("hold", ""), reason=form.get("reason", ""),
                client=client, now=self.clock())
            if result.sent:
                self.snapshot(fresh=True)  # the page shows the action as waiting at once
        return result.status, result.message, result.cmd_id


def _read_events(store: EventStore) -> list[dict[str, Any]]:
    return store.events(types=desk.DESK_TYPES)


def _read_facts(store: EventStore) -> dict[str, desk.LaneFacts]:
    docs = store.lane_docs()
    lanes = set(docs) | {row.lane for row in store.ack_rows()}
    return {
        lane: desk.LaneFacts(
            site=docs.get(lane, {}).get("site"), watermark=store.upto(lane),
            gaps=tuple(store.gaps(lane)), state=docs.get(lane, {}).get("state"),
            health=docs.get(lane, {}).get("health"), chain=store.record_chain(lane))
        for lane in lanes
    }


def handler_for(console: Console) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gatelane-console"
        sys_version = ""

        def do_GET(self) -> None:
            self._guarded(self._get)

        def do_POST(self) -> None:
            self._guarded(self._post)

        def _guarded(self, route: Callable[[str], None]) -> None:
            path = urlsplit(self.path).path
            try:
                route(path)
            except (BrokenPipeError, ConnectionResetError):
                return
            except Exception as exc:  # containment: one bad request must not stop the desk
                log.warning("console %s %s failed: %r", self.command, path, exc)
                self._send(500, b"internal error\n", _TEXT)

        # -- GET ----------------------------------------------------------------------------
        def _get(self, path: str) -> None:
            now = console.clock()
            if path == "/healthz":
                self._send(200, b"ok\n", _TEXT)
                return
            if path in _PUBLIC:
                body, kind = console.static[path]
                self._send(200, body, kind, cache="no-cache")
                return
            session = console.auth.session(self.headers.get("Cookie") or "", now)
            if path == "/login":
                if session is not None:
                    self._redirect("/queue")
                else:
                    self._send(200, pages.login_page(console.site), _HTML)
                return
            if session is None:
                self._logged_out(path)
                return
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if path in ("/", "/queue"):
                self._redirect("/queue") if path == "/" else self._send(
                    200, pages.queue_page(console.site, session), _HTML)
            elif path == "/lanes":
                self._send(200, pages.lanes_page(console.site, session), _HTML)
            elif path == "/audit":
                self._send(200, pages.audit_page(console.site, session,
                                                 console.audit.entries()), _HTML)
            elif path in console.static:
                body, kind = console.static[path]
                cache = "max-age=3600" if "/vendor/" in path else "no-cache"
                self._send(200, body, kind, cache=cache)
            elif path == "/api/queue":
                self._json({**console.queue(), "user": session.user, "tier": session.tier})
            elif path == "/api/lanes":
                self._json(console.lanes())
            elif len(parts) == 3 and parts[0] == "truck" and _ids(parts[1:]):
                view = console.truck(parts[1], parts[2])
                if view is None:
                    self._not_found(session, "The console knows no hold of that truck.")
                else:
                    self._send(200, pages.truck_page(console.site, session, view, now=now),
                               _HTML)
            elif len(parts) == 4 and parts[:2] == ["api", "truck"] and _ids(parts[2:]):
                view = console.truck(parts[2], parts[3])
                if view is None:
                    self._json({"error": "no hold of that truck"}, 404)
                else:
                    self._json({**view.to_json(now, detail=True), "may_act": session.may_act})
            elif len(parts) == 3 and parts[0] == "evidence" and _ids(parts[1:]):
                self._evidence(parts[1], parts[2])
            else:
                self._not_found(session, f"Nothing here: {path[:100]}")

        def _evidence(self, lane: str, ref: str) -> None:
            found = console.evidence(lane, ref)
            if found is None:
                self._send(404, b"no such evidence (or not all of it has arrived yet)\n", _TEXT)
                return
            media_type, data = found
            self.send_response(200)
            if media_type in _IMAGES:
                self.send_header("Cache-Control", "private, max-age=3600")
                self._end(data, media_type)
            else:  # never rendered by the browser: whatever a lane sent stays a download
                self.send_header("Cache-Control", "private, no-store")
                self.send_header("Content-Disposition", f'attachment; filename="{ref}"')
                self._end(data, "application/octet-stream")

        # -- POST ---------------------------------------------------------------------------
        def _post(self, path: str) -> None:
            now = console.clock()
            form = self._form()
            if form is None:
                return
            if not self._same_origin():
                self._send(403, b"refused: the form came from another site\n", _TEXT)
                return
            if path == "/login":
                self._login(form, now)
                return
            session = console.auth.session(self.headers.get("Cookie") or "", now)
            if session is None:
                self._send(401, pages.message_page(
                    console.site, None, "Not logged in",
                    "Log in first: nothing was sent.", "/login"), _HTML)
                return
            if not csrf_ok(session, form.get("csrf", "")):
                self._send(403, pages.message_page(
                    console.site, session, "Form refused",
                    "This form is out of date or did not come from the console: reload the "
                    "page and try again. Nothing was sent.", "/queue"), _HTML)
                return
            if path == "/logout":
                console.auth.logout(self.headers.get("Cookie") or "")
                console.audit.add(AuditEntry(now, session.user, session.tier, "logout", "ok",
                                             client=self._client()))
                self._redirect("/login", cookie=console.auth.cleared_cookie())
                return
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if len(parts) == 4 and parts[0] == "truck" and _ids(parts[1:3]):
                lane, transit_id, verb = parts[1], parts[2], parts[3]
                status, message, cmd_id = console.act(session, lane, transit_id, verb, form,
                                                      self._client())
                back = pages.truck_path(lane, transit_id)
                if cmd_id is not None:
                    self._redirect(back)
                else:
                    self._send(status, pages.message_page(
                        console.site, session, "Not sent", message, back), _HTML)
                return
            self._send(404, b"not found\n", _TEXT)

        def _login(self, form: dict[str, str], now: float) -> None:
            name = form.get("name", "")
            result = console.auth.login(name, form.get("password", ""), now)
            shown = name.strip().lower()[:64]
            if result.session is None:
                known = shown in console.auth.users_file.users()
                if known:  # attempts on names that exist are worth a row; noise is not
                    console.audit.add(AuditEntry(now, shown, "", "login_failed", "denied",
                                                 client=self._client()))
                if result.wait_s > 0:
                    minutes = max(1, round(result.wait_s / 60))
                    message = (f"Too many failed logins for {shown}: try again in about "
                               f"{minutes} min.")
                    self._send(429, pages.login_page(console.site, message, shown), _HTML)
                else:
                    self._send(401, pages.login_page(
                        console.site, "Wrong name or password.", shown), _HTML)
                return
            session = result.session
            console.audit.add(AuditEntry(now, session.user, session.tier, "login", "ok",
                                         client=self._client()))
            self._redirect("/queue", cookie=console.auth.cookie(result.token))

        def _form(self) -> dict[str, str] | None:
            length_text = self.headers.get("Content-Length") or "0"
            if not length_text.isdigit():
                self._send(400, b"Content-Length is not a number\n", _TEXT)
                return None
            length = int(length_text)
            if length > MAX_FORM_BYTES:
                self._send(413, b"form too large\n", _TEXT)
                return None
            fields = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            return {key: values[0] for key, values in fields.items()}

        def _same_origin(self) -> bool:
            origin = self.headers.get("Origin")
            if origin is None:
                return True  # not a browser's cross-site form: the CSRF token decides
            scheme = "https" if console.https else "http"
            return origin == f"{scheme}://{self.headers.get('Host') or ''}"

        def _client(self) -> str:
            return str(self.client_address[0])

        # -- answers ------------------------------------------------------------------------
        def _logged_out(self, path: str) -> None:
            if path.startswith(("/api/", "/evidence/")):
                self._json({"error": "log in at /login"}, 401)
            else:
                self._redirect("/login")

        def _not_found(self, session: Session, message: str) -> None:
            self._send(404, pages.message_page(console.site, session, "Not found", message,
                                               "/queue"), _HTML)

        def _redirect(self, location: str, *, cookie: str | None = None) -> None:
            self.send_response(303)
            if cookie is not None:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Location", location)
            self.send_header("Cache-Control", "no-store")
            self._end(b"", _TEXT)

        def _json(self, doc: dict[str, Any], code: int = 200) -> None:
            self._send(code, json.dumps(doc, default=str).encode(), "application/json")

        def _send(self, code: int, body: bytes, kind: str, *, cache: str = "no-store") -> None:
            self.send_response(code)
            self.send_header("Cache-Control", cache)
            self._end(body, kind)

        def _end(self, body: bytes, kind: str) -> None:
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", _CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "same-origin")  # Origin stays on our forms
            if console.https:
                self.send_header("Strict-Transport-Security", "max-age=31536000")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # polls every second: the audit keeps what matters

    return Handler


def _ids(values: list[str]) -> bool:
    return all(_ID.fullmatch(value) for value in values)
