"""The single-use pass ledger: which pass ``cti`` values this site has already consumed.

SQLite in WAL mode with ``synchronous=FULL``, so a recorded use survives a crash or power cut
the moment ``mark_used`` returns. Keyed by ``cti`` only (never by signature bytes, which are
malleable for ECDSA). Rows are kept until the pass has expired, after which the pass is refused
as expired anyway and the row can be purged.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from edge_agent.errors import DeviceError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_pass (
    cti     BLOB PRIMARY KEY,
    exp     INTEGER NOT NULL,
    used_at REAL NOT NULL,
    lane    TEXT NOT NULL DEFAULT ''
)
"""


class PassLedger:
    """Durable set of used pass ids; safe to share between threads of one process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise DeviceError(f"pass ledger {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> tuple[int, list[Any]]:
        """Run one statement; (rows changed, rows returned), fetched under the lock."""
        with self._lock:
            try:
                cur = self._db.execute(sql, params)
                return cur.rowcount, cur.fetchall()
            except sqlite3.Error as exc:  # disk full, I/O error, corrupted file
                raise DeviceError(f"pass ledger {self.path}: {exc}") from exc

    def is_used(self, cti: bytes) -> bool:
        return bool(self._execute("SELECT 1 FROM used_pass WHERE cti = ?", (bytes(cti),))[1])

    def mark_used(self, cti: bytes, *, exp: int, now: float, lane: str = "") -> bool:
        """Record a use; False (and nothing changed) when this cti was used before."""
        changed, _ = self._execute(
            "INSERT OR IGNORE INTO used_pass (cti, exp, used_at, lane) VALUES (?, ?, ?, ?)",
            (bytes(cti), int(exp), float(now), lane),
        )
        return changed == 1

    def purge_expired(self, now: float, *, grace_s: float = 86400.0) -> int:
        """Drop rows whose pass expired more than ``grace_s`` ago; returns how many."""
        return self._execute("DELETE FROM used_pass WHERE exp < ?", (now - grace_s,))[0]

    def count(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM used_pass")[1][0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PassLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
