"""The firmware core under CPython: every case in core_cases.py, plus property tests."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
for path in (HERE.parent, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import cobs  # noqa: E402
import core_cases  # noqa: E402
import link  # noqa: E402

CASES = {name: getattr(core_cases, name) for name in dir(core_cases) if name.startswith("test_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_core(name: str) -> None:
    case: Callable[[], None] = CASES[name]
    case()


@given(st.binary(max_size=700))
def test_cobs_round_trip(data: bytes) -> None:
    encoded = cobs.encode(data)
    assert 0 not in encoded
    assert cobs.decode(encoded) == data


@settings(max_examples=200)
@given(st.binary(max_size=240), st.binary(max_size=400), st.integers(0, 255))
def test_frame_survives_any_garbage_before_it(payload: bytes, garbage: bytes, seq: int) -> None:
    wire = link.encode_frame(link.T_STATE, seq, 0, payload)
    rx = link.Receiver()
    found = []
    for b in garbage + b"\x00" + wire:
        n = rx.push(b)
        if n:
            found.append(bytes(rx.frame[:n]))
    assert found[-1][4:-2] == payload
    assert found[-1][2] == seq
