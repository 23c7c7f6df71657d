"""Ingest worker identities from `lanectl site init` on a real Mosquitto running its config.

Several ingest workers share one subscription group. The broker forces client id = CN, so
each needs its own certificate: with one, they would kick each other off. Every wait polls
with a deadline.
"""

from __future__ import annotations

import queue
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from paho.mqtt.client import Client

from backend.ingest import IngestWorker
from edge_agent.telemetry.mqtt import TlsFiles, make_client, parse_broker_url
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher
from edge_agent.telemetry.topics import LaneTopics
from host_tools import site_init
from simulators import polling
from simulators.broker import MosquittoBroker

SITE = "BZ01"
LANES = ["exit-01", "exit-02"]
WORKERS = ["backend-ingest-1", "backend-ingest-2"]
EVENTS_PER_LANE = 60
TIMEOUT = 20.0


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    return polling.wait_until(condition, timeout)


def tls_of(site_dir: Path, cn: str) -> TlsFiles:
    return site_init.tls_files(site_dir, cn)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site") / SITE
    site_init.init_site(folder, site=SITE, lanes=LANES)
    return folder


@pytest.fixture
def broker(site: Path, tmp_path: Path) -> Iterator[MosquittoBroker]:
    # One broker per test: its log tells who connected and who was kicked off.
    config = site / "broker" / "mosquitto.conf"
    with MosquittoBroker(workdir=tmp_path / "broker", config_file=config) as running:
        yield running


class Client5:
    """A bare MQTT v5 client that records its connections and PUBACK reason codes."""

    def __init__(self, url: str, tls: TlsFiles) -> None:
        address = parse_broker_url(url)
        self.connects: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.disconnects: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.pubacks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self.client: Client = make_client("ignored", address, tls)  # the broker uses the CN
        self.client.reconnect_delay_set(5, 5)  # type: ignore[arg-type]  # no quick comeback
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connects.put(rc.value)
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.put(str(rc))
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.put((mid, rc.value))
        self.client.connect_async(address.host, address.port, keepalive=10)
        self.client.loop_start()
        assert self.connects.get(timeout=TIMEOUT) == 0

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        mid = self.client.publish(topic, payload, qos=1).mid
        deadline = time.monotonic() + TIMEOUT
        while True:
            got, code = self.pubacks.get(timeout=max(0.0, deadline - time.monotonic()))
            if got == mid:
                return code

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connections(broker: MosquittoBroker, cn: str) -> tuple[int, int]:
    """(connections made as ``cn``, times ``cn`` was kicked off by a newer connection)."""
    log = broker.log_path.read_text(errors="replace")
    return log.count(f" as {cn} ("), log.count(f"Client {cn} already connected")


def test_two_workers_with_their_own_certificates_share_the_stream_and_stay_connected(
    site: Path, broker: MosquittoBroker, tmp_path: Path
) -> None:
    db = tmp_path / "ingest.sqlite"
    workers = [
        IngestWorker(broker.url, db_path=db, client_id=cn, shared_group="ingest",
                   tls=tls_of(site, cn))
        for cn in WORKERS
    ]
    lanes: list[tuple[Outbox, Publisher]] = []
    try:
        for worker in workers:
            worker.start()
        for lane in LANES:
            outbox = Outbox(tmp_path / f"{lane}.db", site=SITE, lane=lane, agent_version="t")
            sender = Publisher(outbox, broker_url=broker.url, site=SITE, lane=lane,
                               tls=tls_of(site, lane))
            lanes.append((outbox, sender))
            sender.start()
            for n in range(EVENTS_PER_LANE):
                outbox.add_event("vehicle_passed", {"n": n}, transit_id=f"t-{n}", mono_ms=n,
                                 wall_ms=int(time.time() * 1000), clock_synced=True)
            sender.wake()
        # Every outbox drains: the shared store's watermark reached each lane.
        assert wait_until(lambda: all(s.status()["pending"] == 0 for _, s in lanes))
    finally:
        for outbox, sender in lanes:
            sender.stop()
            outbox.close()
        for worker in workers:
            worker.close()

    with sqlite3.connect(db) as store:
        rows = store.execute("SELECT lane, seq FROM events ORDER BY lane, seq").fetchall()
    assert len(rows) == len(set(rows)) == len(LANES) * EVENTS_PER_LANE  # each event once
    for lane in LANES:
        assert [seq for name, seq in rows if name == lane] == list(range(1, EVENTS_PER_LANE + 1))
    # Both carried part of the stream, and neither was ever kicked off or reconnected.
    assert all(worker.stats()["stored"] > 0 for worker in workers)
    assert sum(worker.stats()["stored"] for worker in workers) == len(rows)
    for cn in WORKERS:
        assert connections(broker, cn) == (1, 0), cn


def test_two_workers_sharing_one_certificate_kick_each_other_off(
    site: Path, broker: MosquittoBroker
) -> None:
    # Why every worker needs its own identity (and proof that the check above can fail).
    first = Client5(broker.url, tls_of(site, WORKERS[0]))
    second = Client5(broker.url, tls_of(site, WORKERS[0]))
    try:
        first.disconnects.get(timeout=TIMEOUT)  # Mosquitto 2.0 closes it without a reason
        assert second.disconnects.empty()
        assert connections(broker, WORKERS[0]) == (2, 1)
    finally:
        first.close()
        second.close()


def test_a_worker_certificate_cannot_publish_as_a_lane(
    site: Path, broker: MosquittoBroker
) -> None:
    worker = Client5(broker.url, tls_of(site, WORKERS[1]))
    try:
        lane = LaneTopics(SITE, "exit-01")
        for topic in (lane.event("vehicle_passed"), lane.cmd_result, lane.health, lane.state):
            assert worker.publish(topic) == 135, topic  # not authorized (MQTT v5)
        # What a worker is for: the lane's ack watermark (16: nobody subscribed, not a refusal).
        assert worker.publish(lane.ack, b'{"upto_seq":0,"boot_id":1}') < 128
    finally:
        worker.close()
