"""Licence plate comparison that tolerates the usual OCR confusions. Pure functions.

A read and an expected plate match when they are equal after normalisation: upper case,
without spaces, dots, dashes or the middle dot (``·``) that Chinese plates print after the
issuing authority letter, and with the easily confused glyphs folded onto one:
0/O/D -> 0, 1/I -> 1, 8/B -> 8, 2/Z -> 2, 5/S -> 5.

Chinese plates start with a province character (京, 沪, 粤, ...). The province is
compared exactly when both texts have one; a province is never folded. A read that lacks
the province character (engines often drop it on a dirty or occluded plate) matches an
expected plate on the remaining characters, but the verdict says so
(``province_missing``) so the policy can treat it as weaker evidence. An expected plate
without a province never matches a read that has one against a different length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.catalogue import Code

PLATE_MISMATCH = Code.VEHICLE_PLATE_MISMATCH
PLATE_UNREAD = Code.VEHICLE_PLATE_UNREAD

_STRIP = re.compile(r"[\s.\-·•_]+")
_FOLD = str.maketrans({"O": "0", "D": "0", "I": "1", "B": "8", "Z": "2", "S": "5"})
MAX_PLATE_CHARS = 16


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


def _clean(text: str) -> str:
    # NFKC turns full-width letters and digits (Ａ, １) into ASCII.
    return _STRIP.sub("", unicodedata.normalize("NFKC", text)).upper()


def split_province(text: str) -> tuple[str | None, str]:
    """(province character or None, the rest) of a cleaned plate text."""
    if text and _is_cjk(text[0]):
        return text[0], text[1:]
    return None, text


def normalise_plate(text: str) -> str:
    """Upper case, separators removed, confusions folded; the province character is kept."""
    province, rest = split_province(_clean(text))
    return (province or "") + rest.translate(_FOLD)


@dataclass(frozen=True, slots=True)
class PlateComparison:
    matched: bool
    province_missing: bool = False  # matched on the rest only: the read had no province


def compare_plates(read: str, expected: str) -> PlateComparison:
    """Compare one read with one expected plate (see the module doc for the rules)."""
    read_p, read_rest = split_province(_clean(read))
    exp_p, exp_rest = split_province(_clean(expected))
    if not read_rest or not exp_rest or len(read_rest) > MAX_PLATE_CHARS:
        return PlateComparison(False)
    if read_rest.translate(_FOLD) != exp_rest.translate(_FOLD):
        return PlateComparison(False)
    if read_p is not None and exp_p is not None:
        return PlateComparison(read_p == exp_p)
    if read_p is None and exp_p is not None:
        return PlateComparison(True, province_missing=True)
    if read_p is not None and exp_p is None:
        # The pass names no province; the read's extra character is not evidence against it.
        return PlateComparison(True)
    return PlateComparison(True)


def plates_match(read: str, expected: str) -> bool:
    return compare_plates(read, expected).matched


@dataclass(frozen=True, slots=True)
class PlateVerdict:
    matched: str | None  # the expected plate that matched, as written on the pass
    reason: str | None  # None when matched, else vehicle.plate_unread / vehicle.plate_mismatch
    read: str | None = None  # the read that matched
    province_missing: bool = False


def match_plate(reads: Sequence[str], expected: Sequence[str]) -> PlateVerdict:
    """The first (read, expected) pair that matches, preferring a match with the province.

    No usable read (empty, only separators) gives ``vehicle.plate_unread``; reads that match
    none of the expected plates give ``vehicle.plate_mismatch``. Never raises.
    """
    usable = [r for r in reads if isinstance(r, str) and _clean(r)]
    if not usable:
        return PlateVerdict(None, PLATE_UNREAD)
    weak: PlateVerdict | None = None
    for read in usable:
        for plate in expected:
            if not isinstance(plate, str):
                continue
            result = compare_plates(read, plate)
            if result.matched and not result.province_missing:
                return PlateVerdict(plate, None, read)
            if result.matched and weak is None:
                weak = PlateVerdict(plate, None, read, province_missing=True)
    return weak if weak is not None else PlateVerdict(None, PLATE_MISMATCH)
