"""Outbox -> Publisher -> private Mosquitto -> backend simulator -> ack watermark -> deletes.

Integration tests against a real broker on loopback, for what only paho and Mosquitto can
show: the whole path, reconnects and their delay, a broker that drops what it PUBACKed,
subscriptions, and a hung network thread. The delivery rules themselves are tested in virtual
time (``test_delivery.py``). These poll with deadlines, never sleep to wait for something,
and assert on outcomes (stored once, seq without gaps), not timings.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from backend.ingest import IngestWorker
from simulators.broker import MosquittoBroker

if TYPE_CHECKING:
    from conftest import LaneRig, LaneRigs, WaitUntil

SITE, LANE = "site-1", "lane-01"


@pytest.fixture
def agent(lane_rig: LaneRigs) -> LaneRig:
    return lane_rig()


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["seq"] for event in events]


def test_events_reach_the_backend_and_leave_the_outbox_only_after_the_ack(
    agent: LaneRig, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    produced = agent.produce(50)
    assert agent.wait_stored(backend, 50)
    stored = backend.events(LANE)
    assert stored == produced  # the very envelopes, in seq order
    assert wait_until(agent.drained)
    assert agent.status()["acked_upto"] == 50
    assert backend.stats()["duplicates"] == 0


def test_birth_is_retained_and_a_clean_stop_publishes_offline(
    lane_rig: LaneRigs, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane = lane_rig()
    assert wait_until(lambda: (backend.lane_state(LANE) or {}).get("online") is True)
    assert backend.lane_state(LANE) == {"online": True, "boot_id": 1, "version": "9.9.9"}
    lane.close()
    assert wait_until(lambda: backend.lane_state(LANE) == {"online": False, "boot_id": 1,
                                                           "reason": "stopped"})
    assert backend.offline_history(LANE) == ["planned"]


def test_nothing_is_lost_while_the_broker_is_down(
    agent: LaneRig, broker: MosquittoBroker, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    assert agent.deliver(backend, 20)
    broker.stop()
    assert wait_until(lambda: not agent.status()["connected"])
    agent.produce(300)  # accepted while offline: they wait in the outbox
    assert agent.outbox.stats()["events"] >= 300
    broker.restart()
    assert agent.wait_stored(backend, 320)
    assert seqs(backend.events(LANE)) == list(range(1, 321))
    assert backend.gaps(LANE) == []
    assert wait_until(agent.drained)


def test_the_backend_losing_acked_messages_is_covered_by_the_resend_timer(
    tmp_path: Path, lane_rig: LaneRigs, wait_until: WaitUntil
) -> None:
    # Mosquitto PUBACKs the lane's messages, queues only 100 for the offline backend and
    # silently drops the rest: only the watermark-driven resend gets them through.
    with MosquittoBroker(workdir=tmp_path / "b", extra_config="max_queued_messages 100") as broker:
        backend = IngestWorker(broker.url, client_id="ingest-1", session_expiry_s=300)
        backend.start()
        backend.stop()  # offline, but its session (and queue) stays on the broker
        lane = lane_rig(broker_url=broker.url, resend_after_s=1.0)
        try:
            lane.produce(1000)
            assert wait_until(lambda: lane.status()["published"] >= 1000)
            backend.start()
            assert lane.wait_stored(backend, 1000, timeout=60)
            assert seqs(backend.events(LANE)) == list(range(1, 1001))
            assert wait_until(lane.drained)
            assert lane.status()["resent"] >= 900
        finally:
            lane.close()
            backend.close()


def test_commands_for_the_lane_reach_the_handler(
    lane_rig: LaneRigs, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    received: list[tuple[str, bytes]] = []
    lane = lane_rig(on_command=lambda name, payload: received.append((name, payload)))
    lane.produce(1)
    # An acked event proves the lane's subscriptions (ack and commands) are in place.
    assert wait_until(lambda: lane.status()["acked_upto"] == 1)
    backend.publish_command(SITE, LANE, "remote_release", b'{"cmd_id":"c1"}')
    backend.publish_command(SITE, "lane-99", "remote_release", b"not for us")
    assert wait_until(lambda: len(received) == 1)
    assert received == [("remote_release", b'{"cmd_id":"c1"}')]


def test_the_first_reconnect_waits_the_drawn_delay(
    lane_rig: LaneRigs, broker: MosquittoBroker, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    # A fleet must not come back in the same second: even with the broker back at once, the
    # lane waits its drawn first delay (here exactly 1.5 s) before it tries again.
    from edge_agent.telemetry.mqtt import ReconnectJitter

    lane = lane_rig(reconnect=ReconnectJitter(first_min_s=1.5, first_max_s=1.5, max_s=3.0))
    assert lane.deliver(backend, 5)
    broker.stop()
    assert wait_until(lambda: not lane.status()["connected"])
    lost_at = time.monotonic()
    broker.start()
    assert wait_until(lambda: lane.status()["connected"])
    assert time.monotonic() - lost_at >= 1.4  # a lower bound: load can only make it later
    assert lane.deliver(backend, 5)


def test_a_hung_network_thread_is_replaced_by_a_new_client_and_nothing_is_lost(
    lane_rig: LaneRigs, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane = lane_rig(keepalive_s=1)  # cut after 1 s without a PUBACK, rebuilt 3 s later
    assert lane.deliver(backend, 10)
    # Fault injection: paho's network thread blocks in its next socket read, as a thread
    # stuck after an SSL error does (paho #891): no PUBACK is handled, and the EOF of the
    # socket the watchdog cuts is never reported.
    released = threading.Event()

    def hung_read(bufsize: int) -> bytes:
        released.wait()
        return b""

    lane.publisher._link.client._sock_recv = hung_read  # type: ignore[method-assign]
    try:
        lane.produce(40)
        assert wait_until(lambda: lane.status()["rebuilds"] >= 1, timeout=30), lane.status()
        assert lane.wait_stored(backend, 50), (lane.status(), len(backend.events(LANE)))
        assert wait_until(lambda: lane.status()["acked_upto"] == 50)
    finally:
        released.set()
    assert seqs(backend.events(LANE)) == list(range(1, 51))
    assert lane.status()["cuts"] >= 1
