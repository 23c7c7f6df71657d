"""Fault tests for the lane -> backend path (time-compressed: seconds stand for minutes).

Each test breaks something real (the broker process, the TCP path, the agent process, the
clock, the disk budget) and then proves the outcome: every accepted event is stored by the
backend exactly once, in seq order, without gaps. A small loopback proxy injects network
faults (``simulators.broker.FaultProxy``); the agent under kill -9 runs as a real child
process.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edge_agent.telemetry.outbox import Outbox
from simulators.backend import BackendSim
from simulators.broker import FaultProxy, MosquittoBroker

if TYPE_CHECKING:
    from conftest import LaneRigs, WaitUntil

pytestmark = pytest.mark.slow
SITE, LANE = "site-1", "lane-01"
REPO = Path(__file__).resolve().parents[2]
QUICK_RESEND_S = 1.0  # the watermark resend recovers what a fault lost within seconds


def assert_exactly_once_in_order(backend: BackendSim, count: int) -> None:
    events = backend.events(LANE)
    assert [e["seq"] for e in events] == list(range(1, count + 1))
    assert len({e["event_id"] for e in events}) == count
    assert backend.gaps(LANE) == []
    assert backend.stats()["conflicts"] == 0  # no seq was ever issued twice


def test_1_backlog_built_while_the_broker_is_down_drains_with_bounded_memory(
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: BackendSim, wait_until: WaitUntil
) -> None:
    count = 10_000
    broker.stop()
    lane = lane_rig(resend_after_s=30.0)
    started = time.monotonic()
    lane.produce(count)
    print(f"produced {count} in {time.monotonic() - started:.1f} s")
    assert lane.status()["in_flight"] <= 200  # nothing piles up in paho's RAM queue
    broker.start()
    started = time.monotonic()
    peak = {"in_flight": 0, "unacked": 0}

    def drained() -> bool:
        status = lane.status()
        for key in peak:
            peak[key] = max(peak[key], status[key])
        return bool(status["acked_upto"] == count)

    assert wait_until(drained, timeout=120)
    print(f"drained in {time.monotonic() - started:.1f} s: {lane.status()}")
    assert lane.wait_stored(backend, count)
    assert_exactly_once_in_order(backend, count)
    assert peak["in_flight"] <= 200 and peak["unacked"] <= 1000  # the window held
    assert lane.drained()


def test_2_silent_network_drop_is_detected_and_nothing_is_lost(
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: BackendSim, wait_until: WaitUntil
) -> None:
    proxy = FaultProxy(broker.port)
    keepalive = 2
    lane = lane_rig(broker_url=proxy.url, keepalive_s=keepalive, resend_after_s=QUICK_RESEND_S)
    try:
        assert lane.deliver(backend, 50)
        proxy.set_mode("blackhole")
        dropped_at = time.monotonic()
        lane.produce(100)
        assert wait_until(lambda: not lane.status()["connected"], timeout=6 * keepalive)
        detected_after = time.monotonic() - dropped_at
        print(f"silent drop detected after {detected_after:.1f} s (keepalive {keepalive} s)")
        assert lane.status()["cuts"] >= 1  # found by the PUBACK watchdog, not by TCP
        proxy.set_mode("forward")
        assert lane.wait_stored(backend, 150)
        assert_exactly_once_in_order(backend, 150)
    finally:
        lane.close()
        proxy.close()


def test_3_lost_pubacks_then_a_cut_duplicates_are_removed_by_the_backend(
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: BackendSim, wait_until: WaitUntil
) -> None:
    proxy = FaultProxy(broker.port)
    lane = lane_rig(broker_url=proxy.url, keepalive_s=30, resend_after_s=30.0)
    try:
        lane.produce(1)
        assert wait_until(lambda: lane.status()["acked_upto"] == 1)  # subscribed and acked
        proxy.set_mode("drop_down")
        lane.produce(100)
        # paho sends up to 20 unacknowledged; the broker forwards them, the lane never hears.
        assert lane.wait_stored(backend, 21)
        assert wait_until(lambda: lane.status()["in_flight"] == 100)  # none PUBACKed
        proxy.set_mode("forward")  # cuts the connection: paho resends what was in flight
        assert wait_until(lambda: lane.status()["acked_upto"] == 101)
        assert wait_until(lambda: backend.stats()["duplicates"] > 0)
        assert_exactly_once_in_order(backend, 101)
    finally:
        lane.close()
        proxy.close()


def test_4_kill_9_of_the_agent_ten_times_during_a_burst(
    tmp_path: Path, broker: MosquittoBroker, backend: BackendSim
) -> None:
    count = 10_000
    outbox = tmp_path / "o.db"
    command = [
        sys.executable, "-m", "edge_agent.telemetry.loadgen", "--outbox", str(outbox),
        "--broker", broker.url, "--site", SITE, "--lane", LANE, "--until-seq", str(count),
        "--rate", "1500", "--resend-after", "1",
    ]
    schedule = random.Random(4)
    for _ in range(10):
        agent = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        time.sleep(schedule.uniform(0.3, 1.0))  # the fault schedule, not a wait
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        accepted_before_final_run = db.execute(
            "SELECT value FROM meta WHERE key = 'next_seq'"
        ).fetchone()[0] - 1
    assert 0 < accepted_before_final_run < count  # the kills really hit the burst
    subprocess.run([*command, "--drain"], cwd=REPO, check=True, timeout=120, capture_output=True)
    assert backend.wait_for(lambda events: len(events) >= count, timeout=30)
    assert_exactly_once_in_order(backend, count)
    reopened = Outbox(outbox, site=SITE, lane=LANE, agent_version="t")
    assert reopened.boot_id == 12  # ten killed runs, one clean run, this one
    assert reopened.stats()["next_seq"] == count + 1
    reopened.close()


def test_5_broker_sigkill_mid_stream_is_recovered_by_the_watermark_resend(
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: BackendSim, wait_until: WaitUntil
) -> None:
    lane = lane_rig(resend_after_s=QUICK_RESEND_S)
    lane.produce(500)
    broker.kill()  # whatever it PUBACKed but had not forwarded is gone
    lane.produce(500)
    broker.start()
    assert lane.wait_stored(backend, 1000, timeout=60)
    assert wait_until(lambda: lane.status()["acked_upto"] == 1000)
    assert_exactly_once_in_order(backend, 1000)


def test_6_backend_ingest_down_for_thirty_compressed_minutes(
    lane_rig: LaneRigs, broker: MosquittoBroker, wait_until: WaitUntil
) -> None:
    ingest = BackendSim(broker.url, client_id="ingest-1", shared_group="ingest")
    ingest.start()
    lane = lane_rig(resend_after_s=0.5)
    try:
        assert lane.deliver(ingest, 100)
        ingest.stop()
        lane.produce(400)  # nobody subscribed: the broker answers "no matching subscribers"
        assert wait_until(lambda: lane.status()["resent"] > 0)
        ingest.start()
        assert lane.wait_stored(ingest, 500)
        assert wait_until(lambda: lane.status()["acked_upto"] == 500)
        assert_exactly_once_in_order(ingest, 500)
    finally:
        lane.close()
        ingest.close()


def test_7_wall_clock_steps_do_not_disturb_order_or_retries(
    lane_rig: LaneRigs, backend: BackendSim
) -> None:
    offset = {"s": 0.0}
    lane = lane_rig(
        resend_after_s=QUICK_RESEND_S, wall_clock=lambda: time.time() + offset["s"]
    )
    base = int(time.time() * 1000)
    lane.produce(10, wall_ms=base)
    lane.produce(10, wall_ms=base - 3_600_000, synced=False)  # stepped back one hour
    offset["s"] = 86_400.0  # the publisher's wall clock jumps a day ahead
    lane.produce(10, wall_ms=base + 86_400_000, synced=False)
    assert lane.wait_stored(backend, 30)
    assert_exactly_once_in_order(backend, 30)
    events = backend.events(LANE)
    assert [e["clock"]["synced"] for e in events] == [True] * 10 + [False] * 20
    assert events[10]["occurred_at"] < events[0]["occurred_at"] < events[20]["occurred_at"]


def test_8_disk_quota_sheds_health_keeps_every_event_and_recovers(
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: BackendSim, wait_until: WaitUntil
) -> None:
    broker.stop()
    lane = lane_rig(max_bytes=60_000, resend_after_s=QUICK_RESEND_S)
    for _ in range(20):
        lane.outbox.add_health(
            {"cpu": 12, "pad": "h" * 200}, mono_ms=0, wall_ms=int(time.time() * 1000),
            clock_synced=True,
        )
    lane.produce(300)
    stats = lane.outbox.stats()
    assert stats["events"] == 300  # not one event dropped
    assert stats["health_shed"] > 0 and stats["disk_alarm"] is True
    assert lane.status()["disk_alarm"] is True
    broker.start()
    assert lane.wait_stored(backend, 300)
    assert wait_until(lambda: lane.outbox.stats()["disk_alarm"] is False)
    assert_exactly_once_in_order(backend, 300)
    health = lane.outbox.add_health({}, mono_ms=0, wall_ms=0, clock_synced=False)
    assert health is not None  # accepted again without a restart


def test_refused_publishes_are_dead_lettered_and_the_backend_gap_is_closed(
    tmp_path: Path, lane_rig: LaneRigs, wait_until: WaitUntil
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(
        "topic readwrite gate/#\n"
        f"topic deny gate/v1/{SITE}/{LANE}/evt/forbidden\n"
    )
    with MosquittoBroker(workdir=tmp_path / "b", extra_config=f"acl_file {acl}") as broker, \
            BackendSim(broker.url) as backend:
        lane = lane_rig(broker_url=broker.url, resend_after_s=QUICK_RESEND_S)
        try:
            lane.produce(2)
            lane.outbox.add_event(
                "forbidden", {}, transit_id=None, mono_ms=0, wall_ms=int(time.time() * 1000),
                clock_synced=True,
            )
            lane.produce(2)
            lane.publisher.wake()
            assert wait_until(lambda: lane.status()["acked_upto"] == 6)
            [dead] = lane.outbox.dead_letters()
            assert (dead["seq"], dead["reason_code"]) == (3, 135)
            types = [e["type"] for e in backend.events(LANE)]
            assert types == ["vehicle_passed"] * 4 + ["dead_letter"]
            assert backend.events(LANE)[-1]["data"]["seq"] == 3
            assert backend.watermark(LANE) == 6 and backend.gaps(LANE) == []
        finally:
            lane.close()
