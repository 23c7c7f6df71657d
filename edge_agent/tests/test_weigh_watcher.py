"""The weight watcher on generated truck traces: commit early, right, never while moving,
and name every fault with its code."""

from __future__ import annotations

import pytest

from edge_agent.errors import ConfigError
from edge_agent.weighing import (
    ClassicalSettler,
    DeckCleared,
    ScaleConfig,
    TraceRow,
    TruckOnDeck,
    WeightAbnormality,
    WeightCommitted,
    WeightWatcher,
    analyze,
    check_declared,
)
from simulators.weight_dynamics import TruckTrace, generate_truck_trace

E = 20.0
SCALE = ScaleConfig()


def rows(trace: TruckTrace) -> list[TraceRow]:
    return [TraceRow(t, kg, bool(f), bool(r)) for t, kg, f, r in trace.rows()]


def run(trace: TruckTrace, **kwargs):
    return analyze(rows(trace), SCALE, frame_errors=trace.frame_errors, **kwargs)


@pytest.mark.parametrize("rate_hz", [5.0, 10.0, 25.0])
@pytest.mark.parametrize("seed", range(6))
def test_clean_truck_is_committed_after_it_stops_and_within_one_e(seed: int, rate_hz: float):
    trace = generate_truck_trace(seed, rate_hz=rate_hz)
    result = run(trace, declared_kg=trace.declared_kg)
    committed = result.committed
    assert committed is not None
    assert committed.at >= trace.stop_at
    assert abs(committed.kg - trace.truth_kg) <= E
    assert committed.uncertainty_kg <= SCALE.max_uncertainty_e * E
    assert result.abnormalities == ()
    assert result.decision == "ok"
    assert all(t >= committed.stopped_at for t, _ in committed.evidence)


def test_event_sequence_for_one_truck():
    trace = generate_truck_trace(3)
    kinds = [type(e).__name__ for _, e in run(trace).events]
    assert kinds[:3] == ["DeckCleared", "TruckOnDeck", "WeightCommitted"]


def test_ours_decides_well_before_the_classical_rule():
    ours, classical = [], []
    for seed in range(8):
        trace = generate_truck_trace(100 + seed)
        a = run(trace)
        b = run(trace, settler=lambda scale: ClassicalSettler(scale.e_kg))
        assert a.committed is not None and b.committed is not None
        ours.append(a.committed.at - trace.stop_at)
        classical.append(b.committed.at - trace.stop_at)
    assert sorted(ours)[4] < 0.6 * sorted(classical)[4]


@pytest.mark.parametrize(
    "fault",
    ["person", "step", "drift", "frozen", "zero_offset", "negative", "not_on_deck",
     "unstable", "overload", "comm_loss", "checksum", "swapped", "declared"],
)
def test_each_fault_is_named(fault: str):
    hits = 0
    for seed in range(3):
        trace = generate_truck_trace(seed, fault=fault)
        result = run(trace, declared_kg=trace.declared_kg)
        codes = {a.code for a in result.abnormalities}
        hits += trace.expected <= codes
        assert result.committed is None or result.committed.at >= trace.stop_at
        if trace.expected <= codes:
            assert result.decision == "hold"
    assert hits >= 2


def test_no_commit_while_a_deck_beam_is_blocked():
    trace = generate_truck_trace(4, fault="not_on_deck")
    result = run(trace)
    assert result.committed is None
    off = [a for a in result.abnormalities if a.code == "weight.not_on_deck"]
    assert off and "rear" in off[0].detail and off[0].evidence


def test_comm_loss_comes_from_the_timer():
    watcher = WeightWatcher(SCALE)
    assert watcher.add_reading(0.0, 0.0) == []
    assert watcher.next_deadline() == pytest.approx(SCALE.comm_loss_s)
    assert watcher.tick(1.0) == []
    (event,) = watcher.tick(2.5)
    assert isinstance(event, WeightAbnormality) and event.code == "weight.comm_loss"
    assert watcher.tick(5.0) == []  # once per outage
    watcher.add_reading(6.0, 0.0)
    assert [e.code for e in watcher.tick(8.5) if isinstance(e, WeightAbnormality)] == [
        "weight.comm_loss"]


def test_checksum_error_burst_is_an_abnormality():
    watcher = WeightWatcher(SCALE)
    events = []
    for i in range(40):
        now = i * 0.1
        if i % 4 == 0:
            events += watcher.add_frame_error(now, "XOR check failed")
        else:
            events += watcher.add_reading(now, 0.0)
    codes = [e.code for e in events if isinstance(e, WeightAbnormality)]
    assert codes == ["weight.checksum_errors"]


def test_a_lone_corrupt_frame_is_discarded_and_named():
    watcher = WeightWatcher(SCALE)
    events = []
    values = [35480.0] * 15 + [34580.0] + [35480.0, 35460.0] * 5  # swapped digits
    for i, kg in enumerate(values):
        events += watcher.add_reading(i * 0.1, kg)
    jumps = [e for e in events if isinstance(e, WeightAbnormality)]
    assert [e.code for e in jumps] == ["weight.implausible_jump"]
    assert jumps[0].evidence[1][1] == 34580.0


def test_overload_and_negative_readings():
    watcher = WeightWatcher(SCALE)
    events = watcher.add_reading(0.0, None, overload=True)
    assert [e.code for e in events if isinstance(e, WeightAbnormality)] == ["weight.overload"]
    watcher = WeightWatcher(SCALE)
    events = []
    for i in range(5):
        events += watcher.add_reading(i * 0.1, -600.0)
    assert "weight.negative" in {e.code for e in events if isinstance(e, WeightAbnormality)}


def test_deck_cleared_reports_the_zero_and_a_zero_out_of_band():
    watcher = WeightWatcher(SCALE)
    events = []
    for i in range(20):
        events += watcher.add_reading(i * 0.1, 100.0 if i % 2 else 120.0)
    cleared = [e for e in events if isinstance(e, DeckCleared)]
    assert cleared and cleared[0].zero_kg == pytest.approx(110.0, abs=10)
    assert any(isinstance(e, WeightAbnormality) and e.code == "weight.zero_out_of_band"
               for e in events)


def test_truck_backing_off_before_commit_returns_to_empty():
    watcher = WeightWatcher(SCALE)
    events = []
    for i in range(15):
        events += watcher.add_reading(i * 0.1, 0.0)
    events += watcher.add_reading(1.5, 20000.0)
    for i in range(20):
        events += watcher.add_reading(1.6 + i * 0.1, 0.0 if i % 2 else 20.0)
    assert any(isinstance(e, TruckOnDeck) for e in events)
    assert not any(isinstance(e, WeightCommitted) for e in events)
    assert sum(isinstance(e, DeckCleared) for e in events) == 2


def test_check_declared():
    assert check_declared(30000, 20, 30100, None, E) is None
    detail = check_declared(30000, 20, 32000, 500, E)
    assert detail is not None and "declared 32000" in detail
    assert check_declared(30000, 20, 30500, 490, E) is None  # within tolerance + uncertainty


def test_scale_config_rejects_nonsense():
    with pytest.raises(ConfigError):
        ScaleConfig(max_kg=100, e_kg=20)
    with pytest.raises(ConfigError):
        ScaleConfig(comm_loss_s=0)
