"""The typed contract: every event type and command has a schema, valid payloads pass, and a
broken one is named by its JSON path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend.contract import command_names, command_problems, event_problems, event_types
from edge_agent.catalogue import EventType
from edge_agent.telemetry.command_args import ALLOWED_ARGS

REPO = Path(__file__).resolve().parents[2]
HOLD: dict[str, Any] = {
    "decision": "hold", "reasons": ["weight.declared_mismatch"], "weight_kg": 40_000.0,
    "uncertainty_kg": 20.0, "release_no": "RL-1", "declared_gross_kg": 33_000,
    "input_at_mono": 12.5, "estimate_kg": 40_003.1, "indicator_kg": 40_000.0,
    "indicator_stable": True, "indicator_frames": [{"t": 12.4, "kg": 40_000.0, "stable": True,
                                                     "raw": "02"}],
    "weight_rules": [{"rule": "declared", "limit_kg": 330}], "identity": [], "flags": [],
    "detail": "weight off", "challenge": "a7a03b820def41fb", "snapshot": "s-1",
    "trace": [[12.0, 39_990.0], [12.1, 40_000.0]],
}


def event(type: str, data: Any) -> dict[str, Any]:
    return {"type": type, "data": data}


def test_every_event_the_lane_can_send_and_every_command_has_a_schema() -> None:
    assert set(event_types()) == {str(t) for t in EventType}
    assert set(command_names()) == set(ALLOWED_ARGS)


def test_a_hold_with_its_challenge_and_evidence_is_valid() -> None:
    assert event_problems(event("decision", HOLD)) == []


def test_broken_payloads_are_named_by_their_path() -> None:
    no_challenge = {k: v for k, v in HOLD.items() if k != "challenge"}
    assert any("challenge" in p for p in event_problems(event("decision", no_challenge)))
    bad_code = {**HOLD, "reasons": ["weight.made_up"]}
    assert [p.split(":")[0] for p in event_problems(event("decision", bad_code))] == [
        "data.reasons.0"]
    bad_weight = {**HOLD, "weight_kg": "heavy"}
    assert event_problems(event("decision", bad_weight))[0].startswith("data.weight_kg:")
    chunk = {"ref": "r", "part": 0, "parts": 1, "size": 3, "sha256": "ab", "media_type": "x",
             "data": "AAAA"}
    assert event_problems(event("evidence", chunk))[0].startswith("data.sha256:")
    assert event_problems(event("evidence", "not an object"))[0].startswith("data:")


def test_an_unknown_event_type_is_accepted_for_newer_lanes() -> None:
    assert event_problems(event("something_new", {"x": 1})) == []


def test_commands_are_strict() -> None:
    assert command_problems("remote_release", {"challenge": "c1"}) == []
    assert command_problems("remote_refuse", {"challenge": "c1"})[0].startswith("args:")
    assert command_problems("lane_mode", {"mode": "manual", "reason": "x"})[0].startswith(
        "args.mode:")
    assert any("extra" in p for p in command_problems("config", {
        "version": 1, "settings": {}, "extra": 1}))
    assert command_problems("open_everything", {})[0].startswith("name:")


def test_the_reason_code_table_is_generated_from_the_catalogue() -> None:
    printed = subprocess.run([sys.executable, "-m", "backend.contract", "reason-codes"],
                             capture_output=True, text=True, check=True).stdout
    on_disk = (REPO / "docs" / "reason-codes.md").read_text(encoding="utf-8")
    assert on_disk == printed, (
        "docs/reason-codes.md is stale: python -m backend.contract reason-codes "
        "> docs/reason-codes.md")


def test_schemas_are_plain_json_files_with_a_title() -> None:
    for path in (REPO / "backend" / "schemas").rglob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema.get("title"), path


def test_the_asyncapi_document_carries_every_data_schema_as_generated() -> None:
    import yaml

    from backend.contract import GENERATED_MARK, asyncapi_block

    text = (REPO / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    assert text[text.index(GENERATED_MARK):] == asyncapi_block(), (
        "docs/asyncapi.yaml is stale: replace everything from the generated mark on with "
        "the output of python -m backend.contract asyncapi")
    schemas = yaml.safe_load(text)["components"]["schemas"]
    picks = {branch["if"]["properties"]["type"]["const"]: branch["then"]["properties"]["data"]
             for branch in schemas["EventData"]["allOf"]}
    assert set(picks) == {str(t) for t in EventType}
    for data in picks.values():
        target = schemas[data["$ref"].removeprefix("#/components/schemas/")]
        assert target["type"] == "object" and "properties" in target
    envelope = schemas["Envelope"]["allOf"]
    assert {"$ref": "#/components/schemas/EventData"} in envelope
