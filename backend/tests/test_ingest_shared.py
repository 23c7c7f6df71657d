"""Two ingest workers in one shared subscription group, one store, real lanes, a worker restart.

Each worker gets only part of every lane's stream, so the watermark must come from the
shared store: both workers write one SQLite file and advance each lane's watermark over
every worker's rows. The lanes are the real thing (SQLite ``Outbox`` + ``Publisher``).
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

from paho.mqtt.client import MQTTMessage

from backend.ingest import IngestWorker
from backend.store_url import open_store
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from simulators.broker import MosquittoBroker

if TYPE_CHECKING:
    from conftest import LaneRig, LaneRigs, WaitUntil

LANES = [f"lane-{n:02d}" for n in range(1, 5)]
EVENTS_PER_LANE = 750  # 3,000 in all
GROUP = "ingest"


class AckSniffer:
    """Records every ack in the order the broker forwards them."""

    def __init__(self, url: str) -> None:
        address = parse_broker_url(url)
        self.acks: list[tuple[str, int]] = []
        subscribed = threading.Event()
        self._client = make_client("ack-sniffer", address)
        self._client.on_connect = lambda c, *a: c.subscribe("gate/v1/+/+/ack", qos=1)
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.on_message = self._record
        self._client.connect(address.host, address.port)
        self._client.loop_start()
        assert subscribed.wait(5)

    def _record(self, client: object, userdata: object, message: MQTTMessage) -> None:
        self.acks.append((message.topic.split("/")[3], json.loads(message.payload)["upto_seq"]))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def drained(lane: LaneRig) -> bool:
    return lane.drained() and lane.status()["acked_upto"] == EVENTS_PER_LANE


def worker(url: str, store: str, name: str) -> IngestWorker:
    sim = IngestWorker(url, store=store, client_id=name, shared_group=GROUP)
    sim.start()
    return sim


def test_two_shared_ingest_workers_store_every_event_once_across_a_worker_restart(
    store_url: str, broker: MosquittoBroker, lane_rig: LaneRigs, wait_until: WaitUntil
) -> None:
    db = store_url  # a SQLite file or a PostgreSQL database, shared by both workers
    sniffer = AckSniffer(broker.url)
    one, two = worker(broker.url, db, "ingest-1"), worker(broker.url, db, "ingest-2")
    lanes = [lane_rig(lane=name, resend_after_s=1.0) for name in LANES]
    produced = [0]
    stop_at, restart_at = EVENTS_PER_LANE // 3, 2 * EVENTS_PER_LANE // 3

    def produce(until: int) -> None:
        # A steady stream (about 1,000 events/s in all), so the worker stops mid-flow.
        while produced[0] < until:
            for lane in lanes:
                lane.produce(1)
            produced[0] += 1
            time.sleep(0.004)

    try:
        produce(stop_at)
        two.close()  # leaves the group; ingest-1 carries every lane alone
        stored_by_one_before = one.stats()["stored"]
        produce(restart_at)
        assert wait_until(lambda: one.stats()["stored"] > stored_by_one_before)
        two = worker(broker.url, db, "ingest-2")  # restarted: same id, same store
        produce(EVENTS_PER_LANE)

        assert wait_until(lambda: all(drained(lane) for lane in lanes), timeout=60)
    finally:
        for lane in lanes:
            lane.close()
        one.close()
        two.close()
        sniffer.close()

    store = open_store(db)
    try:
        rows = [(e["lane"], e["seq"]) for e in store.events()]
        watermarks = {lane: store.upto(lane) for lane in LANES}
    finally:
        store.close()
    assert len(rows) == len(set(rows)) == len(LANES) * EVENTS_PER_LANE  # nothing stored twice
    for lane in LANES:
        assert [seq for name, seq in rows if name == lane] == list(range(1, EVENTS_PER_LANE + 1))
        assert watermarks[lane] == EVENTS_PER_LANE
    # Both workers carried part of the stream after the restart.
    assert any(two.arrival_times(lane) for lane in LANES)
    assert any(one.arrival_times(lane) for lane in LANES)
    # Whichever worker published it, a lane's retained watermark never went backwards.
    for lane in LANES:
        seen = [upto for name, upto in sniffer.acks if name == lane]
        assert seen and seen == sorted(seen) and seen[-1] == EVENTS_PER_LANE
