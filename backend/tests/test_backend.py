"""Backend simulator: idempotent store, per-lane order, gaps, retained ack watermark."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from paho.mqtt.client import Client, MQTTMessage

from backend.ingest import IngestWorker
from edge_agent.telemetry import envelope
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from edge_agent.telemetry.topics import LaneTopics
from simulators.broker import MosquittoBroker

if TYPE_CHECKING:
    from conftest import WaitUntil

SITE, LANE = "s1", "lane-a"
TOPICS = LaneTopics(SITE, LANE)


EPOCH = "00000000000000e1"
ACK_1 = {"boot_id": 1, "epoch": EPOCH}


def make_event(
    seq: int, *, lane: str = LANE, type: str = "vehicle_passed", data: dict[str, Any] | None = None
) -> bytes:
    """The same seq always gives the same event (as a resend would)."""
    return envelope.encode(
        envelope.build_envelope(
            event_id=envelope.uuid7(1_714_564_800_000 + seq, seq.to_bytes(10, "big")),
            site=SITE,
            lane=lane,
            seq=seq,
            boot_id=1,
            type=type,
            wall_ms=1_714_564_800_000 + seq,
            mono_ms=seq,
            clock_synced=True,
            clock_source="ntp",
            transit_id=None,
            agent_version="1",
            data=data or {},
            epoch=EPOCH,
        )
    )


class RawClient:
    """A bare MQTT v5 client standing in for a lane (or an eavesdropper)."""

    def __init__(self, url: str, client_id: str) -> None:
        self.client: Client = make_client(client_id, parse_broker_url(url))
        self.messages: list[MQTTMessage] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client.on_connect = lambda *args: self._connected.set()
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        address = parse_broker_url(url)
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        assert self._connected.wait(5)

    def subscribe(self, topic: str) -> None:
        """Subscribe and wait for the SUBACK."""
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def lane(broker: MosquittoBroker) -> Iterator[RawClient]:
    client = RawClient(broker.url, LANE)
    yield client
    client.close()


def acks_seen(client: RawClient) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in client.messages if m.topic == TOPICS.ack]


def test_duplicates_are_stored_once(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    payload = make_event(1)
    lane.publish(TOPICS.event("vehicle_passed"), payload)
    lane.publish(TOPICS.event("vehicle_passed"), payload)
    lane.publish(TOPICS.event("vehicle_passed"), make_event(2))
    assert backend.wait_for(lambda events: len(events) == 2, timeout=10)
    assert wait_until(lambda: backend.stats()["duplicates"] == 1)
    assert [e["seq"] for e in backend.events(LANE)] == [1, 2]


def test_out_of_order_events_are_sorted_and_the_watermark_waits_for_gaps(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane.subscribe(TOPICS.ack)
    for seq in (3, 1):
        lane.publish(TOPICS.event("vehicle_passed"), make_event(seq))
    assert backend.wait_for(lambda events: len(events) == 2, timeout=10)
    assert backend.watermark(LANE) == 1
    assert backend.gaps(LANE) == [2]
    lane.publish(TOPICS.event("vehicle_passed"), make_event(2))
    assert backend.wait_for(lambda events: len(events) == 3, timeout=10)
    assert [e["seq"] for e in backend.events(LANE)] == [1, 2, 3]
    assert backend.gaps(LANE) == []
    assert wait_until(lambda: acks_seen(lane)[-1:] == [{"upto_seq": 3, **ACK_1}])
    assert all(ack["upto_seq"] in (1, 3) for ack in acks_seen(lane))


def test_the_ack_is_retained_for_a_lane_that_reconnects(
    broker: MosquittoBroker, lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane.subscribe(TOPICS.ack)
    lane.publish(TOPICS.event("vehicle_passed"), make_event(1))
    assert wait_until(lambda: acks_seen(lane) == [{"upto_seq": 1, **ACK_1}])
    late = RawClient(broker.url, "late-reader")
    try:
        late.subscribe(TOPICS.ack)
        assert wait_until(lambda: acks_seen(late) == [{"upto_seq": 1, **ACK_1}])
        assert late.messages[0].retain
    finally:
        late.close()


def test_same_seq_with_another_event_id_is_a_conflict_not_an_overwrite(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    first = make_event(1)
    impostor = json.loads(first)
    impostor["event_id"] = envelope.uuid7(1, b"\x01" * 10)
    lane.publish(TOPICS.event("vehicle_passed"), first)
    lane.publish(TOPICS.event("vehicle_passed"), envelope.encode(impostor))
    assert wait_until(lambda: backend.stats()["conflicts"] == 1)
    assert backend.events(LANE)[0]["event_id"] == json.loads(first)["event_id"]


def test_a_lane_cannot_speak_for_another_and_garbage_is_rejected(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane.publish(TOPICS.event("vehicle_passed"), make_event(1, lane="lane-b"))
    lane.publish(TOPICS.event("vehicle_passed"), b"{not json")
    assert wait_until(lambda: backend.stats()["rejected"] == 2)
    assert backend.events() == []


def test_a_dead_letter_closes_the_gap_of_the_seq_it_names(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane.publish(TOPICS.event("vehicle_passed"), make_event(1))
    lost = {"seq": 2, "topic": TOPICS.event("vehicle_passed"), "reason_code": 151,
            "reason": "quota exceeded"}
    lane.publish(TOPICS.event("dead_letter"), make_event(3, type="dead_letter", data=lost))
    assert wait_until(lambda: backend.watermark(LANE) == 3)
    assert backend.gaps(LANE) == []


def test_a_backend_without_history_continues_from_the_retained_watermark(
    broker: MosquittoBroker, lane: RawClient, wait_until: WaitUntil
) -> None:
    lane.subscribe(TOPICS.ack)
    with IngestWorker(broker.url) as first:
        for seq in (1, 2):
            lane.publish(TOPICS.event("vehicle_passed"), make_event(seq))
        assert wait_until(lambda: first.watermark(LANE) == 2)
        assert wait_until(lambda: acks_seen(lane)[-1:] == [{"upto_seq": 2, **ACK_1}])
    with IngestWorker(broker.url, client_id="backend-2") as fresh:
        assert wait_until(lambda: fresh.watermark(LANE) == 2)
        lane.publish(TOPICS.event("vehicle_passed"), make_event(3))
        assert wait_until(lambda: fresh.watermark(LANE) == 3)


def test_a_persistent_database_survives_a_backend_restart(
    tmp_path: Path, broker: MosquittoBroker, lane: RawClient, wait_until: WaitUntil
) -> None:
    db = tmp_path / "ingest.db"
    with IngestWorker(broker.url, db_path=db) as first:
        lane.publish(TOPICS.event("vehicle_passed"), make_event(1))
        assert first.wait_for(lambda events: len(events) == 1, timeout=10)
    with IngestWorker(broker.url, db_path=db) as again:
        assert [e["seq"] for e in again.events(LANE)] == [1]
        assert again.watermark(LANE) == 1
        lane.publish(TOPICS.event("vehicle_passed"), make_event(1))
        assert wait_until(lambda: again.stats()["duplicates"] == 1)


def test_state_and_health_are_recorded_and_commands_are_delivered(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane.subscribe(TOPICS.commands)
    lane.publish(TOPICS.state, b'{"online": true, "boot_id": 4}')
    lane.publish(TOPICS.health, b'{"cpu": 5}')
    backend.publish_command(SITE, LANE, "config", b"signed-bytes")
    assert wait_until(lambda: backend.lane_state(LANE) == {"online": True, "boot_id": 4})
    assert wait_until(lambda: backend.health(LANE) == [{"cpu": 5}])
    assert wait_until(lambda: any(m.topic == TOPICS.command("config") for m in lane.messages))


def test_shared_subscription_members_split_the_stream(
    broker: MosquittoBroker, lane: RawClient, wait_until: WaitUntil
) -> None:
    with IngestWorker(broker.url, client_id="i1", shared_group="ingest") as one, IngestWorker(
        broker.url, client_id="i2", shared_group="ingest"
    ) as two:
        for seq in range(1, 21):
            lane.publish(TOPICS.event("vehicle_passed"), make_event(seq))

        def union() -> list[int]:
            return sorted(e["seq"] for e in one.events() + two.events())

        assert wait_until(lambda: union() == list(range(1, 21)))
        assert one.events() and two.events()  # each member got a share, none got all
