"""The console's HTTP server against a real store (SQLite and PostgreSQL) and a real
Mosquitto: what each kind of visitor may see and do, what leaves for the lane (checked by the
lane's own verifier), and what the audit keeps. Lanes are the events they would have sent
(``console_events``)."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from paho.mqtt.client import Client, MQTTMessage

from backend.console import auth
from backend.console.audit import AuditLog
from backend.console.serve import ServeOptions, bind, build
from backend.sqlite_store import SqliteStore
from backend.store import EventStore
from backend.store_url import open_store
from backend.tests.console_events import SITE, LaneEvents, snapshot_jpeg
from edge_agent.telemetry.commands import CommandVerifier, KeyRole, TrustedKey
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from simulators.broker import MosquittoBroker

PASSWORD = "correct horse battery"
FAST = {"n": 2**10, "r": 8, "p": 1}
KID = "officer-console"


class Visitor:
    """One browser: its own cookie, plain HTTP, redirects not followed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None, *,
                origin: str | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if origin is not None:
            headers["Origin"] = origin
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        answer = {k.lower(): v for k, v in response.getheaders()}
        connection.close()
        if "set-cookie" in answer:
            self.cookie = answer["set-cookie"].split(";")[0]
        return response.status, answer, data

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path)

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)

    def post(self, path: str, form: dict[str, str], **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.request("POST", path, form, **kw)

    def login(self, name: str, password: str = PASSWORD) -> int:
        return self.post("/login", {"name": name, "password": password})[0]

    def csrf(self) -> str:
        _, _, body = self.get("/queue")
        marker = b'name="csrf"\nvalue="'
        start = body.index(marker) + len(marker)
        return body[start:body.index(b'"', start)].decode()


@dataclass
class Desk:
    port: int
    store: EventStore
    lanes: dict[str, LaneEvents]
    holds: dict[str, dict[str, Any]]
    key: Ed25519PrivateKey
    state_dir: Path
    commands: list[MQTTMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def visitor(self) -> Visitor:
        return Visitor(self.port)

    def sent(self) -> list[MQTTMessage]:
        with self.lock:
            return list(self.commands)

    def wait_sent(self, count: int) -> list[MQTTMessage]:
        deadline = time.monotonic() + 10
        while len(self.sent()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.sent()

    def lane_reads(self, message: MQTTMessage, tmp: Path) -> Any:
        """What the lane's own verifier makes of a command that reached it."""
        lane = message.topic.split("/")[3]
        trusted = [TrustedKey.from_raw(KID, KeyRole.COMMAND, self.key.public_key()
                                       .public_bytes_raw())]
        verifier = CommandVerifier(tmp / f"verifier-{time.monotonic_ns()}.sqlite", site=SITE,
                                   lane=lane, trusted=trusted)
        return verifier.verify(message.topic, bytes(message.payload), time.time())

    def audit(self) -> list[Any]:
        log = AuditLog(self.state_dir / "audit.sqlite")
        try:
            return log.entries()
        finally:
            log.close()


@pytest.fixture
def desk(tmp_path: Path, broker: MosquittoBroker, store_url: str) -> Iterator[Desk]:
    """The console on a store (SQLite, and PostgreSQL) holding three lanes' held trucks."""
    store = open_store(store_url)
    lanes = {name: LaneEvents(name) for name in ("exit-03", "exit-04", "exit-05")}
    holds = {name: lane.hold() for name, lane in lanes.items()}
    for lane in lanes.values():
        lane.store(store)
    users = auth.UsersFile(tmp_path / "console" / "users.json")
    for name, tier in (("officer-7", "command"), ("clerk-1", "view")):
        users.put(auth.make_user(name, tier, PASSWORD, cost=FAST), replace=False,
                  now=datetime.now(UTC))
    key = Ed25519PrivateKey.generate()
    options = ServeOptions(store=store_url, broker=broker.url, site=SITE, key=key,
                           kid=KID, users=users.path, host="127.0.0.1", port=0,
                           state_dir=tmp_path / "console")
    console, link = build(options)
    server = bind(console, options)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    result = Desk(int(server.server_address[1]), store, lanes, holds, key, options.state_dir)
    spy = _spy(broker.url, result)
    try:
        yield result
    finally:
        spy.disconnect()
        spy.loop_stop()
        server.shutdown()
        server.server_close()
        link.stop()
        console.reader.close()
        console.audit.close()
        store.close()


def _spy(url: str, desk: Desk) -> Client:
    """Everything published on any lane's command topics."""
    subscribed = threading.Event()
    client = make_client("command-spy", parse_broker_url(url))

    def on_message(_c: Client, _u: Any, message: MQTTMessage) -> None:
        with desk.lock:
            desk.commands.append(message)

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe("gate/v1/+/+/cmd/#", qos=1)
    address = parse_broker_url(url)
    client.connect(address.host, address.port)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def _action(desk: Desk, lane: str) -> tuple[str, str]:
    hold = desk.holds[lane]
    return f"/truck/{lane}/{hold['transit_id']}", hold["event_id"]


def test_an_officer_sees_the_held_trucks_of_every_lane_with_their_evidence(desk: Desk) -> None:
    officer = desk.visitor()
    assert officer.login("officer-7") == 303
    doc = officer.json("/api/queue")
    assert doc["user"] == "officer-7" and doc["tier"] == "command" and doc["broker"] is True
    assert sorted((t["lane"], t["transit_id"]) for t in doc["held"]) == sorted(
        (lane, hold["transit_id"]) for lane, hold in desk.holds.items())
    held = next(t for t in doc["held"] if t["lane"] == "exit-03")
    assert held["reasons"] == ["weight.declared_mismatch"] and held["plates_read"] == ["SU-B2002"]
    assert "challenge" not in json.dumps(doc)
    assert [lane["lane"] for lane in doc["lanes"]] == ["exit-03", "exit-04", "exit-05"]
    path, _ = _action(desk, "exit-03")
    status, headers, page = officer.get(path)
    assert status == 200 and b"weight.declared_mismatch" in page and b"Release" in page
    assert headers["content-security-policy"].startswith("default-src 'self'; script-src 'self'")
    assert b"<script>" not in page and b"onclick" not in page
    detail = officer.json(f"/api{path}")
    assert len(detail["trace"]) == 18 and detail["may_act"] is True
    status, headers, image = officer.get(f"/evidence/exit-03/{held['evidence'][0]}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert image == snapshot_jpeg()  # reassembled from the lane's chunks
    assert officer.get("/evidence/exit-03/no-such-ref")[0] == 404


def test_evidence_kept_by_the_ingest_worker_is_served_and_never_as_a_page(desk: Desk) -> None:
    with desk.store.write():
        desk.store.put_evidence("exit-04", "kept-1", "image/png", "0" * 64, b"\x89PNG-bytes", 1.0)
        desk.store.put_evidence("exit-04", "page-1", "text/html", "0" * 64,
                                b"<script>alert(1)</script>", 1.0)
    officer = desk.visitor()
    officer.login("clerk-1")
    status, headers, body = officer.get("/evidence/exit-04/kept-1")
    assert (status, headers["content-type"], body) == (200, "image/png", b"\x89PNG-bytes")
    status, headers, _ = officer.get("/evidence/exit-04/page-1")
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == 'attachment; filename="page-1"'


def test_a_logged_out_visitor_sees_nothing_and_sends_nothing(desk: Desk) -> None:
    stranger = desk.visitor()
    assert stranger.get("/queue")[:2][0] == 303
    assert stranger.get("/queue")[1]["location"] == "/login"
    assert stranger.get("/api/queue")[0] == 401
    hold_path, hold_id = _action(desk, "exit-03")
    assert stranger.get(f"/evidence/exit-03/{desk.holds['exit-03']['data']['snapshot']}")[0] \
        == 401
    status, _, body = stranger.post(f"{hold_path}/release", {"hold": hold_id, "csrf": "x"})
    assert status == 401 and b"nothing was sent" in body
    assert stranger.get("/healthz")[0] == 200
    time.sleep(0.3)  # a command would be at the spy by now
    assert desk.sent() == []


def test_a_view_tier_officer_sees_but_cannot_act(desk: Desk) -> None:
    clerk = desk.visitor()
    assert clerk.login("clerk-1") == 303
    hold_path, hold_id = _action(desk, "exit-03")
    status, _, page = clerk.get(hold_path)
    assert status == 200 and b"needs a command-tier officer" in page
    assert b'action="' + hold_path.encode() + b'/release"' not in page
    csrf = clerk.csrf()
    for verb in ("release", "refuse", "reweigh"):
        status, _, body = clerk.post(f"{hold_path}/{verb}",
                                     {"hold": hold_id, "csrf": csrf, "reason": "because"})
        assert status == 403 and b"view-tier" in body, body
    time.sleep(0.3)
    assert desk.sent() == []
    denied = [e for e in desk.audit() if e.outcome == "denied" and e.officer == "clerk-1"]
    assert sorted(e.action for e in denied) == ["refuse", "release", "reweigh"]


def test_a_form_without_the_sessions_token_or_from_another_origin_is_refused(desk: Desk) -> None:
    officer = desk.visitor()
    officer.login("officer-7")
    hold_path, hold_id = _action(desk, "exit-03")
    assert officer.post(f"{hold_path}/release", {"hold": hold_id})[0] == 403
    other = desk.visitor()
    other.login("officer-7")
    assert officer.post(f"{hold_path}/release", {"hold": hold_id, "csrf": other.csrf()})[0] \
        == 403
    status, _, _ = officer.post(f"{hold_path}/release", {"hold": hold_id,
                                                         "csrf": officer.csrf()},
                                origin="http://evil.example")
    assert status == 403
    time.sleep(0.3)
    assert desk.sent() == []


def test_a_release_is_signed_here_echoes_the_challenge_and_names_the_officer(
    desk: Desk, tmp_path: Path,
) -> None:
    officer = desk.visitor()
    officer.login("officer-7")
    hold_path, hold_id = _action(desk, "exit-03")
    csrf = officer.csrf()
    status, headers, _ = officer.post(f"{hold_path}/release", {"hold": hold_id, "csrf": csrf},
                                      origin=f"http://127.0.0.1:{desk.port}")
    assert status == 303 and headers["location"] == hold_path
    [message] = desk.wait_sent(1)
    assert message.topic == f"gate/v1/{SITE}/exit-03/cmd/remote_release"
    command = desk.lane_reads(message, tmp_path)
    hold = desk.holds["exit-03"]
    assert command.name == "remote_release" and command.issuer == "officer-7"
    assert command.kid == KID
    assert dict(command.args) == {"challenge": hold["data"]["challenge"],
                                  "transit_id": hold["transit_id"]}
    # Waiting for the lane: a second action is refused, nothing more leaves.
    [held] = [t for t in officer.json("/api/queue")["held"] if t["lane"] == "exit-03"]
    assert held["pending"]["officer"] == "officer-7" and held["pending"]["action"] == "release"
    status, _, body = officer.post(f"{hold_path}/refuse", {"hold": hold_id, "csrf": csrf,
                                                           "reason": "changed my mind"})
    assert status == 409 and b"waiting for the lane" in body
    # The lane answers and opens: the truck leaves the queue.
    lane = desk.lanes["exit-03"]
    lane.release(hold, cmd_id=command.cmd_id)
    lane.store(desk.store)
    time.sleep(0.3)  # the console's snapshot of the store is at most 0.25 s old
    assert all(t["lane"] != "exit-03" for t in officer.json("/api/queue")["held"])
    after = officer.json(f"/api{hold_path}")
    assert after["status"] == "released" and after["resolution"].startswith("released by officer-7")
    assert after["actions"][0]["answer"]["accepted"] is True
    status, _, body = officer.post(f"{hold_path}/release", {"hold": hold_id, "csrf": csrf})
    assert status == 409 and b"not held any more" in body
    assert len(desk.sent()) == 1
    [sent] = [e for e in desk.audit() if e.outcome == "sent"]
    assert (sent.officer, sent.tier, sent.action, sent.cmd_id) == (
        "officer-7", "command", "release", command.cmd_id)
    assert sent.lane == "exit-03" and sent.transit_id == hold["transit_id"] and sent.at > 0
    assert sent.client == "127.0.0.1"


def test_a_refusal_needs_a_reason_and_tells_the_lane(desk: Desk, tmp_path: Path) -> None:
    officer = desk.visitor()
    officer.login("officer-7")
    csrf = officer.csrf()
    hold_path, hold_id = _action(desk, "exit-04")
    status, _, body = officer.post(f"{hold_path}/refuse", {"hold": hold_id, "csrf": csrf,
                                                           "reason": "  "})
    assert status == 400 and b"a reason for the driver" in body
    status, _, _ = officer.post(f"{hold_path}/refuse", {
        "hold": hold_id, "csrf": csrf, "reason": "weight does not match the declaration"})
    assert status == 303
    [message] = desk.wait_sent(1)
    command = desk.lane_reads(message, tmp_path)
    assert command.name == "remote_refuse"
    assert command.args["reason"] == "weight does not match the declaration"
    assert command.args["challenge"] == desk.holds["exit-04"]["data"]["challenge"]
    reweigh_path, reweigh_id = _action(desk, "exit-05")
    assert officer.post(f"{reweigh_path}/reweigh", {"hold": reweigh_id, "csrf": csrf})[0] == 303
    messages = desk.wait_sent(2)
    reweigh = desk.lane_reads(messages[1], tmp_path)
    assert reweigh.name == "remote_reweigh" and "reason" not in reweigh.args
    assert reweigh.issuer == "officer-7"


def test_a_hold_decided_again_since_the_page_was_loaded_is_not_acted_on(desk: Desk) -> None:
    officer = desk.visitor()
    officer.login("officer-7")
    csrf = officer.csrf()
    hold_path, old_hold = _action(desk, "exit-03")
    lane = desk.lanes["exit-03"]
    lane.hold(desk.holds["exit-03"]["transit_id"], reasons=("weight.frozen",), arrive=False)
    lane.store(desk.store)
    time.sleep(0.3)
    status, _, body = officer.post(f"{hold_path}/release", {"hold": old_hold, "csrf": csrf})
    assert status == 409 and b"decided this truck again" in body
    assert officer.get("/truck/exit-03/0000000000000bad")[0] == 404
    time.sleep(0.3)
    assert desk.sent() == []


def test_logins_are_limited_per_officer_and_audited(desk: Desk) -> None:
    visitor = desk.visitor()
    for _ in range(auth.MAX_FAILURES - 1):
        assert visitor.login("officer-7", "not the password") == 401
    status, _, page = visitor.post("/login", {"name": "officer-7", "password": "nope nope"})
    assert status == 429 and b"Too many failed logins for officer-7" in page
    assert visitor.login("officer-7") == 429  # the right password waits too
    assert visitor.login("clerk-1") == 303
    entries = desk.audit()
    # Five wrong passwords and the right one while locked.
    assert [e.action for e in entries if e.officer == "officer-7"].count("login_failed") == 6
    assert any(e.action == "login" and e.officer == "clerk-1" for e in entries)


def test_logout_ends_the_session_and_needs_the_token(desk: Desk) -> None:
    officer = desk.visitor()
    officer.login("officer-7")
    cookie = officer.cookie
    assert officer.post("/logout", {})[0] == 403
    status, headers, _ = officer.post("/logout", {"csrf": officer.csrf()})
    assert status == 303 and "Max-Age=0" in headers["set-cookie"]
    officer.cookie = cookie  # an old cookie is worth nothing now
    assert officer.get("/api/queue")[0] == 401
    audit = desk.audit()
    assert audit[0].action == "logout" and audit[0].officer == "officer-7"


def test_the_audit_page_and_the_lanes_page_are_served(desk: Desk) -> None:
    officer = desk.visitor()
    officer.login("officer-7")
    status, _, page = officer.get("/audit")
    assert status == 200 and b"officer-7" in page and b"login" in page
    doc = officer.json("/api/lanes")
    assert [lane["held"] for lane in doc["lanes"]] == [1, 1, 1]
    assert officer.get("/lanes")[0] == 200
    status, _, js = officer.get("/static/console.js")
    assert status == 200 and b"textContent" in js
    status, headers, _ = officer.get("/static/vendor/uplot/uPlot.iife.min.js")
    assert status == 200 and headers["cache-control"] == "max-age=3600"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "console")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "console.crt", tmp_path / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_over_https_the_cookie_is_secure_and_a_plain_client_holds_up_no_one(
    tmp_path: Path, broker: MosquittoBroker,
) -> None:
    store_path = tmp_path / "backend.sqlite"
    SqliteStore(store_path).close()
    users = auth.UsersFile(tmp_path / "users.json")
    users.put(auth.make_user("officer-7", "command", PASSWORD, cost=FAST), replace=False,
              now=datetime.now(UTC))
    cert, key = _self_signed(tmp_path)
    options = ServeOptions(store=str(store_path), broker=broker.url, site=SITE,
                           key=Ed25519PrivateKey.generate(), kid=KID, users=users.path,
                           host="127.0.0.1", port=0, state_dir=tmp_path, page_tls=(cert, key))
    console, link = build(options)
    server = bind(console, options)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    port = int(server.server_address[1])
    try:
        silent = socket.create_connection(("127.0.0.1", port))  # never says a word
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with contextlib.suppress(OSError, http.client.HTTPException):
            plain.request("GET", "/healthz")
            plain.getresponse()
        context = ssl.create_default_context(cafile=str(cert))
        secure = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
        body = urlencode({"name": "officer-7", "password": PASSWORD})
        secure.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"https://127.0.0.1:{port}"})
        response = secure.getresponse()
        response.read()
        assert response.status == 303
        cookie = response.getheader("Set-Cookie") or ""
        assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert response.getheader("Strict-Transport-Security") == "max-age=31536000"
        silent.close()
    finally:
        server.shutdown()
        server.server_close()
        link.stop()
        console.reader.close()
        console.audit.close()
