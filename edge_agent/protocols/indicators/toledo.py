"""Toledo continuous output (Mettler Toledo and its many clones).

Full form, 17 bytes or 18 with checksum; short form without the tare field, 11 or 12::

    STX SWA SWB SWC W5..W0 [T5..T0] CR [CKS]
    02  32  30  20  30 33 35 34 38 30  30 30 30 30 30 30  0D 1B    = 35 480 kg gross, stable

Digits carry no sign or point: the decimal position is SWA bits 0-2 (000 = two fixed zeros
after the digits, 001 one, 010 none, 011..111 one to five decimals), SWB bit0 net, bit1 minus,
bit2 out of range, bit3 motion, bit4 kg (else lb); SWC bits 0-2 = 1 g, 2 t (a clone extension).
Bit 7 of every character is the parity bit of a 7E1 line; we mask it, so a 7E1 stream read as
8N1 still decodes. Clones disagree on the "constant" bits, so only the fields above are read.
Leading zeros may come as spaces; a space after a digit is an error, never a zero. The
checksum is the two's complement of the 7-bit sum of everything from STX to CR; whether a
device sends it is learnt from the stream (the byte after CR is either the checksum or the next
STX) unless configured.
"""

from __future__ import annotations

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols.indicators.base import (
    LB_TO_KG,
    BufferedDecoder,
    FrameError,
    IndicatorEvent,
    IndicatorReading,
    parse_digits,
    require_kg,
)

STX = 0x02
CR = 0x0D
SHORT_CR_INDEX = 10
FULL_CR_INDEX = 16
DIGIT_FACTOR = {0: 100.0, 1: 10.0, 2: 1.0, 3: 0.1, 4: 0.01, 5: 0.001, 6: 1e-4, 7: 1e-5}
INCREMENT_BITS = {1: 0x08, 2: 0x10, 5: 0x18}
# Frames in a row that must agree before the checksum question is settled.
CHECKSUM_LOCK_AFTER = 4
# Frames in a row that contradict the settled answer before it is learnt afresh.
CHECKSUM_RECHECK_AFTER = 4


def checksum(frame: bytes) -> int:
    """The checksum character for ``frame`` (STX..CR inclusive)."""
    return -sum(b & 0x7F for b in frame) & 0x7F


def _with_parity(byte: int) -> int:
    """Set bit 7 so the character has even parity, as a 7E1 line puts it on the wire."""
    return byte | 0x80 if bin(byte).count("1") % 2 else byte


class ToledoDecoder(BufferedDecoder):
    """Decoder for full and short Toledo frames, with or without checksum.

    With ``checksum=None`` the decoder learns whether the device sends one. Each frame votes
    by what follows its CR: its valid checksum says yes, the next STX says no, anything else
    (noise, a corrupted frame) says nothing. The answer settles only after
    ``CHECKSUM_LOCK_AFTER`` agreeing votes in a row, so line noise on a fresh port cannot
    settle it; once settled, ``CHECKSUM_RECHECK_AFTER`` frames in a row that contradict it
    send the decoder back to learning, so a wrong answer (or a reconfigured device) costs a
    few frames, not the port.
    """

    def __init__(self, *, checksum: bool | None = None) -> None:
        super().__init__()
        self._fixed = checksum is not None
        self._checksum = checksum
        self._streak: tuple[bool, int] = (False, 0)
        self._against = 0
        # Last frame taken without a checksum; the byte after it shows whether one was sent.
        self._unchecked: bytes | None = None

    def _parse_one(self) -> tuple[int, IndicatorEvent | None]:
        masked = bytes(b & 0x7F for b in self._buf[: FULL_CR_INDEX + 3])
        if self._unchecked is not None:
            self._follow_up(self._unchecked, masked[0])
        start = masked.find(STX)
        if start < 0:
            return (0, None) if len(self._buf) <= FULL_CR_INDEX else self._junk(len(masked))
        if start > 0:
            return self._junk(start)
        cr_index = self._find_cr(masked)
        if cr_index is None:
            return 0, None
        if cr_index < 0:
            end = next((i for i in range(1, len(masked)) if masked[i] == STX), FULL_CR_INDEX + 1)
            return end, FrameError("truncated or malformed frame", bytes(self._buf[:end]))
        short = cr_index == SHORT_CR_INDEX
        if self._checksum is False:
            frame = bytes(self._buf[: cr_index + 1])
            if not self._fixed:
                self._unchecked = frame
            return cr_index + 1, _decode_fields(frame, short=short)
        if len(masked) <= cr_index + 1:
            return 0, None
        after, expected = masked[cr_index + 1], checksum(masked[: cr_index + 1])
        if self._checksum is None:
            if after == STX == expected and len(masked) <= cr_index + 2:
                return 0, None  # the checksum is STX itself: only the next byte can tell
            vote = _vote(masked, cr_index, expected)
            if vote is not None:
                self._tally(vote)
            if vote is False:
                return cr_index + 1, _decode_fields(bytes(self._buf[: cr_index + 1]), short=short)
        elif after == STX != expected:
            # The checksum is missing: keep the STX, it starts the next frame.
            self._contradicted()
            frame = bytes(self._buf[: cr_index + 1])
            return cr_index + 1, FrameError("no checksum after CR", frame)
        frame = bytes(self._buf[: cr_index + 2])
        if after != expected:
            return cr_index + 2, FrameError("checksum mismatch", frame)
        self._against = 0
        return cr_index + 2, _decode_fields(frame, short=short)

    def _junk(self, count: int) -> tuple[int, IndicatorEvent]:
        return count, FrameError("bytes before start byte", bytes(self._buf[:count]))

    @staticmethod
    def _find_cr(masked: bytes) -> int | None:
        """Index of the frame's CR; None = need more bytes; -1 = no CR where one must be."""
        early_stx = masked.find(STX, 1, FULL_CR_INDEX + 1)
        for cr_index in (SHORT_CR_INDEX, FULL_CR_INDEX):
            if len(masked) <= cr_index:
                return -1 if early_stx > 0 else None
            if masked[cr_index] == CR and (early_stx < 0 or early_stx > cr_index):
                return cr_index
        return -1

    def _tally(self, vote: bool) -> None:
        same, count = self._streak
        self._streak = (vote, count + 1 if same == vote else 1)
        if self._streak[1] >= CHECKSUM_LOCK_AFTER:
            self._checksum, self._against = vote, 0

    def _follow_up(self, frame: bytes, after: int) -> None:
        """Judge the last unchecked ``frame`` by the byte that followed it."""
        self._unchecked = None
        if after == STX:
            self._against = 0
        elif after == checksum(frame):
            self._contradicted()

    def _contradicted(self) -> None:
        if self._fixed:
            return
        self._against += 1
        if self._against >= CHECKSUM_RECHECK_AFTER:
            self._checksum, self._streak, self._against = None, (False, 0), 0


def _vote(masked: bytes, cr_index: int, expected: int) -> bool | None:
    """What the bytes after the CR say, given the ``expected`` checksum: True = a checksum
    follows, False = none does, None = neither (noise or a corrupted frame)."""
    after = masked[cr_index + 1]
    if after == expected:
        # A checksum that happens to be STX is one only if the next frame's STX follows it.
        return after != STX or masked[cr_index + 2] == STX
    return False if after == STX else None


def _decode_fields(frame: bytes, *, short: bool) -> IndicatorEvent:
    masked = bytes(b & 0x7F for b in frame)
    swa, swb, swc = masked[1], masked[2], masked[3]
    digits = masked[4:10]
    count = parse_digits(digits)
    tare = parse_digits(masked[10:16]) if not short else 0
    if count is None or tare is None:
        return FrameError("weight or tare field is not digits", frame)
    out_of_range = bool(swb & 0x04)
    blank = digits.strip(b" ") == b""
    value = count * DIGIT_FACTOR[swa & 0x07]
    if swb & 0x02:
        value = -value
    unit_ext = swc & 0x07
    if unit_ext == 1:
        value /= 1000.0
    elif unit_ext == 2:
        value *= 1000.0
    elif not swb & 0x10:
        value *= LB_TO_KG
    return IndicatorReading(
        kg=None if out_of_range and blank else round(value, 6),
        motion=bool(swb & 0x08),
        overload=out_of_range,
        net=bool(swb & 0x01),
        raw=frame,
    )


class ToledoEncoder:
    """Encoder for Toledo frames, kg units.

    Args:
        with_checksum: append the checksum character.
        short: leave out the tare field.
        decimal_code: SWA bits 0-2 (2 = whole kg).
        increment: display increment multiplier, 1, 2 or 5.
        spaces: send leading zeros as spaces.
        parity: set bit 7 as a 7E1 line would (the stream as an 8N1 reader sees it).
    """

    def __init__(
        self,
        *,
        with_checksum: bool = True,
        short: bool = False,
        decimal_code: int = 2,
        increment: int = 1,
        spaces: bool = False,
        parity: bool = False,
        tare_kg: float = 0.0,
    ) -> None:
        if decimal_code not in DIGIT_FACTOR or increment not in INCREMENT_BITS:
            raise LocalProtocolError("toledo: decimal_code must be 0..7 and increment 1, 2 or 5")
        self._checksum = with_checksum
        self._short = short
        self._code = decimal_code
        self._increment = increment
        self._spaces = spaces
        self._parity = parity
        self._tare = tare_kg

    def _field(self, kg: float) -> bytes:
        count = round(abs(kg) / DIGIT_FACTOR[self._code])
        if count > 999_999:
            raise LocalProtocolError(f"toledo: {kg} does not fit in 6 digits")
        text = f"{count:6d}" if self._spaces else f"{count:06d}"
        return text.encode("ascii")

    def encode(self, reading: IndicatorReading) -> bytes:
        kg = require_kg(reading, "toledo")
        swa = 0x20 | INCREMENT_BITS[self._increment] | self._code
        swb = 0x20 | 0x10
        swb |= 0x01 if reading.net else 0
        swb |= 0x02 if kg < 0 and self._field(kg).strip(b" 0") else 0
        swb |= 0x04 if reading.overload else 0
        swb |= 0x08 if reading.motion else 0
        frame = bytes([STX, swa, swb, 0x20]) + self._field(kg)
        if not self._short:
            frame += self._field(self._tare)
        frame += bytes([CR])
        if self._checksum:
            frame += bytes([checksum(frame)])
        return bytes(_with_parity(b) for b in frame) if self._parity else frame
