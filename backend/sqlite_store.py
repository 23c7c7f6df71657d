"""The backend's event store (SQLite standing in for Kafka and the database behind it).

Events are stored once by ``event_id`` and ordered per lane and outbox ``epoch`` by ``seq``
(a lane whose outbox file was replaced starts a new epoch at seq 1); each lane's watermark
is the highest *contiguous* seq stored (or declared lost by a ``dead_letter`` event), over
every worker sharing the file. Several ingest workers may share one database file: the store,
not the worker, is then the authority, and every write runs under SQLite's write lock
(``write()``: ``BEGIN IMMEDIATE``), so workers see each other's rows and watermarks.

Not thread-safe by itself: its owner serialises calls (``IngestWorker`` holds its own lock).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.side_tables import SIDE_SQL, SideTables
from backend.store import AckRow, Stored, contiguous_upto
from edge_agent.records.chain import ChainFollower, ChainState

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    site TEXT NOT NULL, lane TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, payload TEXT NOT NULL, received_at REAL NOT NULL,
    epoch TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_by_lane ON events (lane, epoch, seq);
CREATE TABLE IF NOT EXISTS lanes (
    lane TEXT PRIMARY KEY, site TEXT NOT NULL, upto_seq INTEGER NOT NULL, boot_id INTEGER NOT NULL,
    epoch TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS retired_epochs (
    lane TEXT NOT NULL, epoch TEXT NOT NULL, PRIMARY KEY (lane, epoch)
);
CREATE TABLE IF NOT EXISTS skipped (
    lane TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (lane, seq)
);
CREATE TABLE IF NOT EXISTS acks (lane TEXT PRIMARY KEY, upto_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS record_chains (
    lane TEXT PRIMARY KEY, epoch TEXT NOT NULL, fed_upto INTEGER NOT NULL, state TEXT NOT NULL
);
"""
# lanes.upto_seq: highest contiguous seq stored (or skipped by a dead letter), over all workers.
# skipped: seqs a dead_letter event declared lost for good. acks: the watermark last published.
# lanes.epoch: the outbox the watermark counts for; retired_epochs: replaced outboxes.
# record_chains: each lane's transaction log as followed so far (edge_agent/records/chain.py):
# checked up to the event seq fed_upto of the outbox epoch, in the order the lane sent it.


class SqliteStore(SideTables):
    """One SQLite store, in memory or in a file shared by several workers."""

    _db: sqlite3.Connection

    def __init__(self, db_path: Path | None = None) -> None:
        self._db = sqlite3.connect(
            str(db_path) if db_path else ":memory:",
            check_same_thread=False,
            isolation_level=None,
            timeout=30.0,  # another worker may hold the write lock for an ack round trip
        )
        if db_path:
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        self._db.executescript(_SCHEMA_SQL)
        self._db.executescript(SIDE_SQL.format(real="REAL", int="INTEGER", blob="BLOB"))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction. IMMEDIATE takes the write lock before reading, so workers
        sharing the file see each other's rows and watermarks (a deferred read would race)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def add(self, site: str, event: dict[str, Any], payload: str, received_at: float) -> Stored:
        """Offer one decoded envelope; call ``advance`` for its lane once a batch is in."""
        lane, seq, epoch = event["lane"], event["seq"], str(event.get("epoch", ""))
        current = self._epoch(lane)
        retired = None
        if current is not None and epoch != current:  # rare: only after an outbox replacement
            retired = self._db.execute(
                "SELECT 1 FROM retired_epochs WHERE lane = ? AND epoch = ?", (lane, epoch)
            ).fetchone()
            if retired is None:
                self._start_epoch(lane, current, epoch)
        held = self._db.execute(
            "SELECT event_id FROM events WHERE lane = ? AND epoch = ? AND seq = ?",
            (lane, epoch, seq),
        ).fetchone()
        below = retired is None and seq <= self.upto(lane)
        if held is not None or below:
            same = held is None or held[0] == event["event_id"]
            return Stored.DUPLICATE if same else Stored.SEQ_CONFLICT
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event["event_id"], site, lane, seq, event["type"], payload, received_at, epoch),
        ).rowcount
        if not inserted:  # the same event_id under another seq: never overwrite
            return Stored.ID_CONFLICT
        if retired is not None:
            return Stored.NEW  # a replaced outbox's straggler: kept, but it moves no watermark
        self._db.execute(
            "INSERT INTO lanes VALUES (?, ?, 0, ?, ?) "
            "ON CONFLICT (lane) DO UPDATE SET boot_id = excluded.boot_id",
            (lane, site, event["boot_id"], epoch),
        )
        if event["type"] == "dead_letter" and isinstance(event["data"].get("seq"), int):
            self._db.execute(  # the refused seq will never come
                "INSERT OR IGNORE INTO skipped VALUES (?, ?)", (lane, event["data"]["seq"])
            )
        return Stored.NEW

    def _epoch(self, lane: str) -> str | None:
        row = self._db.execute("SELECT epoch FROM lanes WHERE lane = ?", (lane,)).fetchone()
        return None if row is None else str(row[0])

    def _start_epoch(self, lane: str, old: str, new: str) -> None:
        """The lane's outbox was replaced: its seqs start again, under a new watermark."""
        self._db.execute("INSERT OR IGNORE INTO retired_epochs VALUES (?, ?)", (lane, old))
        self._db.execute(
            "UPDATE lanes SET epoch = ?, upto_seq = 0 WHERE lane = ?", (new, lane)
        )
        self._db.execute("DELETE FROM skipped WHERE lane = ?", (lane,))
        self._db.execute("DELETE FROM acks WHERE lane = ?", (lane,))

    def learn_watermark(self, site: str, lane: str, upto: int, epoch: str = "") -> None:
        """A watermark someone already published (a retained ack): continue from it."""
        current = self._epoch(lane)
        if current is not None and current != epoch:
            return  # for an outbox this lane no longer uses (or not yet seen here)
        if upto <= self.upto(lane):
            return
        self._db.execute(
            "INSERT INTO lanes VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT (lane) DO UPDATE SET upto_seq = excluded.upto_seq",
            (lane, site, upto, epoch),
        )
        self.record_ack(lane, upto)  # someone published it: no need to again
        self.advance(lane)

    def record_ack(self, lane: str, upto: int) -> None:
        self._db.execute(
            "INSERT INTO acks VALUES (?, ?) ON CONFLICT (lane) DO UPDATE "
            "SET upto_seq = max(upto_seq, excluded.upto_seq)",
            (lane, upto),
        )

    def upto(self, lane: str) -> int:
        row = self._db.execute("SELECT upto_seq FROM lanes WHERE lane = ?", (lane,)).fetchone()
        return int(row[0]) if row else 0

    def advance(self, lane: str) -> None:
        """Move the lane's watermark over every contiguous seq any worker has stored."""
        upto = start = self.upto(lane)
        skipped = {
            seq
            for (seq,) in self._db.execute(
                "SELECT seq FROM skipped WHERE lane = ? AND seq > ?", (lane, upto)
            )
        }
        rows = self._db.execute(
            "SELECT seq FROM events WHERE lane = ? AND epoch = ? AND seq > ? ORDER BY seq",
            (lane, self._epoch(lane) or "", upto),
        )
        upto = contiguous_upto(start, (int(seq) for (seq,) in rows), skipped)
        rows.close()
        if upto > start:
            self._db.execute("UPDATE lanes SET upto_seq = ? WHERE lane = ?", (upto, lane))

    def follow_records(self, lane: str) -> None:
        """Check the lane's transaction records that arrived up to its watermark, in the order
        it sent them: each links to the one before (call after ``advance``)."""
        epoch, upto = self._epoch(lane) or "", self.upto(lane)
        row = self._db.execute(
            "SELECT epoch, fed_upto, state FROM record_chains WHERE lane = ?", (lane,)
        ).fetchone()
        state = ChainState() if row is None else ChainState.from_doc(json.loads(row[2]))
        fed = row[1] if row is not None and row[0] == epoch else 0  # a new outbox: seq 1 on
        if row is not None and upto <= fed:
            return
        follower = ChainFollower(state, lambda *place: self._record_held(lane, *place))
        rows = self._db.execute(
            "SELECT payload FROM events WHERE lane = ? AND epoch = ? AND seq > ? AND seq <= ? "
            "AND type = 'transaction_record' ORDER BY seq", (lane, epoch, fed, upto),
        ).fetchall()
        for (payload,) in rows:
            data = json.loads(payload).get("data") or {}
            segment = data.get("segment")
            follower.add(segment if isinstance(segment, int) else -1, data.get("record"))
        self._db.execute(
            "INSERT INTO record_chains VALUES (?, ?, ?, ?) ON CONFLICT (lane) DO UPDATE SET "
            "epoch = excluded.epoch, fed_upto = excluded.fed_upto, state = excluded.state",
            (lane, epoch, max(upto, fed), json.dumps(state.to_doc())),
        )

    def _record_held(self, lane: str, segment: int, seq: int, digest: str) -> bool:
        """A transaction record stored twice: the lane resent one it had sent before."""
        (count,) = self._db.execute(
            "SELECT count(*) FROM events WHERE lane = ? AND type = 'transaction_record' "
            "AND json_extract(payload, '$.data.segment') = ? "
            "AND json_extract(payload, '$.data.record.seq') = ? "
            "AND json_extract(payload, '$.data.record.hash') = ?", (lane, segment, seq, digest),
        ).fetchone()
        return bool(count > 1)

    def record_chain(self, lane: str) -> dict[str, Any] | None:
        """The lane's transaction log as followed: position, counts and the first break."""
        row = self._db.execute(
            "SELECT state FROM record_chains WHERE lane = ?", (lane,)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def gaps(self, lane: str) -> list[int]:
        """Seqs missing between the watermark and the highest seq stored."""
        upto = self.upto(lane)
        epoch = self._epoch(lane) or ""
        present = {
            seq
            for (seq,) in self._db.execute(
                "SELECT seq FROM events WHERE lane = ? AND epoch = ? AND seq > ?",
                (lane, epoch, upto),
            )
        } | {
            seq
            for (seq,) in self._db.execute(
                "SELECT seq FROM skipped WHERE lane = ? AND seq > ?", (lane, upto)
            )
        }
        if not present:
            return []
        return [s for s in range(upto + 1, max(present)) if s not in present]

    def ack_rows(self) -> list[AckRow]:
        """Every lane with a watermark above 0, with the watermark last published for it."""
        rows = self._db.execute(
            "SELECT l.lane, l.site, l.upto_seq, l.boot_id, coalesce(a.upto_seq, 0), l.epoch "
            "FROM lanes l LEFT JOIN acks a ON a.lane = l.lane WHERE l.upto_seq > 0"
        ).fetchall()
        return [AckRow(*row) for row in rows]

    def events(
        self, lane: str | None = None, types: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """Stored envelopes, per lane in seq order, lanes sorted by name; ``types``
        keeps only those event types."""
        where, args = [], []
        if lane is not None:
            where.append("lane = ?")
            args.append(lane)
        if types is not None:
            kinds = list(types)
            where.append(f"type IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.execute(
            f"SELECT payload FROM events {clause}ORDER BY lane, seq, received_at", args
        )
        return [json.loads(payload) for (payload,) in rows]

    def evidence_chunks(self, lane: str, ref: str) -> list[dict[str, Any]]:
        """The data of every stored evidence event of ``ref`` from ``lane``."""
        rows = self._db.execute(
            "SELECT json_extract(payload, '$.data') FROM events WHERE lane = ? "
            "AND type = 'evidence' AND json_extract(payload, '$.data.ref') = ?", (lane, ref),
        ).fetchall()
        return [json.loads(data) for (data,) in rows]

    def prune(self, keep_days: int, now: float) -> int:
        """Delete events that arrived before the last ``keep_days`` days (UTC days, as
        PostgreSQL drops its day partitions); the number deleted. Watermarks stay."""
        oldest_kept = (int(now) // 86_400 - (keep_days - 1)) * 86_400
        return int(self._db.execute(
            "DELETE FROM events WHERE received_at < ?", (oldest_kept,)
        ).rowcount)

    def stored(self) -> Iterator[tuple[str, int, str]]:
        """(lane, seq, payload) of every stored event, any worker's."""
        yield from self._db.execute("SELECT lane, seq, payload FROM events")
