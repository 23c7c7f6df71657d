"""Who may use the officer console: users with scrypt-hashed passwords, expiring sessions,
per-session CSRF tokens and a per-user limit on failed logins.

The users file is the site's (``python -m backend.console add-user``): JSON, mode 0600, one
entry per officer with a tier (``command`` may act on a held truck, ``view`` may only look),
a per-user random salt and the scrypt hash of the password. The console reads it again when
it changes, so a removed user or a changed tier or password ends that user's sessions.

A session lives in the console's memory only (a restart logs everyone out): its id is a
random token in an HttpOnly, SameSite=Strict cookie, and the server keeps only the token's
SHA-256. It ends after ``idle_s`` without a request and ``absolute_s`` after the login,
whichever comes first. Every POST must carry the session's CSRF token. Everything here takes
the time as a parameter; only ``UsersFile`` touches the disk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

from backend.errors import BackendSetupError

USERS_FORMAT = "gatelane.console-users/1"
TIERS = ("command", "view")
COOKIE = "gatelane_console"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 1024
# scrypt at 32 MiB and ~0.1 s a try; at most two run at once, so parallel logins cannot
# exhaust the host's memory.
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
SCRYPT_MAXMEM = 64 * 2**20
_HASHING = threading.BoundedSemaphore(2)
IDLE_S = 15 * 60
ABSOLUTE_S = 12 * 3600  # one shift
MAX_FAILURES = 5  # failed logins per user within FAILURE_WINDOW_S before the user is locked
FAILURE_WINDOW_S = 15 * 60
LOCKOUT_S = 5 * 60
_TRACKED_NAMES = 10_000  # failure counters kept, oldest forgotten first


@dataclass(frozen=True, slots=True)
class User:
    """One officer as the users file holds them."""

    name: str
    tier: str
    salt: bytes
    digest: bytes
    cost: Mapping[str, int]

    @property
    def may_act(self) -> bool:
        return self.tier == "command"

    def to_json(self, created: str) -> dict[str, Any]:
        return {"name": self.name, "tier": self.tier, "scrypt": dict(self.cost),
                "salt": self.salt.hex(), "hash": self.digest.hex(), "created": created}


def check_name(name: str) -> str:
    """The user name, or BackendSetupError saying what a name may be."""
    if not NAME_PATTERN.fullmatch(name):
        raise BackendSetupError(
            f"user name {name[:70]!r}: use 1 to 64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return name


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise BackendSetupError(f"tier {tier[:20]!r}: use one of {', '.join(TIERS)}")
    return tier


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_CHARS:
        raise BackendSetupError(
            f"the password has {len(password)} characters: use at least {PASSWORD_MIN_CHARS}")
    if len(password) > PASSWORD_MAX_CHARS:
        raise BackendSetupError(f"the password is longer than {PASSWORD_MAX_CHARS} characters")
    if not password.isprintable():
        raise BackendSetupError("the password holds control characters (a stray newline?)")
    return password


def _scrypt(password: str, salt: bytes, cost: Mapping[str, int]) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=cost["n"], r=cost["r"],
                              p=cost["p"], maxmem=SCRYPT_MAXMEM, dklen=32)


def make_user(name: str, tier: str, password: str, *,
              cost: Mapping[str, int] = SCRYPT) -> User:  # fmt: skip
    """A new user entry with a fresh 16-byte salt (checks name, tier and password)."""
    check_name(name)
    check_tier(tier)
    check_password(password)
    salt = secrets.token_bytes(16)
    return User(name, tier, salt, _scrypt(password, salt, cost), dict(cost))


def password_matches(user: User, password: str) -> bool:
    if len(password) > PASSWORD_MAX_CHARS:
        return False
    return hmac.compare_digest(_scrypt(password, user.salt, user.cost), user.digest)


# Checked against when the name is unknown, so that a wrong name costs what a wrong password
# does and the answer's timing does not tell which names exist.
_NOBODY = User("", "view", b"\0" * 16, b"\0" * 32, SCRYPT)


def parse_users(text: str, source: str) -> dict[str, User]:
    """The users of a users file's text; BackendSetupError naming ``source`` and the entry."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BackendSetupError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != USERS_FORMAT:
        raise BackendSetupError(f"{source}: not a console users file (format {USERS_FORMAT})")
    entries = doc.get("users")
    if not isinstance(entries, list):
        raise BackendSetupError(f"{source}: 'users' must be a list")
    users: dict[str, User] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: users[{index}]"
        try:
            name = check_name(str(entry["name"]))
            tier = check_tier(str(entry["tier"]))
            cost = {key: int(entry["scrypt"][key]) for key in ("n", "r", "p")}
            user = User(name, tier, bytes.fromhex(entry["salt"]), bytes.fromhex(entry["hash"]),
                        cost)
        except BackendSetupError as exc:
            raise BackendSetupError(f"{where}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendSetupError(
                f"{where}: needs name, tier, scrypt {{n, r, p}}, salt and hash ({exc!r})"
            ) from exc
        if len(user.digest) != 32 or len(user.salt) < 16:
            raise BackendSetupError(f"{where}: salt or hash has the wrong length")
        if name in users:
            raise BackendSetupError(f"{where}: {name} is listed twice")
        users[name] = user
    return users


class UsersFile:
    """The site's users file: read (again when it changed), and written atomically, 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        """The users as the file says now; the last good read if it became unreadable."""
        with self._lock:
            try:
                stat = self.path.stat()
            except OSError:
                return dict(self._users) if self._seen is not None else {}
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._seen:
                try:
                    self._users = self._read()
                except BackendSetupError:
                    if self._seen is None:
                        raise
                    return dict(self._users)  # half-written by hand: keep the last good list
                self._seen = stamp
            return dict(self._users)

    def load(self) -> dict[str, User]:
        """Read the file now; BackendSetupError if it is missing or unusable."""
        with self._lock:
            self._users = self._read()
            stat = self.path.stat()
            self._seen = (stat.st_mtime_ns, stat.st_size)
            return dict(self._users)

    def _read(self) -> dict[str, User]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise BackendSetupError(
                f"no users file at {self.path}: add an officer first with "
                f"python -m backend.console add-user NAME --tier command --users {self.path}"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise BackendSetupError(f"cannot read the users file {self.path}: {exc}") from exc
        return parse_users(text, str(self.path))

    def put(self, user: User, *, replace: bool, now: datetime) -> bool:
        """Add ``user`` (or replace the entry of that name when ``replace``); True if it was
        new. BackendSetupError if the name is taken and ``replace`` is false."""
        with self._lock:
            entries = self._entries()
            names = [str(e.get("name")) for e in entries]
            if user.name in names and not replace:
                raise BackendSetupError(
                    f"{user.name} is already in {self.path}: add --replace to set a new "
                    "password or tier")
            created = now.astimezone(UTC).isoformat(timespec="seconds")
            kept = [e for e in entries if e.get("name") != user.name]
            self._write([*kept, user.to_json(created)])
            return user.name not in names

    def remove(self, name: str) -> None:
        with self._lock:
            entries = self._entries()
            kept = [e for e in entries if e.get("name") != name]
            if len(kept) == len(entries):
                raise BackendSetupError(f"{name} is not in {self.path}")
            self._write(kept)

    def _entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        self._read()  # refuse to rewrite a file that is not a valid users file
        doc = json.loads(self.path.read_text(encoding="utf-8"))
        return [dict(entry) for entry in doc["users"]]

    def _write(self, entries: list[dict[str, Any]]) -> None:
        doc = {"format": USERS_FORMAT, "users": sorted(entries, key=lambda e: str(e["name"]))}
        data = (json.dumps(doc, indent=1) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, 0o600)
            file.write(data)
            file.flush()
            os.fsync(fd)
        os.replace(tmp, self.path)


@dataclass(slots=True)
class Session:
    """A logged-in officer: who, which tier, since when, and the CSRF token of their forms."""

    user: str
    tier: str
    digest: bytes  # the user's password hash at login: a new password ends the session
    started: float
    seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def may_act(self) -> bool:
        return self.tier == "command"


class Sessions:
    """Sessions by the SHA-256 of their token; idle and absolute limits in seconds."""

    def __init__(self, *, idle_s: float = IDLE_S, absolute_s: float = ABSOLUTE_S) -> None:
        if not 0 < idle_s <= absolute_s:
            raise BackendSetupError(
                f"session limits: need 0 < idle ({idle_s:g} s) <= absolute ({absolute_s:g} s)")
        self.idle_s, self.absolute_s = idle_s, absolute_s
        self._lock = threading.Lock()
        self._by_token: dict[bytes, Session] = {}

    def start(self, user: User, now: float) -> tuple[str, Session]:
        """A new session (a new token every login: a planted cookie is never promoted)."""
        token = secrets.token_urlsafe(32)
        session = Session(user.name, user.tier, user.digest, now, now)
        with self._lock:
            self._expire(now)
            self._by_token[_key(token)] = session
        return token, session

    def get(self, token: str, now: float, users: Mapping[str, User]) -> Session | None:
        """The live session of ``token`` (its idle clock restarted), or None: unknown,
        expired, or its user removed or changed since the login."""
        if not token:
            return None
        key = _key(token)
        with self._lock:
            session = self._by_token.get(key)
            if session is None:
                return None
            user = users.get(session.user)
            if (self._expired(session, now) or user is None or user.tier != session.tier
                    or not hmac.compare_digest(user.digest, session.digest)):
                del self._by_token[key]
                return None
            session.seen = now
            return session

    def end(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(_key(token), None)

    def count(self, now: float) -> int:
        with self._lock:
            self._expire(now)
            return len(self._by_token)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen > self.idle_s or now - session.started > self.absolute_s

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._by_token.items() if self._expired(s, now)]:
            del self._by_token[key]


class LoginLimiter:
    """Failed logins per user name: ``max_failures`` within ``window_s`` lock the name for
    ``lockout_s``; a success clears its count. Unknown names count too (no hint which exist)."""

    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S,
                 lockout_s: float = LOCKOUT_S) -> None:  # fmt: skip
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def wait_s(self, name: str, now: float) -> float:
        """Seconds until ``name`` may try again (0: now)."""
        with self._lock:
            return max(0.0, self._locked_until.get(name, 0.0) - now)

    def failed(self, name: str, now: float) -> None:
        with self._lock:
            recent = [t for t in self._failures.pop(name, []) if now - t < self.window_s]
            recent.append(now)
            self._failures[name] = recent
            while len(self._failures) > _TRACKED_NAMES:
                forgotten, _ = self._failures.popitem(last=False)
                self._locked_until.pop(forgotten, None)
            if len(recent) >= self.max_failures:
                self._locked_until[name] = now + self.lockout_s
                self._failures[name] = []

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
            self._locked_until.pop(name, None)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A login's outcome: a session and its token, or why not (``wait_s`` when locked)."""

    session: Session | None
    token: str = ""
    wait_s: float = 0.0


class ConsoleAuth:
    """The console's door: users, sessions, the login limiter and the cookie."""

    def __init__(self, users: UsersFile, sessions: Sessions, limiter: LoginLimiter, *,
                 secure_cookie: bool = False) -> None:  # fmt: skip
        self.users_file, self.sessions, self.limiter = users, sessions, limiter
        self._secure = secure_cookie

    def login(self, name: str, password: str, now: float) -> LoginResult:
        name = name.strip().lower()[:64]
        wait = self.limiter.wait_s(name, now)
        if wait > 0:
            return LoginResult(None, wait_s=wait)
        user = self.users_file.users().get(name)
        matches = password_matches(user or _NOBODY, password)
        if user is None or not matches:
            self.limiter.failed(name, now)
            return LoginResult(None, wait_s=self.limiter.wait_s(name, now))
        self.limiter.succeeded(name)
        token, session = self.sessions.start(user, now)
        return LoginResult(session, token)

    def session(self, cookie_header: str, now: float) -> Session | None:
        return self.sessions.get(cookie_value(cookie_header), now, self.users_file.users())

    def logout(self, cookie_header: str) -> None:
        self.sessions.end(cookie_value(cookie_header))

    def cookie(self, token: str) -> str:
        secure = "; Secure" if self._secure else ""
        return (f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; "
                f"Max-Age={int(self.sessions.absolute_s)}{secure}")

    def cleared_cookie(self) -> str:
        secure = "; Secure" if self._secure else ""
        return f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"


def csrf_ok(session: Session, supplied: str) -> bool:
    """Whether a form's CSRF field is this session's token (constant time)."""
    return bool(supplied) and hmac.compare_digest(supplied.encode(), session.csrf.encode())


def cookie_value(header: str) -> str:
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()
