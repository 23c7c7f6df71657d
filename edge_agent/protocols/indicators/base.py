"""Shared types of the weighbridge indicator codecs.

Every decoder is sans-I/O: ``receive_data(bytes)`` returns what the bytes completed, as
``IndicatorReading`` or ``FrameError`` events. Decoders never raise on device garbage, keep
a bounded buffer and resynchronise on the next start byte, so a noisy line costs frames,
never the lane.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edge_agent.errors import LocalProtocolError

# Longest frame of any supported format is 20 bytes; anything much longer is garbage.
MAX_BUFFER = 256

LB_TO_KG = 0.45359237


@dataclass(frozen=True, slots=True)
class IndicatorReading:
    """One weight frame as the indicator sent it, converted to kg.

    ``kg`` is None when the frame carries no number (overload shown as spaces or dashes).
    ``motion`` is None when the format has no motion flag: stability is then ours to decide.
    ``overload`` means out of range (over capacity or under zero) as the indicator reports it.
    """

    kg: float | None
    motion: bool | None
    overload: bool = False
    net: bool = False
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes that did not form a valid frame; ``reason`` says why."""

    reason: str
    raw: bytes


IndicatorEvent = IndicatorReading | FrameError


class IndicatorDecoder(Protocol):
    """Bytes in, readings and frame errors out."""

    def receive_data(self, data: bytes) -> list[IndicatorEvent]: ...


class IndicatorEncoder(Protocol):
    """A reading in, the bytes an indicator of this format would send out."""

    def encode(self, reading: IndicatorReading) -> bytes: ...


def format_fixed(kg: float, decimals: int) -> str:
    """``kg`` with exactly ``decimals`` decimals and no sign (``1560``, ``20.00``)."""
    return f"{abs(kg):.{decimals}f}"


def require_kg(reading: IndicatorReading, protocol: str) -> float:
    """The reading's weight, or LocalProtocolError when the format needs a number."""
    if reading.kg is None:
        raise LocalProtocolError(f"{protocol}: this format cannot send a reading without a weight")
    return reading.kg


def parse_number(text: str) -> float | None:
    """Parse an indicator number field: optional sign, digits, at most one '.'.

    Spaces may pad the field (a right-justified value, blanks between the sign and the
    digits) but never sit between digits: ``0012 45`` is a damaged frame, not 12045.
    Returns None when the field is not a number.
    """
    body = text.strip(" ")
    sign = 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:].lstrip(" ")
    digits = body.replace(".", "", 1)
    if not (digits.isascii() and digits.isdigit()):  # ASCII: str.isdigit takes '²' too
        return None
    return sign * float(body)


def parse_digits(field: bytes) -> int | None:
    """An unsigned fixed-width digit field whose leading zeros may be sent as spaces.

    All spaces reads as 0; a space after the first digit makes the field invalid (None).
    """
    body = field.lstrip(b" ")
    if not body:
        return 0
    return int(body) if body.isdigit() else None  # bytes.isdigit is ASCII 0-9 only


class BufferedDecoder:
    """Bounded receive buffer shared by the decoders.

    Subclasses implement ``_parse_one``: look at ``self._buf`` and return
    ``(consumed, event_or_None)``; ``consumed == 0`` means "need more bytes".
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def _parse_one(self) -> tuple[int, IndicatorEvent | None]:
        raise NotImplementedError

    def receive_data(self, data: bytes) -> list[IndicatorEvent]:
        """Feed bytes; return every reading or error they completed, in order."""
        self._buf += data
        events: list[IndicatorEvent] = []
        while self._buf:
            consumed, event = self._parse_one()
            if event is not None:
                events.append(event)
            if consumed == 0:
                break
            del self._buf[:consumed]
        if len(self._buf) > MAX_BUFFER:
            # A start byte with no end in sight: drop it so the buffer stays bounded.
            events.append(FrameError("oversized frame", bytes(self._buf)))
            self._buf.clear()
        return events
