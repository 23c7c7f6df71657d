"""The signed ``lane_mode`` command and the persisted mode, on the whole agent in virtual time.

Commands are signed with the officer console's real Ed25519 key and go through
``LaneAgent.command`` -> ``RemoteCommands`` -> the verifier -> the lane machine, as from the
broker; results and events are read back from the real SQLite outbox.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.control import CONTROL, ControlRequest
from edge_agent.drivers.mode_file import MODE_FILE, load_mode
from edge_agent.lane.modes import LaneMode, Via
from edge_agent.telemetry.commands import sign_command
from simulators.scenarios import DEMO
from simulators.virtual_lane import VirtualLane


def send(lane: VirtualLane, args: dict[str, Any], *, key: Ed25519PrivateKey | None = None
         ) -> dict[str, Any]:  # fmt: skip
    cmd_id = f"mode-{os.urandom(3).hex()}"
    payload = lane.signed_command("lane_mode", args, cmd_id=cmd_id)
    if key is not None:  # the same claims, signed by a key the lane does not trust
        claims = json.loads(payload)["claims"]
        payload = sign_command(key, "officer-console", claims)
    lane.agent.command("lane_mode", payload, lane.clock())
    result = lane.result(cmd_id)
    assert result is not None, "no cmd_result recorded"
    return result


def mode_events(lane: VirtualLane) -> list[dict[str, Any]]:
    return [r["data"] for r in lane.records() if r["type"] == "lane_mode"]


def test_a_signed_lane_mode_takes_the_lane_out_of_service_and_back(lane: VirtualLane) -> None:
    result = send(lane, {"mode": "out_of_service", "reason": "deck inspection"})
    assert result == {"cmd_id": result["cmd_id"], "name": "lane_mode", "accepted": True,
                      "code": None, "detail": "lane mode out_of_service (was in_service)"}
    assert lane.agent.machine.modes.mode is LaneMode.OUT_OF_SERVICE
    event = mode_events(lane)[-1]
    assert (event["by"], event["via"], event["reason"]) == ("officer-7", "remote",
                                                            "deck inspection")  # fmt: skip
    assert event["since"].startswith("2027-03-01T08:")  # the lane's wall clock
    assert send(lane, {"mode": "in_service", "reason": "done"})["accepted"]
    assert lane.agent.machine.modes.mode is LaneMode.IN_SERVICE


@pytest.mark.parametrize(("args", "problem"), [
    ({"mode": "closed", "reason": "x"},
     "mode must be one of in_service, out_of_service, not 'closed'"),
    ({"mode": "manual", "reason": "x"},
     "mode manual is set at the lane; remotely: in_service, out_of_service"),
    ({"mode": "out_of_service"}, "reason must be a non-empty text"),
    ({"mode": "out_of_service", "reason": "x", "by": "me"}, "unknown argument 'by'"),
])  # fmt: skip
def test_a_bad_lane_mode_is_refused_naming_the_problem_and_changes_nothing(
    lane: VirtualLane, args: dict[str, Any], problem: str
) -> None:
    result = send(lane, args)
    assert not result["accepted"] and result["code"] == "cmd.bad_format"
    assert problem in result["problems"]
    assert lane.agent.machine.modes.mode is LaneMode.IN_SERVICE and not mode_events(lane)


def test_a_lane_mode_signed_by_an_untrusted_key_changes_nothing(lane: VirtualLane) -> None:
    result = send(lane, {"mode": "out_of_service", "reason": "x"},
                  key=Ed25519PrivateKey.generate())
    assert not result["accepted"] and result["code"] == "cmd.bad_signature"
    assert lane.agent.machine.modes.mode is LaneMode.IN_SERVICE and not mode_events(lane)


def test_the_backend_cannot_end_maintenance_set_at_the_lane(lane: VirtualLane) -> None:
    lane.run_for(0.5)  # the board has reported the barrier closed
    request = ControlRequest("mode", 0, "hana", mode=LaneMode.MAINTENANCE, reason="relays")
    lane.agent.command(CONTROL, request, lane.clock())
    reply = request.wait(0.0)
    assert reply is not None and reply["ok"], reply
    result = send(lane, {"mode": "in_service", "reason": "traffic waiting"})
    assert not result["accepted"] and result["code"] == "cmd.precondition"
    assert result["detail"] == ("the lane is in maintenance (set at the lane by hana): "
                                "only the lane ends it")
    assert lane.agent.machine.modes.mode is LaneMode.MAINTENANCE
    lane.run_for(0.5)
    assert lane.board.barrier == "maintenance"  # the firmware is in its MAINTENANCE state


def test_a_damaged_mode_file_is_quarantined_and_the_lane_starts_out_of_service(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / MODE_FILE).write_text('{"current": {"mode": "in_serv')
    lane = VirtualLane(tmp_path, DEMO)
    try:
        modes = lane.agent.machine.modes
        assert modes.mode is LaneMode.OUT_OF_SERVICE and modes.current.via is Via.STARTUP
        quarantined = [r["data"] for r in lane.records() if r["type"] == "abnormality"
                       and r["data"]["code"] == "lane.state_quarantined"]  # fmt: skip
        assert quarantined and quarantined[0]["detail"].startswith(f"{MODE_FILE}.corrupt-")
        assert list(state.glob(f"{MODE_FILE}.corrupt-*"))
    finally:
        lane.close()


def test_a_saved_mode_loads_back(lane: VirtualLane) -> None:
    send(lane, {"mode": "out_of_service", "reason": "storm"})
    book, damaged = load_mode(lane.config.lane.state_dir, 0.0)
    assert damaged is None
    assert book.to_status() == lane.agent.machine.modes.to_status()


def test_a_technician_release_by_key_names_who_signed_in(lane: VirtualLane) -> None:
    mismatch = next(p for p in DEMO.trucks if p.name == "mismatch")
    request = ControlRequest("sign_in", 0, "root", name="L. Tech")
    lane.agent.command(CONTROL, request, lane.clock())
    assert (request.wait(0.0) or {}).get("ok")
    outcome = lane.run_truck(replace(mismatch, release="technician"))
    assert outcome.ok, outcome.problems
    released = [r["data"] for r in lane.transit_records(outcome.transit_id or "")
                if r["type"] == "released"]  # fmt: skip
    assert released == [{"by": "technician", "technician": "L. Tech"}]
    assert lane.agent.machine.modes.mode is LaneMode.IN_SERVICE  # a release, not a mode
