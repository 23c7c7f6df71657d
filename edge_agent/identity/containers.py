"""The containers a truck carries against the containers on its pass. Pure functions.

Reads are plain strings from any source: the container camera's OCR, an officer typing the
number at the lane page, or a remote operator. Each read is normalised (upper case, no
spaces, dashes, dots or slashes; full-width characters folded to ASCII) and then:

- equal to a container on the pass: that container is seen;
- a valid ISO 6346 number that is not on the pass: an unexpected container;
- not a valid number: if exactly one single-character OCR confusion (0/O, 1/I, 8/B, 5/S,
  2/Z, in either direction, at any position) turns it into a valid number and that number is
  on the pass, the read is corrected to it; otherwise the read is unreadable. A repair that
  gives a valid number not on the pass is never made: guessing must not invent a container.

Every container on the pass must be seen, in any order. An unexpected container is
``vehicle.container_mismatch`` (the camera looks at this lane only, so a container nobody
declared is on this truck); a container on the pass that was not seen, with nothing read
against it, is ``vehicle.container_unread``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.catalogue import Code
from edge_agent.identity.iso6346 import is_valid_container, normalise_container

CONTAINER_MISMATCH = Code.VEHICLE_CONTAINER_MISMATCH
CONTAINER_UNREAD = Code.VEHICLE_CONTAINER_UNREAD

# Glyph pairs OCR engines confuse on container doors; each maps to its partner.
CONFUSIONS: dict[str, str] = {"0": "O", "O": "0", "1": "I", "I": "1", "8": "B", "B": "8",
                              "5": "S", "S": "5", "2": "Z", "Z": "2"}
MAX_READ_CHARS = 64  # longer text is no container number; not worth normalising
_SHOWN_CHARS = 24


@dataclass(frozen=True, slots=True)
class ContainerVerdict:
    """The containers seen against the pass; ``reason`` is None when every one was seen."""

    matched: tuple[str, ...]  # containers on the pass that were seen, as written on the pass
    reason: str | None  # None, vehicle.container_mismatch or vehicle.container_unread
    missing: tuple[str, ...] = ()  # containers on the pass that were not seen
    unexpected: tuple[str, ...] = ()  # valid numbers read that are not on the pass
    corrected: tuple[tuple[str, str], ...] = ()  # (read, container on the pass) by one confusion
    unreadable: tuple[str, ...] = ()  # reads that are no container number

    @property
    def detail(self) -> str:
        """One line for the officer: what was missing, unexpected or repaired."""
        parts = []
        if self.missing:
            parts.append("not seen: " + ", ".join(self.missing))
        if self.unexpected:
            parts.append("not on the pass: " + ", ".join(self.unexpected))
        if self.unreadable:
            parts.append("unreadable: " + ", ".join(repr(r) for r in self.unreadable))
        if self.corrected:
            parts.append("read as: " + ", ".join(f"{r!r} -> {n}" for r, n in self.corrected))
        return "; ".join(parts) or "every container on the pass seen"

    def as_data(self) -> dict[str, Any]:
        """The verdict's evidence for an event."""
        return {"matched": list(self.matched), "missing": list(self.missing),
                "unexpected": list(self.unexpected),
                "corrected": [{"read": r, "number": n} for r, n in self.corrected],
                "unreadable": list(self.unreadable)}


def clean_container(text: str) -> str:
    """A read as a candidate number: NFKC (full-width to ASCII), then ISO 6346 normalisation."""
    return normalise_container(unicodedata.normalize("NFKC", text))


def single_confusion_repairs(number: str) -> set[str]:
    """Every valid ISO 6346 number one OCR confusion away from ``number`` (normalised)."""
    repairs = set()
    for i, char in enumerate(number):
        partner = CONFUSIONS.get(char)
        if partner is not None:
            candidate = number[:i] + partner + number[i + 1:]
            if is_valid_container(candidate):
                repairs.add(candidate)
    return repairs


def _shown(read: str) -> str:
    return read if len(read) <= _SHOWN_CHARS else read[:_SHOWN_CHARS] + "..."


def match_containers(reads: Sequence[str], expected: Sequence[str]) -> ContainerVerdict:
    """Check every container on the pass (``expected``) against the reads. Never raises.

    With no container on the pass, a valid container read is still a mismatch: the truck
    carries a container nobody declared. Reads that are not text or are empty are ignored.
    """
    on_pass: dict[str, str] = {}  # normalised -> as written on the pass, in pass order
    for number in expected:
        if isinstance(number, str) and clean_container(number):
            on_pass.setdefault(clean_container(number), number)
    seen: set[str] = set()
    unexpected: dict[str, None] = {}
    corrected: dict[tuple[str, str], None] = {}
    unreadable: dict[str, None] = {}
    for read in reads:
        if not isinstance(read, str):
            continue
        if len(read) > MAX_READ_CHARS:
            unreadable[_shown(read)] = None
            continue
        number = clean_container(read)
        if not number:
            continue
        if number in on_pass:
            seen.add(number)
        elif is_valid_container(number):
            unexpected[number] = None
        else:
            repairs = single_confusion_repairs(number)
            repaired = repairs.pop() if len(repairs) == 1 else None
            if repaired is not None and repaired in on_pass:
                seen.add(repaired)
                corrected[(read, on_pass[repaired])] = None
            else:
                unreadable[_shown(read)] = None
    matched = tuple(text for number, text in on_pass.items() if number in seen)
    missing = tuple(text for number, text in on_pass.items() if number not in seen)
    if unexpected:
        reason: str | None = CONTAINER_MISMATCH
    elif missing:
        reason = CONTAINER_UNREAD
    else:
        reason = None
    return ContainerVerdict(matched, reason, missing, tuple(unexpected), tuple(corrected),
                            tuple(unreadable))
