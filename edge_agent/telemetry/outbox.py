"""The lane's durable outbox: the system of record until the backend says it has stored an event.

Invariants:
- An event counts as accepted only once its row is committed (WAL, synchronous=FULL).
- ``seq`` is assigned here, per lane, from a counter in the database: strictly increasing,
  never reused, not even after every row was deleted or the process was killed.
- A row leaves only when the backend's ack watermark covers its seq (``apply_ack``), or as a
  dead letter the broker refused for good; the broker's PUBACK proves nothing.
- An ack is unauthenticated input: it counts only for this file's ``epoch`` (a random id made
  when the file is created, carried by every envelope) and only up to the highest seq this
  file has issued. Anything else is refused and changes nothing.
- Evidence chunks and health are sheddable: they are refused when the filesystem's free space
  falls below ``reserve_bytes`` or the outbox is past ``max_bytes``, so the space left is kept
  for the events that matter (decisions, abnormalities, command results). Those are never
  shed; a write that fails raises ``OutboxError`` and the caller holds the lane.
- Health rows have their own counter and may be shed (oldest first) when the disk budget is
  tight, so shedding never leaves a gap in ``seq`` that would stall the watermark.

One connection guarded by a lock serves the producing thread and the publisher thread.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from edge_agent.catalogue import EventType
from edge_agent.errors import ConfigError, EdgeAgentError, RemoteProtocolError
from edge_agent.telemetry.envelope import HEALTH_SCHEMA, build_envelope, encode, uuid7
from edge_agent.telemetry.topics import LaneTopics

HEALTH_EXPIRY_MS = 300_000
DISK_ALARM_FRACTION = 0.8
RESERVE_BYTES = 32 * 1024 * 1024  # free space kept for events when the disk fills up
_FREE_SPACE_TTL_S = 1.0

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity (one INTEGER PRIMARY KEY CHECK (one = 1), epoch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    priority   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_priority ON events (priority, seq);
CREATE TABLE IF NOT EXISTS health (
    id         INTEGER PRIMARY KEY,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    reason_code INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    at_ms       INTEGER NOT NULL
);
"""


class OutboxError(EdgeAgentError):
    """The outbox database cannot be opened or written."""


class AckRefused(RemoteProtocolError):
    """An ack watermark that does not belong to this outbox or claims seqs it never issued."""


class Priority(IntEnum):
    """Send order while a backlog drains: lower goes first."""

    URGENT = 0  # abnormalities and command results: an officer is waiting
    NORMAL = 1
    HEALTH = 2  # sheddable, separate table


# The catalogue says which event types are urgent; any other type (a new one too) is normal.
URGENT_TYPES: frozenset[str] = frozenset(t for t in EventType if t.urgent)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored message ready to publish. ``key`` is the seq (events) or the health id."""

    key: int
    topic: str
    payload: bytes
    priority: Priority
    created_ms: int
    expires_ms: int | None = None

    @property
    def is_health(self) -> bool:
        return self.priority is Priority.HEALTH


class Outbox:
    """SQLite outbox for one lane. Safe for one producer thread plus the publisher thread."""

    def __init__(
        self,
        path: Path,
        *,
        site: str,
        lane: str,
        agent_version: str,
        max_bytes: int | None = None,
        reserve_bytes: int = RESERVE_BYTES,
    ) -> None:
        self.topics = LaneTopics(site, lane)
        self.site, self.lane, self.agent_version = site, lane, agent_version
        if max_bytes is not None and max_bytes <= 0:
            raise ConfigError(f"outbox max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self._path = path
        self._lock = threading.Lock()
        self._shed_health = 0
        self._shed_evidence = 0
        self._last_health = 0
        self._free: tuple[float, int] | None = None  # (checked at, free bytes)
        try:
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {path}: journal_mode WAL refused (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA_SQL)
            with self._transaction():
                self.boot_id = self._meta("boot_id", 0) + 1
                self._set_meta("boot_id", self.boot_id)
                if self._meta("next_seq", 0) == 0:
                    self._set_meta("next_seq", 1)
                    self._set_meta("next_health", 1)
                epoch = self._db.execute("SELECT epoch FROM identity").fetchone()
                if epoch is None:
                    epoch = (secrets.token_hex(8),)
                    self._db.execute("INSERT INTO identity VALUES (1, ?)", epoch)
                self.epoch: str = str(epoch[0])
            self._bytes = int(
                self._db.execute(
                    "SELECT (SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM events)"
                    " + (SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM health)"
                ).fetchone()[0]
            )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc

    # -- producer side ---------------------------------------------------------------------

    def add_event(
        self,
        type: str,
        data: Mapping[str, Any],
        *,
        transit_id: str | None,
        mono_ms: int,
        wall_ms: int,
        clock_synced: bool,
        clock_source: str = "system",
        sheddable: bool = False,
    ) -> dict[str, Any] | None:
        """Commit an event and return its envelope.

        An event that matters is never dropped, even past the quota (a failed write raises
        OutboxError). A ``sheddable`` one (an evidence chunk) returns None instead of being
        stored when space is short.
        """
        topic = self.topics.cmd_result if type == "cmd_result" else self.topics.event(type)
        priority = Priority.URGENT if type in URGENT_TYPES else Priority.NORMAL
        with self._lock:
            if sheddable and self._space_short(0):
                self._shed_evidence += 1
                return None
            with self._transaction():
                seq = self._meta("next_seq", 1)
                envelope = self._envelope(
                    seq, type, data, transit_id, mono_ms, wall_ms, clock_synced, clock_source
                )
                payload = encode(envelope)
                self._db.execute(
                    "INSERT INTO events (seq, event_id, topic, payload, priority, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, envelope["event_id"], topic, payload, int(priority), wall_ms),
                )
                self._set_meta("next_seq", seq + 1)
                self._bytes += len(payload)
                self._shed_health_over_quota()
        return envelope

    def space_short(self) -> bool:
        """True while sheddable records (evidence, health) are refused for lack of space."""
        with self._lock:
            return self._space_short(0)

    def _space_short(self, incoming: int) -> bool:
        """True when sheddable rows must wait: past the budget, or the disk's reserve reached."""
        if self.max_bytes is not None and self._bytes + incoming > self.max_bytes:
            return True
        return self._free_bytes() < self.reserve_bytes

    def _free_bytes(self) -> int:
        now = time.monotonic()
        if self._free is None or now - self._free[0] > _FREE_SPACE_TTL_S:
            try:
                free = shutil.disk_usage(self._path.parent).free
            except OSError:
                free = 0  # cannot tell: keep what is left for the events that matter
            self._free = (now, free)
        return self._free[1]

    def _envelope(
        self,
        seq: int,
        type: str,
        data: Mapping[str, Any],
        transit_id: str | None,
        mono_ms: int,
        wall_ms: int,
        clock_synced: bool,
        clock_source: str,
    ) -> dict[str, Any]:
        return build_envelope(
            event_id=uuid7(wall_ms),
            site=self.site,
            lane=self.lane,
            seq=seq,
            boot_id=self.boot_id,
            type=type,
            wall_ms=wall_ms,
            mono_ms=mono_ms,
            clock_synced=clock_synced,
            clock_source=clock_source,
            transit_id=transit_id,
            agent_version=self.agent_version,
            data=data,
            epoch=self.epoch,
        )

    def add_command_result(
        self,
        cmd_id: str,
        data: Mapping[str, Any],
        *,
        mono_ms: int,
        wall_ms: int,
        clock_synced: bool,
        clock_source: str = "system",
    ) -> dict[str, Any]:
        """A command result travels like an event (seq, never dropped) on the cmd_result topic."""
        envelope = self.add_event(
            "cmd_result",
            {"cmd_id": cmd_id, **data},
            transit_id=None,
            mono_ms=mono_ms,
            wall_ms=wall_ms,
            clock_synced=clock_synced,
            clock_source=clock_source,
        )
        assert envelope is not None  # only sheddable events are ever refused
        return envelope

    def add_health(
        self,
        data: Mapping[str, Any],
        *,
        mono_ms: int,
        wall_ms: int,
        clock_synced: bool,
        clock_source: str = "system",
    ) -> dict[str, Any] | None:
        """Store a health report (own counter, sheddable). None if the disk budget refused it."""
        with self._lock, self._transaction():
            health_seq = self._meta("next_health", 1)
            envelope, payload = self._health_envelope(
                health_seq, data, mono_ms, wall_ms, clock_synced, clock_source
            )
            if self._space_short(len(payload)):
                self._shed_health += 1
                return None
            self._db.execute(
                "INSERT INTO health (id, topic, payload, created_ms, expires_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (health_seq, self.topics.health, payload, wall_ms, wall_ms + HEALTH_EXPIRY_MS),
            )
            self._set_meta("next_health", health_seq + 1)
            self._bytes += len(payload)
        self._last_health = health_seq
        return envelope

    def transient_health(
        self,
        data: Mapping[str, Any],
        *,
        mono_ms: int,
        wall_ms: int,
        clock_synced: bool,
        clock_source: str = "system",
    ) -> tuple[str, bytes]:
        """A health report that is not stored, for when the disk cannot take one: the
        backend still hears the alarm. Its seq is the last stored one's (a counter that
        cannot be written cannot move)."""
        _envelope, payload = self._health_envelope(
            max(1, self._last_health), data, mono_ms, wall_ms, clock_synced, clock_source
        )
        return self.topics.health, payload

    def _health_envelope(
        self,
        health_seq: int,
        data: Mapping[str, Any],
        mono_ms: int,
        wall_ms: int,
        clock_synced: bool,
        clock_source: str,
    ) -> tuple[dict[str, Any], bytes]:
        envelope = self._envelope(
            health_seq, "health", data, None, mono_ms, wall_ms, clock_synced, clock_source
        )
        envelope["schema"] = HEALTH_SCHEMA
        return envelope, encode(envelope)

    # -- publisher side --------------------------------------------------------------------

    def pending(
        self, limit: int, *, after_seq: int = 0, priority: Priority | None = None
    ) -> list[OutboxRow]:
        """Events with seq > after_seq (optionally of one priority), in seq order."""
        where, args = "seq > ?", [after_seq]
        if priority is not None:
            where += " AND priority = ?"
            args.append(int(priority))
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, topic, payload, priority, created_ms FROM events WHERE {where}"
                " ORDER BY seq LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], Priority(r[3]), r[4]) for r in rows]

    def pending_health(self, limit: int, *, after_id: int = 0) -> list[OutboxRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, created_ms, expires_ms FROM health WHERE id > ?"
                " ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], Priority.HEALTH, r[3], r[4]) for r in rows]

    def rows(self, seqs: Iterable[int]) -> list[OutboxRow]:
        """The still-stored events among ``seqs``, in seq order (for resends)."""
        wanted = sorted(set(seqs))
        found: list[OutboxRow] = []
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.extend(
                    OutboxRow(r[0], r[1], r[2], Priority(r[3]), r[4])
                    for r in self._db.execute(
                        "SELECT seq, topic, payload, priority, created_ms FROM events"
                        f" WHERE seq IN ({marks}) ORDER BY seq",
                        chunk,
                    )
                )
        return found

    def mark_sent(self, health_ids: Iterable[int]) -> int:
        """Health rows the broker accepted: they are done (no watermark covers health)."""
        return self._delete_health(health_ids)

    def drop_health(self, health_ids: Iterable[int]) -> int:
        """Health rows that expired unsent."""
        return self._delete_health(health_ids)

    def apply_ack(self, upto_seq: int, *, epoch: str) -> int:
        """Delete every event the backend's watermark covers; returns the rows deleted.

        AckRefused (nothing changed) when the ack is for another outbox (a replaced file's
        stale retained ack) or covers seqs this file never issued.
        """
        if epoch != self.epoch:
            raise AckRefused(f"ack is for outbox {epoch!r}, this outbox is {self.epoch!r}")
        with self._lock, self._transaction():
            issued = self._meta("next_seq", 1) - 1
            if not 0 <= upto_seq <= issued:
                raise AckRefused(f"ack upto_seq {upto_seq} is above the last seq issued ({issued})")
            freed = self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM events WHERE seq <= ?",
                (upto_seq,),
            ).fetchone()
            if freed[1]:
                self._db.execute("DELETE FROM events WHERE seq <= ?", (upto_seq,))
                self._bytes -= int(freed[0])
        return int(freed[1])

    def dead_letter(self, seq: int, reason_code: int, reason: str, *, wall_ms: int) -> bool:
        """Move an event the broker refused for good (e.g. not authorized) aside.

        Returns False if the row was already gone. The caller should publish a
        ``dead_letter`` event so the backend can close the gap in ``seq``.
        """
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT event_id, topic, payload FROM events WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letter VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, row[0], row[1], row[2], reason_code, reason, wall_ms),
            )
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            self._bytes -= len(row[2])
        return True

    def dead_letters(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, topic, reason_code, reason, at_ms FROM dead_letter"
                " ORDER BY seq"
            ).fetchall()
        keys = ("seq", "event_id", "topic", "reason_code", "reason", "at_ms")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            events, first, last = self._db.execute(
                "SELECT COUNT(*), MIN(seq), MAX(seq) FROM events"
            ).fetchone()
            oldest = self._db.execute(
                "SELECT created_ms FROM events ORDER BY seq LIMIT 1").fetchone()
            health = self._db.execute("SELECT COUNT(*) FROM health").fetchone()[0]
            dead = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
            next_seq = self._meta("next_seq", 1)
        used = self._bytes / self.max_bytes if self.max_bytes else 0.0
        free = self._free_bytes()
        return {
            "boot_id": self.boot_id,
            "events": events,
            "first_seq": first,
            "last_seq": last,
            "oldest_ms": oldest[0] if oldest else None,  # wall time the oldest event was made
            "next_seq": next_seq,
            "health": health,
            "dead_letters": dead,
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "disk_used": used,
            "disk_alarm": used >= DISK_ALARM_FRACTION or free < self.reserve_bytes,
            "disk_free": free,
            "health_shed": self._shed_health,
            "evidence_shed": self._shed_evidence,
            "epoch": self.epoch,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals -------------------------------------------------------------------------

    def _delete_health(self, health_ids: Iterable[int]) -> int:
        ids = list(health_ids)
        if not ids:
            return 0
        deleted = 0
        with self._lock, self._transaction():
            for health_id in ids:
                row = self._db.execute(
                    "DELETE FROM health WHERE id = ? RETURNING LENGTH(payload)", (health_id,)
                ).fetchone()
                if row is not None:
                    self._bytes -= int(row[0])
                    deleted += 1
        return deleted

    def _shed_health_over_quota(self) -> None:
        """Past the budget, delete the oldest health rows (events are never dropped)."""
        if self.max_bytes is None or self._bytes <= self.max_bytes:
            return
        for health_id, size in self._db.execute(
            "SELECT id, LENGTH(payload) FROM health ORDER BY id"
        ).fetchall():
            if self._bytes <= self.max_bytes:
                break
            self._db.execute("DELETE FROM health WHERE id = ?", (health_id,))
            self._bytes -= int(size)
            self._shed_health += 1

    def _meta(self, key: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as commit_error:
                self._rollback()
                raise OutboxError(f"outbox commit failed: {commit_error}") from commit_error
            return
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise OutboxError(f"outbox write failed: {exc}") from exc

    def _rollback(self) -> None:
        # SQLite rolls back by itself on a full disk or I/O error; a second ROLLBACK then fails
        # with "no transaction is active" and would hide the real error.
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")


__all__ = ["AckRefused", "Outbox", "OutboxError", "OutboxRow", "Priority"]
