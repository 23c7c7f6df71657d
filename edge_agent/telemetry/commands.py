"""Signed commands from the backend: verified end to end, executed at most once.

A broker ACL is not enough to open a barrier: every command is signed (Ed25519) by a key the
lane trusts, names its audience, expires, and carries a nonce. The wire form (JSON):

    {"claims": {"cmd_id", "name", "site", "lane", "iat", "exp", "nonce", "issuer", "args"},
     "kid": "...", "sig": "<base64url Ed25519 signature>"}

The signature covers ``SIGNING_CONTEXT + canonical_json(claims)`` (sorted keys, no spaces,
UTF-8, integers only: for such values this equals RFC 8785 JCS).

Checks, in order: format -> key known and not revoked -> signature -> name matches the topic
-> key tier allowed for that name -> audience (site, lane) -> lifetime -> time window (against
the wall clock when it is synced; always against the newest ``iat`` already accepted, a lower
bound of real time that a Pi without RTC still has) -> arguments (their shape, then the
lane's own checks) -> version newer than the last applied (trust_update, revocations,
config) -> cmd_id and nonce never seen. A command that passes is recorded on disk *before*
it is returned, so a crash, a QoS1 redelivery or a replay can never run it twice.
``remote_release`` must carry the challenge the lane published with the hold; the lane
machine compares it. Key tiers: ``command`` keys sign remote_release, config, site_uses and
lane_mode; ``root``
keys (from local configuration only) sign trust_update and revocations.

The versioned commands are desired state: the verifier keeps, in the same transaction as the
version, what each has applied so far (``applied(kind)``), so the lane rebuilds its pass trust
list, pass revocations and remote settings from it after a restart. Arguments: command_args.py.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.errors import ConfigError, LocalProtocolError
from edge_agent.telemetry.command_args import (
    LISTS,
    MAX_INTEGER,
    VERSIONED,
    ArgsCheck,
    b64url_decode,
    structure_problems,
)
from edge_agent.telemetry.topics import LaneTopics, TopicKind, parse_topic

SIGNING_CONTEXT = b"gate.cmd/1\n"
MAX_PAYLOAD_BYTES = 256 * 1024  # room for a few thousand pass revocations
ECHO_CHARS = 32  # how much of an unverified field a refusal may repeat
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


class KeyRole(Enum):
    COMMAND = "command"
    ROOT = "root"


REQUIRED_ROLE = {
    "remote_release": KeyRole.COMMAND,
    "remote_refuse": KeyRole.COMMAND,  # the officer refuses a held truck: it backs off
    "remote_reweigh": KeyRole.COMMAND,  # the officer asks a held truck to be weighed again
    "config": KeyRole.COMMAND,
    "site_uses": KeyRole.COMMAND,  # the backend's view of which passes the site used
    "lane_mode": KeyRole.COMMAND,  # in service / out of service (modes.py: what else is local)
    "trust_update": KeyRole.ROOT,
    "revocations": KeyRole.ROOT,
}


@dataclass(frozen=True, slots=True)
class TrustedKey:
    kid: str
    role: KeyRole
    public_key: Ed25519PublicKey

    @classmethod
    def from_raw(cls, kid: str, role: KeyRole | str, raw: bytes | str) -> TrustedKey:
        """From 32 raw bytes (or their base64url text)."""
        data = _b64decode(raw) if isinstance(raw, str) else raw
        if len(data) != 32:
            raise ConfigError(f"key {kid!r}: an Ed25519 public key has 32 bytes, got {len(data)}")
        return cls(kid, KeyRole(role), Ed25519PublicKey.from_public_bytes(data))


@dataclass(frozen=True, slots=True)
class Command:
    """A verified command, already recorded as executed-at-most-once."""

    cmd_id: str
    name: str
    issuer: str
    kid: str
    iat: int
    exp: int
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a command was refused; ``code`` is stable (cmd.*), ``cmd_id`` when it was readable.

    ``problems`` lists every argument that was wrong, for the officer or operator to fix.
    Before the signature is verified every field is attacker-chosen: ``cmd_id``, ``name``
    and ``reason`` then hold at most a short, escaped prefix of what was sent.
    """

    code: str
    reason: str
    cmd_id: str | None = None
    name: str | None = None
    problems: tuple[str, ...] = ()
    authenticated: bool = False  # the signature was good: a trusted key holder sent it


@dataclass(frozen=True, slots=True)
class Applied:
    """What a versioned command has applied so far: its version and its merged arguments."""

    version: int
    body: Mapping[str, Any]


class _Refused(Exception):
    def __init__(self, code: str, reason: str, problems: Iterable[str] = ()) -> None:
        super().__init__(reason)
        self.code, self.reason, self.problems = code, reason, tuple(problems)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; floats are refused (they have no single spelling)."""
    _refuse_floats(value)
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"command claims are not canonical JSON: {exc}") from exc
    return text.encode()


def sign_command(private_key: Ed25519PrivateKey, kid: str, claims: Mapping[str, Any]) -> bytes:
    """The wire payload for ``claims`` signed with ``private_key`` (backend, tools, tests)."""
    signature = private_key.sign(SIGNING_CONTEXT + canonical_json(dict(claims)))
    message = {"claims": dict(claims), "kid": kid, "sig": _b64encode(signature)}
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    """base64url of the raw public key, as trust_update and configuration files carry it."""
    return _b64encode(private_key.public_key().public_bytes_raw())


_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS seen (
    cmd_id TEXT PRIMARY KEY, nonce TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    exp INTEGER NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    kind TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS time_floor (one INTEGER PRIMARY KEY CHECK (one = 1), iat INTEGER);
"""


class CommandVerifier:
    """Verifies command payloads for one lane; its state (seen ids, applied state) is on disk.

    ``checks`` maps a command name to the lane's own check of its arguments (for example the
    ranges of remote settings); a command with problems is refused and nothing is recorded.
    """

    def __init__(
        self,
        path: Path,
        *,
        site: str,
        lane: str,
        trusted: Iterable[TrustedKey],
        max_skew_s: float = 30.0,
        max_lifetime_s: float = 3600.0,
        checks: Mapping[str, ArgsCheck] | None = None,
    ) -> None:
        self.topics = LaneTopics(site, lane)
        self._configured = {key.kid: key for key in trusted}
        self._max_skew_s = max_skew_s
        self._max_lifetime_s = max_lifetime_s
        self._checks = dict(checks or {})
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA_SQL)
        self._key_cache = self._load_keys()
        row = self._db.execute("SELECT iat FROM time_floor").fetchone()
        # The newest iat of any accepted command: real time is at least this, synced or not.
        self._time_floor = int(row[0]) if row else 0

    def verify(
        self, topic: str, payload: bytes, now: float, *, clock_synced: bool = True
    ) -> Command | Rejection:
        """Check ``payload`` received on ``topic``; ``now`` is wall-clock UTC seconds."""
        claims: Mapping[str, Any] = {}
        authenticated = False
        try:
            claims, kid, signature = _parse(payload)
            with self._lock:
                key = self._authenticate(claims, kid, signature)
                authenticated = True
                return self._verify(topic, claims, key, now, clock_synced)
        except _Refused as refused:
            return self._rejection(refused.code, refused.reason, claims, authenticated,
                                   refused.problems)
        except sqlite3.Error as exc:  # the verifier's own state file failed: refuse, stay up
            return self._rejection("cmd.storage_fault", f"command state not writable: {exc}",
                                   claims, authenticated)

    @staticmethod
    def _rejection(
        code: str,
        reason: str,
        claims: Mapping[str, Any],
        authenticated: bool,
        problems: tuple[str, ...] = (),
    ) -> Rejection:
        cmd_id = claims.get("cmd_id") if isinstance(claims.get("cmd_id"), str) else None
        name = claims.get("name") if isinstance(claims.get("name"), str) else None
        if not authenticated:
            cmd_id = None if cmd_id is None else echo(cmd_id)
            name = None if name is None else echo(name)
            reason, problems = reason[:200], problems[:5]
        return Rejection(code, reason, cmd_id, name, problems, authenticated)

    @property
    def time_floor(self) -> int:
        """A lower bound of real time: the newest accepted iat, never past its clock + skew."""
        return self._time_floor

    def trusted_keys(self) -> dict[str, KeyRole]:
        with self._lock:
            return {kid: key.role for kid, key in self._key_cache.items()}

    def applied(self, kind: str) -> Applied | None:
        """The state ``kind`` (trust_update, revocations, config) has applied, if any."""
        with self._lock:
            return self._applied(self._db, kind)

    def version(self, kind: str) -> int:
        """The version in force for ``kind`` (0 = none yet), without reading its body."""
        with self._lock:
            row = self._db.execute("SELECT version FROM applied WHERE kind = ?", (kind,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals -------------------------------------------------------------------------

    def _authenticate(
        self, claims: Mapping[str, Any], kid: str, signature: bytes
    ) -> TrustedKey:
        """A known key signed exactly these claims; until then every field is unverified."""
        key = self._key_cache.get(kid)
        if key is None:
            raise _Refused("cmd.unknown_key", f"key {echo(kid)!r} is not trusted (or was revoked)")
        try:
            key.public_key.verify(signature, SIGNING_CONTEXT + canonical_json(dict(claims)))
        except (InvalidSignature, LocalProtocolError):
            raise _Refused("cmd.bad_signature", "signature does not match the claims") from None
        return key

    def _verify(
        self,
        topic: str,
        claims: Mapping[str, Any],
        key: TrustedKey,
        now: float,
        clock_synced: bool,
    ) -> Command:
        name = _text(claims, "name")
        parsed = parse_topic(topic)
        if parsed is None or parsed.kind is not TopicKind.COMMAND or parsed.name != name:
            raise _Refused("cmd.wrong_topic", f"command {name!r} arrived on {topic!r}")
        if name not in REQUIRED_ROLE:
            raise _Refused("cmd.unknown_command", f"unknown command {name!r}")
        if key.role is not REQUIRED_ROLE[name]:
            raise _Refused("cmd.key_not_allowed", f"a {key.role.value} key cannot sign {name}")
        if _text(claims, "lane") != self.topics.lane or _text(claims, "site") != self.topics.site:
            raise _Refused("cmd.wrong_lane", "command addressed to another site or lane")
        if (parsed.site, parsed.lane) != (self.topics.site, self.topics.lane):
            raise _Refused("cmd.wrong_lane", f"topic {topic!r} is not this lane's")
        iat, exp = _integer(claims, "iat"), _integer(claims, "exp")
        if not 0 < exp - iat <= self._max_lifetime_s:
            raise _Refused("cmd.bad_lifetime", f"exp - iat must be 1..{self._max_lifetime_s:.0f} s")
        if clock_synced and now < iat - self._max_skew_s:
            raise _Refused("cmd.not_yet_valid", "issued in the future")
        if clock_synced and now > exp + self._max_skew_s:
            raise _Refused("cmd.expired", "command expired")
        if clock_synced and self._time_floor > now + self._max_skew_s:
            self._time_floor = int(now)  # set while the clock was wrong: the synced clock wins
        if exp + self._max_skew_s < self._time_floor:
            # Holds without a synced clock too: a newer command was already accepted.
            raise _Refused("cmd.expired", "command expired before one already accepted was issued")
        cmd_id, nonce = _text(claims, "cmd_id"), _text(claims, "nonce")
        issuer = _text(claims, "issuer")
        args = claims.get("args", {})
        if not isinstance(args, dict):
            raise _Refused("cmd.bad_format", "args must be an object")
        problems = structure_problems(name, args)
        if problems:
            raise _Refused("cmd.bad_format", "; ".join(problems), problems)
        check = self._checks.get(name)
        problems = check(args) if check is not None else []
        if problems:
            raise _Refused("cmd.invalid_args", "; ".join(problems), problems)
        self._record(name, cmd_id, nonce, iat, exp, args, now, clock_synced)
        return Command(cmd_id, name, issuer, key.kid, iat, exp, args)

    def _record(
        self,
        name: str,
        cmd_id: str,
        nonce: str,
        iat: int,
        exp: int,
        args: Mapping[str, Any],
        now: float,
        clock_synced: bool,
    ) -> None:
        """Version, replay and state changes in one transaction: all or nothing."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if clock_synced:  # an unsynced clock could prune nonces that are still live
                db.execute("DELETE FROM seen WHERE exp < ?", (int(now - self._max_skew_s),))
            if db.execute(
                "SELECT 1 FROM seen WHERE cmd_id = ? OR nonce = ?", (cmd_id, nonce)
            ).fetchone():
                raise _Refused("cmd.replayed", f"command {cmd_id!r} or its nonce was seen before")
            if name in VERSIONED:
                version = args["version"]
                before = self._applied(db, name)
                if before is not None and version <= before.version:
                    raise _Refused(
                        "cmd.stale_version", f"{name} version {version} <= {before.version}"
                    )
                body = dict(before.body) if before else {}
                body.update((k, v) for k, v in args.items() if k != "version")
                db.execute(
                    "INSERT OR REPLACE INTO applied VALUES (?, ?, ?)",
                    (name, version, json.dumps(body, sort_keys=True)),
                )
            db.execute(
                "INSERT INTO seen VALUES (?, ?, ?, ?, ?)", (cmd_id, nonce, name, exp, now)
            )
            # Real time is at least the iat of a command already accepted; but an unsynced
            # clock cannot vouch for an iat ahead of it, so never raise the floor past
            # now + skew (one command from the future must not lock out every later one).
            floor = max(self._time_floor, min(iat, int(now + self._max_skew_s)))
            db.execute("INSERT OR REPLACE INTO time_floor VALUES (1, ?)", (floor,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._time_floor = floor
        if name in LISTS:
            self._key_cache = self._load_keys()

    @staticmethod
    def _applied(db: sqlite3.Connection, kind: str) -> Applied | None:
        row = db.execute("SELECT version, body FROM applied WHERE kind = ?", (kind,)).fetchone()
        return Applied(int(row[0]), json.loads(row[1])) if row else None

    def _load_keys(self) -> dict[str, TrustedKey]:
        """Configured keys, plus pushed command keys, minus revoked ones (never a root key)."""
        keys = dict(self._configured)
        update = self._applied(self._db, "trust_update")
        for entry in update.body.get("command_keys", []) if update else []:
            if entry["kid"] not in keys:  # an update never overrides a locally configured key
                keys[entry["kid"]] = TrustedKey.from_raw(
                    entry["kid"], KeyRole.COMMAND, entry["public_key"]
                )
        revoked = self._applied(self._db, "revocations")
        for kid in revoked.body.get("command_kids", []) if revoked else []:
            if kid in keys and keys[kid].role is not KeyRole.ROOT:
                del keys[kid]  # root keys change only with the local configuration
        return keys


def _parse(payload: bytes) -> tuple[Mapping[str, Any], str, bytes]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _Refused("cmd.bad_format", f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError also covers integers past Python's digit limit; RecursionError, nesting.
        raise _Refused("cmd.bad_format", "payload is not UTF-8 JSON within limits") from None
    if not isinstance(message, dict) or not isinstance(message.get("claims"), dict):
        raise _Refused("cmd.bad_format", "payload must be an object with claims, kid, sig")
    kid, sig = message.get("kid"), message.get("sig")
    if not isinstance(kid, str) or not isinstance(sig, str):
        raise _Refused("cmd.bad_format", "kid and sig must be strings")
    try:
        signature = _b64decode(sig)
    except ValueError:
        raise _Refused("cmd.bad_format", "sig is not base64url") from None
    return message["claims"], kid, signature


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _Refused("cmd.bad_format", f"claim {name!r} must be a non-empty string")
    return value


def _integer(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INTEGER:
        raise _Refused("cmd.bad_format", f"claim {name!r} must be an integer in 0..{MAX_INTEGER}")
    return value


def echo(text: str) -> str:
    """At most ``ECHO_CHARS`` of an unverified field, with anything but [A-Za-z0-9._:-]
    replaced: a refusal must not carry an attacker's bytes into logs, the outbox or a page."""
    short = "".join(c if c in _SAFE else "?" for c in text[:ECHO_CHARS])
    return short + ("..." if len(text) > ECHO_CHARS else "")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise LocalProtocolError("floats are not allowed in signed claims")
    if isinstance(value, dict):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_floats(item)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    data = b64url_decode(text)
    if data is None:
        raise ValueError(f"not base64url: {text[:16]!r}")
    return data
