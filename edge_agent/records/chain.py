"""Follow one lane's transaction log record by record, as a receiver sees it arrive. Pure.

``ChainFollower.add(segment, doc)`` takes records in log order (the order the lane sent them)
and checks each against the one before by the rules ``verify.py`` holds for a whole log
(``record_fault``, ``link_fault``): the sequence, the previous-hash link, the hash of the
content and the signature with the lane's key from the first header; a segment's header must
link to the last record of the segment before. A record sent again (same segment, seq and
hash as one already followed: the lane resends what it may not have queued) is counted as a
duplicate, never a break. The first break is kept with its place and
reason; after a break the follower re-anchors on the record that broke (when its signature
verifies with the lane's key) so later records are still checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.records.codec import (
    GENESIS,
    Record,
    public_key_from_text,
    public_key_text,
    record_from_doc,
    signature_ok,
)
from edge_agent.records.verify import link_fault, record_fault, segment_number

RECENT = 32  # records whose place is kept: a resend of any of them is no break


@dataclass
class ChainState:
    """Where the follower is; JSON-able, so a receiver can keep it between runs."""

    public_key: str = ""
    segment: int | None = None
    seq: int = -1
    hash: str = ""
    header_hash: str = ""  # of the current segment's header: a repeat of it is no break
    records: int = 0
    duplicates: int = 0
    breaks: int = 0
    first_break: dict[str, Any] | None = None
    anchor: dict[str, Any] | None = field(default=None)  # the first header's link back
    recent: list[list[Any]] = field(default_factory=list)  # [segment, seq, hash], newest last

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ChainState:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


Held = Callable[[int, int, str], bool]  # (segment, seq, hash): that record was followed before


class ChainFollower:
    """``held``: asks the receiver's own store whether a record further back than ``recent``
    was followed before (None: only ``recent`` is asked)."""

    def __init__(self, state: ChainState | None = None, held: Held | None = None) -> None:
        self.state = state or ChainState()
        self._held = held

    def add(self, segment: int, doc: Any) -> str:
        """Check one record; returns "" when it continues the chain (or repeats one already
        followed: a resend), else why not."""
        rec = record_from_doc(doc)
        if isinstance(rec, str):
            return self._break(segment, None, f"unreadable record: {rec}")
        if self._repeat(segment, rec):
            self.state.duplicates += 1
            return ""
        if rec.kind == "header" and rec.seq == 0:
            return self._header(segment, rec)
        state = self.state
        if not state.public_key:
            return self._break(segment, rec, "a record before any header")
        public = self._public()
        if segment != state.segment:
            fault = (f"expected segment {state.segment} seq {state.seq + 1}, got segment "
                     f"{segment} seq {rec.seq} (records missing or moved)")  # fmt: skip
        else:
            fault, _key = record_fault(rec, state.seq + 1, state.hash, public)
        if fault:  # re-anchored on it only when the lane signed it
            return self._break(segment, rec, fault, move=public is not None and signature_ok(
                rec, public))  # fmt: skip
        self._move(segment, rec)
        return ""

    def _repeat(self, segment: int, rec: Record) -> bool:
        """The same record (segment, seq and hash) as one followed before."""
        state = self.state
        if rec.seq == 0 and segment == state.segment and rec.hash == state.header_hash:
            return True
        if [segment, rec.seq, rec.hash] in state.recent:
            return True
        behind = state.segment is not None and (segment, rec.seq) < (state.segment, state.seq)
        return behind and self._held is not None and self._held(segment, rec.seq, rec.hash)

    def _header(self, segment: int, rec: Record) -> str:
        state = self.state
        fault, public = record_fault(rec, 0, GENESIS, None)
        if fault or public is None:
            return self._break(segment, rec, fault, move=False)
        if segment_number(rec) != segment:
            return self._break(segment, rec, f"record 0: the header says segment "
                               f"{segment_number(rec)}, sent as segment {segment}")
        key = public_key_text(public)
        previous = rec.body.get("previous")
        if not state.public_key:  # the first header seen: it pins the key and anchors
            state.public_key = key
            state.anchor = dict(previous) if isinstance(previous, dict) else None
            self._move(segment, rec)
            return ""
        if key != state.public_key:
            state.public_key = key
            return self._break(segment, rec, "a header with another key (the lane's log was "
                               "started again)")  # fmt: skip
        before = None if state.segment is None else (state.segment, state.seq, state.hash)
        fault = link_fault(rec, segment, before)
        if fault:
            return self._break(segment, rec, fault)
        self._move(segment, rec)
        return ""

    def _public(self) -> Ed25519PublicKey | None:
        try:
            return public_key_from_text(self.state.public_key)
        except ValueError:
            return None

    def _move(self, segment: int, rec: Record) -> None:
        state = self.state
        state.segment, state.seq, state.hash = segment, rec.seq, rec.hash
        if rec.seq == 0:
            state.header_hash = rec.hash
        state.recent = [*state.recent[-(RECENT - 1):], [segment, rec.seq, rec.hash]]
        state.records += 1

    def _break(self, segment: int, rec: Record | None, reason: str, *, move: bool = True) -> str:
        state = self.state
        state.breaks += 1
        if state.first_break is None:
            state.first_break = {"segment": segment, "seq": None if rec is None else rec.seq,
                                 "reason": reason}  # fmt: skip
        if move and rec is not None:
            self._move(segment, rec)
        return reason
