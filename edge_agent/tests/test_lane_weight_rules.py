"""The decision event states which weight rule fired, with its numbers and the indication."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from edge_agent.lane.actions import LaneAction, OpenBarrier, Publish
from edge_agent.lane.fakes import step
from edge_agent.lane.machine import LaneMachine, MachineConfig
from edge_agent.lane.policy import PolicyConfig
from edge_agent.tests.lane_builders import PassSpec, shown, truck_on, weight
from edge_agent.weighing.declared import Tare, TolerancePolicy
from edge_agent.weighing.events import IndicatedFrame, Indication

NO_TOLERANCE = PassSpec(valid=True, reason=None, release_no="RL-1", plates=("SU 1",),
                        declared_gross_kg=30_000, tolerance_kg=None, cti_hex="00" * 16,
                        exp=2_000_000_000)


def decide(policy: PolicyConfig, kg: float, *, spec: PassSpec = NO_TOLERANCE,
           indication: Indication | None = None) -> tuple[dict[str, Any], list[LaneAction]]:
    counter = itertools.count(1)
    m = LaneMachine(MachineConfig(policy=policy), new_id=lambda: f"id{next(counter)}",
                    strict=True)
    committed = replace(weight(3.0, kg, 10.0), indication=indication)
    out: list[LaneAction] = []
    for event in (truck_on(1.0), shown(2.0, spec), committed):
        out += step(m, event, event.at)
    [decision] = [a.data for a in out if isinstance(a, Publish) and a.type == "decision"]
    return decision, out


def shown_by_indicator(kg: float, stable: bool | None = True) -> Indication:
    frames = tuple(IndicatedFrame(2.0 + i / 10, kg, stable, b"\x02+%06d\x03" % int(kg))
                   for i in range(12))
    return Indication(kg, stable, frames)


def test_the_percent_rule_states_its_numbers_and_the_indication_beside_the_estimate() -> None:
    policy = PolicyConfig(tolerance=TolerancePolicy(rule="percent", percent=2.0))
    decision, out = decide(policy, 30_400.0, indication=shown_by_indicator(30_420.0))
    assert any(isinstance(a, OpenBarrier) for a in out)
    assert decision["weight_rules"] == [{
        "rule": "percent", "measured_kg": 30_400.0, "uncertainty_kg": 10.0,
        "declared_kg": 30_000.0, "difference_kg": 400.0, "tolerance_kg": 600.0, "ok": True}]
    assert (decision["weight_kg"], decision["estimate_kg"]) == (30_420.0, 30_400.0)
    assert (decision["indicator_kg"], decision["indicator_stable"]) == (30_420.0, True)
    frames = decision["indicator_frames"]
    assert len(frames) == 12 and frames[0] == {"t": 2.0, "kg": 30_420.0, "stable": True,
                                               "raw": (b"\x02+030420\x03").hex()}


def test_the_absolute_rule_holds_and_its_detail_names_it() -> None:
    policy = PolicyConfig(default_tolerance_kg=100.0,
                          tolerance=TolerancePolicy(rule="absolute", absolute_kg=100.0))
    decision, out = decide(policy, 30_400.0)
    assert not any(isinstance(a, OpenBarrier) for a in out)
    assert decision["reasons"] == ["weight.declared_mismatch"]
    [rule] = decision["weight_rules"]
    assert (rule["rule"], rule["tolerance_kg"], rule["difference_kg"], rule["ok"]) == (
        "absolute", 100.0, 400.0, False)
    assert "(absolute)" in decision["detail"]
    # No indication shown: the fields are there, empty.
    assert decision["indicator_kg"] is None and decision["indicator_stable"] is None
    assert decision["indicator_frames"] == [] and decision["estimate_kg"] == 30_400.0


def test_both_takes_the_larger_and_says_which_one_won() -> None:
    policy = PolicyConfig(e_kg=20.0, tolerance=TolerancePolicy(rule="both", absolute_kg=50.0,
                                                               percent=1.0))
    decision, _ = decide(policy, 30_250.0)
    [rule] = decision["weight_rules"]
    assert (rule["rule"], rule["tolerance_kg"], rule["ok"]) == ("percent (both)", 300.0, True)
    decision, _ = decide(replace(policy, tolerance=TolerancePolicy(
        rule="both", absolute_kg=500.0, percent=1.0)), 30_450.0)
    assert decision["weight_rules"][0]["rule"] == "absolute (both)"


def test_the_pass_own_tolerance_wins_over_the_site_rule() -> None:
    policy = PolicyConfig(tolerance=TolerancePolicy(rule="percent", percent=10.0))
    decision, _ = decide(policy, 30_400.0, spec=replace(NO_TOLERANCE, tolerance_kg=200))
    [rule] = decision["weight_rules"]
    assert (rule["rule"], rule["tolerance_kg"], rule["ok"]) == ("pass", 200.0, False)
    assert decision["reasons"] == ["weight.declared_mismatch"]


def test_a_weight_below_the_plate_tare_band_holds_with_the_tare_rule() -> None:
    policy = PolicyConfig(tolerance=TolerancePolicy(rule="percent", percent=50.0),
                          tares={"SU-1": Tare(20_000.0, 500.0)})
    decision, _ = decide(policy, 19_000.0)
    declared, tare = decision["weight_rules"]
    assert declared["ok"] is True
    assert tare == {"rule": "tare", "plate": "SU 1", "measured_kg": 19_000.0,
                    "tare_kg": 20_000.0, "band_kg": 500.0, "ok": False}
    assert decision["reasons"] == ["weight.declared_mismatch"]
    assert "below the tare of SU 1" in decision["detail"]
