"""One truck after another through the whole lane: firmware, devices, agent, broker, backend."""

from __future__ import annotations

import pytest

from simulators.harness import SimLane, TruckOutcome
from simulators.scenarios import Scenario

pytestmark = pytest.mark.slow

Run = tuple[SimLane, list[TruckOutcome]]


def test_every_truck_gets_the_expected_decision(demo_run: Run, demo_scenario: Scenario) -> None:
    _lane, outcomes = demo_run
    for plan, outcome in zip(demo_scenario.trucks, outcomes, strict=True):
        assert outcome.decision == plan.expect_decision, (plan.name, outcome.to_json())
        if plan.expect_reason:
            assert plan.expect_reason in outcome.reasons, (plan.name, outcome.reasons)
        assert outcome.ok, (plan.name, outcome.problems)


def test_firmware_drives_the_relays_only_for_released_trucks(
    demo_run: Run, demo_scenario: Scenario
) -> None:
    _lane, outcomes = demo_run
    for plan, outcome in zip(demo_scenario.trucks, outcomes, strict=True):
        if plan.expect_decision == "open" or plan.release is not None:
            assert outcome.barrier[:2] == ["open", "close"], (plan.name, outcome.barrier)
        else:
            assert outcome.barrier == [], (plan.name, outcome.barrier)


def test_backend_received_each_transit_in_order_without_gaps(demo_run: Run) -> None:
    lane, outcomes = demo_run
    events = lane.backend.events(lane.scenario.lane)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for outcome in outcomes:
        kinds = outcome.events
        assert kinds[0] == "truck_arrived"
        assert "pass_read" in kinds and "decision" in kinds
        assert kinds[-1] == "transit_closed"
        assert all(e["site"] == lane.scenario.site for e in events)


def test_decision_latency_is_measured_for_opened_trucks(
    demo_run: Run, demo_scenario: Scenario
) -> None:
    _lane, outcomes = demo_run
    opened = [o for o in outcomes if o.expected == "open"]
    assert opened and all(o.latency_ms is not None and o.latency_ms > 0 for o in opened)


def test_officer_releases_a_held_truck_with_a_signed_command(
    demo_run: Run, demo_scenario: Scenario
) -> None:
    lane, outcomes = demo_run
    released = [
        (plan, outcome)
        for plan, outcome in zip(demo_scenario.trucks, outcomes, strict=True)
        if plan.release == "remote"
    ]
    assert released, "the demo scenario has a remotely released truck"
    for plan, outcome in released:
        assert outcome.decision == "hold" and "released" in outcome.events, plan.name
    results = [e for e in lane.backend.events(lane.scenario.lane) if e["type"] == "cmd_result"]
    assert any(r["data"]["accepted"] and r["data"]["name"] == "remote_release" for r in results)


def test_events_produced_during_a_broker_outage_all_arrive(
    demo_run: Run, demo_scenario: Scenario
) -> None:
    lane, outcomes = demo_run
    stormy = [
        outcome
        for plan, outcome in zip(demo_scenario.trucks, outcomes, strict=True)
        if plan.broker_outage
    ]
    assert stormy, "the demo scenario has a broker outage"
    for outcome in stormy:
        assert any(note.startswith("broker down") for note in outcome.notes)
        assert outcome.events[0] == "truck_arrived" and outcome.events[-1] == "transit_closed"
    assert lane.backend.gaps(lane.scenario.lane) == []


def test_lane_never_closed_the_arm_over_a_truck(demo_run: Run) -> None:
    lane, _outcomes = demo_run
    assert lane.world.violations == []


def test_status_reports_the_lane_idle_after_the_last_truck(demo_run: Run) -> None:
    lane, _outcomes = demo_run
    status = lane.status()
    assert status["lane"] == lane.scenario.lane
    assert status["state"] == "idle"
    assert status["devices"]["io_board"]["link"] == "up"


def test_agent_reports_health_with_its_devices(demo_run: Run) -> None:
    lane, _outcomes = demo_run
    reports = lane.backend.health(lane.scenario.lane)
    assert reports, "at least the start-up health report reached the backend"
    devices = reports[-1]["data"]["devices"]
    assert set(devices) >= {"io_board", "weighbridge", "camera", "telemetry"}


def test_held_trucks_evidence_reaches_the_backend_intact(demo_run: Run) -> None:
    from edge_agent.telemetry.evidence_chunks import assemble_evidence

    lane, _outcomes = demo_run
    events = lane.backend.events(lane.scenario.lane)
    chunks = [e["data"] for e in events if e["type"] == "evidence"]
    holds = [
        e for e in events if e["type"] == "decision" and e["data"]["decision"] == "hold"
    ]
    assert holds
    for hold in holds:
        image = assemble_evidence(chunks, hold["data"]["snapshot"])
        assert image is not None and image[:2] == b"\xff\xd8", hold["data"]["snapshot"]


def test_every_message_the_lane_sent_matches_the_asyncapi_document(demo_run: Run) -> None:
    from pathlib import Path

    import jsonschema
    import yaml

    lane, _outcomes = demo_run
    spec = yaml.safe_load((Path(__file__).parents[1] / "docs" / "asyncapi.yaml").read_text())

    def validator(name: str) -> jsonschema.Draft7Validator:
        root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        return jsonschema.Draft7Validator(root)

    events = lane.backend.events(lane.scenario.lane)
    health = lane.backend.health(lane.scenario.lane)
    assert {"decision", "evidence", "cmd_result", "barrier"} <= {e["type"] for e in events}
    checks = [
        (validator("CommandResultEnvelope" if e["type"] == "cmd_result" else "Envelope"), e)
        for e in events
    ] + [(validator("HealthEnvelope"), h) for h in health]
    for check, message in checks:
        errors = [error.message for error in check.iter_errors(message)]
        assert not errors, (message["type"], errors)
    from backend.contract import event_problems

    for event in events:  # each payload against its own schema (backend/schemas)
        assert event_problems(event) == [], (event["type"], event["seq"])
    # The backend validated on ingest too: nothing the lane sent was quarantined.
    assert lane.backend.quarantined() == []
