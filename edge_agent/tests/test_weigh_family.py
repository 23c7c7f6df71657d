"""The weight watcher on decks drawn from a family of dynamics, not only our own truck model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.weighing import ScaleConfig, TraceRow, analyze
from edge_agent.weighing.fit import fit_decaying_oscillation
from simulators.dynamics_family import (
    FAMILY,
    Corner,
    corners,
    family_params,
    generate_family_trace,
)
from simulators.weight_dynamics import DeckDynamics, TruckTrace, generate_truck_trace

E = 20.0
SCALE = ScaleConfig()
SWING_CORNERS = [c for c in corners() if c.name.startswith(("1m 25Hz", "2m 25Hz"))]


def rows(trace: TruckTrace) -> list[TraceRow]:
    return [TraceRow(t, kg, bool(f), bool(r)) for t, kg, f, r in trace.rows()]


def test_our_own_deck_through_the_hook_gives_the_same_trace() -> None:
    plain = generate_truck_trace(11, rate_hz=10.0)
    hooked = generate_truck_trace(11, rate_hz=10.0, deck=lambda e, rng: DeckDynamics(e, rng))
    assert np.array_equal(plain.kg, hooked.kg) and plain.truth_kg == hooked.truth_kg


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_family_draws_stay_in_their_ranges_and_repeat(seed: int) -> None:
    params = family_params(seed, FAMILY)
    assert params == family_params(seed, FAMILY)
    assert 5.0 <= params.rate_hz <= 25.0 and len(params.modes) in (1, 2)
    assert all(0.8 <= m.freq_hz <= 4.5 and 0.03 <= m.damping <= 0.4 for m in params.modes)
    assert abs(sum(m.share for m in params.modes) - 1.0) < 1e-9
    trace, _ = generate_family_trace(seed, corner=Corner("tiny", rate_hz=(5.0, 6.0)))
    assert np.all(np.mod(trace.kg, E) == 0)  # the display is rounded to e


# The share within 1 e over many trucks is a target of the bench's robustness table (in these
# corners 319 of 320 trucks, seeds 0-39); here fixed trucks of every swinging corner must hold
# it, so a change that breaks the estimator on a family deck fails the same way every run.
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("corner", SWING_CORNERS, ids=lambda corner: corner.name)
def test_clean_family_truck_is_committed_at_rest_within_one_e(
    seed: int, corner: Corner
) -> None:
    trace, _ = generate_family_trace(seed, corner=corner)
    result = analyze(rows(trace), SCALE)
    committed = result.committed
    assert committed is not None
    assert committed.at >= trace.stop_at
    assert abs(committed.kg - trace.truth_kg) <= E
    assert result.abnormalities == ()


@settings(max_examples=10, deadline=None)
@given(
    level=st.floats(5000, 50000),
    swings=st.lists(st.tuples(st.floats(100, 800), st.floats(0.15, 3.0), st.floats(0.8, 2.2)),
                    min_size=2, max_size=2),
)
def test_two_mode_fit_reads_the_level_under_two_swings(
    level: float, swings: list[tuple[float, float, float]]
) -> None:
    (a1, s1, f1), (a2, s2, f2) = swings
    if abs(np.log(f1 / f2)) < np.log(1.3):
        f2 = f1 * 1.4
    t = np.arange(0, 3.0, 1 / 25)
    x = (level + a1 * np.exp(-s1 * t) * np.cos(2 * np.pi * f1 * t)
         + a2 * np.exp(-s2 * t) * np.sin(2 * np.pi * f2 * t))
    fit = fit_decaying_oscillation(t, x, modes=2)
    assert fit is not None and len(fit.modes) == 2
    # Noise-free, the fit's grid of frequencies and decays leaves at most about 0.7 e (400
    # random draws); 1 e is what the commit must hold.
    assert abs(fit.level - level) <= E
