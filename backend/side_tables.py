"""What the store keeps beside the events, the same in SQLite and PostgreSQL: quarantined
messages (refused with their reason, never dropped silently), reassembled evidence, and each
lane's latest state and health documents.

Both stores mix this in; the SQL is written once with ``?`` placeholders, which PostgreSQL's
store turns into ``%s``. Each store creates the tables in its own dialect (``SIDE_SQL``).
"""

from __future__ import annotations

import json
from typing import Any

MAX_QUARANTINED_BYTES = 64 * 1024  # what is kept of one refused message, for the officer

SIDE_SQL = """
CREATE TABLE IF NOT EXISTS quarantine (
    received_at {real} NOT NULL, topic TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
    size {int} NOT NULL, payload {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    lane TEXT NOT NULL, ref TEXT NOT NULL, media_type TEXT NOT NULL, sha256 TEXT NOT NULL,
    data {blob} NOT NULL, stored_at {real} NOT NULL, PRIMARY KEY (lane, ref)
);
CREATE TABLE IF NOT EXISTS lane_docs (
    lane TEXT NOT NULL, kind TEXT NOT NULL, site TEXT NOT NULL, doc TEXT NOT NULL,
    at {real} NOT NULL, PRIMARY KEY (lane, kind)
);
"""


class SideTables:
    """Quarantine, evidence and lane documents over a DB-API connection ``self._db``."""

    _db: Any  # the store's connection: sqlite3 or psycopg
    _mark = "?"

    def _side(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self._db.execute(sql.replace("?", self._mark), args)

    def quarantine(
        self, received_at: float, topic: str, kind: str, reason: str, payload: bytes
    ) -> None:
        """Keep a refused message with why (``kind``: malformed, schema, foreign_topic,
        oversized, evidence); its first 64 KiB only."""
        self._side(
            "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
            (received_at, topic[:512], kind, reason[:2000], len(payload),
             payload[:MAX_QUARANTINED_BYTES]),
        )

    def skip(self, lane: str, seq: int) -> None:
        """Count ``seq`` of ``lane`` as settled without an event (kept in quarantine)."""
        self._side("INSERT INTO skipped VALUES (?, ?) ON CONFLICT DO NOTHING", (lane, seq))

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest refused messages, newest first."""
        rows = self._side(
            "SELECT received_at, topic, kind, reason, size, payload FROM quarantine "
            "ORDER BY received_at DESC LIMIT ?", (limit,),
        ).fetchall()
        return [
            {"received_at": r[0], "topic": r[1], "kind": r[2], "reason": r[3], "size": r[4],
             "payload": bytes(r[5]).decode(errors="replace")}
            for r in rows
        ]

    def quarantine_counts(self) -> dict[str, int]:
        rows = self._side("SELECT kind, count(*) FROM quarantine GROUP BY kind").fetchall()
        return {str(kind): int(count) for kind, count in rows}

    def put_evidence(
        self, lane: str, ref: str, media_type: str, sha256: str, data: bytes, at: float
    ) -> None:
        self._side(
            "INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (lane, ref) DO NOTHING",
            (lane, ref, media_type, sha256, data, at),
        )

    def evidence(self, lane: str, ref: str) -> tuple[str, bytes] | None:
        """(media type, bytes) of a reassembled, hash-checked evidence file."""
        row = self._side(
            "SELECT media_type, data FROM evidence WHERE lane = ? AND ref = ?", (lane, ref)
        ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    def put_lane_doc(self, site: str, lane: str, kind: str, doc: dict[str, Any], at: float) -> None:
        """The lane's latest ``kind`` document (its retained state, its last health)."""
        self._side(
            "INSERT INTO lane_docs VALUES (?, ?, ?, ?, ?) ON CONFLICT (lane, kind) DO UPDATE "
            "SET site = excluded.site, doc = excluded.doc, at = excluded.at",
            (lane, kind, site, json.dumps(doc), at),
        )

    def lane_docs(self) -> dict[str, dict[str, Any]]:
        """lane -> {kind: document, "site": site} for every lane that sent one."""
        docs: dict[str, dict[str, Any]] = {}
        for lane, kind, site, doc in self._side(
            "SELECT lane, kind, site, doc FROM lane_docs ORDER BY lane"
        ).fetchall():
            docs.setdefault(lane, {"site": site})[kind] = json.loads(doc)
        return docs
