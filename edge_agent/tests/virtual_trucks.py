"""Truck plans for the whole agent on the virtual lane, and what its records say of them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from simulators.scenarios import DEMO, TruckPlan
from simulators.virtual_lane import VirtualLane, VirtualOutcome

VALID = DEMO.trucks[0]
PATIENT = 25.0  # a held truck backs off once the lane announces the hold


def held_plan(name: str, reason: str, *, plate: str | None = None) -> TruckPlan:
    """The demo's valid truck (with ``plate`` on it if given), expected to be held for
    ``reason`` and backing off once the hold is announced."""
    truck = replace(VALID.truck, plate=plate or VALID.truck.plate, back_off_after_s=PATIENT)
    return TruckPlan(name, truck, expect_decision="hold", expect_reason=reason)


def decision_of(lane: VirtualLane, outcome: VirtualOutcome) -> dict[str, Any]:
    """The one decision recorded for the outcome's transit."""
    assert outcome.transit_id is not None
    [decision] = [r["data"] for r in lane.transit_records(outcome.transit_id)
                  if r["type"] == "decision"]
    return decision
