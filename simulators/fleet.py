"""Many lightweight simulated lanes in one process, for fleet-scale broker and ingest tests.

Each lane is one paho-mqtt client (client id = lane id) that speaks the lane's contract
(docs/asyncapi.yaml): events in the standard envelope on ``gate/v1/{site}/{lane}/evt/{type}``,
QoS 1, kept until the backend's retained ``ack`` watermark covers their seq and sent again
when it does not in time; a retained birth on ``state`` and the offline will. What it leaves
out of a real lane: the SQLite outbox (events wait in memory), commands, health and TLS.

Reconnects: every lane draws a fresh first delay from ``ReconnectJitter`` on every loss and
doubles it after each failed attempt, so lanes that lose their broker at the same instant
come back spread over the jitter window instead of all at once.

One driver thread runs every lane: paho's external-loop API (``loop_read``, ``loop_write``,
``loop_misc``) on an epoll selector, then the lanes' state. No thread per client, and no
``select()``, which fails for file descriptors above 1024 (paho's ``loop_start`` uses it and
then silently never connects). Callbacks only queue tuples, handled after the I/O step.
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.backoff import Backoff
from edge_agent.errors import RemoteProtocolError
from edge_agent.telemetry import envelope
from edge_agent.telemetry.mqtt import (
    ReconnectJitter,
    make_client,
    parse_broker_url,
    publish_properties,
)
from edge_agent.telemetry.topics import LaneTopics
from simulators.errors import SimulatorError, SimulatorSetupError, SimulatorTimeout
from simulators.polling import wait_until

NO_MATCHING_SUBSCRIBERS = 16
ACK_GRACE_S = 0.1  # after SUBACK, let the retained ack arrive before sending the backlog
TICK_S = 0.05
AGENT_VERSION = "fleet-sim"
_FLEET_EPOCH = "f1ee7f1ee7f1ee70"  # one outbox per simulated lane, never replaced


@dataclass(frozen=True, slots=True)
class ReconnectReport:
    """How the fleet came back after an outage that began at ``since`` (monotonic)."""

    lanes: int
    lost: int  # lanes that saw their connection drop after ``since``
    reconnected: int  # of those, lanes connected again
    first_attempts_s: tuple[float, ...]  # per lane: first reconnect attempt, s after ``since``
    reconnected_s: tuple[float, ...]  # per lane: connected again, s after ``since``

    @property
    def spread_s(self) -> float:
        """Time between the first and the last lane's first reconnect attempt."""
        attempts = self.first_attempts_s
        return max(attempts) - min(attempts) if attempts else 0.0

    def busiest_window(self, window_s: float = 1.0) -> int:
        """Most first attempts that fell into any window of ``window_s`` seconds."""
        times = sorted(self.first_attempts_s)
        busiest, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] > window_s:
                start += 1
            busiest = max(busiest, end - start + 1)
        return busiest

    def as_dict(self) -> dict[str, Any]:
        return {
            "lanes": self.lanes,
            "lost": self.lost,
            "reconnected": self.reconnected,
            "first_attempt_spread_s": round(self.spread_s, 3),
            "first_attempt_min_s": round(min(self.first_attempts_s, default=0.0), 3),
            "first_attempt_max_s": round(max(self.first_attempts_s, default=0.0), 3),
            "busiest_1s_window": self.busiest_window(1.0),
            "all_reconnected_s": round(max(self.reconnected_s, default=0.0), 3),
        }


@dataclass(slots=True)
class _Pending:
    topic: str
    payload: bytes
    due: float = math.inf  # resend time; inf = not sent yet
    first_sent: float | None = None  # monotonic, for the publish-to-ack latency


@dataclass(slots=True)
class _Lane:
    topics: LaneTopics
    client: Client
    next_event_at: float
    reconnect: Backoff  # delays between connection attempts
    seq: int = 0
    acked: int = 0
    pending: dict[int, _Pending] = field(default_factory=dict)  # seq order
    unsent: list[int] = field(default_factory=list)
    resend_at: float = math.inf
    mids: dict[int, int] = field(default_factory=dict)  # paho mid -> seq
    connected: bool = False
    ready_at: float | None = None
    sub_mid: int | None = None
    reconnect_at: float | None = 0.0  # None while connected or connecting
    attempts: list[float] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


class Fleet:
    """``lanes`` simulated lanes publishing ``rate_hz`` events/s each to one broker."""

    def __init__(
        self,
        broker_url: str,
        *,
        lanes: int = 200,
        site: str = "site-1",
        lane_prefix: str = "lane",
        rate_hz: float = 1.0,
        jitter: ReconnectJitter | None = None,
        resend_after_s: float = 5.0,
        keepalive_s: int = 10,
        seed: int = 0,
        event_type: str = "vehicle_passed",
        events_per_lane: int | None = None,
    ) -> None:
        if lanes < 1 or rate_hz <= 0 or resend_after_s <= 0:
            raise SimulatorSetupError(
                "a fleet needs lanes >= 1, rate_hz > 0 and resend_after_s > 0"
            )
        self._address = parse_broker_url(broker_url)
        self._jitter = jitter or ReconnectJitter()
        self._rate_hz = rate_hz
        self._resend_after_s = resend_after_s
        self._keepalive_s = keepalive_s
        self._event_type = event_type
        self._events_per_lane = events_per_lane  # None: until stop_producing()
        self._ack_latencies: list[float] = []
        self._rng = random.Random(seed)
        self._selector = selectors.DefaultSelector()
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards lane state between the driver and queries
        self._producing = False
        self._stopping = False
        self._driver: threading.Thread | None = None
        self._stats = dict.fromkeys(("published", "resent", "unrouted", "refused"), 0)
        self._props = publish_properties()
        self._props.ContentType = "application/json"
        self._props.PayloadFormatIndicator = 1
        width = max(3, len(str(lanes)))
        self._lanes = [
            self._make_lane(index, LaneTopics(site, f"{lane_prefix}-{index + 1:0{width}d}"))
            for index in range(lanes)
        ]

    # -- public ----------------------------------------------------------------------------

    @property
    def lane_ids(self) -> list[str]:
        return [lane.topics.lane for lane in self._lanes]

    def start(self, timeout: float = 30.0) -> None:
        """Connect every lane, start producing, return once every lane is connected."""
        if self._driver is not None:
            raise SimulatorError("fleet already started")
        for lane in self._lanes:
            lane.client.connect_async(
                self._address.host, self._address.port, keepalive=self._keepalive_s
            )
        self._driver = threading.Thread(target=self._drive, name="fleet-driver", daemon=True)
        self._driver.start()
        if not wait_until(lambda: self.connected() == len(self._lanes), timeout):
            raise SimulatorTimeout(f"only {self.connected()} of {len(self._lanes)} lanes connected")
        with self._lock:
            now = time.monotonic()
            for lane in self._lanes:  # random phase, so lanes do not produce in lockstep
                lane.next_event_at = now + self._rng.uniform(0, 1 / self._rate_hz)
            self._producing = True

    def stop_producing(self) -> None:
        self._producing = False

    def stop(self) -> None:
        """Stop producing and disconnect every lane (a clean disconnect: no will)."""
        self._producing = False
        self._stopping = True
        if self._driver is not None:
            self._driver.join(10.0)
            self._driver = None

    def connected(self) -> int:
        with self._lock:
            return sum(lane.connected for lane in self._lanes)

    def produced(self) -> dict[str, int]:
        """lane id -> events accepted so far (seq 1..N)."""
        with self._lock:
            return {lane.topics.lane: lane.seq for lane in self._lanes}

    def ack_latencies(self) -> list[float]:
        """Seconds from each event's first publish to the ack covering it at its lane: the
        backend stored and committed it (the ack is published only after the commit)."""
        with self._lock:
            return list(self._ack_latencies)

    def unacked(self) -> int:
        """Events the backend's watermark does not cover yet, over all lanes."""
        return self.stats()["unacked"]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._stats, "unacked": sum(len(lane.pending) for lane in self._lanes)}

    def reconnect_report(self, since: float) -> ReconnectReport:
        """Per lane: first loss at or after ``since``, then the first attempt and connect."""
        attempts: list[float] = []
        reconnected: list[float] = []
        lost = 0
        with self._lock:
            for lane in self._lanes:
                loss = next((t for t in lane.losses if t >= since), None)
                if loss is None:
                    continue
                lost += 1
                attempt = next((t for t in lane.attempts if t >= loss), None)
                if attempt is not None:
                    attempts.append(attempt - since)
                connect = next((t for t in lane.connects if t >= loss), None)
                if connect is not None:
                    reconnected.append(connect - since)
        return ReconnectReport(
            len(self._lanes), lost, len(reconnected), tuple(attempts), tuple(reconnected)
        )

    # -- lanes and paho callbacks (network threads: enqueue only) ---------------------------

    def _make_lane(self, index: int, topics: LaneTopics) -> _Lane:
        client = make_client(topics.lane, self._address)
        client.user_data_set(index)
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(0)
        offline = envelope.encode(envelope.state_message(False, 1))
        client.will_set(topics.state, offline, qos=1, retain=True)
        client.on_socket_open = self._cb_socket_open
        client.on_socket_close = self._cb_socket_close
        client.on_socket_register_write = self._cb_register_write
        client.on_socket_unregister_write = self._cb_unregister_write
        client.on_pre_connect = self._cb_pre_connect
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_subscribe = self._cb_subscribe
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        return _Lane(topics, client, next_event_at=math.inf,
                     reconnect=self._jitter.backoff(random.Random(self._rng.getrandbits(64))))

    # Socket callbacks run inside paho calls made by the driver thread: keep the selector
    # in step with paho's socket.
    def _cb_socket_open(self, client: Client, index: int, sock: Any) -> None:
        self._selector.register(sock, selectors.EVENT_READ, index)

    def _cb_socket_close(self, client: Client, index: int, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _cb_register_write(self, client: Client, index: int, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, index)

    def _cb_unregister_write(self, client: Client, index: int, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ, index)

    def _cb_pre_connect(self, client: Client, index: int) -> None:
        self._inbox.put(("attempt", index, time.monotonic()))

    def _cb_connect(
        self, client: Client, index: int, flags: ConnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        if not rc.is_failure:
            self._inbox.put(("connect", index, time.monotonic()))

    def _cb_disconnect(
        self, client: Client, index: int, flags: DisconnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        self._inbox.put(("lost", index, time.monotonic()))

    def _cb_subscribe(
        self, client: Client, index: int, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        self._inbox.put(("suback", index, mid))

    def _cb_publish(
        self, client: Client, index: int, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        self._inbox.put(("puback", index, mid, rc.value))

    def _cb_message(self, client: Client, index: int, message: MQTTMessage) -> None:
        self._inbox.put(("message", index, message.topic, message.payload))

    # -- driver thread ---------------------------------------------------------------------

    def _drive(self) -> None:
        next_misc = 0.0
        while not self._stopping:
            self._pump(TICK_S)
            now = time.monotonic()
            if now >= next_misc:  # keepalive pings and ping timeouts
                next_misc = now + 1.0
                for lane in self._lanes:
                    lane.client.loop_misc()
            for lane in self._lanes:
                if lane.reconnect_at is not None and lane.reconnect_at <= now:
                    self._connect(lane)
            with self._lock:
                while True:
                    try:
                        self._handle(self._inbox.get_nowait())
                    except queue.Empty:
                        break
                now = time.monotonic()
                for lane in self._lanes:
                    if self._producing:
                        self._produce(lane, now)
                    self._send(lane, now)
        self._shut_down()

    def _pump(self, timeout: float) -> None:
        for key, mask in self._selector.select(timeout):
            client = self._lanes[key.data].client
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and client.socket() is key.fileobj:
                client.loop_write()

    def _connect(self, lane: _Lane) -> None:
        lane.reconnect_at = None
        try:
            lane.client.reconnect()  # blocking TCP connect: fine on a LAN or loopback
        except OSError:
            self._retry_later(lane, time.monotonic())

    def _retry_later(self, lane: _Lane, now: float) -> None:
        lane.reconnect_at = now + lane.reconnect.next()  # the first draw, or the last doubled

    def _shut_down(self) -> None:
        """Clean disconnects (no will), a moment to send them, then close what is left."""
        for lane in self._lanes:
            if lane.connected:
                lane.client.disconnect()
        deadline = time.monotonic() + 2.0
        while self._selector.get_map() and time.monotonic() < deadline:
            if not any(key.events & selectors.EVENT_WRITE
                       for key in self._selector.get_map().values()):
                break
            self._pump(0.05)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            if isinstance(key.fileobj, socket.socket):
                key.fileobj.close()
        self._selector.close()

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind, lane = item[0], self._lanes[item[1]]
        if kind == "attempt":
            lane.attempts.append(item[2])
        elif kind == "connect":
            lane.connects.append(item[2])
            lane.connected, lane.ready_at, lane.reconnect_at = True, None, None
            birth = envelope.state_message(True, 1, AGENT_VERSION)
            lane.client.publish(lane.topics.state, envelope.encode(birth), qos=1, retain=True)
            _, lane.sub_mid = lane.client.subscribe(lane.topics.ack, qos=1)
            # paho resends its own unacknowledged publishes; give ours a fresh timer.
            for pending in lane.pending.values():
                pending.due = min(pending.due, item[2] + self._resend_after_s)
            lane.resend_at = min(lane.resend_at, item[2] + self._resend_after_s)
        elif kind == "lost":
            lane.losses.append(item[2])
            if lane.connected:  # a fresh draw on every loss
                lane.reconnect.reset()
                lane.reconnect_at = item[2] + lane.reconnect.next()
            elif lane.reconnect_at is None:  # an attempt that got no CONNACK
                self._retry_later(lane, item[2])
            lane.connected, lane.ready_at = False, None
        elif kind == "suback" and item[2] == lane.sub_mid:
            lane.ready_at = time.monotonic() + ACK_GRACE_S
        elif kind == "puback":
            self._on_puback(lane, item[2], item[3])
        elif kind == "message" and item[2] == lane.topics.ack:
            self._on_ack(lane, item[3])

    def _on_puback(self, lane: _Lane, mid: int, code: int) -> None:
        seq = lane.mids.pop(mid, None)
        pending = lane.pending.get(seq) if seq is not None else None
        if pending is None or (code < 128 and code != NO_MATCHING_SUBSCRIBERS):
            return
        # Not delivered (ingest absent, e.g. just after a broker restart) or refused: retry soon.
        self._stats["unrouted" if code == NO_MATCHING_SUBSCRIBERS else "refused"] += 1
        pending.due = time.monotonic() + 0.5
        lane.resend_at = min(lane.resend_at, pending.due)

    def _on_ack(self, lane: _Lane, payload: bytes) -> None:
        try:
            upto, _epoch = envelope.decode_ack(payload)
        except RemoteProtocolError:
            return
        if upto <= lane.acked:
            return
        lane.acked = upto
        now = time.monotonic()
        for seq in [s for s in lane.pending if s <= upto]:
            sent = lane.pending.pop(seq).first_sent
            if sent is not None:
                self._ack_latencies.append(now - sent)

    def _produce(self, lane: _Lane, now: float) -> None:
        while lane.next_event_at <= now:
            if self._events_per_lane is not None and lane.seq >= self._events_per_lane:
                return
            lane.seq += 1
            wall_ms = int(time.time() * 1000)
            event = envelope.build_envelope(
                event_id=envelope.uuid7(wall_ms, self._rng.randbytes(10)),
                site=lane.topics.site, lane=lane.topics.lane, seq=lane.seq, boot_id=1,
                epoch=_FLEET_EPOCH,
                type=self._event_type, wall_ms=wall_ms, mono_ms=int(lane.next_event_at * 1000),
                clock_synced=True, clock_source="fleet-sim", agent_version=AGENT_VERSION,
                transit_id=f"{lane.topics.lane}-t{lane.seq}",
                data={"gross_kg": 20_000 + lane.seq % 1000 * 30},
            )
            topic = lane.topics.event(self._event_type)
            lane.pending[lane.seq] = _Pending(topic, envelope.encode(event))
            lane.unsent.append(lane.seq)
            lane.next_event_at += 1 / self._rate_hz

    def _send(self, lane: _Lane, now: float) -> None:
        if not lane.connected or lane.ready_at is None or now < lane.ready_at:
            return
        for seq in lane.unsent:
            if seq in lane.pending:
                self._publish(lane, seq, now)
        lane.unsent.clear()
        if now < lane.resend_at:
            return
        lane.resend_at = math.inf
        for seq, pending in lane.pending.items():
            if pending.due <= now:
                self._publish(lane, seq, now)
                self._stats["resent"] += 1
            lane.resend_at = min(lane.resend_at, pending.due)

    def _publish(self, lane: _Lane, seq: int, now: float) -> None:
        pending = lane.pending[seq]
        info = lane.client.publish(pending.topic, pending.payload, qos=1, properties=self._props)
        lane.mids[info.mid] = seq
        pending.due = now + self._resend_after_s
        if pending.first_sent is None:
            pending.first_sent = now
        lane.resend_at = min(lane.resend_at, pending.due)
        self._stats["published"] += 1

