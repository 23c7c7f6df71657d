"""Containers against the pass: normalisation, OCR repairs, order, mismatch and unread."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.catalogue import Code
from edge_agent.identity.containers import (
    CONFUSIONS,
    CONTAINER_MISMATCH,
    CONTAINER_UNREAD,
    match_containers,
)
from edge_agent.identity.iso6346 import check_digit, is_valid_container

MSCU, CSQU, TGHU = "MSCU1234566", "CSQU3054383", "TGHU9876542"


def test_codes_are_in_the_catalogue() -> None:
    assert CONTAINER_MISMATCH == Code.VEHICLE_CONTAINER_MISMATCH
    assert CONTAINER_UNREAD == Code.VEHICLE_CONTAINER_UNREAD


@pytest.mark.parametrize("read", [MSCU, "mscu 123456-6", "MSCU 123456 6", "ＭＳＣＵ1234566",
                                  "MSCU.123456/6"])
def test_a_read_of_the_number_in_any_common_spelling_matches(read: str) -> None:
    verdict = match_containers([read], [MSCU])
    assert (verdict.reason, verdict.matched, verdict.corrected) == (None, (MSCU,), ())


def test_every_container_must_be_seen_in_any_order() -> None:
    assert match_containers([CSQU, MSCU], [MSCU, CSQU]).matched == (MSCU, CSQU)
    half = match_containers([CSQU, CSQU], [MSCU, CSQU])
    assert (half.reason, half.matched, half.missing) == (CONTAINER_UNREAD, (CSQU,), (MSCU,))


def test_the_verdict_names_containers_as_written_on_the_pass() -> None:
    assert match_containers([MSCU], ["MSCU 123456-6"]).matched == ("MSCU 123456-6",)


@pytest.mark.parametrize(("read", "why"), [
    ("MSCU1234S66", "S read for 5 in the serial"),
    ("M5CU1234566", "5 read for S in the owner code"),
    ("MSCU1Z34566", "Z read for 2"),
    ("CSQU3O54383", "O read for 0"),
    ("CSQU30543B3", "B read for 8"),
    ("MSCUI234566", "I read for 1"),
])
def test_one_known_confusion_is_repaired_to_the_number_on_the_pass(read: str, why: str) -> None:
    verdict = match_containers([read], [MSCU, CSQU])
    assert not is_valid_container(read), why
    assert [n for _, n in verdict.corrected] == [n for n in (MSCU, CSQU) if n in verdict.matched]
    assert verdict.corrected[0][0] == read


def test_a_repair_never_invents_a_container_that_is_not_on_the_pass() -> None:
    verdict = match_containers(["M5CU1234566"], [CSQU])  # repairs to MSCU, not on the pass
    assert (verdict.reason, verdict.unexpected, verdict.unreadable) == (
        CONTAINER_UNREAD, (), ("M5CU1234566",))


@pytest.mark.parametrize("read", [
    "M5CU1Z34566",  # two confusions
    "MSCU1234567",  # a wrong check digit no confusion explains
    "MSCU12345",  # too short
    "KLA-1234",  # a plate, not a container
])
def test_reads_that_are_no_container_number_are_unread(read: str) -> None:
    verdict = match_containers([read], [MSCU])
    assert (verdict.reason, verdict.matched, verdict.unreadable) == (CONTAINER_UNREAD, (), (read,))


def test_a_valid_container_not_on_the_pass_is_a_mismatch() -> None:
    other = match_containers([TGHU], [MSCU])
    assert (other.reason, other.unexpected, other.missing) == (CONTAINER_MISMATCH, (TGHU,), (MSCU,))
    extra = match_containers([MSCU, TGHU], [MSCU])  # an undeclared second container
    assert (extra.reason, extra.matched, extra.unexpected) == (CONTAINER_MISMATCH, (MSCU,), (TGHU,))
    assert "TGHU9876542" in extra.detail


def test_nothing_read_is_unread_and_junk_reads_are_ignored() -> None:
    for reads in ([], ["", " - "], [None, 42]):
        verdict = match_containers(reads, [MSCU])  # type: ignore[arg-type]
        assert (verdict.reason, verdict.missing, verdict.unreadable) == (
            CONTAINER_UNREAD, (MSCU,), ())


def test_a_pass_without_containers_is_satisfied_unless_one_is_read() -> None:
    assert match_containers([], []).reason is None
    assert match_containers(["no container here"], []).reason is None
    assert match_containers([TGHU], []).reason == CONTAINER_MISMATCH


def test_evidence_and_detail_say_what_was_repaired() -> None:
    verdict = match_containers(["MSCU1234S66"], [MSCU])
    assert verdict.as_data()["corrected"] == [{"read": "MSCU1234S66", "number": MSCU}]
    assert "'MSCU1234S66' -> MSCU1234566" in verdict.detail


def test_an_endless_read_is_unreadable_not_slow() -> None:
    verdict = match_containers(["MSCU" * 10_000], [MSCU])
    assert verdict.reason == CONTAINER_UNREAD and verdict.unreadable[0].endswith("...")


letters = st.text(string.ascii_uppercase, min_size=3, max_size=3)
serials = st.text(string.digits, min_size=6, max_size=6)


@st.composite
def containers(draw: st.DrawFn) -> str:
    first10 = draw(letters) + draw(st.sampled_from("UJZ")) + draw(serials)
    return first10 + str(check_digit(first10))


@given(containers(), st.data())
def test_any_single_confusion_of_a_number_on_the_pass_is_repaired(number: str,
                                                                  data: st.DataObject) -> None:
    positions = [i for i, c in enumerate(number) if c in CONFUSIONS]
    if not positions:
        return
    i = data.draw(st.sampled_from(positions))
    read = number[:i] + CONFUSIONS[number[i]] + number[i + 1:]
    verdict = match_containers([read], [number])
    assert (verdict.reason, verdict.corrected) == (None, ((read, number),))


@given(st.lists(containers(), min_size=1, max_size=4, unique=True), st.randoms())
def test_order_of_reads_does_not_matter(numbers: list[str], rng: object) -> None:
    reads = list(numbers)
    rng.shuffle(reads)  # type: ignore[attr-defined]
    verdict = match_containers(reads, numbers)
    assert verdict.reason is None and set(verdict.matched) == set(numbers)


@given(st.lists(st.text(max_size=30), max_size=5), st.lists(st.text(max_size=15), max_size=3))
def test_never_raises_and_a_match_is_always_on_the_pass(reads: list[str],
                                                        expected: list[str]) -> None:
    verdict = match_containers(reads, expected)
    assert set(verdict.matched) <= set(expected)
    assert verdict.reason in (None, CONTAINER_MISMATCH, CONTAINER_UNREAD)
    assert isinstance(verdict.detail, str)
