"""The backend steers a running lane with signed desired state: the pass trust list, pass
revocations and remote settings take effect on the next truck, are reported back, and
survive an agent restart. Runs on the demo lane after its trucks."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from edge_agent.protocols import gp1
from simulators.harness import SimLane, TruckOutcome
from simulators.scenarios import TruckPlan
from simulators.world import TruckSpec

pytestmark = pytest.mark.slow

Run = tuple[SimLane, list[TruckOutcome]]


def result(lane: SimLane, cmd_id: str) -> dict[str, Any]:
    found = lane.console.result(lane.scenario.lane, cmd_id, timeout_s=15.0)
    assert found is not None, f"no cmd_result for {cmd_id}:\n{lane.agent_log()}"
    return found


def truck(plate: str, gross_kg: float) -> TruckSpec:
    return TruckSpec(plate=plate, gross_kg=gross_kg, back_off_after_s=25.0)


def test_a_trust_update_admits_a_new_pass_issuer_on_the_next_truck(demo_run: Run) -> None:
    lane, _ = demo_run
    name = lane.scenario.lane
    current = gp1.TrustList.load(lane.trust_path).to_json()["keys"]
    rotated = gp1.TrustList().with_key(lane.rogue_key.public_key(), issuer="customs")
    cmd_id = lane.console.trust_update(name, 1, pass_keys=current + rotated.to_json()["keys"])
    answer = result(lane, cmd_id)
    assert answer["accepted"] is True, answer
    assert answer["reported"]["pass_keys"] == 2 and answer["reported"]["version"] == 1
    # The issuer refused in the demo ("untrusted-key") is now trusted.
    plan = TruckPlan("new-issuer", truck("SU-N1001", 26_000), pass_kind="untrusted")
    outcome = lane.run_truck(plan)
    assert outcome.ok, outcome.problems
    rollback = lane.console.trust_update(name, 1, pass_keys=current)
    assert result(lane, rollback)["code"] == "cmd.stale_version"


def test_a_revoked_pass_is_refused_and_a_lifted_revocation_lets_it_through(
    demo_run: Run,
) -> None:
    lane, _ = demo_run
    name = lane.scenario.lane
    plan = TruckPlan("revoked", truck("SU-R2002", 31_000), expect_decision="hold",
                     expect_reason="pass.revoked")
    text = lane.issue_pass(plan)
    assert text is not None
    cti = bytes.fromhex(gp1.inspect_pass(text)["claims"]["cti"])
    revoke = lane.console.revocations(name, 1, pass_hashes=[gp1.revocation_hash(cti).hex()])
    assert result(lane, revoke)["reported"]["pass_revocations"] == 1
    held = lane.run_truck(plan, pass_text=text)
    assert held.ok, held.problems
    # Revoked in error: the next list lifts it, and the same pass (never used) opens.
    lift = lane.console.revocations(name, 2, pass_hashes=[])
    assert result(lane, lift)["reported"]["pass_revocations"] == 0
    again = TruckPlan("revocation-lifted", plan.truck)
    opened = lane.run_truck(again, pass_text=text)
    assert opened.ok, opened.problems


def test_remote_settings_are_validated_applied_reported_and_kept_across_a_restart(
    demo_run: Run,
) -> None:
    lane, _ = demo_run
    name = lane.scenario.lane
    refused = result(lane, lane.console.config(name, 1, {
        "passes.skew_s": 99_999, "lane.gate": "G9", "weighbridge.frozen_s": 10,
    }))
    assert (refused["accepted"], refused["code"]) == (False, "cmd.invalid_args")
    assert len(refused["problems"]) == 2, refused["problems"]  # skew range, gate not remote
    desired = {"passes.skew_s": 120, "weighbridge.frozen_s": 10, "mqtt.health_interval_s": 5}
    applied = result(lane, lane.console.config(name, 1, desired))
    assert applied["accepted"] is True, applied
    reported = applied["reported"]["settings"]
    assert {key: reported[key] for key in desired} == desired
    local = tomllib.loads(lane.config_path.read_text())["weighbridge"].get("not_on_deck_s", 5)
    assert reported["weighbridge.not_on_deck_s"] == local  # not named: the lane's file value

    lane.restart_agent()
    lane_id = lane.scenario.lane

    def health_after_restart(_events: Any) -> bool:
        reports = lane.backend.health(lane_id)
        return any(r["boot_id"] > 1 and r["data"].get("applied", {}).get("config") == 1
                   for r in reports)

    assert lane.backend.wait_for(health_after_restart, timeout=20.0), lane.agent_log()
    latest = [r for r in lane.backend.health(lane_id) if r["boot_id"] > 1][-1]["data"]
    assert {key: latest["settings"][key] for key in desired} == desired
    assert latest["applied"]["trust_update"] >= 1
    # The restarted lane still trusts the pushed issuer (state from the verifier's store).
    plan = TruckPlan("after-restart", truck("SU-N3003", 24_000), pass_kind="untrusted")
    outcome = lane.run_truck(plan)
    assert outcome.ok, outcome.problems
