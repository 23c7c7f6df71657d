"""Sans-I/O record codec.

A record is a JSON object ``{seq, kind, utc, mono, body, prev_hash}``; its ``hash`` is SHA-256 over
the canonical encoding of those fields (sorted keys, no spaces, UTF-8) and ``sig`` is the lane's
Ed25519 signature over the hash bytes. On disk each record is one frame::

    b"GR" | u32 length (big endian) | canonical JSON of the record with hash and sig | u32 CRC-32

Seq 0 is the log's header (kind ``header``; its body carries the lane's public key); records
from seq 1 follow gap-free, each naming the previous record's hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KINDS = ("header", "transit", "config_change", "software_update", "firmware_update",
         "clock_step", "power_cycle")  # fmt: skip
MAGIC = b"GR"
HEAD = struct.Struct(">2sI")
CRC = struct.Struct(">I")
MAX_RECORD = 1 << 20
GENESIS = "0" * 64


def canonical(doc: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()  # fmt: skip


def canonical_value(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True)
class Record:
    seq: int
    kind: str
    utc: float
    mono: float
    body: Mapping[str, Any]
    prev_hash: str
    hash: str = ""
    sig: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def core(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "utc": self.utc, "mono": self.mono,
                "body": dict(self.body), "prev_hash": self.prev_hash}  # fmt: skip

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical(self.core())).hexdigest()

    def to_doc(self) -> dict[str, Any]:
        return {**self.core(), "hash": self.hash, "sig": self.sig}

    def encoded(self) -> bytes:
        return canonical(self.to_doc())

    def hashed_and_encoded(self) -> tuple[str, bytes]:
        """``computed_hash()`` and ``encoded()`` from one canonical encoding (half the work of
        verifying a record).

        Sorted keys put ``hash`` just after ``body`` and ``sig`` just before ``utc``; the last
        ``,"kind":`` and ``,"utc":`` in the core's encoding are the top-level ones, since only
        ``body`` (first) can hold such text (values after it are numbers and escaped strings).
        """
        core = canonical(self.core())
        at_kind = core.rindex(b',"kind":')
        at_utc = core.rindex(b',"utc":')
        full = (core[:at_kind] + b',"hash":' + canonical_value(self.hash) + core[at_kind:at_utc]
                + b',"sig":' + canonical_value(self.sig) + core[at_utc:])  # fmt: skip
        return hashlib.sha256(core).hexdigest(), full


def make_record(key: Ed25519PrivateKey, *, seq: int, kind: str, utc: float, mono: float,
                body: Mapping[str, Any], prev_hash: str) -> Record:  # fmt: skip
    """Build, hash and sign one record."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    draft = Record(seq, kind, float(utc), float(mono), dict(body), prev_hash)
    digest = draft.computed_hash()
    sig = base64.b64encode(key.sign(bytes.fromhex(digest))).decode()
    return Record(seq, kind, float(utc), float(mono), dict(body), prev_hash, digest, sig)


def record_from_doc(doc: Any) -> Record | str:
    """A record from its decoded JSON, or a reason text when a field is missing or wrong."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    try:
        rec = Record(int(doc["seq"]), str(doc["kind"]), float(doc["utc"]), float(doc["mono"]),
                     dict(doc["body"]), str(doc["prev_hash"]), str(doc["hash"]),
                     str(doc["sig"]))  # fmt: skip
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        return f"bad field: {exc}"
    if set(doc) != {"seq", "kind", "utc", "mono", "body", "prev_hash", "hash", "sig"}:
        return "unexpected fields"
    return rec


def signature_ok(rec: Record, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(base64.b64decode(rec.sig, validate=True), bytes.fromhex(rec.hash))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_text(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def encode_frame(payload: bytes) -> bytes:
    return HEAD.pack(MAGIC, len(payload)) + payload + CRC.pack(zlib.crc32(payload))


@dataclass(frozen=True)
class Frame:
    offset: int
    payload: bytes


@dataclass(frozen=True)
class Split:
    """Frames read from a buffer; ``bad_at`` is where the first unreadable frame starts."""

    frames: list[Frame]
    bad_at: int | None
    reason: str = ""
    torn: bool = False  # the bad part runs to the end of the buffer (a cut write)


def split_frames(data: bytes) -> Split:
    """Split a log buffer into frames, stopping at the first one that is not whole and sound."""
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < HEAD.size:
            return Split(frames, pos, "frame header cut short", True)
        magic, length = HEAD.unpack_from(data, pos)
        if magic != MAGIC or length > MAX_RECORD:
            return Split(frames, pos, "bad frame header", False)
        end = pos + HEAD.size + length + CRC.size
        if end > len(data):
            return Split(frames, pos, "frame cut short", True)
        payload = data[pos + HEAD.size : end - CRC.size]
        (crc,) = CRC.unpack_from(data, end - CRC.size)
        if crc != zlib.crc32(payload):
            return Split(frames, pos, "frame checksum wrong", end == len(data))
        frames.append(Frame(pos, payload))
        pos = end
    return Split(frames, None)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not canonical JSON")


def decode_payload(payload: bytes) -> Record | str:
    """The record in a frame's payload, or a reason text; never raises on any bytes."""
    try:
        doc = json.loads(payload.decode(), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return f"not JSON: {exc}"
    return record_from_doc(doc)
