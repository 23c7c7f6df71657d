"""The console's audit trail: every officer action and every login, with who and when.

One SQLite file in the console's state directory (``audit.sqlite``), append-only from the
console's side: a row is written before the command leaves (``sent``), or instead of it when
the console refused (``denied``) or the broker did not take it (``failed``). Logins, failed
logins and logouts are kept too. The lane keeps its own record of what it ran (the
``released`` and ``remote_verdict`` events name the officer, ``cmd_result`` the outcome).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.console.desk import SentAction
from backend.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    officer TEXT NOT NULL,
    tier TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT '',
    lane TEXT NOT NULL DEFAULT '',
    transit_id TEXT NOT NULL DEFAULT '',
    hold_event_id TEXT NOT NULL DEFAULT '',
    cmd_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_truck ON audit (lane, transit_id);
"""
ACTIONS = ("release", "refuse", "reweigh")
OUTCOMES = ("sent", "denied", "failed", "ok")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit trail."""

    at: float
    officer: str
    tier: str
    action: str  # release | refuse | reweigh | login | login_failed | logout
    outcome: str  # sent | denied | failed | ok
    site: str = ""
    lane: str = ""
    transit_id: str = ""
    hold_event_id: str = ""
    cmd_id: str = ""
    reason: str = ""
    detail: str = ""
    client: str = ""  # the browser's address as the console saw it

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMNS}


_COLUMNS = ("at", "officer", "tier", "action", "outcome", "site", "lane", "transit_id",
            "hold_event_id", "cmd_id", "reason", "detail", "client")


class AuditLog:
    """``AuditLog(state_dir / "audit.sqlite")``; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an action is on disk before it leaves
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the console's audit file {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, entry: AuditEntry) -> None:
        values = [getattr(entry, name) for name in _COLUMNS]
        with self._lock:
            self._db.execute(
                f"INSERT INTO audit ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)

    def entries(self, *, limit: int = 200, lane: str | None = None,
                transit_id: str | None = None) -> list[AuditEntry]:  # fmt: skip
        """The newest entries first; only one truck's with ``lane`` and ``transit_id``."""
        where, args = "", []
        if lane is not None and transit_id is not None:
            where, args = "WHERE lane = ? AND transit_id = ? ", [lane, transit_id]
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM audit {where}ORDER BY id DESC LIMIT ?",
                [*args, limit]).fetchall()
        return [AuditEntry(*row) for row in rows]

    def sent(self, since: float = 0.0) -> list[SentAction]:
        """The commands officers sent from ``since`` on (not those the broker did not take),
        for the desk to match with the lanes' answers."""
        with self._lock:
            rows = self._db.execute(
                "SELECT action, officer, at, lane, transit_id, cmd_id, reason FROM audit "
                "WHERE outcome = 'sent' AND at >= ? AND cmd_id NOT IN "
                "(SELECT cmd_id FROM audit WHERE outcome = 'failed') ORDER BY id",
                (since,)).fetchall()
        return [SentAction(*row) for row in rows]
