"""A stalled (frozen) indicator output: found, and never weighed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_agent.weighing import (
    ScaleConfig,
    TraceRow,
    WeighEvent,
    WeightAbnormality,
    WeightCommitted,
    WeightWatcher,
    analyze,
)
from simulators.weight_dynamics import ALSO_ALLOWED, generate_truck_trace

E = 20.0
SCALE = ScaleConfig()
FROZEN = "weight.frozen"


def rounded(kg: float) -> float:
    return round(kg / E) * E


def resting_truck(t: float, level: float, stop: float, rng: np.random.Generator) -> float:
    """A truck at rest: its swing dying away plus indicator noise, as displayed."""
    swing = 0.01 * level * math.exp(-(t - stop) / 0.8) * math.cos(2 * math.pi * 1.8 * (t - stop))
    return rounded(level + swing + rng.normal(0, 0.4 * E))


def flickering_zero(rng: np.random.Generator) -> float:
    return rounded(rng.normal(0, 0.4 * E))


def feed(watcher: WeightWatcher, rows: list[tuple[float, float, bool]]) -> list[WeighEvent]:
    """(time, kg, rear beam clear) rows into ``watcher``, timers run at every frame."""
    events: list[WeighEvent] = []
    rear = True
    for t, kg, rear_clear in rows:
        if rear_clear != rear:
            rear = rear_clear
            events += watcher.set_deck_beams(t, True, rear)
        events += watcher.tick(t)
        events += watcher.add_reading(t, kg)
    return events


def codes(events: list[WeighEvent]) -> list[str]:
    return [e.code for e in events if isinstance(e, WeightAbnormality)]


def commits(events: list[WeighEvent]) -> list[WeightCommitted]:
    return [e for e in events if isinstance(e, WeightCommitted)]


def truck_that_stalls(rate_hz: float, empty: list[float], level: float, stall_at: float,
                      until: float, seed: int = 1) -> list[tuple[float, float, bool]]:
    """Empty deck readings, a truck rolling on (rear beam blocked) and stopping 1 s after
    the empty spell, then the output repeats the frame shown at ``stall_at``."""
    rng = np.random.default_rng(seed)
    arrive = len(empty) / rate_hz
    stop = arrive + 1.0
    rows: list[tuple[float, float, bool]] = []
    stalled: float | None = None
    for i in range(int(until * rate_hz)):
        t = i / rate_hz
        if i < len(empty):
            kg = empty[i]
        elif t < stop:  # the axles roll on, the body pitching over the deck joints
            share = min(1.0, (t - arrive) / 0.8)
            kg = rounded(level * share + 0.01 * level * math.sin(2 * math.pi * 5 * t))
        else:
            kg = resting_truck(t, level, stop, rng)
        if t >= stall_at:
            stalled = kg if stalled is None else stalled
            kg = stalled
        rows.append((t, kg, not (arrive - 0.2 <= t < stop - 0.3)))
    return rows


def test_a_freeze_as_the_truck_stops_is_never_committed_at_a_slow_rate():
    # The deck flickered, but its last second before the truck happened to read a steady 0:
    # the scale is still one that flickers, so the stalled output must not be weighed.
    empty = [0.0, 20.0, 0.0, 0.0, -20.0, 0.0, 20.0, 0.0] + [0.0] * 7
    rows = truck_that_stalls(5.0, empty, 30000.0, stall_at=4.6, until=24.0)
    events = feed(WeightWatcher(SCALE), rows)
    assert commits(events) == []
    assert codes(events) == [FROZEN]
    frozen = next(e for e in events if isinstance(e, WeightAbnormality))
    assert frozen.at - 4.6 >= SCALE.frozen_s


def test_a_freeze_of_the_empty_deck_is_found():
    rng = np.random.default_rng(3)
    rows = [(i / 10, flickering_zero(rng), True) for i in range(50)]
    stuck = rows[-1][1] + E  # the output stalls from 5.0 s on
    rows += [(5.0 + i / 10, stuck, True) for i in range(120)]
    events = feed(WeightWatcher(SCALE), rows)
    assert codes(events) == [FROZEN]
    frozen = next(e for e in events if isinstance(e, WeightAbnormality))
    assert frozen.at == pytest.approx(5.0 + SCALE.frozen_s)


def test_a_scale_that_never_flickers_is_not_called_frozen():
    rows = [(i / 10, 0.0, True) for i in range(300)]
    rows += [(30.0 + i / 10, rounded(min(1.0, i / 10) * 24000.0), True) for i in range(300)]
    events = feed(WeightWatcher(SCALE), rows)
    assert codes(events) == []
    (committed,) = commits(events)
    assert committed.kg == 24000.0


def test_a_freeze_after_the_commit_is_a_freeze_not_a_step_or_drift():
    rng = np.random.default_rng(5)
    empty = [flickering_zero(rng) for _ in range(30)]
    rows = truck_that_stalls(10.0, empty, 20000.0, stall_at=1e9, until=9.0, seed=5)
    rows += [(9.0 + i / 10, 20040.0, True) for i in range(130)]  # stuck 2 e above the level
    events = feed(WeightWatcher(SCALE), rows)
    (committed,) = commits(events)
    assert abs(committed.kg - 20000.0) <= E and committed.at < 9.0
    assert codes(events) == [FROZEN]


def test_weighing_resumes_on_live_frames_only_after_a_stall():
    rng = np.random.default_rng(7)
    empty = [flickering_zero(rng) for _ in range(30)]
    rows = truck_that_stalls(10.0, empty, 26000.0, stall_at=4.4, until=16.0, seed=7)
    stall_end = rows[-1][0]
    live = np.random.default_rng(8)
    rows += [(16.0 + i / 10, rounded(26000.0 + live.normal(0, 0.4 * E)), True)
             for i in range(1, 60)]
    events = feed(WeightWatcher(SCALE), rows)
    assert codes(events) == [FROZEN]
    (committed,) = commits(events)
    assert committed.at > stall_end
    assert all(t > stall_end for t, _ in committed.evidence[1:])
    assert abs(committed.kg - 26000.0) <= E


@pytest.mark.parametrize("rate_hz", [5.0, 10.0, 25.0])
def test_generated_freezes_are_named_and_never_weighed(rate_hz: float):
    for seed in range(6):
        trace = generate_truck_trace(seed, fault="frozen", rate_hz=rate_hz)
        assert trace.frozen is not None
        begin, end = trace.frozen
        rows = [TraceRow(t, kg, bool(f), bool(r)) for t, kg, f, r in trace.rows()]
        result = analyze(rows, SCALE, declared_kg=trace.declared_kg)
        found = {a.code for a in result.abnormalities}
        assert FROZEN in found
        assert found <= {FROZEN} | ALSO_ALLOWED["frozen"]
        committed = result.committed
        if committed is not None:  # on live frames only: before the stall or after it
            stalled = [t for t, _ in committed.evidence if begin <= t < end]
            assert len(stalled) <= 1
            assert abs(committed.kg - trace.truth_kg) <= E


def test_a_person_stepping_on_at_a_slow_rate_is_a_step_not_a_drift():
    trace = generate_truck_trace(1002, fault="person", rate_hz=5.0)
    rows = [TraceRow(t, kg, bool(f), bool(r)) for t, kg, f, r in trace.rows()]
    found = [a.code for a in analyze(rows, SCALE).abnormalities]
    assert found == ["weight.step_while_stationary"]


def test_a_garbled_frame_whose_own_weight_was_an_e_away_is_named():
    watcher = WeightWatcher(SCALE)
    events: list[WeighEvent] = []
    values = [35480.0, 35460.0] * 8 + [35050.0] + [35480.0, 35460.0] * 4  # digits of 35500
    for i, kg in enumerate(values):
        events += watcher.add_reading(i * 0.1, kg)
    jumps = [e for e in events if isinstance(e, WeightAbnormality)]
    assert [e.code for e in jumps] == ["weight.implausible_jump"]
    assert jumps[0].evidence[1][1] == 35050.0


def test_a_truck_off_the_deck_is_named_even_when_its_fit_wavers():
    trace = generate_truck_trace(27008, fault="not_on_deck", rate_hz=25.0)
    rows = [TraceRow(t, kg, bool(f), bool(r)) for t, kg, f, r in trace.rows()]
    result = analyze(rows, SCALE)
    assert result.committed is None
    assert [a.code for a in result.abnormalities] == ["weight.not_on_deck"]
