"""The one back-off rule: a drawn first delay, doubling to a cap, jittered, reset on success."""

from __future__ import annotations

import random

import pytest

from edge_agent.backoff import Backoff


def test_delays_double_up_to_the_cap_and_start_over_after_reset() -> None:
    backoff = Backoff(0.2, 5.0, jitter=0.0)
    assert [backoff.next() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    assert backoff.peek() == 0.2 and backoff.next() == 0.2


def test_the_first_delay_is_drawn_from_its_window_afresh_after_each_reset() -> None:
    backoff = Backoff(1.0, 120.0, first_max=30.0, jitter=0.0, rng=random.Random(7))
    firsts = []
    for _ in range(50):
        firsts.append(backoff.next())
        assert backoff.next() == pytest.approx(min(120.0, firsts[-1] * 2))
        backoff.reset()
    assert all(1.0 <= d <= 30.0 for d in firsts)
    assert max(firsts) - min(firsts) > 10  # spread out: a fleet does not come back together


def test_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(1.0, 1.0, jitter=0.2, rng=random.Random(1))
    delays = [backoff.next() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays) and len(set(delays)) > 100


@pytest.mark.parametrize(("first", "cap", "first_max"), [(0, 1, None), (2, 1, None), (1, 5, 0.5)])
def test_nonsense_bounds_are_refused(first: float, cap: float, first_max: float | None) -> None:
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(first, cap, first_max=first_max)
