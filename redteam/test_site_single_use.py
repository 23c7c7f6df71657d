"""Red team: one pass valid at several lanes of a site could be used once at each.

A pass is single-use across the site. Each lane reports the use it recorded (``pass_used``,
naming the pass by its revocation hash); the backend flags a pass used twice and tells every
lane of the site, by signed desired state (``site_uses``), which passes are used; a lane then
refuses them as ``pass.already_used``.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from backend.commands import CommandService, SigningKey
from backend.ingest import IngestWorker
from conftest import LaneRigs
from redteam.agent_rig import LANE, SITE, AgentRig
from simulators.broker import MosquittoBroker
from simulators.polling import wait_until

pytestmark = pytest.mark.slow

PASS_HASH = "5e" * 16


def _pass_used(rig: LaneRigs, lane: str, transit: str) -> None:
    lane_rig = rig(lane=lane, site=SITE)
    lane_rig.outbox.add_event(
        "pass_used", {"pass_hash": PASS_HASH, "release_no": "RL-1"}, transit_id=transit,
        mono_ms=1, wall_ms=int(time.time() * 1000), clock_synced=True,
    )
    lane_rig.publisher.wake()


def test_a_pass_used_at_two_lanes_is_flagged_and_every_lane_learns_it(
    agent: AgentRig, broker: MosquittoBroker, lane_rig: LaneRigs
) -> None:
    with IngestWorker(broker.url) as backend:
        agent.start()
        _pass_used(lane_rig, "exit-04", "t-at-04")
        assert wait_until(lambda: PASS_HASH in backend.pass_uses(), timeout=20.0)
        assert backend.double_uses() == []
        console = CommandService(backend, SITE, officer=SigningKey(
            "officer-console", agent.officer, "site-backend"))
        sent = console.share_site_uses([LANE], version=1)
        result = agent.result(sent[LANE])
        assert result is not None and result["accepted"] is True, agent.log()
        assert result["reported"]["new"] == 1
        db = sqlite3.connect(f"file:{agent.state_dir / 'passes.sqlite'}?mode=ro", uri=True)
        try:
            known = {row[0].hex() for row in db.execute("SELECT hash FROM site_used")}
        finally:
            db.close()
        assert PASS_HASH in known  # the lane's ledger now refuses that pass
        # The same pass reported used at a third lane: a double use the backend flags.
        _pass_used(lane_rig, "exit-05", "t-at-05")
        assert wait_until(lambda: bool(backend.double_uses()), timeout=20.0)
        [flag] = backend.double_uses()
        assert {lane for lane, _ in flag["uses"]} == {"exit-04", "exit-05"}
