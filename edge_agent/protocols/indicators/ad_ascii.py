"""A&D-style ASCII line (also CAS, OHAUS and many clones).

``H1 , [H2 ,] DATA UNIT CR LF``, e.g. ``ST,GS,+0012345kg``: H1 ``ST`` stable, ``US`` unstable,
``OL`` overload (digits sent as spaces), ``LO``/``UL`` out of range, ``QT``/``HD`` count or
hold; H2 ``GS`` gross, ``NT`` net, ``TR`` tare (not a weight: reported as a frame error).
DATA is 8 characters with sign and point, leading zeros possibly spaces; the unit has 2 or 3
characters (``kg``, `` kg``). No checksum: the line and its fields are checked strictly.
"""

from __future__ import annotations

import re

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
MAX_LINE = 40
MOTION_BY_HEADER: dict[str, bool | None] = {
    "ST": False, "US": True, "OL": None, "LO": None, "UL": None, "QT": None, "HD": None,
}
OUT_OF_RANGE = {"OL", "LO", "UL"}
UNIT_TO_KG = {"kg": 1.0, "g": 0.001, "t": 1000.0, "lb": LB_TO_KG}
_HEADER = re.compile(rb"(?:ST|US|OL|LO|UL|QT|HD),")
_DATA = re.compile(r"([+-]?)([0-9. ]*?)\s*([A-Za-z]{0,3})")


class AdAsciiDecoder(BufferedDecoder):
    """Decoder for ``ST,GS,+0012345kg`` lines."""

    def _parse_one(self) -> tuple[int, IndicatorEvent | None]:
        end = self._buf.find(LF, 0, MAX_LINE + 1)
        if end < 0:
            if len(self._buf) > MAX_LINE:
                return MAX_LINE, FrameError("line too long", bytes(self._buf[:MAX_LINE]))
            return 0, None
        raw = bytes(self._buf[: end + 1])
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            return end + 1, None
        event = _decode_line(line, raw)
        resync = _last_header(line)
        if isinstance(event, FrameError) and resync > 0:
            # The start of this line was lost or noise came first: keep the line's tail.
            return resync, FrameError("bytes before a line header", raw[:resync])
        return end + 1, event


def _last_header(line: bytes) -> int:
    """Index of the last ``H1,`` header in ``line`` (0 or -1 when none after the start)."""
    starts = [m.start() for m in _HEADER.finditer(line)]
    return starts[-1] if starts else -1


def _decode_line(line: bytes, raw: bytes) -> IndicatorEvent:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return FrameError("non-ASCII byte in line", raw)
    fields = text.split(",")
    if len(fields) not in (2, 3):
        return FrameError("expected 'H1,[H2,]value unit'", raw)
    header = fields[0].strip().upper()
    kind = fields[1].strip().upper() if len(fields) == 3 else "GS"
    if header not in MOTION_BY_HEADER or kind not in ("GS", "NT", "TR"):
        return FrameError(f"unknown header {header!r},{kind!r}", raw)
    if kind == "TR":
        return FrameError("tare line, not a weight", raw)
    match = _DATA.fullmatch(fields[-1].strip(" "))
    unit = match.group(3).lower() if match else ""
    if match is None or (unit and unit not in UNIT_TO_KG):
        return FrameError("value or unit not understood", raw)
    number = match.group(2)
    out_of_range = header in OUT_OF_RANGE
    if not number.replace(".", "").strip():
        if not out_of_range:
            return FrameError("no weight in a stable or unstable line", raw)
        kg = None
    else:
        value = parse_number(match.group(1) + number)
        if value is None:
            return FrameError("value not understood", raw)
        kg = round(value * UNIT_TO_KG[unit or "kg"], 6)
    return IndicatorReading(
        kg=kg, motion=MOTION_BY_HEADER[header], overload=out_of_range, net=kind == "NT", raw=raw
    )


class AdAsciiEncoder:
    """Encoder for the A&D line; ``unit`` is sent as given (``kg`` or `` kg``).

    A net reading is sent with H2 ``NT``; without the second header the line cannot say net.
    """

    def __init__(
        self,
        *,
        second_header: bool = True,
        unit: str = "kg",
        decimals: int = 0,
        spaces: bool = False,
    ) -> None:
        if unit.strip().lower() not in UNIT_TO_KG or len(unit) not in (2, 3):
            raise LocalProtocolError(f"ad-ascii: unit {unit!r} must be 2 or 3 characters")
        self._second = second_header
        self._unit = unit
        self._decimals = decimals
        self._spaces = spaces

    def encode(self, reading: IndicatorReading) -> bytes:
        header = "OL" if reading.overload else "US" if reading.motion else "ST"
        if reading.kg is None or reading.overload:
            data = "+" + " " * 7
        else:
            scale = UNIT_TO_KG[self._unit.strip().lower()]
            digits = format_fixed(reading.kg / scale, self._decimals)
            if len(digits) > 7:
                raise LocalProtocolError(f"ad-ascii: {reading.kg} does not fit in 7 characters")
            sign = "-" if reading.kg < 0 and float(digits) else "+"
            data = sign + (digits.rjust(7) if self._spaces else digits.zfill(7))
        heads = f"{header},{'NT' if reading.net else 'GS'}," if self._second else f"{header},"
        return f"{heads}{data}{self._unit}\r\n".encode("ascii")
