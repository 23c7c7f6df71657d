"""SMA Level 1 (Scale Manufacturers Association SCP-0499) replies.

The host polls with ``<LF>W<CR>`` (or ``<LF>R<CR>`` for a continuous stream); a weight reply
is ``<LF> s r n m f xxxxxx.xxx uuu <CR>``: s status (``Z`` centre of zero, ``O`` over, ``U``
under, ``E``/``I``/``T`` zero, initial-zero or tare error, space ok), r range, n ``G``/``N``
(``g``/``n`` low resolution; ``T`` = a tare reply), m ``M`` in motion, f reserved, the weight
right-justified in 10 characters (dashes when it cannot be shown), a 3-character unit.
``<LF>?<CR>`` (command not understood), ``<LF>!<CR>`` (parity or framing error at the
indicator) and a weight reply with status ``E``, ``I`` or ``T`` are reported as frame errors
naming the indicator's complaint: none of them carries a weight to use.
"""

from __future__ import annotations

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols.indicators.base import (
    LB_TO_KG,
    BufferedDecoder,
    FrameError,
    IndicatorEvent,
    IndicatorReading,
    format_fixed,
    parse_number,
)

LF = 0x0A
CR = 0x0D
REPLY_BODY = 18
UNIT_TO_KG = {"kg": 1.0, "g": 0.001, "t": 1000.0, "lb": LB_TO_KG}
COMMANDS = frozenset("WZTMHRSQDABIN\x1b")
STATUS_ERRORS = {
    "E": "indicator reports a zero error",
    "I": "indicator reports an initial-zero error",
    "T": "indicator reports a tare error",
}


def sma_command(letter: str) -> bytes:
    """Bytes of a Level 1 command, e.g. ``sma_command("W")`` = ``b"\\nW\\r"``."""
    if letter not in COMMANDS:
        raise LocalProtocolError(f"sma: {letter!r} is not a Level 1 command")
    return b"\n" + letter.encode("ascii") + b"\r"


class SmaDecoder(BufferedDecoder):
    """Decoder for SMA Level 1 weight replies."""

    def _parse_one(self) -> tuple[int, IndicatorEvent | None]:
        buf = self._buf
        start = buf.find(LF)
        if start < 0:
            return (0, None) if len(buf) <= REPLY_BODY + 2 else (len(buf), _junk(buf))
        if start > 0:
            return start, FrameError("bytes before start byte", bytes(buf[:start]))
        end = buf.find(CR, 1, REPLY_BODY + 2)
        early = buf.find(LF, 1, REPLY_BODY + 2)
        if early > 0 and (end < 0 or early < end):
            return early, FrameError("truncated reply", bytes(buf[:early]))
        if end < 0:
            if len(buf) < REPLY_BODY + 2:
                return 0, None
            return REPLY_BODY + 2, FrameError("reply too long", bytes(buf[: REPLY_BODY + 2]))
        raw = bytes(buf[: end + 1])
        return end + 1, _decode_reply(raw)


def _junk(buf: bytearray) -> FrameError:
    return FrameError("bytes before start byte", bytes(buf))


def _decode_reply(raw: bytes) -> IndicatorEvent:
    body = raw[1:-1]
    if body == b"?":
        return FrameError("indicator did not understand the command", raw)
    if body == b"!":
        return FrameError("indicator saw a parity or framing error", raw)
    if len(body) != REPLY_BODY:
        return FrameError("reply of unexpected length", raw)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return FrameError("non-ASCII byte in reply", raw)
    status, kind, motion, weight, unit = text[0], text[2], text[3], text[5:15], text[15:18]
    if status not in " ZOUEIT" or kind not in "GNgnT" or motion not in " M":
        return FrameError("status, kind or motion character not understood", raw)
    if kind == "T":
        return FrameError("tare reply, not a weight", raw)
    if status in STATUS_ERRORS:
        # The indicator itself says the number is not a valid weight.
        return FrameError(STATUS_ERRORS[status], raw)
    unit_key = unit.strip().lower()
    if unit_key not in UNIT_TO_KG:
        return FrameError(f"unit {unit!r} not understood", raw)
    overload = status in "OU"
    if weight.strip().strip("-") == "" and (overload or "-" in weight):
        kg = None
    else:
        value = parse_number(weight)
        if value is None:
            return FrameError("weight field not understood", raw)
        kg = round(value * UNIT_TO_KG[unit_key], 6)
    return IndicatorReading(
        kg=kg, motion=motion == "M", overload=overload, net=kind in "Nn", raw=raw
    )


class SmaEncoder:
    """Encoder for the indicator's weight reply (kg, ``decimals`` places)."""

    def __init__(self, *, decimals: int = 0) -> None:
        self._decimals = decimals

    def encode(self, reading: IndicatorReading) -> bytes:
        status = "O" if reading.overload else "Z" if reading.kg == 0 else " "
        if reading.kg is None or reading.overload:
            weight = "-" * 10
        else:
            digits = format_fixed(reading.kg, self._decimals)
            weight = ("-" if reading.kg < 0 and float(digits) else "") + digits
            if len(weight) > 10:
                raise LocalProtocolError(f"sma: {reading.kg} does not fit in 10 characters")
        kind = "N" if reading.net else "G"
        motion = "M" if reading.motion else " "
        body = f"{status}1{kind}{motion} {weight:>10}kg "
        return b"\n" + body.encode("ascii") + b"\r"
