"""E-seal / UHF RFID reader line protocol: bytes in, seal sightings out (sans-I/O).

Container e-seals (ISO 18185) and UHF bolt-seal tags are read by a gate reader that reports
each tag it hears, again and again while the tag stays in range. Real readers speak
vendor protocols over RS-232/485 (seal id, seal status, signal strength per read); the lane
speaks one framed ASCII form, like NMEA 0183, which a small adapter (or the reader's own
configurable output) produces::

    $SEAL,<tag id>,<status>,<rssi>*<checksum>\\r\\n     one sighting
    $HBT*<checksum>\\r\\n                                the reader is alive (about 1 per s)

    $SEAL,ES-00471135,closed,-58*3B\\r\\n     (0x3B checked by hand)

- tag id: 1..32 characters ``0-9 A-Z -`` (lower case is read as upper case);
- status: ``closed`` (sealed and intact), ``open`` (not sealing), ``tampered`` (the seal
  detected a tamper since it was closed; it stays so);
- rssi: signed whole dBm, -128..0, or empty when the reader does not measure it;
- checksum: two hex digits, the XOR of every byte between ``$`` and ``*``.

Lines end in CR LF (a bare LF is accepted) and are at most ``MAX_LINE`` bytes. The decoder
never raises on input: garbage, a bad checksum, a cut line or an unknown sentence is a
``SealFrameError`` event, and decoding resumes at the next ``$``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce

from edge_agent.errors import LocalProtocolError
from edge_agent.identity.seals import SEAL_STATUSES

MAX_LINE = 82  # NMEA's limit, start to line end; a longer line is noise
MAX_TAG_CHARS = 32
RSSI_RANGE = range(-128, 1)
_TAG = re.compile(rf"[0-9A-Z-]{{1,{MAX_TAG_CHARS}}}")
_RSSI = re.compile(r"-?\d{1,3}")
_HEX = frozenset(b"0123456789ABCDEFabcdef")


@dataclass(frozen=True, slots=True)
class SealRead:
    """One sighting of one tag."""

    tag_id: str
    status: str  # closed | open | tampered
    rssi_dbm: int | None = None
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class ReaderHeartbeat:
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class SealFrameError:
    """Bytes that are no valid sentence; ``reason`` says why."""

    reason: str
    raw: bytes


EsealEvent = SealRead | ReaderHeartbeat | SealFrameError


def checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*``."""
    return reduce(lambda acc, byte: acc ^ byte, body, 0)


def _frame(body: str) -> bytes:
    data = body.encode("ascii")
    return b"$" + data + b"*" + f"{checksum(data):02X}".encode() + b"\r\n"


def encode_read(read: SealRead) -> bytes:
    """The sentence a reader sends for ``read``; ``LocalProtocolError`` if it cannot carry it."""
    if not isinstance(read.tag_id, str) or _TAG.fullmatch(read.tag_id) is None:
        raise LocalProtocolError(f"tag id {read.tag_id!r}: 1..{MAX_TAG_CHARS} characters "
                                 "0-9, A-Z or '-'")
    if read.status not in SEAL_STATUSES:
        raise LocalProtocolError(f"seal status {read.status!r}: one of {', '.join(SEAL_STATUSES)}")
    rssi = read.rssi_dbm
    if rssi is not None and (type(rssi) is not int or rssi not in RSSI_RANGE):
        raise LocalProtocolError(f"rssi {rssi!r}: whole dBm from -128 to 0, or None")
    return _frame(f"SEAL,{read.tag_id},{read.status},{'' if rssi is None else rssi}")


def encode_heartbeat() -> bytes:
    return _frame("HBT")


def parse_sentence(line: bytes) -> EsealEvent:
    """One line from ``$`` to its end (CR LF or LF included or not) as an event."""
    raw = line
    line = line.rstrip(b"\r\n")
    if not line.startswith(b"$"):
        return SealFrameError("sentence does not start with $", raw)
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 3 or not set(line[star + 1:]) <= _HEX:
        return SealFrameError("no *HH checksum at the end", raw)
    body = line[1:star]
    if checksum(body) != int(line[star + 1:], 16):
        return SealFrameError(f"checksum {line[star + 1:].decode()} does not match "
                              f"{checksum(body):02X}", raw)
    if not body.isascii() or any(b < 0x20 or b == 0x7F for b in body):
        return SealFrameError("non-printable bytes in the sentence", raw)
    fields = body.decode("ascii").split(",")
    if fields == ["HBT"]:
        return ReaderHeartbeat(raw)
    if fields[0] != "SEAL":
        return SealFrameError(f"unknown sentence {fields[0][:10]!r}", raw)
    if len(fields) != 4:
        return SealFrameError(f"SEAL has {len(fields) - 1} fields, expected 3", raw)
    tag, status, rssi = fields[1].upper(), fields[2].lower(), fields[3]
    if _TAG.fullmatch(tag) is None:
        return SealFrameError(f"tag id {fields[1][:40]!r} is not 1..{MAX_TAG_CHARS} "
                              "characters 0-9, A-Z or '-'", raw)
    if status not in SEAL_STATUSES:
        return SealFrameError(f"unknown seal status {fields[2][:20]!r}", raw)
    if rssi and (_RSSI.fullmatch(rssi) is None or int(rssi) not in RSSI_RANGE):
        return SealFrameError(f"rssi {rssi[:10]!r} is not whole dBm from -128 to 0", raw)
    return SealRead(tag, status, int(rssi) if rssi else None, raw)


class EsealDecoder:
    """Bounded, resynchronising line decoder: feed bytes, get the events they completed."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> list[EsealEvent]:
        self._buf += data
        events: list[EsealEvent] = []
        while self._buf:
            start = self._buf.find(b"$")
            junk = bytes(self._buf if start < 0 else self._buf[:start])
            if junk.strip(b"\r\n\x00 "):  # line ends and idle-line NULs are no error
                events.append(SealFrameError("bytes outside a sentence", junk))
            if start < 0:
                self._buf.clear()
                break
            del self._buf[:start]
            end = self._buf.find(b"\n")
            restart = self._buf.find(b"$", 1, len(self._buf) if end < 0 else end)
            if restart > 0:
                events.append(SealFrameError("sentence cut short", bytes(self._buf[:restart])))
                del self._buf[:restart]
                continue
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    events.append(SealFrameError("line too long", bytes(self._buf)))
                    self._buf.clear()
                break
            line = bytes(self._buf[:end + 1])
            del self._buf[:end + 1]
            if len(line.rstrip(b"\r\n")) > MAX_LINE:
                events.append(SealFrameError("line too long", line))
            else:
                events.append(parse_sentence(line))
        return events
