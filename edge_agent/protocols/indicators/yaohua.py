"""Yaohua XK3190 continuous formats.

tF=0 (A9/A9+, A1+, A23P, A26, DS1, D9), 12 bytes::

    STX  sign  d6 (MSD first)  dp  XORh  XORl  ETX
    02   2B    30 30 31 35 36 30  30  31  39    03     = +1560 kg, XOR 0x19

XOR covers sign..dp; each nibble is sent as an uppercase ASCII hex digit. The XOR is blind to
the order of the digits (+001560 and +001650 share it), so a swapped-digit frame passes here
and is caught by the watcher's implausible-jump check. No motion, net or overload flag.

``=`` formats (A26 format 1 / A23P format 2 and the forward variant), 9 bytes: ``=`` then 8
characters of the displayed value including its decimal point, with the sign (``-`` or a
``0``) at the front; the reversed variant sends those 8 characters least significant first
(3.000 -> ``=000.3000``, -1.00 -> ``=00.1000-``). No terminator, no checksum, no motion or
net flag: a frame ends where the next ``=`` starts, and one with the wrong length is rejected
rather than guessed. Blanks may pad the value in front (after the sign slot), never between
its digits.
"""

from __future__ import annotations

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols.indicators.base import (
    BufferedDecoder,
    FrameError,
    IndicatorEvent,
    IndicatorReading,
    format_fixed,
    parse_digits,
    parse_number,
    require_kg,
)

STX = 0x02
ETX = 0x03
TF0_LENGTH = 12
EQ_START = ord("=")
EQ_BODY = 8


def _xor(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def _hex_nibbles(value: int) -> bytes:
    return f"{value:02X}".encode("ascii")


class Tf0Decoder(BufferedDecoder):
    """Decoder for ``STX ± d6 dp XORh XORl ETX``."""

    def _parse_one(self) -> tuple[int, IndicatorEvent | None]:
        buf = self._buf
        start = buf.find(STX)
        if start < 0:
            return 0, None
        if start > 0:
            return start, FrameError("bytes before start byte", bytes(buf[:start]))
        next_start = buf.find(STX, 1, TF0_LENGTH)
        if next_start > 0:
            return next_start, FrameError("truncated frame", bytes(buf[:next_start]))
        if len(buf) < TF0_LENGTH:
            return 0, None
        frame = bytes(buf[:TF0_LENGTH])
        return TF0_LENGTH, _decode_tf0(frame)


def _decode_tf0(frame: bytes) -> IndicatorEvent:
    if frame[-1] != ETX:
        return FrameError("missing ETX", frame)
    body = frame[1:9]
    if _hex_nibbles(_xor(body)) != frame[9:11]:
        return FrameError("XOR check failed", frame)
    sign = chr(body[0])
    count = parse_digits(body[1:7])
    decimals = body[7] - ord("0")
    if sign not in "+-" or count is None or not 0 <= decimals <= 4:
        return FrameError("bad sign, digits or decimal count", frame)
    kg = count / 10**decimals
    return IndicatorReading(kg=-kg if sign == "-" else kg, motion=None, raw=frame)


class Tf0Encoder:
    """Encoder for tF=0; ``decimals`` is the indicator's decimal-point setting (0-4)."""

    def __init__(self, decimals: int = 0) -> None:
        if not 0 <= decimals <= 4:
            raise LocalProtocolError(f"yaohua-tf0: decimals must be 0..4, not {decimals}")
        self._decimals = decimals

    def encode(self, reading: IndicatorReading) -> bytes:
        kg = require_kg(reading, "yaohua-tf0")
        count = round(abs(kg) * 10**self._decimals)
        if count > 999_999:
            raise LocalProtocolError(f"yaohua-tf0: {kg} does not fit in 6 digits")
        sign = "-" if kg < 0 and count else "+"
        body = f"{sign}{count:06d}{self._decimals}".encode("ascii")
        return bytes([STX]) + body + _hex_nibbles(_xor(body)) + bytes([ETX])


class EqDecoder(BufferedDecoder):
    """Decoder for the ``=`` formats, forward or reversed digit order."""

    def __init__(self, *, reversed_digits: bool) -> None:
        super().__init__()
        self._reversed = reversed_digits

    def _parse_one(self) -> tuple[int, IndicatorEvent | None]:
        buf = self._buf
        start = buf.find(EQ_START)
        if start < 0:
            return 0, None
        if start > 0:
            return start, FrameError("bytes before start byte", bytes(buf[:start]))
        next_start = buf.find(EQ_START, 1, EQ_BODY + 2)
        if 0 < next_start != EQ_BODY + 1:
            return next_start, FrameError("wrong frame length", bytes(buf[:next_start]))
        if len(buf) < EQ_BODY + 1:
            return 0, None
        frame = bytes(buf[: EQ_BODY + 1])
        return EQ_BODY + 1, self._decode(frame)

    def _decode(self, frame: bytes) -> IndicatorEvent:
        try:
            text = frame[1:].decode("ascii")
        except UnicodeDecodeError:
            return FrameError("non-ASCII byte in frame", frame)
        if self._reversed:
            text = text[::-1]
        negative = text.startswith("-")
        # The first character is the sign slot: a '0' there may precede blank padding.
        unsigned = text[1:] if negative or text.startswith("0 ") else text
        value = parse_number(unsigned)
        if value is None or value < 0 or "+" in text[1:] or "-" in text[1:]:
            return FrameError("not a number", frame)
        return IndicatorReading(kg=-value if negative else value, motion=None, raw=frame)


class EqEncoder:
    """Encoder for the ``=`` formats; ``decimals`` places the decimal point (0 = none)."""

    def __init__(self, *, reversed_digits: bool, decimals: int = 0) -> None:
        if not 0 <= decimals <= 5:
            raise LocalProtocolError(f"yaohua-eq: decimals must be 0..5, not {decimals}")
        self._reversed = reversed_digits
        self._decimals = decimals

    def encode(self, reading: IndicatorReading) -> bytes:
        kg = require_kg(reading, "yaohua-eq")
        text = format_fixed(kg, self._decimals)
        negative = kg < 0 and float(text) != 0
        text = "-" + text.zfill(EQ_BODY - 1) if negative else text.zfill(EQ_BODY)
        if len(text) != EQ_BODY:
            raise LocalProtocolError(f"yaohua-eq: {kg} does not fit in {EQ_BODY} characters")
        if self._reversed:
            text = text[::-1]
        return b"=" + text.encode("ascii")
