"""Turn what the backend stored and what the firmware's pins did into one truck's outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.ingest import IngestWorker
    from simulators.iohost import IoBoardHost
    from simulators.scenarios import TruckPlan
    from simulators.world import World


@dataclass
class TruckOutcome:
    """What happened to one truck, as seen by the world, the firmware and the backend."""

    name: str
    plate: str
    expected: str
    expected_reason: str | None
    pass_verdict: str = "-"
    decision: str = "-"
    reasons: list[str] = field(default_factory=list)
    weight_kg: float | None = None
    latency_ms: float | None = None
    barrier: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    transit_id: str | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plate": self.plate,
            "expected": self.expected,
            "expected_reason": self.expected_reason,
            "pass": self.pass_verdict,
            "decision": self.decision,
            "reasons": self.reasons,
            "weight_kg": self.weight_kg,
            "latency_ms": self.latency_ms,
            "barrier": self.barrier,
            "events": self.events,
            "transit_id": self.transit_id,
            "seconds": round(self.seconds, 2),
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
        }


def collect_outcome(
    backend: IngestWorker,
    iohost: IoBoardHost,
    world: World,
    site_lane: str,
    plan: TruckPlan,
    outcome: TruckOutcome,
    started: float,
    finished: float,
) -> None:
    """Fill ``outcome`` from what ``backend`` stored for ``site_lane`` and what the firmware's
    pins did, and list every way it differs from ``plan``'s expectation."""
    transit_id = _find_transit(backend, site_lane, started, finished)
    if transit_id is None:
        outcome.problems.append("the backend received no truck_arrived event for this truck")
        return
    outcome.transit_id = transit_id
    backend.wait_for(
        lambda events: any(
            e.get("transit_id") == transit_id and e.get("type") == "transit_closed" for e in events
        ),
        timeout=15.0,  # generous: a loaded machine delays the backend, not the lane
    )
    events = [e for e in backend.events(site_lane) if e.get("transit_id") == transit_id]
    outcome.events = [e["type"] for e in events]
    _read_events(outcome, events)
    _read_barrier(iohost, outcome, events, started, finished)
    _check(world, plan, outcome)


def _find_transit(
    backend: IngestWorker, site_lane: str, started: float, finished: float
) -> str | None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        for event in backend.events(site_lane):
            mono_s = event.get("mono_ms", 0) / 1000.0
            if event.get("type") == "truck_arrived" and started - 0.5 <= mono_s <= finished:
                transit: str | None = event.get("transit_id")
                return transit
        time.sleep(0.1)
    return None


def _read_events(outcome: TruckOutcome, events: list[dict[str, Any]]) -> None:
    for event in events:
        data = event.get("data", {})
        kind = event["type"]
        if kind == "pass_read" and outcome.pass_verdict == "-":
            outcome.pass_verdict = "valid" if data.get("valid") else str(data.get("reason"))
        elif kind == "weight_committed" and outcome.weight_kg is None:
            outcome.weight_kg = data.get("kg")
        elif kind == "decision" and outcome.decision == "-":
            outcome.decision = data.get("decision", "-")
            outcome.reasons = list(data.get("reasons", []))


def _read_barrier(
    iohost: IoBoardHost,
    outcome: TruckOutcome,
    events: list[dict[str, Any]],
    started: float,
    finished: float,
) -> None:
    changes = [c for c in iohost.output_changes() if started <= c[0] <= finished + 1.0]
    for _t, name, value in changes:
        if value and name in ("barrier_open", "barrier_close"):
            outcome.barrier.append("open" if name == "barrier_open" else "close")
    opened = [e for e in events if e["type"] == "decision" and e["data"].get("decision") == "open"]
    if opened:
        input_at = opened[0]["data"].get("input_at_mono")
        relay = [t for t, name, value in changes if name == "barrier_open" and value]
        if input_at is not None and relay and relay[0] >= input_at:
            outcome.latency_ms = round((relay[0] - input_at) * 1000.0, 1)


def _check(world: World, plan: TruckPlan, outcome: TruckOutcome) -> None:
    if outcome.decision != plan.expect_decision:
        outcome.problems.append(
            f"decision {outcome.decision!r}, expected {plan.expect_decision!r}"
        )
    if plan.expect_reason and plan.expect_reason not in outcome.reasons:
        outcome.problems.append(
            f"hold reasons {outcome.reasons}, expected {plan.expect_reason!r} among them"
        )
    should_open = plan.expect_decision == "open" or plan.release is not None
    if should_open and "open" not in outcome.barrier:
        outcome.problems.append("the firmware never drove the barrier-open relay")
    if not should_open and "open" in outcome.barrier:
        outcome.problems.append("the barrier opened for a held truck")
    if should_open and "close" not in outcome.barrier:
        outcome.problems.append("the barrier did not close after the truck")
    if "transit_closed" not in outcome.events:
        outcome.problems.append("no transit_closed event reached the backend")
    if world.violations:
        outcome.problems.extend(world.violations)
        world.violations.clear()
