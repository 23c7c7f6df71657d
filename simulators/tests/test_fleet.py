"""Fleet load test: 200 lanes, one Mosquitto, two shared ingest workers, a broker restart.

All 200 lanes lose the broker at the same instant. Each draws its first reconnect delay
from the jitter window, so the reconnects must come spread out, not as one herd; and after
the restart the ingest must still hold every event of every lane exactly once (events the
broker lost are resent because the lanes' watermark did not cover them).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from backend.ingest import IngestWorker
from edge_agent.telemetry.mqtt import ReconnectJitter
from simulators.broker import MosquittoBroker
from simulators.fleet import Fleet, ReconnectReport
from simulators.polling import wait_until

LANES = 200
JITTER = ReconnectJitter(first_min_s=0.5, first_max_s=10.0, max_s=20.0)


def test_jitter_draws_stay_in_the_window_and_cover_it() -> None:
    rng = random.Random(7)
    draws = [JITTER.backoff(rng).next() for _ in range(1000)]
    assert all(0.5 <= d <= 10.0 for d in draws)
    assert max(draws) - min(draws) > 9.0
    with pytest.raises(ValueError, match="first_min_s"):
        ReconnectJitter(first_min_s=5, first_max_s=1)


def test_report_measures_spread_and_the_busiest_window() -> None:
    herd = ReconnectReport(4, 4, 4, (1.0, 1.1, 1.2, 9.0), (1.5, 1.5, 1.5, 9.5))
    assert herd.spread_s == pytest.approx(8.0)
    assert herd.busiest_window(1.0) == 3
    assert herd.as_dict()["all_reconnected_s"] == 9.5


def test_lanes_connect_even_when_the_process_holds_over_1024_files(
    broker: MosquittoBroker,
) -> None:
    # select() cannot watch descriptors above 1024; the fleet must not depend on it.
    pipes = [os.pipe() for _ in range(520)]
    fleet = Fleet(broker.url, lanes=5, jitter=JITTER, seed=3)
    try:
        fleet.start(timeout=10)
        assert fleet.connected() == 5
    finally:
        fleet.stop()
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)


@pytest.mark.slow
@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_200_lanes_come_back_spread_out_after_a_broker_restart_and_nothing_is_lost(
    tmp_path: Path, broker: MosquittoBroker, crash: bool
) -> None:
    db = tmp_path / "ingest.db"
    workers = [
        IngestWorker(broker.url, db_path=db, client_id=f"ingest-{n}", shared_group="ingest",
                   ack_interval_s=0.2)
        for n in (1, 2)
    ]
    fleet = Fleet(broker.url, lanes=LANES, rate_hz=1.0, jitter=JITTER, resend_after_s=3.0,
                  seed=11)
    try:
        for worker in workers:
            worker.start()
        fleet.start(timeout=30)
        assert wait_until(lambda: workers[0].stats()["stored"] > LANES // 2, timeout=15)

        outage = time.monotonic()
        if crash:
            broker.kill()
            broker.start()  # the same port: nothing is taken from it in between
        else:
            broker.restart()
        assert wait_until(lambda: fleet.reconnect_report(outage).reconnected == LANES, 30)
        fleet.stop_producing()
        assert wait_until(lambda: fleet.unacked() == 0, timeout=30), fleet.stats()
    finally:
        fleet.stop()
        for worker in workers:
            worker.close()

    report = fleet.reconnect_report(outage)
    assert report.lost == report.reconnected == LANES
    assert len(report.first_attempts_s) == LANES
    # Not a thundering herd: first attempts spread over seconds, no second holds a crowd.
    assert report.spread_s >= 5.0, report.as_dict()
    assert report.busiest_window(1.0) <= LANES * 0.3, report.as_dict()

    produced = fleet.produced()
    with sqlite3.connect(db) as store:
        rows = store.execute("SELECT lane, seq FROM events").fetchall()
        watermarks = dict(store.execute("SELECT lane, upto_seq FROM lanes").fetchall())
    assert len(rows) == len(set(rows)) == sum(produced.values())  # every event, once
    by_lane: dict[str, list[int]] = {}
    for lane, seq in rows:
        by_lane.setdefault(lane, []).append(seq)
    for lane, count in produced.items():
        assert sorted(by_lane[lane]) == list(range(1, count + 1)), lane
        assert watermarks[lane] == count
