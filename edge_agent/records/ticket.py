"""The weighing ticket of one transit record: plain text, or ESC/POS bytes for a receipt printer.

Pure functions: the record (with the log's header for the lane's name) goes in, text or bytes
come out. The weight printed is the indicator's own value (``indicator_kg``): a transit with no
indication on record has no ticket. The record's seq and hash let anyone check the ticket
against the log (``lanectl record verify --anchor SEQ:HASH``).

Transit body fields read (``records/bodies.py``; each optional but ``indicator_kg``):
``transit_id``, ``release_no`` (the pass), ``plates`` and ``containers`` (the pass's),
``plates_read`` (the cameras'), ``indicator_kg``, ``decision``, ``software`` (``{version,
sha256}`` of the software that recorded it; else what the log names before it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge_agent.records.codec import Record

ESC_INIT = b"\x1b@"  # ESC @: reset the printer
ESC_CODEPAGE_437 = b"\x1bt\x00"  # ESC t 0: code page 437
FS_CHINESE = b"\x1c&"  # FS &: GB18030 (Chinese) character mode
ESC_CENTER, ESC_LEFT = b"\x1ba\x01", b"\x1ba\x00"
ESC_BOLD_ON, ESC_BOLD_OFF = b"\x1bE\x01", b"\x1bE\x00"
FEED_BEFORE_CUT = b"\x1bd\x04"  # ESC d 4: the last line clears the cutter
CUT = b"\x1dV\x01"  # GS V 1: partial cut
ENCODINGS = {"gb18030": FS_CHINESE, "cp437": ESC_CODEPAGE_437}
DEFAULT_WIDTH = 32  # characters on a 58 mm roll; 42 or 48 on 80 mm
LABEL = 10  # the longest label ("Container") and a space


class TicketError(ValueError):
    """The record cannot be a weighing ticket; the message says why."""


@dataclass(frozen=True)
class Ticket:
    title: str
    lane: str
    segment: int
    seq: int
    hash: str
    utc: str
    weight: str
    fields: tuple[tuple[str, str], ...]  # label, value: the transit's facts in print order
    software: str
    software_hash: str


def utc_text(utc: float) -> str:
    return datetime.fromtimestamp(utc, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def kg_text(kg: float) -> str:
    """``32 480 kg``: thousands apart by a space (never a comma, read as a decimal point)."""
    return f"{kg:,.10g}".replace(",", " ") + " kg" if kg == int(kg) else f"{kg:g} kg"


def ticket_from_record(rec: Record, header: Record | None = None,
                       software: Mapping[str, Any] | None = None, *, segment: int = 0) -> Ticket:
    """The ticket of transit record ``rec`` (in segment ``segment`` under ``header``);
    ``software`` is used when the record does not name the software that recorded it.

    Raises:
        TicketError: not a transit record, or it holds no indicator value.
    """
    if rec.kind != "transit":
        raise TicketError(f"record {rec.seq} is a {rec.kind} record: only a transit has a "
                          "weighing ticket")  # fmt: skip
    body = rec.body
    shown = body.get("indicator_kg")
    if isinstance(shown, bool) or not isinstance(shown, int | float):
        raise TicketError(f"record {rec.seq} holds no indicator value (indicator_kg): the "
                          "weight on a ticket is the indicator's own, so it has none")
    head = header.body if header is not None else {}
    lane = " ".join(str(head[k]) for k in ("site", "lane") if head.get(k))
    claims = _mapping(body.get("pass"))
    facts: list[tuple[str, str]] = []
    for label, value in (("Pass", body.get("release_no") or claims.get("release_no")),
                         ("Plates", body.get("plates") or claims.get("plates")),
                         ("Container", body.get("containers") or claims.get("containers")),
                         ("Camera", body.get("plates_read")),
                         ("Decision", body.get("decision")),
                         ("Transit", body.get("transit_id")
                          or _mapping(body.get("ids")).get("transit_id"))):  # fmt: skip
        if _value(value):
            facts.append((label, _value(value)))
    made_by = _software(body) or dict(software or {})
    return Ticket(title="WEIGHING TICKET", lane=lane, segment=segment, seq=rec.seq, hash=rec.hash,
                  utc=utc_text(rec.utc), weight=kg_text(float(shown)), fields=tuple(facts),
                  software=str(made_by.get("version", "unknown")),
                  software_hash=str(made_by.get("sha256", "")))  # fmt: skip


def _value(value: Any) -> str:
    if value is None or isinstance(value, Mapping):
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value if v is not None)
    return str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _software(doc: Mapping[str, Any]) -> dict[str, Any]:
    found = doc.get("software")
    return dict(found) if isinstance(found, Mapping) and found.get("version") else {}


def columns(text: str) -> int:
    """Printed width: a CJK character (a plate's province) takes two columns."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def wrap(text: str, room: int) -> list[str]:
    """Lines of at most ``room`` columns, broken at spaces, a longer word broken anywhere."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        joined = f"{line} {word}" if line else word
        if columns(joined) <= room:
            line = joined
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:
            if columns(line + char) > room:
                lines.append(line)
                line = ""
            line += char
    return [*lines, line]


def _pair(label: str, value: str, width: int) -> list[str]:
    """``Label    value``, the value wrapped under itself when it is longer than the line."""
    parts = wrap(value, max(8, width - LABEL))
    return [f"{label:<{LABEL}}{parts[0]}"] + [" " * LABEL + part for part in parts[1:]]


def _hex(label: str, digest: str, width: int) -> list[str]:
    """A hash in groups of four hex digits (easy to read aloud and compare), wrapped."""
    groups = " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))
    return _pair(label, groups, width)


def _centered(text: str, width: int) -> str:
    return " " * max(0, (width - columns(text)) // 2) + text


def ticket_lines(ticket: Ticket, width: int = DEFAULT_WIDTH) -> list[str]:
    """The ticket as lines of at most ``width`` characters (the title first)."""
    rule = "-" * width
    lines = [_centered(ticket.title, width)]
    if ticket.lane:
        lines.append(_centered(ticket.lane, width))
    lines += [rule, *_pair("Time UTC", ticket.utc.removesuffix(" UTC"), width),
              *_pair("Gross", ticket.weight, width)]
    for label, value in ticket.fields:
        lines += _pair(label, value, width)
    lines += [rule, *_pair("Record", f"segment {ticket.segment} seq {ticket.seq}", width),
              *_hex("Hash", ticket.hash, width),
              *_pair("Software", ticket.software, width)]  # fmt: skip
    if ticket.software_hash:
        lines += _hex("SW id", ticket.software_hash, width)
    return lines


def render_text(ticket: Ticket, width: int = DEFAULT_WIDTH) -> str:
    return "\n".join(ticket_lines(ticket, width)) + "\n"


def render_escpos(ticket: Ticket, width: int = DEFAULT_WIDTH,
                  encoding: str = "gb18030") -> bytes:  # fmt: skip
    """ESC/POS: reset, character set, the title centred and bold, the lines, feed and cut.

    A character the code page lacks prints as ``?``: the ticket still prints.
    """
    if encoding not in ENCODINGS:
        raise TicketError(f"unknown printer encoding {encoding!r}: use one of "
                          f"{', '.join(ENCODINGS)}")  # fmt: skip
    lines = ticket_lines(ticket, width)
    title, rest = lines[0].strip(), lines[1:]

    def encoded(text: str) -> bytes:
        return text.encode(encoding, errors="replace") + b"\n"

    out = [ESC_INIT, ENCODINGS[encoding], ESC_CENTER, ESC_BOLD_ON, encoded(title), ESC_BOLD_OFF,
           ESC_LEFT]  # fmt: skip
    out += [encoded(line) for line in rest]
    out += [FEED_BEFORE_CUT, CUT]
    return b"".join(out)


def software_for(records: Sequence[Record]) -> dict[str, Any]:
    """The software on record at the end of ``records`` (a segment up to the ticket's record):
    the latest a transit or ``software_update`` names, else the header's (or its anchor's);
    empty when they name none."""
    found: dict[str, Any] = {}
    for rec in records:
        body = rec.body
        if rec.kind == "transit":
            found = _software(body) or found
        elif rec.kind == "software_update":
            found = _software({"software": body.get("new")}) or found
        elif rec.kind == "header":
            found = _software(body) or _software(_mapping(body.get("anchor"))) or found
    return found
