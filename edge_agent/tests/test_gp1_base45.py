"""Base45 (RFC 9285) against the RFC's own examples and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.protocols.base45 import b45decode, b45encode


@pytest.mark.parametrize(("raw", "text"), [
    (b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"), (b"", ""), (b"\x00", "00"), (b"\xff\xff", "FGW"),
])
def test_rfc_9285_examples(raw: bytes, text: str) -> None:
    assert b45encode(raw) == text
    assert b45decode(text) == raw


@given(st.binary(max_size=300))
def test_round_trip(raw: bytes) -> None:
    assert b45decode(b45encode(raw)) == raw


@pytest.mark.parametrize(("text", "why"), [
    ("GGW", "overflows"), ("ZZ", "overflows"), ("A", "dangling"), ("ABCD", "dangling"),
    ("ab", "alphabet"), ("A_B", "alphabet"), ("\n00", "alphabet"),
])
def test_invalid_input_names_the_problem(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        b45decode(text)
