"""Seals against the pass: typed numbers, e-seal status, the order of the verdict codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.catalogue import Code
from edge_agent.identity.seals import (
    SEAL_MISMATCH,
    SEAL_TAMPERED,
    SEAL_UNREAD,
    match_seals,
    normalise_seal,
    sighting_text,
)
from edge_agent.protocols.eseal import SealRead

ES1, ES2 = "ES-00471135", "KHH-778812"


def test_codes_are_in_the_catalogue() -> None:
    assert (SEAL_MISMATCH, SEAL_UNREAD, SEAL_TAMPERED) == (
        Code.VEHICLE_SEAL_MISMATCH, Code.VEHICLE_SEAL_UNREAD, Code.VEHICLE_SEAL_TAMPERED)


def test_typed_seal_numbers_match_after_normalisation() -> None:
    assert normalise_seal("khh 778-812") == "KHH778812"
    verdict = match_seals(["es 00471135", "khh 778812"], [ES1, ES2])
    assert (verdict.reason, verdict.matched) == (None, (ES1, ES2))


def test_e_seal_sightings_match_as_objects_or_texts() -> None:
    for read in (SealRead(ES1, "closed", -60), sighting_text(ES1, "closed")):
        assert match_seals([read], [ES1]).matched == (ES1,)


@pytest.mark.parametrize(("status", "reason"), [("tampered", SEAL_TAMPERED),
                                                ("open", SEAL_MISMATCH), ("closed", None)])
def test_the_status_of_a_seal_on_the_pass_decides(status: str, reason: str | None) -> None:
    verdict = match_seals([SealRead(ES1, status)], [ES1])
    assert verdict.reason == reason
    assert verdict.tampered == ((ES1,) if status == "tampered" else ())
    assert verdict.opened == ((ES1,) if status == "open" else ())


def test_tampered_comes_first_then_mismatch_then_unread() -> None:
    reads = [sighting_text(ES1, "tampered"), sighting_text("OTHER-1", "closed")]
    assert match_seals(reads, [ES1, ES2]).reason == SEAL_TAMPERED
    assert match_seals(["OTHER-1"], [ES1]).reason == SEAL_MISMATCH  # a different seal
    assert match_seals([], [ES1]).reason == SEAL_UNREAD
    assert match_seals([ES1], [ES1, ES2]).missing == (ES2,)


def test_a_tamper_is_latched_over_later_closed_reads() -> None:
    reads = [SealRead(ES1, "closed"), SealRead(ES1, "tampered"), SealRead(ES1, "closed")]
    assert match_seals(reads, [ES1]).reason == SEAL_TAMPERED


def test_seals_of_the_next_lane_do_not_fail_the_truck() -> None:
    verdict = match_seals([ES1, SealRead("NEXT-LANE-9", "tampered")], [ES1])
    assert (verdict.reason, verdict.unexpected) == (None, ("NEXT-LANE-9",))
    assert "NEXT-LANE-9" in verdict.detail and verdict.as_data()["unexpected"] == ["NEXT-LANE-9"]


def test_a_pass_without_seals_needs_none() -> None:
    assert match_seals([ES1], []).reason is None


def test_a_seal_number_containing_hash_is_still_a_typed_seal() -> None:
    assert match_seals(["#4471"], ["#4471"]).matched == ("#4471",)


@given(st.lists(st.one_of(st.text(max_size=20), st.builds(SealRead, st.text(max_size=10),
                                                          st.text(max_size=10))), max_size=5),
       st.lists(st.text(max_size=15), max_size=3))
def test_never_raises(reads: list[str | SealRead], expected: list[str]) -> None:
    verdict = match_seals(reads, expected)
    assert verdict.reason in (None, SEAL_MISMATCH, SEAL_UNREAD, SEAL_TAMPERED)
    assert set(verdict.matched) <= set(expected)
