"""Identical indication and the declared-weight rules, through their public functions."""

from __future__ import annotations

from edge_agent.catalogue import Code
from edge_agent.protocols.indicators.base import IndicatorReading
from edge_agent.weighing.declared import Tare, TolerancePolicy, judge_declared, judge_tare
from edge_agent.weighing.events import WeightAbnormality, WeightCommitted
from edge_agent.weighing.indication import IndicationGate

E = 20.0


def _commit(at: float, kg: float) -> WeightCommitted:
    return WeightCommitted(at=at, kg=kg, uncertainty_kg=8.0, stopped_at=0.0, evidence=())


def _feed(gate: IndicationGate, values: list[float], *, motion: bool | None = False,
          start: float = 0.0) -> None:
    for i, kg in enumerate(values):
        gate.add_frame(start + i * 0.1, IndicatorReading(kg, motion, raw=f"{kg:g}".encode()))


def test_a_stable_indication_goes_with_the_commit_at_once() -> None:
    gate = IndicationGate(E)
    _feed(gate, [32480.0, 32460.0, 32480.0] * 5)
    out = gate.pass_on(1.5, [_commit(1.5, 32475.3)])
    assert len(out) == 1 and isinstance(out[0], WeightCommitted)
    shown = out[0].indication
    assert shown is not None and shown.kg == 32480.0 and shown.stable is True
    assert shown.frames[0].raw == b"32480"


def test_the_commit_waits_for_the_indication_and_a_late_one_is_attached() -> None:
    gate = IndicationGate(E)
    _feed(gate, [32400.0, 32600.0] * 3)  # still swinging: no indication yet
    assert gate.pass_on(0.6, [_commit(0.6, 32475.0)]) == []
    assert gate.next_deadline() == 0.6 + 5.0
    _feed(gate, [32480.0] * 12, start=0.7)
    out = gate.tick(1.9)
    assert isinstance(out[0], WeightCommitted) and out[0].indication is not None


def test_no_indication_in_time_is_an_abnormality_before_the_weight() -> None:
    gate = IndicationGate(E, wait_s=2.0)
    _feed(gate, [32480.0] * 30, motion=True)
    gate.pass_on(3.0, [_commit(3.0, 32475.0)])
    out = gate.tick(5.0)
    assert isinstance(out[0], WeightAbnormality) and out[0].code == Code.WEIGHT_INDICATION_MISSING
    assert isinstance(out[1], WeightCommitted) and out[1].indication is None


def test_more_than_one_e_between_estimate_and_indication_is_a_mismatch() -> None:
    gate = IndicationGate(E)
    _feed(gate, [32520.0] * 35, motion=None)
    out = gate.pass_on(3.5, [_commit(3.5, 32475.0)])
    assert isinstance(out[0], WeightAbnormality)
    assert out[0].code == Code.WEIGHT_INDICATION_MISMATCH and out[0].evidence
    assert isinstance(out[1], WeightCommitted) and out[1].indication is not None
    assert out[1].indication.stable is None  # the format has no flag


def test_tolerance_rules_name_themselves_with_their_numbers() -> None:
    both = judge_declared(30400, 0, 30000, E, TolerancePolicy())
    assert both.rule == "percent (both)" and both.numbers["tolerance_kg"] == 300 and both.detail
    absolute = judge_declared(30400, 0, 30000, E, TolerancePolicy("absolute", 500))
    assert absolute.rule == "absolute" and absolute.detail is None
    percent = judge_declared(30400, 0, 30000, E, TolerancePolicy("percent", percent=2))
    assert percent.rule == "percent" and percent.numbers["tolerance_kg"] == 600
    assert judge_declared(30400, 0, 30000, E, TolerancePolicy(), 50).rule == "pass"


def test_a_weight_below_the_plates_tare_band_fails() -> None:
    tares = {"SU-L 0001": Tare(14000, 300)}
    low = judge_tare(13000, 10, ["sul0001"], tares)
    assert low is not None and low.detail is not None and low.rule == "tare"
    ok = judge_tare(13800, 10, ["SUL0001"], tares)
    assert ok is not None and ok.detail is None
    assert judge_tare(13000, 10, ["OTHER"], tares) is None


def test_a_short_stretch_one_value_off_waits_for_more_frames_before_a_mismatch() -> None:
    gate = IndicationGate(E)
    _feed(gate, [32500.0, 32480.0, 32500.0] * 4)  # 1.1 s whose median is 32500
    assert gate.pass_on(1.2, [_commit(1.2, 32478.0)]) == []
    _feed(gate, [32480.0, 32460.0, 32480.0, 32480.0] * 6, start=1.2)
    out = gate.tick(3.6)
    assert len(out) == 1 and isinstance(out[0], WeightCommitted)
    assert out[0].indication is not None and out[0].indication.kg == 32480.0


def test_a_difference_that_holds_to_the_end_of_the_wait_is_a_mismatch() -> None:
    gate = IndicationGate(E, wait_s=2.0)
    _feed(gate, [32520.0] * 15)
    assert gate.pass_on(1.5, [_commit(1.5, 32475.0)]) == []
    out = gate.tick(3.5)
    assert isinstance(out[0], WeightAbnormality) and out[0].code == Code.WEIGHT_INDICATION_MISMATCH
    assert isinstance(out[1], WeightCommitted) and out[1].indication is not None
    assert out[1].indication.kg == 32520.0
