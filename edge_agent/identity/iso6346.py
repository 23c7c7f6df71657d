"""ISO 6346 freight container numbers: owner code, equipment category, serial, check digit.

A container number is 11 characters: a 3-letter owner code, an equipment category
identifier (U freight container, J detachable equipment, Z trailer or chassis, R reefer
used by some registries), a 6-digit serial number and a check digit. The check digit is
computed over the first 10 characters: letters take the values 10..38 skipping the
multiples of 11 (A=10, B=12, ..., K=21, ..., V=34, ..., Z=38), digits their own value;
each value is weighted by 2**position, the sum is taken mod 11 and then mod 10 (a
remainder of 10 becomes 0).

Pure functions, no I/O: ``validate_container`` never raises on input.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

CATEGORIES = "UJZR"
_SEPARATORS = re.compile(r"[\s\-./]+")


def _letter_values() -> dict[str, int]:
    values: dict[str, int] = {}
    value = 10
    for letter in string.ascii_uppercase:
        if value % 11 == 0:
            value += 1
        values[letter] = value
        value += 1
    return values


LETTER_VALUES = _letter_values()


@dataclass(frozen=True, slots=True)
class ContainerProblem:
    """Why a container number is not a valid ISO 6346 number; ``reason`` is for people."""

    number: str  # the text as given
    reason: str
    expected_check_digit: int | None = None  # set when only the check digit is wrong


def normalise_container(number: str) -> str:
    """Upper case, without spaces, dashes, dots or slashes ("CSQU 305438-3" -> "CSQU3054383")."""
    return _SEPARATORS.sub("", number).upper()


def check_digit(first10: str) -> int:
    """The check digit for owner code, category and serial (10 characters, normalised).

    Raises ``ValueError`` if the text is not 4 letters and 6 digits.
    """
    text = normalise_container(first10)
    if len(text) != 10 or not _is_letters(text[:4]) or not text[4:].isdigit() \
            or not text[4:].isascii():
        raise ValueError(f"expected 4 letters and 6 digits, not {first10!r}")
    total = sum((LETTER_VALUES[c] if c.isalpha() else int(c)) << i for i, c in enumerate(text))
    return total % 11 % 10


def _is_letters(text: str) -> bool:
    return all(c in LETTER_VALUES for c in text)


def validate_container(number: object) -> ContainerProblem | None:
    """None for a valid container number, else the first problem found. Never raises."""
    if not isinstance(number, str):
        return ContainerProblem(repr(number), "a container number must be text")
    text = normalise_container(number)
    shown = number if len(number) <= 40 else number[:40] + "..."
    if len(text) != 11:
        return ContainerProblem(shown, f"{len(text)} characters, a container number has 11 "
                                       "(3-letter owner code, category, 6 digits, check digit)")
    owner, category, serial, check = text[:3], text[3], text[4:10], text[10]
    if not _is_letters(owner):
        return ContainerProblem(shown, f"owner code {owner!r} must be 3 letters A-Z")
    if category not in CATEGORIES:
        return ContainerProblem(shown, f"equipment category {category!r} must be one of "
                                       "U (freight container), J (detachable equipment), "
                                       "Z (trailer or chassis), R (reefer)")
    if not (serial.isascii() and serial.isdigit()):
        return ContainerProblem(shown, f"serial number {serial!r} must be 6 digits")
    if not (check.isascii() and check.isdigit()):
        return ContainerProblem(shown, f"check digit {check!r} must be a digit")
    expected = check_digit(text[:10])
    if int(check) != expected:
        return ContainerProblem(shown, f"check digit is {check}, ISO 6346 gives {expected} for "
                                       f"{text[:10]}: the number is mistyped or misread",
                                expected_check_digit=expected)
    return None


def is_valid_container(number: object) -> bool:
    return validate_container(number) is None
