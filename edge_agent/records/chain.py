"""Follow one lane's transaction log record by record, as a receiver sees it arrive. Pure.

``ChainFollower.add(segment, doc)`` takes records in log order (the order the lane sent them)
and checks each against the one before: the sequence, the previous-hash link, the hash of the
content and the signature with the lane's key from the first header; a segment's header must
link to the last record of the segment before. The first break is kept with its place and
reason; after a break the follower re-anchors on the record that broke (when its signature
verifies with the lane's key) so later records are still checked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edge_agent.records.codec import Record, public_key_from_text, record_from_doc, signature_ok


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

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ChainState:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


class ChainFollower:
    def __init__(self, state: ChainState | None = None) -> None:
        self.state = state or ChainState()

    def add(self, segment: int, doc: Any) -> str:
        """Check one record; returns "" when it continues the chain, else why not."""
        rec = record_from_doc(doc)
        if isinstance(rec, str):
            return self._break(segment, None, f"unreadable record: {rec}")
        state = self.state
        same_place = (segment, rec.seq) == (state.segment, state.seq) and rec.hash == state.hash
        if same_place or (rec.seq == 0 and segment == state.segment
                          and rec.hash == state.header_hash):  # fmt: skip
            state.duplicates += 1
            return ""
        if rec.computed_hash() != rec.hash:
            return self._break(segment, rec, "content edited: hash does not match")
        if rec.kind == "header" and rec.seq == 0:
            return self._header(segment, rec)
        if not state.public_key:
            return self._break(segment, rec, "a record before any header")
        problem = ""
        if segment != state.segment or rec.seq != state.seq + 1:
            problem = (f"expected segment {state.segment} seq {state.seq + 1}, "
                       f"got segment {segment} seq {rec.seq} (records missing or moved)")
        elif rec.prev_hash != state.hash:
            problem = "previous-hash link broken"
        if not self._signed(rec):
            return self._break(segment, rec, "signature does not verify", move=False)
        if problem:
            return self._break(segment, rec, problem)
        self._move(segment, rec)
        return ""

    def _header(self, segment: int, rec: Record) -> str:
        state = self.state
        key = str(rec.body.get("public_key", ""))
        try:
            public = public_key_from_text(key)
        except ValueError:
            return self._break(segment, rec, "header has no valid public key", move=False)
        if not signature_ok(rec, public):
            return self._break(segment, rec, "header signature does not verify", move=False)
        previous = rec.body.get("previous")
        if not state.public_key:  # the first header seen: it pins the key and anchors
            state.public_key = key
            state.anchor = dict(previous) if isinstance(previous, dict) else None
            self._move(segment, rec)
            return ""
        problem = ""
        if key != state.public_key:
            problem = "a header with another key (the lane's log was started again)"
            state.public_key = key
        elif not isinstance(previous, dict):
            problem = f"segment {segment} starts a new log instead of following the last one"
        else:
            want = {"segment": state.segment, "seq": state.seq, "hash": state.hash}
            got = {k: previous.get(k) for k in want}
            if got != want or segment != (state.segment or 0) + 1:
                problem = (f"segment {segment} links to {got['segment']}/{got['seq']}, "
                           f"the last record held is {state.segment}/{state.seq}")
        if problem:
            return self._break(segment, rec, problem)
        self._move(segment, rec)
        return ""

    def _signed(self, rec: Record) -> bool:
        try:
            return signature_ok(rec, public_key_from_text(self.state.public_key))
        except ValueError:
            return False

    def _move(self, segment: int, rec: Record) -> None:
        state = self.state
        state.segment, state.seq, state.hash = segment, rec.seq, rec.hash
        if rec.seq == 0:
            state.header_hash = rec.hash
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
