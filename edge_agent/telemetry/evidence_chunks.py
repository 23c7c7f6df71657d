"""Evidence upload: a held truck's snapshot travels to the backend as ``evidence`` events.

A file is cut into bounded chunks; each chunk is an ordinary event (``evt/evidence``) so it
goes through the durable outbox, is sequence-numbered and is deleted only once the backend's
watermark covers it: evidence is as lossless as the events that reference it. The backend
reassembles by ``ref`` and checks the SHA-256. Pure: bytes in, event data out, and back.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from edge_agent.errors import LocalProtocolError, RemoteProtocolError

CHUNK_BYTES = 24 * 1024  # base64 of this stays well under a 64 KiB MQTT payload budget
MAX_EVIDENCE_BYTES = 4 * 1024 * 1024


def chunk_evidence(
    ref: str, data: bytes, media_type: str, *, chunk_bytes: int = CHUNK_BYTES
) -> list[dict[str, Any]]:
    """The ``data`` of each evidence event for one file, in order."""
    if not ref:
        raise LocalProtocolError("evidence needs a non-empty ref")
    if not data or len(data) > MAX_EVIDENCE_BYTES:
        raise LocalProtocolError(
            f"evidence {ref!r} is {len(data)} bytes; allowed 1..{MAX_EVIDENCE_BYTES}"
        )
    digest = hashlib.sha256(data).hexdigest()
    pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
    return [
        {
            "ref": ref,
            "part": index,
            "parts": len(pieces),
            "size": len(data),
            "sha256": digest,
            "media_type": media_type,
            "data": base64.b64encode(piece).decode("ascii"),
        }
        for index, piece in enumerate(pieces)
    ]


def assemble_evidence(chunks: Iterable[Mapping[str, Any]], ref: str) -> bytes | None:
    """Reassemble ``ref`` from evidence event data (any order, duplicates allowed).

    Returns None while parts are missing.

    Raises:
        RemoteProtocolError: the parts disagree or the result does not match its SHA-256.
    """
    parts: dict[int, bytes] = {}
    expected: tuple[int, str, int] | None = None
    for chunk in chunks:
        if chunk.get("ref") != ref:
            continue
        header = (int(chunk["parts"]), str(chunk["sha256"]), int(chunk["size"]))
        if expected is not None and header != expected:
            raise RemoteProtocolError(f"evidence {ref!r}: parts disagree on count, size or hash")
        expected = header
        parts[int(chunk["part"])] = base64.b64decode(chunk["data"], validate=True)
    if expected is None or len(parts) < expected[0]:
        return None
    data = b"".join(parts[i] for i in range(expected[0]))
    if len(data) != expected[2] or hashlib.sha256(data).hexdigest() != expected[1]:
        raise RemoteProtocolError(f"evidence {ref!r}: reassembled bytes do not match the hash")
    return data
