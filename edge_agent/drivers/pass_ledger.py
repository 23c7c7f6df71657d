"""The single-use pass ledger: which pass ``cti`` values this site has already consumed.

SQLite in WAL mode with ``synchronous=FULL``, so a recorded use survives a crash or power cut
the moment ``mark_used`` returns. Keyed by ``cti`` only (never by signature bytes, which are
malleable for ECDSA). Rows are kept until the pass has expired, after which the pass is refused
as expired anyway and the row can be purged.

A pass is single-use across the whole site: the backend tells each lane, by signed desired
state, which passes its other lanes used (``learn_site_uses``, keyed by the pass's revocation
hash), and ``is_used`` / ``mark_used`` count those too. Every error is a DeviceError: the lane
then holds the truck (fail closed), it never opens on a use it could not check or record.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_agent.drivers.state_files import open_state_db, salvage_rows
from edge_agent.errors import DeviceError
from edge_agent.protocols.gp1 import revocation_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_pass (
    cti     BLOB PRIMARY KEY,
    exp     INTEGER NOT NULL,
    used_at REAL NOT NULL,
    lane    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS site_used (
    hash    BLOB PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (one INTEGER PRIMARY KEY CHECK (one = 1), at REAL NOT NULL);
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
            self._db.executescript(_SCHEMA)
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

    @classmethod
    def open_checked(cls, path: Path) -> tuple[PassLedger, Path | None, str]:
        """Open, quarantining a damaged file; what is still readable in it is carried over.

        Returns ``(ledger, quarantined file or None, what was wrong)``.
        """
        ledger, moved, problem = open_state_db(path, cls)
        if moved is not None:
            used = salvage_rows(moved, "SELECT cti, exp, used_at, lane FROM used_pass")
            site = salvage_rows(moved, "SELECT hash, seen_at FROM site_used")
            with ledger._lock:
                ledger._db.executemany("INSERT OR IGNORE INTO used_pass VALUES (?, ?, ?, ?)", used)
                ledger._db.executemany("INSERT OR IGNORE INTO site_used VALUES (?, ?)", site)
            problem += f" ({len(used)} uses and {len(site)} site uses salvaged)"
        return ledger, moved, problem

    def is_used(self, cti: bytes) -> bool:
        """Used here, or (as the backend told this lane) at another lane of the site."""
        return bool(
            self._execute(
                "SELECT 1 FROM used_pass WHERE cti = ? UNION ALL"
                " SELECT 1 FROM site_used WHERE hash = ?",
                (bytes(cti), revocation_hash(bytes(cti))),
            )[1]
        )

    def mark_used(self, cti: bytes, *, exp: int, now: float, lane: str = "") -> bool:
        """Record a use; False (and nothing changed) when this cti was used before, here or
        at another lane of the site. Raises DeviceError when the use could not be recorded."""
        if self._execute(
            "SELECT 1 FROM site_used WHERE hash = ?", (revocation_hash(bytes(cti)),)
        )[1]:
            return False
        changed, _ = self._execute(
            "INSERT OR IGNORE INTO used_pass (cti, exp, used_at, lane) VALUES (?, ?, ?, ?)",
            (bytes(cti), int(exp), float(now), lane),
        )
        return changed == 1

    def learn_site_uses(self, hashes: Iterable[bytes], *, now: float) -> int:
        """Passes the backend saw used at other lanes of the site; returns how many are new."""
        rows = [(bytes(h), float(now)) for h in hashes]
        with self._lock:
            try:
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO site_used VALUES (?, ?)", rows)
                return self._db.total_changes - before
            except sqlite3.Error as exc:
                raise DeviceError(f"pass ledger {self.path}: {exc}") from exc

    def probe(self, now: float) -> None:
        """One durable write: DeviceError while the ledger cannot record a use."""
        self._execute("INSERT OR REPLACE INTO probe VALUES (1, ?)", (float(now),))

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
