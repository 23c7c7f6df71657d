"""The event store's interface: what an ingest worker, the command service and the console
need of it, whichever database holds the rows (``sqlite_store.py`` embedded, ``pg_store.py``).

The store, not a worker, is the authority: several workers share one store, every write runs
in ``write()`` (one transaction under the store's write lock), and every query reads what any
worker committed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol


class Stored(Enum):
    """What became of one event offered to the store."""

    NEW = "new"
    DUPLICATE = "duplicate"  # already stored (by us or another worker), or below the watermark
    SEQ_CONFLICT = "seq_conflict"  # another event already holds that seq
    ID_CONFLICT = "id_conflict"  # that event_id is stored under another seq


@dataclass(frozen=True, slots=True)
class AckRow:
    """A lane's watermark and the one last published for it (0 if none)."""

    lane: str
    site: str
    upto: int
    boot_id: int
    acked: int
    epoch: str = ""


def contiguous_upto(start: int, stored: Iterable[int], skipped: Collection[int]) -> int:
    """The highest seq reached from ``start`` over ``stored`` seqs (ascending, read lazily:
    it stops at the first gap) and ``skipped`` ones (declared lost by a dead letter)."""
    upto = start
    for seq in stored:
        while upto + 1 in skipped:
            upto += 1
        if seq > upto + 1:
            break
        upto = max(upto, seq)
    while upto + 1 in skipped:
        upto += 1
    return upto


class EventStore(Protocol):
    """One lane-event store; its owner serialises calls (a worker holds its own lock)."""

    def close(self) -> None: ...

    def write(self) -> AbstractContextManager[None]:
        """A write transaction that sees every other worker's committed rows."""
        ...

    def add(self, site: str, event: dict[str, Any], payload: str, received_at: float) -> Stored:
        """Offer one decoded envelope; call ``advance`` for its lane once a batch is in."""
        ...

    def learn_watermark(self, site: str, lane: str, upto: int, epoch: str = "") -> None: ...

    def record_ack(self, lane: str, upto: int) -> None: ...

    def upto(self, lane: str) -> int: ...

    def advance(self, lane: str) -> None: ...

    def follow_records(self, lane: str) -> None: ...

    def record_chain(self, lane: str) -> dict[str, Any] | None: ...

    def gaps(self, lane: str) -> list[int]: ...

    def ack_rows(self) -> list[AckRow]: ...

    def events(
        self, lane: str | None = None, types: Collection[str] | None = None
    ) -> list[dict[str, Any]]: ...

    def stored(self) -> Iterator[tuple[str, int, str]]: ...

    def prune(self, keep_days: int, now: float) -> int:
        """Drop events older than the last ``keep_days`` UTC days; how many were dropped."""
        ...

    def evidence_chunks(self, lane: str, ref: str) -> list[dict[str, Any]]: ...

    def quarantine(
        self, received_at: float, topic: str, kind: str, reason: str, payload: bytes
    ) -> None: ...

    def skip(self, lane: str, seq: int) -> None: ...

    def quarantined(self, limit: int = 100) -> list[dict[str, Any]]: ...

    def quarantine_counts(self) -> dict[str, int]: ...

    def put_evidence(
        self, lane: str, ref: str, media_type: str, sha256: str, data: bytes, at: float
    ) -> None: ...

    def evidence(self, lane: str, ref: str) -> tuple[str, bytes] | None: ...

    def put_lane_doc(
        self, site: str, lane: str, kind: str, doc: dict[str, Any], at: float
    ) -> None: ...

    def lane_docs(self) -> dict[str, dict[str, Any]]: ...
