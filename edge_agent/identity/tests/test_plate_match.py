"""Plate matching: confusions, separators, the province character, verdict codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.identity.plate_match import (
    PLATE_MISMATCH,
    PLATE_UNREAD,
    compare_plates,
    match_plate,
    normalise_plate,
    plates_match,
)


@pytest.mark.parametrize(("read", "expected"), [
    ("京A12345", "京A12345"), ("京A·12345", "京A12345"), ("京AI2345", "京A12345"),
    ("粤B8S0O1", "粤BB5D01"), ("沪A2Z888", "沪AZ2BBB"), ("kla 1234", "KLA-1234"),
    ("ＴＲ７７", "TR77"), ("苏E12345D", "苏E1234SO"),
])
def test_matches(read: str, expected: str) -> None:
    assert plates_match(read, expected)


@pytest.mark.parametrize(("read", "expected"), [
    ("京A12345", "沪A12345"), ("京A12346", "京A12345"), ("京A1234", "京A12345"),
    ("KLA1235", "KLA1234"), ("", "KLA1234"), ("KLA1234", ""),
])
def test_mismatches(read: str, expected: str) -> None:
    assert not plates_match(read, expected)


def test_missing_province_matches_but_says_so() -> None:
    result = compare_plates("A12345", "京A12345")
    assert result.matched and result.province_missing
    verdict = match_plate(["A12345"], ["京A12345"])
    assert verdict.matched == "京A12345" and verdict.province_missing


def test_match_plate_prefers_a_full_match() -> None:
    verdict = match_plate(["A12345", "京A12345"], ["京A12345"])
    assert verdict.reason is None and not verdict.province_missing and verdict.read == "京A12345"


def test_verdict_codes() -> None:
    assert match_plate([], ["KLA1234"]).reason == PLATE_UNREAD
    assert match_plate([" ", "-"], ["KLA1234"]).reason == PLATE_UNREAD
    assert match_plate(["XYZ999"], ["KLA1234", "TR77"]).reason == PLATE_MISMATCH
    assert match_plate(["TR77"], ["KLA1234", "TR77"]).matched == "TR77"


def test_normalise_keeps_province() -> None:
    assert normalise_plate("京 A·BO1IS") == "京A80115"


@given(st.text(max_size=20), st.text(max_size=20))
def test_never_raises_and_is_symmetric_without_province(a: str, b: str) -> None:
    match_plate([a], [b])
    if not a[:1].isascii() or not b[:1].isascii():
        return
    assert plates_match(a, b) == plates_match(b, a)


@given(st.text("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=5, max_size=8))
def test_a_plate_matches_its_own_folded_form(text: str) -> None:
    assert plates_match(normalise_plate(text), text)
    assert plates_match("京" + text, "京" + normalise_plate(text))
