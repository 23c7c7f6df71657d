"""Fault tests for the lane -> backend path against real processes (seconds stand for minutes).

Each test breaks something real (the TCP path, the broker process, the agent process) and
then proves the outcome: every accepted event is stored by the backend exactly once, in seq
order, without gaps. A small loopback proxy injects network faults
(``simulators.broker.FaultProxy``); the agent under kill -9 runs as a real child process.
The rules behind the recovery (stall cut, resends, back-off, dead letters, window, health,
acks) are tested in virtual time in ``test_delivery.py``; the disk budget in
``test_outbox.py``.
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

from backend.ingest import IngestWorker
from edge_agent.telemetry.outbox import Outbox
from simulators.broker import FaultProxy, MosquittoBroker

if TYPE_CHECKING:
    from conftest import LaneRigs, WaitUntil

pytestmark = pytest.mark.slow
SITE, LANE = "site-1", "lane-01"
REPO = Path(__file__).resolve().parents[2]
QUICK_RESEND_S = 1.0  # the watermark resend recovers what a fault lost within seconds


def assert_exactly_once_in_order(backend: IngestWorker, count: int) -> None:
    events = backend.events(LANE)
    assert [e["seq"] for e in events] == list(range(1, count + 1))
    assert len({e["event_id"] for e in events}) == count
    assert backend.gaps(LANE) == []
    assert backend.stats()["conflicts"] == 0  # no seq was ever issued twice


def test_2_silent_network_drop_is_detected_and_nothing_is_lost(
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: IngestWorker, wait_until: WaitUntil
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
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: IngestWorker, wait_until: WaitUntil
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


def _wait_for_boot(outbox: Path, boot_id: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            with contextlib.closing(sqlite3.connect(outbox, timeout=1)) as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'boot_id'").fetchone()
            if row is not None and int(row[0]) >= boot_id:
                return True
        time.sleep(0.02)
    return False


def test_4_kill_9_of_the_agent_ten_times_during_a_burst(
    tmp_path: Path, broker: MosquittoBroker, backend: IngestWorker
) -> None:
    count = 10_000
    outbox = tmp_path / "o.db"
    command = [
        sys.executable, "-m", "edge_agent.telemetry.loadgen", "--outbox", str(outbox),
        "--broker", broker.url, "--site", SITE, "--lane", LANE, "--until-seq", str(count),
        "--rate", "1500", "--resend-after", "1",
    ]
    schedule = random.Random(4)
    for run in range(1, 11):
        agent = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        # Each run opens its outbox before the kill (on a loaded machine the interpreter alone
        # may take longer than the schedule's delay), so the kills hit writes, not imports.
        assert _wait_for_boot(outbox, run), f"run {run} never opened its outbox"
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
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane = lane_rig(resend_after_s=QUICK_RESEND_S)
    lane.produce(500)
    broker.kill()  # whatever it PUBACKed but had not forwarded is gone
    lane.produce(500)
    broker.start()
    assert lane.wait_stored(backend, 1000, timeout=60)
    assert wait_until(lambda: lane.status()["acked_upto"] == 1000)
    assert_exactly_once_in_order(backend, 1000)
