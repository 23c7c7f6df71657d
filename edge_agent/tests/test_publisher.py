"""Outbox -> Publisher -> private Mosquitto -> backend simulator -> ack watermark -> deletes.

Integration tests against a real broker on loopback; they poll with deadlines, never sleep
to wait for something, and assert on outcomes (stored once, seq without gaps), not timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher
from simulators.backend import BackendSim
from simulators.broker import MosquittoBroker

SITE, LANE = "site-1", "lane-01"


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class LaneAgent:
    """An outbox plus its publisher, the way the lane's app wires them."""

    def __init__(self, path: Path, broker_url: str, **publisher_args: Any) -> None:
        self.outbox = Outbox(path, site=SITE, lane=LANE, agent_version="9.9.9")
        args: dict[str, Any] = {"reconnect_min_s": 0.1, "reconnect_max_s": 1.0}
        args.update(publisher_args)
        self.publisher = Publisher(self.outbox, broker_url=broker_url, site=SITE, lane=LANE, **args)
        self.publisher.start()

    def produce(self, count: int, type: str = "vehicle_passed") -> list[dict[str, Any]]:
        produced = []
        for n in range(count):
            produced.append(
                self.outbox.add_event(
                    type,
                    {"n": n},
                    transit_id=f"t-{n}",
                    mono_ms=n,
                    wall_ms=int(time.time() * 1000),
                    clock_synced=True,
                )
            )
            self.publisher.wake()
        return produced

    def drained(self) -> bool:
        return self.outbox.stats()["events"] == 0

    def close(self) -> None:
        self.publisher.stop()
        self.outbox.close()


@pytest.fixture
def agent(tmp_path: Path, broker: MosquittoBroker) -> Iterator[LaneAgent]:
    lane = LaneAgent(tmp_path / "outbox.db", broker.url)
    yield lane
    lane.close()


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["seq"] for event in events]


def test_events_reach_the_backend_and_leave_the_outbox_only_after_the_ack(
    agent: LaneAgent, backend: BackendSim
) -> None:
    produced = agent.produce(50)
    assert backend.wait_for(lambda events: len(events) == 50, timeout=20)
    stored = backend.events(LANE)
    assert stored == produced  # the very envelopes, in seq order
    assert wait_until(agent.drained)
    assert agent.publisher.status()["acked_upto"] == 50
    assert backend.stats()["duplicates"] == 0


def test_birth_is_retained_and_a_clean_stop_publishes_offline(
    tmp_path: Path, broker: MosquittoBroker, backend: BackendSim
) -> None:
    lane = LaneAgent(tmp_path / "o.db", broker.url)
    assert wait_until(lambda: (backend.lane_state(LANE) or {}).get("online") is True)
    assert backend.lane_state(LANE) == {"online": True, "boot_id": 1, "version": "9.9.9"}
    lane.close()
    assert wait_until(lambda: backend.lane_state(LANE) == {"online": False, "boot_id": 1})


def test_nothing_is_lost_while_the_broker_is_down(
    agent: LaneAgent, broker: MosquittoBroker, backend: BackendSim
) -> None:
    agent.produce(20)
    assert backend.wait_for(lambda events: len(events) == 20, timeout=20)
    broker.stop()
    assert wait_until(lambda: not agent.publisher.status()["connected"])
    agent.produce(300)  # accepted while offline: they wait in the outbox
    assert agent.outbox.stats()["events"] >= 300
    broker.restart()
    assert backend.wait_for(lambda events: len(events) == 320, timeout=30)
    assert seqs(backend.events(LANE)) == list(range(1, 321))
    assert backend.gaps(LANE) == []
    assert wait_until(agent.drained)


def test_a_restarted_agent_continues_seq_with_a_new_boot_id(
    tmp_path: Path, broker: MosquittoBroker, backend: BackendSim
) -> None:
    path = tmp_path / "outbox.db"
    first = LaneAgent(path, broker.url)
    first.produce(10)
    assert backend.wait_for(lambda events: len(events) == 10, timeout=20)
    first.close()
    second = LaneAgent(path, broker.url)
    try:
        second.produce(10)
        assert backend.wait_for(lambda events: len(events) == 20, timeout=20)
        stored = backend.events(LANE)
        assert seqs(stored) == list(range(1, 21))
        assert [e["boot_id"] for e in stored] == [1] * 10 + [2] * 10
        assert wait_until(second.drained)
    finally:
        second.close()


def test_rows_not_yet_watermarked_at_shutdown_are_resent_after_restart(
    tmp_path: Path, broker: MosquittoBroker, backend: BackendSim
) -> None:
    path = tmp_path / "outbox.db"
    first = LaneAgent(path, broker.url)
    first.produce(30)
    assert backend.wait_for(lambda events: len(events) == 30, timeout=20)
    backend.stop()  # the watermark stops moving: rows stay in the outbox
    first.produce(30)
    assert wait_until(lambda: first.publisher.status()["published"] >= 60)
    first.close()
    backend.start()
    second = LaneAgent(path, broker.url)  # resends every row not yet watermarked
    try:
        assert wait_until(second.drained, timeout=30)
        assert seqs(backend.events(LANE)) == list(range(1, 61))
    finally:
        second.close()


def test_the_backend_losing_acked_messages_is_covered_by_the_resend_timer(
    tmp_path: Path,
) -> None:
    # Mosquitto PUBACKs the lane's messages, queues only 100 for the offline backend and
    # silently drops the rest: only the watermark-driven resend gets them through.
    with MosquittoBroker(workdir=tmp_path / "b", extra_config="max_queued_messages 100") as broker:
        backend = BackendSim(broker.url, client_id="ingest-1", session_expiry_s=300)
        backend.start()
        backend.stop()  # offline, but its session (and queue) stays on the broker
        lane = LaneAgent(tmp_path / "o.db", broker.url, resend_after_s=1.0)
        try:
            lane.produce(1000)
            assert wait_until(lambda: lane.publisher.status()["published"] >= 1000)
            backend.start()
            assert backend.wait_for(lambda events: len(events) == 1000, timeout=60)
            assert seqs(backend.events(LANE)) == list(range(1, 1001))
            assert wait_until(lane.drained, timeout=30)
            assert lane.publisher.status()["resent"] >= 900
        finally:
            lane.close()
            backend.close()


def test_commands_for_the_lane_reach_the_handler(
    tmp_path: Path, broker: MosquittoBroker, backend: BackendSim
) -> None:
    received: list[tuple[str, bytes]] = []
    lane = LaneAgent(tmp_path / "o.db", broker.url, on_command=lambda n, p: received.append((n, p)))
    try:
        lane.produce(1)
        # An acked event proves the lane's subscriptions (ack and commands) are in place.
        assert wait_until(lambda: lane.publisher.status()["acked_upto"] == 1)
        backend.publish_command(SITE, LANE, "remote_release", b'{"cmd_id":"c1"}')
        backend.publish_command(SITE, "lane-99", "remote_release", b"not for us")
        assert wait_until(lambda: len(received) == 1)
        assert received == [("remote_release", b'{"cmd_id":"c1"}')]
    finally:
        lane.close()
