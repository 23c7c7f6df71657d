"""ISO 6346 golden vectors (check digits computed by hand from the standard's table)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.identity.iso6346 import (
    LETTER_VALUES,
    check_digit,
    normalise_container,
    validate_container,
)

GOOD = ["CSQU3054383", "MSKU9070323", "BICU1234565", "MSCU1234566", "MAEU1234567"]
BAD_CHECK = [("MSCU1234565", 6), ("HLXU1234565", 1), ("TGHU7599980", 4), ("CMAU1234563", 4)]


def test_letter_values_skip_multiples_of_11() -> None:
    assert LETTER_VALUES["A"] == 10 and LETTER_VALUES["B"] == 12
    assert LETTER_VALUES["K"] == 21 and LETTER_VALUES["L"] == 23
    assert LETTER_VALUES["V"] == 34 and LETTER_VALUES["Z"] == 38
    assert not any(v % 11 == 0 for v in LETTER_VALUES.values())


@pytest.mark.parametrize("number", GOOD)
def test_good_numbers(number: str) -> None:
    assert validate_container(number) is None
    assert check_digit(number[:10]) == int(number[10])


@pytest.mark.parametrize(("number", "expected"), BAD_CHECK)
def test_bad_check_digit_names_the_right_one(number: str, expected: int) -> None:
    problem = validate_container(number)
    assert problem is not None and problem.expected_check_digit == expected
    assert "check digit" in problem.reason and str(expected) in problem.reason


@pytest.mark.parametrize("text", ["CSQU 305438 3", "csqu-305438-3", "CSQU 305438-3"])
def test_separators_and_case_are_tolerated(text: str) -> None:
    assert normalise_container(text) == "CSQU3054383"
    assert validate_container(text) is None


@pytest.mark.parametrize(("number", "word"), [
    ("CSQU305438", "11"), ("C5QU3054383", "owner code"), ("CSQX3054383", "category"),
    ("CSQU30543A3", "serial"), ("CSQU305438X", "check digit"), ("", "11"),
])
def test_structure_problems(number: str, word: str) -> None:
    problem = validate_container(number)
    assert problem is not None and word in problem.reason


def test_non_text_is_a_problem_not_a_crash() -> None:
    assert validate_container(None) is not None


LETTERS = st.text(string.ascii_uppercase, min_size=3, max_size=3)
SERIAL = st.text(string.digits, min_size=6, max_size=6)


@given(LETTERS, st.sampled_from("UJZR"), SERIAL)
def test_computed_check_digit_validates(owner: str, cat: str, serial: str) -> None:
    first10 = owner + cat + serial
    assert validate_container(first10 + str(check_digit(first10))) is None


@given(LETTERS, st.sampled_from("UJZR"), SERIAL, st.integers(0, 9))
def test_single_wrong_check_digit_is_refused(owner: str, cat: str, serial: str,
                                             digit: int) -> None:
    first10 = owner + cat + serial
    if digit != check_digit(first10):
        assert validate_container(first10 + str(digit)) is not None


@given(st.text(max_size=30))
def test_never_raises(text: str) -> None:
    validate_container(text)
