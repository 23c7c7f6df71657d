"""The event store in PostgreSQL: the same semantics as ``sqlite_store.py``, for a site.

Events are stored once by ``event_id`` and ordered per lane and outbox ``epoch`` by ``seq``;
each lane's watermark is the highest contiguous seq stored (or declared lost by a
``dead_letter``), over every worker writing the database. ``write()`` is one transaction
that first takes a database-wide advisory lock, as SQLite's ``BEGIN IMMEDIATE`` takes the
write lock: workers see each other's rows and watermarks, and a published ack never goes
backwards. Queries outside ``write()`` read what any worker committed.

Payloads are ``jsonb`` in ``events``, partitioned by the day they arrived (UTC; a partition
is made when its first event comes), so the retention job drops whole days. A primary key
of a partitioned table must contain the partition key, so exactly-once lives in
``event_keys``: one small row per event (id, lane, epoch, seq), unique by id and by
(lane, epoch, seq), pruned with its day.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from backend.errors import StoreError
from backend.side_tables import SIDE_SQL, SideTables
from backend.store import AckRow, Stored, contiguous_upto
from edge_agent.records.chain import ChainFollower, ChainState

_WRITE_LOCK = 0x6A7E1A4E  # the advisory lock every writer takes first

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS event_keys (
    event_id TEXT PRIMARY KEY, lane TEXT NOT NULL, epoch TEXT NOT NULL, seq BIGINT NOT NULL,
    day DATE NOT NULL, UNIQUE (lane, epoch, seq)
);
CREATE INDEX IF NOT EXISTS event_keys_by_day ON event_keys (day);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT NOT NULL, site TEXT NOT NULL, lane TEXT NOT NULL, seq BIGINT NOT NULL,
    type TEXT NOT NULL, payload JSONB NOT NULL, received_at DOUBLE PRECISION NOT NULL,
    epoch TEXT NOT NULL DEFAULT '', day DATE NOT NULL
) PARTITION BY RANGE (day);
CREATE INDEX IF NOT EXISTS events_by_lane ON events (lane, epoch, seq);
CREATE TABLE IF NOT EXISTS lanes (
    lane TEXT PRIMARY KEY, site TEXT NOT NULL, upto_seq BIGINT NOT NULL, boot_id BIGINT NOT NULL,
    epoch TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS retired_epochs (
    lane TEXT NOT NULL, epoch TEXT NOT NULL, PRIMARY KEY (lane, epoch)
);
CREATE TABLE IF NOT EXISTS skipped (
    lane TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (lane, seq)
);
CREATE TABLE IF NOT EXISTS acks (lane TEXT PRIMARY KEY, upto_seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS record_chains (
    lane TEXT PRIMARY KEY, epoch TEXT NOT NULL, fed_upto BIGINT NOT NULL, state JSONB NOT NULL
);
"""
# The tables and their meaning are those of sqlite_store.py; event_keys is the exactly-once
# index that the partitioned events table cannot carry itself.


def _day(epoch_s: float) -> dt.date:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).date()


def _partition(day: dt.date) -> str:
    return f"events_{day:%Y%m%d}"


class PgStore(SideTables):
    """One connection to a PostgreSQL event store shared by any number of workers."""

    _db: psycopg.Connection[Any]
    _mark = "%s"

    def __init__(self, url: str) -> None:
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the event store {_safe(url)}: {exc}") from exc
        self._days: set[dt.date] = set()
        # lane -> (epoch, upto_seq, boot_id) as read in the current write(); None outside one
        self._lanes: dict[str, tuple[str, int, int] | None] | None = None
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            self._db.execute(_SCHEMA_SQL)
            self._db.execute(
                SIDE_SQL.format(real="DOUBLE PRECISION", int="BIGINT", blob="BYTEA")
            )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction under the database-wide writer lock."""
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            self._lanes = {}  # under the lock nobody else changes them: read each once
            try:
                yield
            finally:
                self._lanes = None

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._db.execute(sql, args).fetchone()

    def _ensure_partition(self, day: dt.date) -> None:
        if day in self._days:
            return
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {_partition(day)} PARTITION OF events "
            f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(1)).isoformat()}')"
        )
        self._days.add(day)

    def add(self, site: str, event: dict[str, Any], payload: str, received_at: float) -> Stored:
        """Offer one decoded envelope; call ``advance`` for its lane once a batch is in."""
        lane, seq, epoch = event["lane"], event["seq"], str(event.get("epoch", ""))
        current = self._epoch(lane)
        retired = None
        if current is not None and epoch != current:  # rare: only after an outbox replacement
            retired = self._one(
                "SELECT 1 FROM retired_epochs WHERE lane = %s AND epoch = %s", (lane, epoch)
            )
            if retired is None:
                self._start_epoch(lane, current, epoch)
        held = self._one(
            "SELECT event_id FROM event_keys WHERE lane = %s AND epoch = %s AND seq = %s",
            (lane, epoch, seq),
        )
        below = retired is None and seq <= self.upto(lane)
        if held is not None or below:
            same = held is None or held[0] == event["event_id"]
            return Stored.DUPLICATE if same else Stored.SEQ_CONFLICT
        day = _day(received_at)
        inserted = self._db.execute(
            "INSERT INTO event_keys VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (event["event_id"], lane, epoch, seq, day),
        ).rowcount
        if not inserted:  # the same event_id under another seq: never overwrite
            return Stored.ID_CONFLICT
        self._ensure_partition(day)
        self._db.execute(
            "INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (event["event_id"], site, lane, seq, event["type"], Jsonb(json.loads(payload)),
             received_at, epoch, day),
        )
        if retired is not None:
            return Stored.NEW  # a replaced outbox's straggler: kept, but it moves no watermark
        known = self._lane(lane)
        if known is None or known[2] != event["boot_id"]:
            self._db.execute(
                "INSERT INTO lanes VALUES (%s, %s, 0, %s, %s) "
                "ON CONFLICT (lane) DO UPDATE SET boot_id = excluded.boot_id",
                (lane, site, event["boot_id"], epoch),
            )
            self._forget(lane)
        if event["type"] == "dead_letter" and isinstance(event["data"].get("seq"), int):
            self._db.execute(  # the refused seq will never come
                "INSERT INTO skipped VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (lane, event["data"]["seq"]),
            )
        return Stored.NEW

    def _lane(self, lane: str) -> tuple[str, int, int] | None:
        """(epoch, upto_seq, boot_id) of ``lane``; read once per write transaction."""
        if self._lanes is not None and lane in self._lanes:
            return self._lanes[lane]
        row = self._one("SELECT epoch, upto_seq, boot_id FROM lanes WHERE lane = %s", (lane,))
        value = None if row is None else (str(row[0]), int(row[1]), int(row[2]))
        if self._lanes is not None:
            self._lanes[lane] = value
        return value

    def _forget(self, lane: str) -> None:
        if self._lanes is not None:
            self._lanes.pop(lane, None)

    def _epoch(self, lane: str) -> str | None:
        row = self._lane(lane)
        return None if row is None else row[0]

    def _start_epoch(self, lane: str, old: str, new: str) -> None:
        """The lane's outbox was replaced: its seqs start again, under a new watermark."""
        self._db.execute(
            "INSERT INTO retired_epochs VALUES (%s, %s) ON CONFLICT DO NOTHING", (lane, old)
        )
        self._db.execute("UPDATE lanes SET epoch = %s, upto_seq = 0 WHERE lane = %s", (new, lane))
        self._forget(lane)
        self._db.execute("DELETE FROM skipped WHERE lane = %s", (lane,))
        self._db.execute("DELETE FROM acks WHERE lane = %s", (lane,))

    def learn_watermark(self, site: str, lane: str, upto: int, epoch: str = "") -> None:
        """A watermark someone already published (a retained ack): continue from it."""
        current = self._epoch(lane)
        if current is not None and current != epoch:
            return
        if upto <= self.upto(lane):
            return
        self._db.execute(
            "INSERT INTO lanes VALUES (%s, %s, %s, 0, %s) "
            "ON CONFLICT (lane) DO UPDATE SET upto_seq = excluded.upto_seq",
            (lane, site, upto, epoch),
        )
        self._forget(lane)
        self.record_ack(lane, upto)
        self.advance(lane)

    def record_ack(self, lane: str, upto: int) -> None:
        self._db.execute(
            "INSERT INTO acks VALUES (%s, %s) ON CONFLICT (lane) DO UPDATE "
            "SET upto_seq = greatest(acks.upto_seq, excluded.upto_seq)",
            (lane, upto),
        )

    def upto(self, lane: str) -> int:
        row = self._lane(lane)
        return row[1] if row else 0

    def advance(self, lane: str) -> None:
        """Move the lane's watermark over every contiguous seq any worker has stored."""
        upto = start = self.upto(lane)
        skipped = {
            int(seq) for (seq,) in self._db.execute(
                "SELECT seq FROM skipped WHERE lane = %s AND seq > %s", (lane, upto)
            )
        }
        rows = self._db.execute(
            "SELECT seq FROM event_keys WHERE lane = %s AND epoch = %s AND seq > %s ORDER BY seq",
            (lane, self._epoch(lane) or "", upto),
        ).fetchall()
        upto = contiguous_upto(start, (int(seq) for (seq,) in rows), skipped)
        if upto > start:
            self._db.execute("UPDATE lanes SET upto_seq = %s WHERE lane = %s", (upto, lane))
            self._forget(lane)

    def follow_records(self, lane: str) -> None:
        """Check the lane's transaction records that arrived up to its watermark, in the order
        it sent them: each links to the one before (call after ``advance``)."""
        epoch, upto = self._epoch(lane) or "", self.upto(lane)
        row = self._one(
            "SELECT epoch, fed_upto, state FROM record_chains WHERE lane = %s", (lane,)
        )
        state = ChainState() if row is None else ChainState.from_doc(row[2])
        fed = int(row[1]) if row is not None and row[0] == epoch else 0
        if row is not None and upto <= fed:
            return
        follower = ChainFollower(state, lambda *place: self._record_held(lane, *place))
        rows = self._db.execute(
            "SELECT payload -> 'data' FROM events WHERE lane = %s AND epoch = %s AND seq > %s "
            "AND seq <= %s AND type = 'transaction_record' ORDER BY seq",
            (lane, epoch, fed, upto),
        ).fetchall()
        for (data,) in rows:
            data = data or {}
            segment = data.get("segment")
            follower.add(segment if isinstance(segment, int) else -1, data.get("record"))
        self._db.execute(
            "INSERT INTO record_chains VALUES (%s, %s, %s, %s) ON CONFLICT (lane) DO UPDATE "
            "SET epoch = excluded.epoch, fed_upto = excluded.fed_upto, state = excluded.state",
            (lane, epoch, max(upto, fed), Jsonb(state.to_doc())),
        )

    def _record_held(self, lane: str, segment: int, seq: int, digest: str) -> bool:
        """A transaction record stored twice: the lane resent one it had sent before."""
        row = self._one(
            "SELECT count(*) FROM events WHERE lane = %s AND type = 'transaction_record' "
            "AND payload -> 'data' -> 'segment' = %s::jsonb "
            "AND payload -> 'data' -> 'record' -> 'seq' = %s::jsonb "
            "AND payload -> 'data' -> 'record' ->> 'hash' = %s",
            (lane, json.dumps(segment), json.dumps(seq), digest),
        )
        return bool(row and row[0] > 1)

    def record_chain(self, lane: str) -> dict[str, Any] | None:
        row = self._one("SELECT state FROM record_chains WHERE lane = %s", (lane,))
        return None if row is None else dict(row[0])

    def gaps(self, lane: str) -> list[int]:
        """Seqs missing between the watermark and the highest seq stored."""
        upto = self.upto(lane)
        epoch = self._epoch(lane) or ""
        present = {
            int(seq) for (seq,) in self._db.execute(
                "SELECT seq FROM event_keys WHERE lane = %s AND epoch = %s AND seq > %s "
                "UNION SELECT seq FROM skipped WHERE lane = %s AND seq > %s",
                (lane, epoch, upto, lane, upto),
            )
        }
        if not present:
            return []
        return [s for s in range(upto + 1, max(present)) if s not in present]

    def ack_rows(self) -> list[AckRow]:
        rows = self._db.execute(
            "SELECT l.lane, l.site, l.upto_seq, l.boot_id, coalesce(a.upto_seq, 0), l.epoch "
            "FROM lanes l LEFT JOIN acks a ON a.lane = l.lane WHERE l.upto_seq > 0"
        ).fetchall()
        return [AckRow(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows]

    def events(
        self, lane: str | None = None, types: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """Stored envelopes, per lane in seq order, lanes sorted by name."""
        where: list[str] = []
        args: list[Any] = []
        if lane is not None:
            where.append("lane = %s")
            args.append(lane)
        if types is not None:
            where.append("type = ANY(%s)")
            args.append(list(types))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.execute(
            f"SELECT payload FROM events {clause}ORDER BY lane, seq, received_at", args
        )
        return [dict(payload) for (payload,) in rows]

    def stored(self) -> Iterator[tuple[str, int, str]]:
        for lane, seq, payload in self._db.execute("SELECT lane, seq, payload FROM events"):
            yield lane, int(seq), json.dumps(payload)

    def evidence_chunks(self, lane: str, ref: str) -> list[dict[str, Any]]:
        """The data of every stored evidence event of ``ref`` from ``lane``."""
        rows = self._db.execute(
            "SELECT payload -> 'data' FROM events WHERE lane = %s AND type = 'evidence' "
            "AND payload -> 'data' ->> 'ref' = %s", (lane, ref),
        ).fetchall()
        return [dict(data) for (data,) in rows]

    def prune(self, keep_days: int, now: float) -> int:
        """Drop every day partition older than the last ``keep_days`` days (UTC); the number
        of events dropped. Watermarks stay: an old event resent later is a duplicate."""
        oldest_kept = _day(now) - dt.timedelta(days=keep_days - 1)
        dropped = 0
        with self.write():
            partitions = self._db.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
            ).fetchall()
            for (name,) in partitions:
                day = dt.datetime.strptime(name.removeprefix("events_"), "%Y%m%d").date()
                if day >= oldest_kept:
                    continue
                row = self._one(f"SELECT count(*) FROM {name}")
                dropped += int(row[0]) if row else 0
                self._db.execute(f"DROP TABLE {name}")
                self._days.discard(day)
            self._db.execute("DELETE FROM event_keys WHERE day < %s", (oldest_kept,))
        return dropped


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}@{tail}"
