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


@pytest.mark.parametrize("seed", range(100, 110))
def test_random_walks_keep_s1_to_s9(seed: int) -> None:
    """Ten seeded walks of 12,000 loop iterations each, S1-S9 checked after every one."""
    from fw_rig import random_walk

    rig, visited = random_walk(seed=seed, steps=12000)
    assert rig.elapsed >= 60000
    assert len(visited) >= 3


def test_the_invariant_checker_catches_a_broken_interlock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: an interlock that forgets S3 must fail the walk."""
    import interlock
    from fw_rig import InvariantError, random_walk

    original = interlock.Interlock.step

    def step_without_reopen(self: interlock.Interlock, now: int) -> None:
        if self.state == interlock.CLOSING:
            self.inputs &= ~interlock.PRESENCE  # blind to obstructions while closing
            self.fresh = True
        original(self, now)

    monkeypatch.setattr(interlock.Interlock, "step", step_without_reopen)
    with pytest.raises(InvariantError, match="S2|S3"):
        for seed in range(1, 20):
            random_walk(seed=seed, steps=12000)
