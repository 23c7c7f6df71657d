"""The transaction log in the whole LaneAgent, on the in-package fakes in virtual time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from backend.sqlite_store import SqliteStore
from edge_agent.protocols.iolink_session import BoardHello
from edge_agent.records import LOG_NAME
from edge_agent.records.chain import ChainFollower
from edge_agent.records.lane_log import RETRY_S
from edge_agent.records.segments import verify_segments
from edge_agent.records.store import RecordStore
from edge_agent.records.verify import verify_log
from simulators.scenarios import DEMO
from simulators.virtual_lane import VirtualLane

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
VALID = DEMO.trucks[0]
MISMATCH = next(p for p in DEMO.trucks if p.name == "mismatch")


def log_events(lane: VirtualLane) -> list[dict[str, Any]]:
    return [r for r in lane.records() if r["type"] == "transaction_record"]


def bodies(lane: VirtualLane, kind: str) -> list[dict[str, Any]]:
    return [e["data"]["record"]["body"] for e in log_events(lane)
            if e["data"]["record"]["kind"] == kind]  # fmt: skip


def test_a_start_and_each_decision_are_recorded_and_sent(lane: VirtualLane) -> None:
    assert lane.run_truck(VALID).ok
    kinds = [e["data"]["record"]["kind"] for e in log_events(lane)]
    # The IO board's hello comes in after the start: its firmware, the first one recorded.
    assert kinds == ["header", "power_cycle", "config_change", "firmware_update", "transit"]
    [transit] = log_events(lane)[-1:]
    body = transit["data"]["record"]["body"]
    decision = next(r for r in lane.records() if r["type"] == "decision")
    assert transit["transit_id"] == decision["transit_id"] == body["transit_id"]
    assert (body["event_id"], body["event_seq"]) == (decision["event_id"], decision["seq"])
    assert body["decision"] == "open" and body["reasons"] == []
    assert body["indicator_kg"] == decision["data"]["indicator_kg"] is not None
    assert body["indicator_frames"] == decision["data"]["indicator_frames"] != []
    assert body["estimate_kg"] == decision["data"]["estimate_kg"]
    assert body["pass"]["release_no"] == "RL-SU-A1001" and len(body["pass"]["pass_hash"]) == 32
    assert body["plates_read"] == [] and body["containers_read"] == []
    assert body["software"]["sha256"] and body["config_changes"] == 1
    # The lane's own file is the same log, intact; and the backend's view of it follows.
    state = lane.config.lane.state_dir
    assert verify_log((state / LOG_NAME).read_bytes()).ok and verify_segments(state).ok
    follower = ChainFollower()
    assert [follower.add(e["data"]["segment"], e["data"]["record"]) for e in log_events(lane)] \
        == [""] * 5


def test_a_held_truck_records_the_hold_with_its_evidence_hash_and_then_its_release(
    lane: VirtualLane,
) -> None:
    assert lane.run_truck(MISMATCH).ok
    transits = bodies(lane, "transit")
    assert [t["decision"] for t in transits] == ["hold", "open"]
    hold, release = transits
    assert hold["reasons"] == ["weight.declared_mismatch"] and release["by"] == "remote"
    evidence = next(r["data"] for r in lane.records() if r["type"] == "evidence")
    assert hold["evidence"][0]["sha256"] == evidence["sha256"]
    assert hold["weight_rules"] and hold["weight_rules"][0]["ok"] is False


def test_a_remote_config_change_is_recorded_with_who_and_what(lane: VirtualLane) -> None:
    command = lane.signed_command("config", {"version": 3, "settings": {"passes.skew_s": 60}},
                                  cmd_id="cfg-3")  # fmt: skip
    lane.agent.command("config", command, lane.clock())
    lane.run_for(0.1)
    change = bodies(lane, "config_change")[-1]
    assert change["by"] == "remote config version 3" and change["counter"] == 2
    assert change["changed"] == [{"key": "passes.skew_s", "old": 300, "new": 60}]


def test_a_restart_records_a_power_cycle_that_follows_the_log(tmp_path: Path) -> None:
    first = VirtualLane(tmp_path, DEMO)
    assert first.run_truck(VALID).ok
    first.close()  # no clean stop: as after a power cut
    second = VirtualLane(tmp_path, DEMO)  # its virtual clocks start again from the same time
    try:
        events = log_events(second)  # the outbox still holds the first run's events too
        kinds = [e["data"]["record"]["kind"] for e in events]
        # The same firmware again: no record of it this time.
        assert kinds[5:] == ["header", "power_cycle", "clock_step", "config_change"]
        assert events[5]["data"]["record"] == events[0]["data"]["record"]  # its header again
        cycle, step, change = (e["data"]["record"]["body"] for e in events[6:])
        assert cycle["previous_shutdown"] == "unclean" and cycle["last_record"]["seq"] == 4
        assert step["seen"] == "at start: behind the last record" and step["step_s"] < 0
        # Each virtual lane names its fake devices anew: that is a change of configuration.
        assert "io_board.url" in {c["key"] for c in change["changed"]}
    finally:
        second.close()
    assert verify_segments(second.config.lane.state_dir).ok


def test_a_failing_log_is_an_abnormality_the_lane_carries_on_and_catches_up(
    lane: VirtualLane, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: RecordStore, *args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "Input/output error")

    append = RecordStore.append
    monkeypatch.setattr(RecordStore, "append", refuse)
    assert lane.run_truck(VALID).ok  # the truck is decided and goes, as without the log
    faults = [r["data"] for r in lane.records()
              if r["type"] == "abnormality" and r["data"]["code"] == "lane.record_log_fault"]
    assert len(faults) == 1 and "Input/output error" in faults[0]["detail"]
    lane.run_for(35.0)  # a health report
    health = [json.loads(row.payload) for row in lane.devices.outbox.pending_health(100)]
    log_health = health[-1]["data"]["transaction_log"]
    # Waiting: the IO board's firmware (its hello came after the start) and the transit.
    assert log_health["ok"] is False and log_health["pending"] == 2
    monkeypatch.setattr(RecordStore, "append", append)
    lane.run_for(RETRY_S + 1)
    assert bodies(lane, "transit")[-1]["decision"] == "open"
    assert verify_segments(lane.config.lane.state_dir).ok


def test_every_record_event_matches_the_interface_document(lane: VirtualLane) -> None:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    envelope = jsonschema.Draft7Validator({**spec, "$ref": "#/components/schemas/Envelope"})
    assert lane.run_truck(MISMATCH).ok
    events = log_events(lane)
    assert events
    for event in events:
        envelope.validate(event)
    broken = json.loads(json.dumps(events[-1]))
    del broken["data"]["record"]["sig"]
    assert not envelope.is_valid(broken)


def backend_chain(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the backend makes of the lane's events: its chain check as they arrive."""
    store = SqliteStore()
    with store.write():
        for event in events:
            store.add("site", event, json.dumps(event), 0.0)
        lane_name = events[0]["lane"]
        store.advance(lane_name)
        store.follow_records(lane_name)
    chain = store.record_chain(lane_name)
    assert chain is not None
    return chain


def test_a_record_written_but_not_queued_before_a_crash_is_sent_at_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = VirtualLane(tmp_path, DEMO)
    keeper = first.agent.records
    assert keeper is not None
    add = keeper.add

    def dies_once(type: str, data: Any, **kwargs: Any) -> Any:
        if type == "transaction_record" and data["record"]["kind"] == "transit":
            monkeypatch.setattr(keeper, "add", add)
            raise RuntimeError("killed between append and enqueue")
        return add(type, data, **kwargs)

    monkeypatch.setattr(keeper, "add", dies_once)
    assert first.run_truck(VALID).ok
    assert "transit" not in [e["data"]["record"]["kind"] for e in log_events(first)]
    first.close()  # no clean stop: the agent died there
    second = VirtualLane(tmp_path, DEMO)
    try:
        events = second.records()
        sent = [e["data"]["record"] for e in log_events(second)]
        places = {(e["data"]["segment"], e["data"]["record"]["seq"]) for e in log_events(second)}
    finally:
        second.close()
    # The transit record is sent at the restart, in its place: after the header again.
    assert [r["kind"] for r in sent][4:7] == ["header", "transit", "power_cycle"]
    assert [r["seq"] for r in sent if r["kind"] != "header"] == [1, 2, 3, 4, 5, 6, 7]
    chain = backend_chain(events)
    assert chain["first_break"] is None and chain["breaks"] == 0
    assert chain["records"] == len(places)  # every record of the log, each once


def test_a_record_sent_again_is_a_duplicate_for_the_backend_never_a_break(
    lane: VirtualLane,
) -> None:
    assert lane.run_truck(VALID).ok
    events = lane.records()
    records = [e for e in events if e["type"] == "transaction_record"]
    last_seq = events[-1]["seq"]
    again = [{**e, "event_id": f"again-{n}", "seq": last_seq + n}
             for n, e in enumerate(records[1:], 1)]  # fmt: skip
    chain = backend_chain(events + again)
    assert chain["first_break"] is None and chain["duplicates"] == len(again)
    assert chain["records"] == len(records)


def test_io_board_firmware_is_recorded_when_it_differs_from_the_last_recorded(
    tmp_path: Path,
) -> None:
    def hello(firmware: str) -> BoardHello:
        return BoardHello(0.0, firmware, 1, f"manifest-{firmware}", "power_on", 10)

    def flashes(lane: VirtualLane) -> list[tuple[str | None, str]]:
        return [(b["old"] and b["old"]["firmware"], b["new"]["firmware"])
                for b in bodies(lane, "firmware_update")]  # fmt: skip

    first = VirtualLane(tmp_path, DEMO)
    try:
        first.agent.handle(hello("9.1.0"), first.clock())
        first.agent.handle(hello("9.1.0"), first.clock())  # the same again: nothing new
        first.agent.handle(hello("9.2.0"), first.clock())
        assert flashes(first) == [(None, "9.1.0"), ("9.1.0", "9.2.0")]
        assert bodies(first, "firmware_update")[-1] == {
            "device": "io_board", "old": {"firmware": "9.1.0", "manifest": "manifest-9.1.0"},
            "new": {"firmware": "9.2.0", "manifest": "manifest-9.2.0"}}  # fmt: skip
    finally:
        first.close()
    # After a restart the last one recorded is known: only a different one is recorded.
    second = VirtualLane(tmp_path, DEMO)
    try:
        second.agent.handle(hello("9.2.0"), second.clock())
        assert flashes(second) == [(None, "9.1.0"), ("9.1.0", "9.2.0")]
        second.agent.handle(hello("9.3.0"), second.clock())
        assert flashes(second)[2:] == [("9.2.0", "9.3.0")]
    finally:
        second.close()
    assert verify_segments(second.config.lane.state_dir).ok
