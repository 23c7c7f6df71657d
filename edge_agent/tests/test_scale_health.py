"""Scale health between trucks: the monitor alone, then through the lane's device inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.catalogue import Code
from edge_agent.config import load_config
from edge_agent.drivers.weighbridge import IndicatorArrival
from edge_agent.errors import ConfigError
from edge_agent.protocols.gp1 import TrustList
from edge_agent.protocols.indicators.base import IndicatorReading
from edge_agent.tests.agent_files import write_config
from edge_agent.translate import DeviceInputs, PassAuthority
from edge_agent.weighing import DeckCleared, TruckOnDeck, WeightAbnormality
from edge_agent.weighing.scale_health import ScaleHealth, ScaleHealthLimits

E = 20.0


def spells(health: ScaleHealth, zeros: list[float], *, every_s: float = 300.0,
           noise_kg: float = 4.0) -> None:
    """One truck per spell, each followed by a steady zero."""
    for i, zero in enumerate(zeros):
        health.observe(TruckOnDeck(i * every_s))
        health.observe(DeckCleared(i * every_s + 60, zero), noise_kg=noise_kg)


def test_a_quiet_scale_returning_to_zero_is_healthy() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 0, 20, 0, 0, -20, 0, 0])
    report = health.report()
    assert report.healthy, report.reasons
    assert report.zeros_seen == 8 and report.zero_kg == 0
    assert report.noise_e == pytest.approx(0.2)


def test_a_zero_out_of_band_is_the_watchers_to_report_not_a_second_hold() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 40])
    report = health.report()
    assert report.healthy and report.zero_kg == 40


def test_a_step_in_the_zero_starts_the_trend_again() -> None:
    """A re-zeroed scale (or one the watcher reported for a jump) is not drifting."""
    health = ScaleHealth(E)
    spells(health, [60, 60, 60, 0, 0, 0], every_s=600)
    report = health.report()
    assert report.healthy and report.drift_e_per_h == pytest.approx(0.0)


def test_a_net_display_zero_is_not_a_gross_zero() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 0, 0], every_s=600)
    health.observe(TruckOnDeck(2000))
    health.observe(DeckCleared(2060, -14000, net=True), noise_kg=4.0)  # tare subtracted
    report = health.report()
    assert report.zero_kg == 0 and report.zeros_seen == 4 and report.healthy


def test_two_trucks_without_a_zero_between_them_is_unhealthy() -> None:
    health = ScaleHealth(E)
    spells(health, [0])
    health.observe(TruckOnDeck(1000))
    assert health.report().healthy  # the truck now on the deck
    health.observe(TruckOnDeck(1100))
    report = health.report()
    assert report.reasons == ("no steady zero between the last 2 trucks",)
    assert report.trucks_without_zero == 2


def test_noise_at_rest_above_the_limit() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 0], noise_kg=0.95 * E)
    assert health.report().reasons == ("noise at rest 0.95 e above 0.9 e",)


def test_a_creeping_zero_is_a_trend_the_per_spell_limit_misses() -> None:
    """0.08 e every four minutes: in band all along, never 2 e between two spells, yet
    1.2 e/h over the last twelve."""
    health = ScaleHealth(E)
    spells(health, [0.08 * E * i for i in range(12)], every_s=240)
    report = health.report()
    assert report.drift_e_per_h == pytest.approx(1.2)
    assert report.reasons == ("zero drifting +1.20 e/h (limit 1 e/h)",)


def test_a_trend_over_a_short_span_is_not_judged() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 10, 20], every_s=60)
    report = health.report()
    assert report.drift_e_per_h is None and report.healthy


@given(st.lists(st.sampled_from([-E, 0.0, E]), min_size=3, max_size=30))
def test_zeros_within_one_e_never_raise_a_trend_alarm_alone(zeros: list[float]) -> None:
    """Flicker of one e either way is not drift, however the spells fall."""
    health = ScaleHealth(E, ScaleHealthLimits(trend_min_drift_e=2.5))
    spells(health, zeros)
    assert not any("drifting" in reason for reason in health.report().reasons)


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError, match="trend_spells"):
        ScaleHealthLimits(trend_spells=2)
    with pytest.raises(ConfigError, match="e_kg"):
        ScaleHealth(0)


def test_the_next_truck_on_an_unfit_scale_is_held_with_the_reason(tmp_path: Path) -> None:
    """Through the lane's device inputs: frames in, the abnormality right after the truck's
    arrival, naming why."""
    config = load_config(write_config(tmp_path))
    inputs = DeviceInputs(config, PassAuthority(TrustList(), frozenset()),
                          is_used=lambda _cti: False, pass_time=lambda: 0.0)
    out: list[object] = []
    # An empty deck whose display sits on +-1 e, never between: the spread at rest is 1 e.
    frames = [(i * 0.2, 20.0 if i % 2 else -20.0) for i in range(20)]
    frames += [(4.0 + i * 0.2, 2000.0 * i) for i in range(1, 12)]  # a truck drives on
    for at, kg in frames:
        out += inputs.translate(IndicatorArrival(at, IndicatorReading(kg, motion=None)))
    arrived = next(i for i, item in enumerate(out) if isinstance(item, TruckOnDeck))
    unhealthy = [item for item in out[arrived:] if isinstance(item, WeightAbnormality)
                 and item.code == Code.WEIGHT_SCALE_UNHEALTHY]
    assert len(unhealthy) == 1
    assert unhealthy[0].detail == "noise at rest 1.00 e above 0.9 e"
    assert inputs.scale_health.report().zeros_seen == 1


def test_frame_errors_between_trucks_above_their_share_make_the_scale_unfit() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 0])
    for i in range(100):
        health.observe_frame(ok=i % 20 != 0)  # 5 of 100 fail their check
    health.observe(TruckOnDeck(5000))
    report = health.report()
    assert report.reasons == ("5 of 100 indicator frames since the last zero failed their check",)
    assert report.as_dict()["frame_errors_since_zero"] == 5


def test_a_few_frame_errors_or_a_trucks_overload_leave_the_scale_fit() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 0])
    for i in range(100):
        health.observe_frame(ok=i != 50)  # 1 %
    health.observe(TruckOnDeck(5000))
    health.observe_frame(ok=True, overload=True)  # the truck's own: weight.overload
    assert health.report().healthy


def test_overload_flagged_on_the_empty_deck_makes_the_scale_unfit() -> None:
    health = ScaleHealth(E)
    spells(health, [0, 0])
    health.observe_frame(ok=True, overload=True)
    health.observe(TruckOnDeck(5000))
    reasons = health.report().reasons
    assert reasons == ("the indicator flagged overload in 1 frames on the empty deck",)
