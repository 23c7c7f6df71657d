"""The command attack suite against the running lane: while a truck is held, forged,
expired, foreign, misdirected, mis-tiered and replayed releases arrive through the real
broker; each is refused with its code and the relay never moves, then the officer's
genuine signed release opens the barrier."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.telemetry.commands import sign_command
from simulators.harness import SimLane, TruckOutcome
from simulators.scenarios import TruckPlan
from simulators.world import TruckSpec

pytestmark = pytest.mark.slow

Run = tuple[SimLane, list[TruckOutcome]]


def test_only_the_genuine_release_opens_the_barrier_for_a_held_truck(demo_run: Run) -> None:
    lane, _ = demo_run
    site, lane_id = lane.scenario.site, lane.scenario.lane
    stranger = Ed25519PrivateKey.generate()
    refusals: dict[str, tuple[str | None, str]] = {}
    relay_before_release: list[Any] = []

    def claims(hold: dict[str, Any], label: str, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "cmd_id": f"attack-{label}", "name": "remote_release", "site": site,
            "lane": lane_id, "iat": now, "exp": now + 60, "nonce": f"nonce-{label}",
            "issuer": "intruder", "args": {"challenge": hold["data"]["challenge"]},
        }
        base.update(changes)
        return base

    def attack(hold: dict[str, Any]) -> None:
        now = int(time.time())
        unsigned = json.dumps({
            "claims": claims(hold, "unsigned"), "kid": "officer-console",
            "sig": base64.urlsafe_b64encode(bytes(64)).rstrip(b"=").decode(),
        }).encode()
        wrong_challenge = sign_command(lane.officer_key, "officer-console", claims(
            hold, "wrong-challenge", args={"challenge": "0" * 32}))
        attacks = {
            "unsigned": (unsigned, "cmd.bad_signature"),
            "forged": (sign_command(stranger, "officer-console", claims(hold, "forged")),
                       "cmd.bad_signature"),
            "unknown-key": (sign_command(stranger, "intruder-1", claims(hold, "unknown-key")),
                            "cmd.unknown_key"),
            "expired": (sign_command(lane.officer_key, "officer-console", claims(
                hold, "expired", iat=now - 900, exp=now - 840)), "cmd.expired"),
            "other-lane": (sign_command(lane.officer_key, "officer-console", claims(
                hold, "other-lane", lane="exit-99")), "cmd.wrong_lane"),
            "root-tier": (sign_command(lane.root_key, "site-root", claims(hold, "root-tier")),
                          "cmd.key_not_allowed"),
            "wrong-challenge": (wrong_challenge, "cmd.precondition"),
        }
        for payload, _code in attacks.values():
            lane.backend.publish_command(site, lane_id, "remote_release", payload)
        for label, (_payload, code) in attacks.items():
            found = lane.console.result(lane_id, f"attack-{label}", timeout_s=15.0)
            refusals[label] = (found or {}).get("code"), code
            assert found is not None and found["accepted"] is False, (label, found)
        # A QoS1 redelivery or a captured copy of an accepted-and-recorded command.
        lane.backend.publish_command(site, lane_id, "remote_release", wrong_challenge)
        assert lane.backend.wait_for(lambda events: any(
            e["type"] == "cmd_result" and e["data"].get("code") == "cmd.replayed"
            for e in events), timeout=15.0)
        relay_before_release.extend(
            c for c in lane.iohost.output_changes() if c[1] == "barrier_open" and c[2]
            and c[0] >= hold["mono_ms"] / 1000.0
        )
        lane.console.release(lane_id, hold)

    plan = TruckPlan(
        "attacked-hold", TruckSpec(plate="SU-X9009", gross_kg=40_000), declared_kg=33_000,
        expect_decision="hold", expect_reason="weight.declared_mismatch", release="remote",
    )
    outcome = lane.run_truck(plan, on_hold=attack)
    assert {label: got for label, (got, _want) in refusals.items()} == {
        label: want for label, (_got, want) in refusals.items()
    }
    assert len(refusals) == 7
    assert relay_before_release == []
    assert outcome.ok, outcome.problems
    assert outcome.barrier[:2] == ["open", "close"]
