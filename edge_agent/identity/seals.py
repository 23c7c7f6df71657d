"""The seals on a truck against the seals on its pass. Pure functions.

A read is either a plain string (a seal number typed by an officer who looked at a
mechanical bolt seal, or sent by a remote operator) or an e-seal sighting from the RFID
reader, which also says whether the seal is ``closed``, ``open`` or ``tampered``. A sighting
travels as an object with ``tag_id`` and ``status`` or as the text ``ID#status``
(``sighting_text``), so it fits wherever reads are plain strings. Seal
numbers are compared after normalisation (upper case, full-width folded to ASCII, without
spaces, dashes, dots or slashes); there is no OCR folding, since a seal number has no check
digit that could confirm a repair.

Verdict, first rule that applies:

- a seal on the pass reports ``tampered``: ``vehicle.seal_tampered``;
- a seal on the pass reports ``open`` (it no longer seals anything), or a seal on the pass
  was not seen while some other seal was: ``vehicle.seal_mismatch``;
- a seal on the pass was not seen at all: ``vehicle.seal_unread``;
- otherwise every seal on the pass was seen closed (a typed seal counts as closed: the
  officer checked it): no reason.

Seals not on the pass never fail a truck on their own: an RFID reader also hears the seals
of a truck in the next lane. They are listed in ``unexpected``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.catalogue import Code

SEAL_MISMATCH = Code.VEHICLE_SEAL_MISMATCH
SEAL_UNREAD = Code.VEHICLE_SEAL_UNREAD
SEAL_TAMPERED = Code.VEHICLE_SEAL_TAMPERED

CLOSED, OPEN, TAMPERED = "closed", "open", "tampered"
SEAL_STATUSES = (CLOSED, OPEN, TAMPERED)
_SEVERITY = {CLOSED: 0, OPEN: 1, TAMPERED: 2}
MAX_SEAL_CHARS = 64
_STRIP = re.compile(r"[\s\-./]+")
_SIGHTING = re.compile(r"(.+)#(closed|open|tampered)", re.DOTALL)


class SealSighting(Protocol):
    """What an e-seal reader reports (``edge_agent.protocols.eseal.SealRead`` is one)."""

    @property
    def tag_id(self) -> str: ...

    @property
    def status(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SealVerdict:
    """The seals seen against the pass; ``reason`` is None when every one was seen closed."""

    matched: tuple[str, ...]  # seals on the pass seen closed, as written on the pass
    reason: str | None  # None, vehicle.seal_tampered, vehicle.seal_mismatch, vehicle.seal_unread
    missing: tuple[str, ...] = ()  # seals on the pass not seen
    opened: tuple[str, ...] = ()  # seals on the pass that report open
    tampered: tuple[str, ...] = ()  # seals on the pass that report tampered
    unexpected: tuple[str, ...] = ()  # seals seen that are not on the pass, as first read

    @property
    def detail(self) -> str:
        """One line for the officer."""
        parts = []
        for label, seals in (("tampered", self.tampered), ("open", self.opened),
                             ("not seen", self.missing), ("not on the pass", self.unexpected)):
            if seals:
                parts.append(f"{label}: " + ", ".join(seals))
        return "; ".join(parts) or "every seal on the pass seen closed"

    def as_data(self) -> dict[str, Any]:
        """The verdict's evidence for an event."""
        return {"matched": list(self.matched), "missing": list(self.missing),
                "opened": list(self.opened), "tampered": list(self.tampered),
                "unexpected": list(self.unexpected)}


def sighting_text(tag_id: str, status: str) -> str:
    """An e-seal sighting as one read text: ``"ES-00471135#tampered"``."""
    return f"{tag_id}#{status}"


def normalise_seal(text: str) -> str:
    """``"tw 123-456"`` -> ``"TW123456"``."""
    return _STRIP.sub("", unicodedata.normalize("NFKC", text)).upper()


def _sighting(read: object) -> tuple[str, str, str] | None:
    """(normalised seal number, status, number as read) of one read; None: it is no seal."""
    if isinstance(read, str):
        sighting = _SIGHTING.fullmatch(read)
        tag, status = (sighting[1], sighting[2]) if sighting else (read, CLOSED)
    else:
        tag, status = getattr(read, "tag_id", None), getattr(read, "status", None)
        if not isinstance(tag, str) or status not in _SEVERITY:
            return None
    if len(tag) > MAX_SEAL_CHARS:
        return None
    number = normalise_seal(tag)
    return (number, str(status), tag) if number else None


def match_seals(reads: Sequence[str | SealSighting], expected: Sequence[str]) -> SealVerdict:
    """Check every seal on the pass (``expected``) against the reads. Never raises.

    A seal read several times keeps its worst status (tampered, then open, then closed):
    e-seals latch a tamper, so a later ``closed`` does not undo it.
    """
    on_pass: dict[str, str] = {}
    for seal in expected:
        if isinstance(seal, str) and len(seal) <= MAX_SEAL_CHARS and normalise_seal(seal):
            on_pass.setdefault(normalise_seal(seal), seal)
    worst: dict[str, str] = {}
    as_read: dict[str, str] = {}
    for read in reads:
        sighting = _sighting(read)
        if sighting is None:
            continue
        number, status, text = sighting
        as_read.setdefault(number, text)
        if _SEVERITY[status] >= _SEVERITY[worst.get(number, CLOSED)]:
            worst[number] = status
    by_status: dict[str | None, list[str]] = {CLOSED: [], OPEN: [], TAMPERED: []}
    for number, text in on_pass.items():
        by_status.setdefault(worst.get(number), []).append(text)
    matched, opened = tuple(by_status[CLOSED]), tuple(by_status[OPEN])
    tampered = tuple(by_status[TAMPERED])
    missing = tuple(text for number, text in on_pass.items() if number not in worst)
    unexpected = tuple(as_read[number] for number in worst if number not in on_pass)
    if tampered:
        reason: str | None = SEAL_TAMPERED
    elif opened or (missing and unexpected):
        reason = SEAL_MISMATCH
    elif missing:
        reason = SEAL_UNREAD
    else:
        reason = None
    return SealVerdict(matched, reason, missing, opened, tampered, unexpected)
