"""The immutable JSON envelope every lane event travels in (DESIGN.md 4.4).

The envelope is built once, when the outbox accepts the event, and is never changed
afterwards: a resend carries the very same bytes, so the backend can drop duplicates by
``event_id``. Time comes in as parameters (wall and monotonic milliseconds); randomness can
be injected for reproducible tests.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from edge_agent.errors import LocalProtocolError, RemoteProtocolError

SCHEMA = "gate.lane_event/1"
HEALTH_SCHEMA = "gate.lane_health/1"

ENVELOPE_FIELDS = (
    "schema",
    "event_id",
    "site",
    "lane",
    "seq",
    "boot_id",
    "type",
    "occurred_at",
    "mono_ms",
    "clock",
    "transit_id",
    "agent_version",
    "data",
)


def uuid7(wall_ms: int, rand: bytes | None = None) -> str:
    """An RFC 9562 UUIDv7 for the millisecond ``wall_ms`` (10 random bytes, injectable)."""
    if not 0 <= wall_ms < 1 << 48:
        raise LocalProtocolError(f"wall_ms {wall_ms} does not fit the 48-bit UUIDv7 timestamp")
    rand = os.urandom(10) if rand is None else rand
    if len(rand) != 10:
        raise LocalProtocolError("uuid7 needs exactly 10 random bytes")
    value = wall_ms << 80 | int.from_bytes(rand, "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def format_utc_ms(wall_ms: int) -> str:
    """UTC ISO 8601 with milliseconds and a 'Z': 2024-05-01T12:00:00.123Z."""
    moment = datetime.fromtimestamp(wall_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{wall_ms % 1000:03d}Z"


def build_envelope(
    *,
    event_id: str,
    site: str,
    lane: str,
    seq: int,
    boot_id: int,
    type: str,
    wall_ms: int,
    mono_ms: int,
    clock_synced: bool,
    clock_source: str,
    transit_id: str | None,
    agent_version: str,
    data: Mapping[str, Any],
    epoch: str | None = None,
) -> dict[str, Any]:
    """Assemble an envelope; ``data`` must be JSON-serialisable.

    ``epoch`` names the outbox file that issued ``seq`` (a replaced file starts seq again).
    """
    envelope: dict[str, Any] = {
        "schema": SCHEMA,
        "event_id": event_id,
        "site": site,
        "lane": lane,
        "seq": seq,
        "boot_id": boot_id,
        "type": type,
        "occurred_at": format_utc_ms(wall_ms),
        "mono_ms": mono_ms,
        "clock": {"synced": clock_synced, "source": clock_source},
        "transit_id": transit_id,
        "agent_version": agent_version,
        "data": dict(data),
    }
    if epoch is not None:
        envelope["epoch"] = epoch
    return envelope


def encode(message: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; raises LocalProtocolError if the message is not JSON-serialisable."""
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"message is not JSON-serialisable: {exc}") from exc
    return text.encode()


def decode(payload: bytes) -> dict[str, Any]:
    """Parse and check an event envelope; RemoteProtocolError names what is wrong."""
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RemoteProtocolError(f"envelope is not UTF-8 JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise RemoteProtocolError("envelope is not a JSON object")
    missing = [name for name in ENVELOPE_FIELDS if name not in message]
    if missing:
        raise RemoteProtocolError(f"envelope lacks {', '.join(missing)}")
    if message["schema"] != SCHEMA:
        raise RemoteProtocolError(f"unknown envelope schema {message['schema']!r}")
    seq = message["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise RemoteProtocolError(f"envelope seq {seq!r} is not a positive integer")
    if not isinstance(message["event_id"], str) or not isinstance(message["data"], dict):
        raise RemoteProtocolError("envelope event_id must be a string and data an object")
    return message


def state_message(
    online: bool, boot_id: int, version: str | None = None, *,
    reason: str | None = None, by: str | None = None, detail: str | None = None,
) -> dict[str, Any]:
    """The retained ``state`` payload: birth (online, with version) or offline, whose
    ``reason`` tells a planned stop (``stopped``, with ``by`` and ``detail`` when known) from
    the last will (``lost``: the broker saw the lane vanish) and an agent that failed."""
    message: dict[str, Any] = {"online": online, "boot_id": boot_id}
    if online and version is not None:
        message["version"] = version
    if not online and reason is not None:
        message["reason"] = reason
        message.update({k: v for k, v in (("by", by), ("detail", detail)) if v})
    return message


def ack_message(upto_seq: int, boot_id: int, epoch: str) -> dict[str, Any]:
    """The retained ``ack`` payload: every seq <= upto_seq of outbox ``epoch`` is stored."""
    return {"upto_seq": upto_seq, "boot_id": boot_id, "epoch": epoch}


MAX_ACK_SEQ = (1 << 53) - 1
_EPOCH_CHARS = frozenset("0123456789abcdef")


def decode_ack(payload: bytes) -> tuple[int, str]:
    """``(upto_seq, epoch)`` of an ack payload; RemoteProtocolError if it is not one.

    The ack is not signed (see docs/security.md): its fields are bounded here, and the outbox
    accepts it only for its own epoch and up to the last seq it issued.
    """
    if len(payload) > 1024:
        raise RemoteProtocolError(f"ack payload of {len(payload)} bytes is not an ack")
    try:
        message = json.loads(payload)
        upto, epoch = message["upto_seq"], message["epoch"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise RemoteProtocolError(
            f"ack payload is not {{upto_seq, boot_id, epoch}}: {type(exc).__name__}"
        ) from None
    if not isinstance(upto, int) or isinstance(upto, bool) or not 0 <= upto <= MAX_ACK_SEQ:
        raise RemoteProtocolError("ack upto_seq is not an integer in 0..2^53-1")
    if not isinstance(epoch, str) or len(epoch) != 16 or not set(epoch) <= _EPOCH_CHARS:
        raise RemoteProtocolError("ack epoch is not 16 lowercase hex digits")
    return upto, epoch
