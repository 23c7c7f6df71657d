"""The lane page's token: needed on every request once the page listens beyond loopback.

A request carries it as ``Authorization: Bearer TOKEN`` (scripts, ``lanectl``) or as the session
cookie the login form sets (a browser): HttpOnly, so the page's scripts never see it, and
SameSite=Strict, so another site cannot make the browser use it. The cookie holds an HMAC of
the token, not the token. Every comparison takes constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Protocol

from edge_agent.errors import ConfigError

TOKEN_MIN_CHARS = 16
COOKIE = "gatelane_session"
SESSION_S = 12 * 3600  # one shift


def read_token(path: Path | None) -> str | None:
    """The token in ``[status] token_file`` (None when unset); a clear error if unusable."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"[status] token_file = {str(path)!r}: cannot read it ({reason})"
                          ) from exc
    if len(token) < TOKEN_MIN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(
            f"[status] token_file = {str(path)!r}: the token must be one word of at least "
            f"{TOKEN_MIN_CHARS} characters (make one with: openssl rand -hex 16 > {path})")
    return token


class Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


class PageAuth:
    """``PageAuth(None)`` lets everything through (a loopback-only page)."""

    def __init__(self, token: str | None) -> None:
        self._token = None if token is None else token.encode()
        self._session = None if self._token is None else hmac.new(
            self._token, b"gatelane lane page session", hashlib.sha256).hexdigest().encode()

    @property
    def required(self) -> bool:
        return self._token is not None

    def allows(self, headers: Headers) -> bool:
        """Whether the request's bearer token or session cookie is the right one."""
        if self._token is None or self._session is None:
            return True
        authorization = headers.get("Authorization") or ""
        scheme, _, supplied = authorization.partition(" ")
        if scheme.lower() == "bearer" and _same(supplied.strip(), self._token):
            return True
        return _same(_cookie(headers.get("Cookie") or ""), self._session)

    def login(self, supplied: str) -> str | None:
        """The ``Set-Cookie`` value for a right token; None for a wrong one."""
        if self._token is None or self._session is None or not _same(supplied, self._token):
            return None
        return (f"{COOKIE}={self._session.decode()}; HttpOnly; SameSite=Strict; Path=/; "
                f"Max-Age={SESSION_S}")

    @staticmethod
    def logout() -> str:
        return f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"


def _same(supplied: str, expected: bytes) -> bool:
    return hmac.compare_digest(supplied.encode("utf-8", "replace"), expected)


def _cookie(header: str) -> str:
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""
