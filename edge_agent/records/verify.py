"""Verify a transaction log: name the first edited, deleted or reordered record.

Two forms verify alike: the raw log (frames, as the lane writes it) and its JSON-lines export
(one record per line, each line the record's canonical JSON, exactly the frame's payload). A
record's bytes must be its canonical encoding, so no byte of it can change unnoticed, not even
one that would decode to the same values (``3`` written ``3.0``).

A log is cut into segments (``segments.py``), each a whole log of its own whose header links
to the last record of the one before; ``verify_chain`` checks the segments and those links.
These are the log's only rules: ``record_fault`` (a record after the one before it) and
``link_fault`` (a header after the segment before) serve the lane (``segments``), ``lanectl
record`` and the backend's follower (``chain.py``) alike.
Cutting whole records off the end leaves a log that is sound as far as it goes; a record known
from elsewhere (its hash on a printed ticket, or in the backend's copy) catches that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.records.codec import (
    GENESIS,
    Record,
    decode_payload,
    public_key_from_text,
    public_key_text,
    signature_ok,
    split_frames,
)

MIN_KNOWN_HEX = 16  # a hash prefix this long cannot be matched by chance


@dataclass
class Verdict:
    ok: bool
    records: int
    bad_seq: int | None = None
    reason: str = ""
    public_key: str = ""
    items: list[Record] = field(default_factory=list)

    def to_doc(self) -> dict[str, object]:
        return {"ok": self.ok, "records": self.records, "bad_seq": self.bad_seq,
                "reason": self.reason, "public_key": self.public_key}  # fmt: skip


def verify_log(data: bytes, pinned: Ed25519PublicKey | None = None) -> Verdict:
    """Check frames, gap-free seq, hash chain, hashes and signatures; stop at the first fault.

    ``bad_seq`` is the sequence number the first faulty record should have had.
    """
    part = log_part("log", data)
    return _verify(part.units, part.tail, pinned)


def _verify(units: Sequence[tuple[str, bytes]], tail: tuple[str, str] | None,
            pinned: Ed25519PublicKey | None) -> Verdict:  # fmt: skip
    items: list[Record] = []
    public: Ed25519PublicKey | None = pinned
    prev = GENESIS
    for expected, (where, payload) in enumerate(units):
        rec = decode_payload(payload)
        reason, public = _check(rec, payload, expected, prev, public, pinned)
        if reason:
            return Verdict(False, len(items), expected, f"record {expected} ({where}): {reason}",
                           _text(public), items)  # fmt: skip
        assert isinstance(rec, Record)
        items.append(rec)
        prev = rec.hash
    if tail is not None:
        where, reason = tail
        return Verdict(False, len(items), len(items), f"record {len(items)} ({where}): {reason}",
                       _text(public), items)  # fmt: skip
    if not items:
        return Verdict(False, 0, 0, "empty log: no header", _text(public), items)
    return Verdict(True, len(items), None, "", _text(public), items)


def _text(public: Ed25519PublicKey | None) -> str:
    return public_key_text(public) if public else ""


def _check(rec: Record | str, payload: bytes, expected: int, prev: str,
           public: Ed25519PublicKey | None,
           pinned: Ed25519PublicKey | None) -> tuple[str, Ed25519PublicKey | None]:  # fmt: skip
    if isinstance(rec, str):
        return rec, public
    digest, encoded = rec.hashed_and_encoded()
    if encoded != payload:
        return "bytes edited: the record is not in its canonical form", public
    return record_fault(rec, expected, prev, public, pinned, digest=digest)


def record_fault(rec: Record, expected: int, prev: str, public: Ed25519PublicKey | None,
                 pinned: Ed25519PublicKey | None = None, *,
                 digest: str | None = None) -> tuple[str, Ed25519PublicKey | None]:  # fmt: skip
    """The rules one record must meet after the one before it (seq ``expected - 1``, hash
    ``prev``): gap-free seq, a header only at seq 0 (its key the pinned one, when pinned),
    the previous-hash link, its hash and its signature. Returns ("", the key that signs the
    segment) or (why not, the key known so far); ``digest``: its hash when already computed.
    """
    if rec.seq != expected:
        what = "deleted (records missing)" if rec.seq > expected else "reordered or repeated"
        return f"found seq {rec.seq}: a record was {what}", public
    if expected == 0:
        if rec.kind != "header":
            return "the log does not start with its header", public
        try:
            own = public_key_from_text(str(rec.body.get("public_key", "")))
        except ValueError:
            return "header has no valid public key", public
        if pinned is not None and public_key_text(pinned) != public_key_text(own):
            return "header public key differs from the pinned key (a foreign key)", public
        public = own
    elif rec.kind == "header":
        return "a second header: only record 0 may be one", public
    if rec.prev_hash != prev:
        return "previous-hash link broken (a record before it was removed or moved)", public
    if (digest if digest is not None else rec.computed_hash()) != rec.hash:
        return "content edited: hash does not match", public
    if public is None or not signature_ok(rec, public):
        return "signature does not verify", public
    return "", public


# -- the whole log: its segments and the links between them -----------------------------------
@dataclass(frozen=True)
class Part:
    """One segment as found: its records' payloads (with where each one is) and, when it ends
    in bytes that are no record, where and why."""

    name: str
    units: list[tuple[str, bytes]]
    tail: tuple[str, str] | None = None
    number: int | None = None  # the segment number its file name says (None: not named)


def log_part(name: str, data: bytes, number: int | None = None) -> Part:
    """A segment file's bytes (frames, as the lane writes them)."""
    split = split_frames(data)
    units = [(f"byte {frame.offset}", frame.payload) for frame in split.frames]
    tail = None
    if split.bad_at is not None:
        tail = (f"byte {split.bad_at}", split.reason + (" (torn tail)" if split.torn else ""))
    return Part(name, units, tail, number)


def jsonl_parts(name: str, data: bytes) -> list[Part]:
    """A JSON-lines export: one record a line; each header (seq 0) starts a segment."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    parts: list[Part] = []
    for number, line in enumerate(lines, start=1):
        payload = line.removesuffix(b"\r")
        rec = decode_payload(payload)
        if not parts or (isinstance(rec, Record) and rec.kind == "header" and rec.seq == 0):
            parts.append(Part(f"{name} segment {len(parts) + 1}", []))
        parts[-1].units.append((f"line {number}", payload))
    return parts or [Part(name, [])]


def looks_like_jsonl(data: bytes) -> bool:
    return data[:1] == b"{"


def parse_known(text: str) -> str:
    """A record's hash known from elsewhere: in full, or its first 16 or more hex digits
    (spaces between them are dropped).

    Raises:
        ValueError: not that.
    """
    digest = "".join(text.split()).lower()  # as a ticket prints it, in groups of four
    if not MIN_KNOWN_HEX <= len(digest) <= 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{text!r}: give a record's hash, in full or its first "
                         f"{MIN_KNOWN_HEX} or more hex digits")  # fmt: skip
    return digest


@dataclass
class LogVerdict:
    """Every segment verified, each linked to the one before; the first fault named."""

    ok: bool
    segments: int
    records: int
    reason: str = ""
    public_key: str = ""
    bad_segment: str | None = None  # the part's name
    bad_seq: int | None = None
    starts_after: dict[str, object] | None = None  # the first header's link back (older
    # segments were dropped); None: the log is whole from its first record
    items: list[tuple[int, Record]] = field(default_factory=list)  # (segment, record)
    last: tuple[int, Record] | None = None  # the last record that verified, and its segment

    def to_doc(self) -> dict[str, object]:
        return {"ok": self.ok, "segments": self.segments, "records": self.records,
                "reason": self.reason, "public_key": self.public_key,
                "bad_segment": self.bad_segment, "bad_seq": self.bad_seq,
                "starts_after": self.starts_after}  # fmt: skip


def verify_chain(parts: Iterable[Part], pinned: Ed25519PublicKey | None = None,
                 known: Iterable[str] = (),
                 keep: Callable[[int], bool] | None = None) -> LogVerdict:  # fmt: skip
    """Verify each segment (as ``verify_log``), the links between them, one key throughout,
    and that every ``known`` hash is in the log.

    ``parts`` may be a generator: one segment is in memory at a time. ``items`` holds the
    records of the segments ``keep`` names (None: all), so a year of log verifies in the
    memory of one segment.
    """
    out = LogVerdict(False, 0, 0)
    wanted = set(known)
    key = pinned
    name = ""
    for part in parts:
        name = part.name
        verdict = _verify(part.units, part.tail, key)
        number = segment_number(verdict.items[0]) if verdict.items else None
        out.public_key = out.public_key or verdict.public_key
        fault = verdict.reason if not verdict.ok else _part_fault(part, number, out.last,
                                                                  verdict.items[0])
        trusted = [] if verdict.ok and fault else verdict.items  # none past a bad link
        if keep is None or (number is not None and keep(number)):
            out.items += [(number if number is not None else -1, r) for r in trusted]
        wanted = {h for h in wanted if not any(r.hash.startswith(h) for r in trusted)}
        if fault:
            out.reason, out.bad_segment = f"{part.name}: {fault}", part.name
            out.bad_seq = verdict.bad_seq if not verdict.ok else 0
            out.records += verdict.records if not verdict.ok else 0  # those before the fault
            return out
        if out.last is None:
            previous = verdict.items[0].body.get("previous")
            out.starts_after = dict(previous) if isinstance(previous, dict) else None
            key = public_key_from_text(verdict.public_key)  # the other segments need this key
        assert number is not None
        out.last = (number, verdict.items[-1])
        out.segments += 1
        out.records += verdict.records
    if out.last is None:
        out.reason = "no transaction log here"
        return out
    if wanted:
        last_number, last = out.last
        out.reason = (f"the record with hash {min(wanted)[:16]}... is not in the log: records "
                      f"were cut off after segment {last_number} seq {last.seq}, or rewritten")
        out.bad_segment, out.bad_seq = name, last.seq + 1
        return out
    out.ok = True
    return out


def segment_number(header: Record) -> int | None:
    """The segment number a header names (None: none valid)."""
    number = header.body.get("segment", 0)
    return number if isinstance(number, int) and not isinstance(number, bool) else None


Place = tuple[int, int, str]  # segment, seq, hash: where a record stands in the whole log


def link_fault(header: Record, number: int | None, before: Place | None) -> str:
    """A segment's header (its segment ``number``) against the last record before it: the
    next segment number, and a signed link to exactly that record (None: nothing before)."""
    if number is None:
        return "record 0: header has no valid segment number"
    if before is None:
        return ""
    last_number, last_seq, last_hash = before
    previous = header.body.get("previous")
    if number != last_number + 1:
        return (f"record 0: segment {number} follows segment {last_number} (a segment was "
                "removed, or they are out of order)")
    want = {"segment": last_number, "seq": last_seq, "hash": last_hash}
    got = {k: previous.get(k) for k in want} if isinstance(previous, dict) else None
    if got != want:
        return (f"record 0: the header links to {got}, but segment {last_number} ends with seq "
                f"{last_seq} hash {last_hash[:16]}... (records were removed or added there)")
    return ""


def _part_fault(part: Part, number: int | None, before: tuple[int, Record] | None,
                header: Record) -> str:  # fmt: skip
    if number is not None and part.number is not None and part.number != number:
        return f"record 0: the header says segment {number}, the file name {part.number}"
    place = None if before is None else (before[0], before[1].seq, before[1].hash)
    return link_fault(header, number, place)
