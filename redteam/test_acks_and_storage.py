"""Red team: the unsigned ack watermark, damaged or full storage, a missing camera.

Findings reproduced: (2) one retained ack deleted every pending event and bricked the lane;
(3) after the outbox file was replaced, a stale retained ack deleted a transit unsent;
(7) a full disk killed the agent and it could not restart; (8) a corrupt commands.sqlite
stopped the agent; (11) a missing camera flooded the outbox with lost/restored pairs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.ingest import IngestWorker
from redteam.agent_rig import LANE, AgentRig
from redteam.small_disk import fill, small_tmpfs
from simulators.broker import MosquittoBroker
from simulators.polling import wait_until

pytestmark = pytest.mark.slow


def _ack(upto: int, epoch: str) -> bytes:
    return json.dumps({"upto_seq": upto, "boot_id": 1, "epoch": epoch}).encode()


def _pending(agent: AgentRig, count: int) -> bool:
    return len(agent.outbox_rows()) >= count


def test_a_retained_huge_ack_deletes_nothing_and_the_lane_lives_on(agent: AgentRig) -> None:
    agent.start()
    # No IO board, indicator or camera: the lane reports each lost, so events are pending.
    assert wait_until(lambda: _pending(agent, 2), timeout=20.0), agent.log()
    before = agent.outbox_rows()
    epoch = agent.epoch()
    agent.publish(agent.topics.ack, _ack(9223372036854775806, epoch), retain=True)
    agent.publish(agent.topics.ack, _ack(max(before) + 5, epoch), retain=True)
    assert wait_until(
        lambda: any(h["devices"]["telemetry"]["acks_refused"] >= 2 for h in agent.health()),
        timeout=15.0,
    ), agent.log()
    assert set(before) <= set(agent.outbox_rows())  # nothing deleted
    agent.restart()  # the retained ack is delivered again at every connect
    assert agent.alive()
    assert set(before) <= set(agent.outbox_rows())
    assert agent.outbox_meta("next_seq") < 1000  # never moved to 2^63
    # A true watermark still works.
    agent.publish(agent.topics.ack, _ack(max(before), epoch), retain=True)
    assert wait_until(lambda: min(agent.outbox_rows() or [max(before) + 1]) > max(before))


def test_a_stale_ack_from_a_replaced_outbox_deletes_nothing_unsent(
    agent: AgentRig, broker: MosquittoBroker
) -> None:
    with IngestWorker(broker.url) as backend:
        agent.start()
        assert wait_until(lambda: backend.watermark(LANE) >= 2, timeout=20.0), agent.log()
        assert wait_until(lambda: agent.outbox_rows() == [] or min(agent.outbox_rows()) > 1)
        stored_before = backend.watermark(LANE)
    old_epoch = agent.epoch()
    agent.stop()
    for suffix in ("", "-wal", "-shm"):  # the only recovery from a corrupt page
        with contextlib.suppress(FileNotFoundError):
            (agent.state_dir / f"outbox.sqlite{suffix}").unlink()
    agent.start()  # offline from any backend: only the old retained ack is on the broker
    assert wait_until(lambda: _pending(agent, 3), timeout=20.0), agent.log()
    assert agent.epoch() != old_epoch
    pending = agent.outbox_rows()
    assert pending[0] == 1 and stored_before >= 2  # seq starts again; the old ack covers it
    assert wait_until(
        lambda: any(h["devices"]["telemetry"]["acks_refused"] >= 1 for h in agent.health()),
        timeout=15.0,
    )
    assert agent.outbox_rows()[: len(pending)] == pending  # nothing deleted unsent
    with IngestWorker(broker.url) as backend:
        # Unrouted rows are retried with a back-off that reaches resend_after_s (30 s).
        assert wait_until(lambda: agent.outbox_rows() == [], timeout=75.0), agent.log()
        new = [e for e in backend.events(LANE) if e.get("epoch") == agent.epoch()]
        assert sorted(e["seq"] for e in new)[: len(pending)] == pending


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small-disk") as disk:
        yield disk


def test_a_full_disk_holds_the_lane_up_with_an_alarm_and_it_recovers(
    broker: MosquittoBroker, tmp_path: Path, small_disk: Path
) -> None:
    agent = AgentRig(broker.url, tmp_path / "lane", state_dir=small_disk / "state")
    try:
        agent.start()
        assert wait_until(lambda: _pending(agent, 2), timeout=20.0), agent.log()
        filler = fill(small_disk)
        # Something to record while the disk is full: a command result.
        cmd_id, payload = agent.command("config", {"version": 1, "settings": {}})
        agent.publish(agent.topics.command("config"), payload)
        # The lane keeps running; its health alarm still reaches the broker (not stored).
        assert wait_until(
            lambda: any(h["storage"]["ok"] is False and h["storage"]["parked"] >= 1
                        and h["outbox"]["disk_alarm"] for h in agent.health()),
            timeout=30.0,
        ), agent.log()
        assert agent.alive()
        assert agent.result(cmd_id, timeout=1.0) is None  # not stored, so not sent: held
        filler.unlink()
        assert wait_until(
            lambda: bool(agent.health()) and agent.health()[-1]["storage"]["ok"] is True,
            timeout=30.0,
        ), agent.log()
        # What waited in memory is stored and sent: the command could not be recorded as
        # run-at-most-once on a full disk, so it was refused (the backend sends it again).
        result = agent.result(cmd_id)
        assert result is not None and result["code"] == "cmd.storage_fault", result
        restored = agent.events("storage_restored")
        assert restored, agent.log()
        agent.restart()  # and it starts cleanly once space returned
        assert agent.alive()
    finally:
        agent.close()


def test_a_corrupt_commands_file_is_quarantined_and_the_lane_starts(agent: AgentRig) -> None:
    (agent.state_dir / "commands.sqlite").write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    agent.start()
    assert wait_until(
        lambda: any(e["data"]["code"] == "lane.state_quarantined"
                    for e in agent.events("abnormality")),
        timeout=20.0,
    ), agent.log()
    kept = list(agent.state_dir.glob("commands.sqlite.corrupt-*"))
    assert len(kept) == 1  # kept for analysis, never deleted
    cmd_id, payload = agent.command("config", {"version": 1, "settings": {}})
    agent.publish(agent.topics.command("config"), payload)
    result = agent.result(cmd_id)
    assert result is not None and result["accepted"] is True, result


def test_a_missing_camera_is_reported_once(agent: AgentRig) -> None:
    agent.start()
    assert wait_until(lambda: len(agent.health()) >= 8, timeout=30.0)  # ~8 s at 1 Hz health
    lost = [e for e in agent.events("abnormality") if e["data"]["code"] == "lane.camera_lost"]
    assert len({e["event_id"] for e in lost}) == 1
    assert agent.events("camera_restored") == []
