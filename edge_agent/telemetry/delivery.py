"""MQTT delivery of the lane's outbox as a sans-I/O state machine: events and time in, actions out.

``Delivery`` keeps every rule for getting outbox rows to the backend and owns no client,
thread or clock; ``publisher.py`` is the glue. It reads and deletes rows through the
``Outbox`` it is given. The caller feeds each event (``delivery_events``, which also says how
paho's message ids come back) with ``handle(event, now)``, calls ``tick(now)`` after a batch
of events, after new rows were committed and once ``next_deadline()`` has passed, and
performs every returned action in order. ``now`` is monotonic seconds; the wall clock is only
read for health expiry and dead-letter stamps.

Connection states (``LinkState``):
  DISCONNECTED --Connected--> SUBSCRIBING --SubAck--> SETTLING --ACK_GRACE_S--> READY
  READY --publishes wait keepalive_s without any PUBACK: Cut--> CUT
  CUT --no word from paho within 3 x keepalive_s: Rebuild--> DISCONNECTED
  any --Disconnected | ConnectRefused | ConnectFailed--> DISCONNECTED
The birth (retained ``state``, online) follows SUBSCRIBE on the same connection: once a
backend sees the lane online, a command it sends is delivered. Rows go out only in READY;
the grace after SUBACK lets the retained ack arrive first, so the rows it covers are not sent
again. A Disconnected before any CONNACK is a refused connection (with TLS 1.3 a rejected
client certificate shows up only so) and counts as a connect failure.

Delivery per event row (keyed by seq):
  fetched -> published (in flight, counts against ``window``) -> PUBACKed -> watermarked (row
  deleted). A row not watermarked ``resend_after_s`` after its last send, counted only while
  connected, is published again: this covers brokers that PUBACK and then drop (queue limit,
  SIGKILL, a backend that was not subscribed). Duplicates are expected; the backend removes
  them by ``event_id``. A permanent refusal (not authorized, bad topic, bad payload) moves the
  row to the dead-letter table and adds a ``dead_letter`` event naming the seq, so the
  backend can close the gap (a refused ``dead_letter`` event is never chained). PUBACK reason
  16 (no matching subscribers: backend ingest absent) retries sooner, backing off from 0.5 s;
  another refusal backs off from 2 s; both at most ``resend_after_s``.

Order: URGENT rows, then NORMAL, each in seq order; health only while no event waits. A
health row is done once the broker answered its PUBACK; one past its expiry is dropped unsent,
and the rest carries its remaining lifetime as the message expiry.

Flow control: at most ``window`` publishes await a PUBACK (paho itself keeps 20 on the wire,
Mosquitto's default receive maximum) and at most ``max_unacked`` rows await the watermark,
which must stay below the broker's per-subscriber queue (Mosquitto ``max_queued_messages``,
1000 by default) or the broker drops the excess after PUBACKing it. The window is refilled
in batches of a quarter window, one outbox query each, not one per PUBACK.

Liveness: while publishes wait, ``keepalive_s`` without any PUBACK means the link is dead:
``Cut`` (the glue shuts the socket, paho reconnects and resends its own queue). If paho does
not report the disconnect within 3 x ``keepalive_s`` its thread hangs (paho #891: an SSL
error can leave it stuck while ``is_connected()`` still says True): ``Rebuild`` (a new
client, with an empty queue), and every row not yet watermarked goes again through it as
soon as it is READY.

Acks and commands: the retained ack is unauthenticated. It counts only for this outbox's
epoch and up to the last seq issued; anything else is refused (``acks_refused``) and deletes
nothing; one at or below the watermark already applied is stale and ignored. A retained
command is ignored and counted: a command is an act, not a state, and one left on the broker
would run again on every reconnect.
"""
from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, assert_never

from edge_agent.errors import RemoteProtocolError
from edge_agent.telemetry.delivery_events import (
    Action,
    Connected,
    ConnectFailed,
    ConnectRefused,
    Cut,
    DeliverCommand,
    Disconnected,
    Event,
    MessageReceived,
    PubAck,
    Publish,
    Rebuild,
    SendTransient,
    SubAck,
    Subscribe,
    Subscription,
)
from edge_agent.telemetry.envelope import decode_ack, encode, state_message
from edge_agent.telemetry.outbox import Outbox, OutboxRow, Priority
from edge_agent.telemetry.topics import LaneTopics, parse_topic

if TYPE_CHECKING:
    from edge_agent.telemetry.mqtt import BrokerAddress

log = logging.getLogger(__name__)

# PUBACK reason codes after which resending the same message cannot succeed.
PERMANENT_REFUSALS = {
    135: "not authorized",
    144: "topic name invalid",
    153: "payload format invalid",
}
NO_MATCHING_SUBSCRIBERS = 16
ACK_GRACE_S = 0.1  # after SUBACK, let the retained ack arrive before re-sending old rows
HUNG_AFTER_KEEPALIVES = 3  # a cut paho has not reported after this many keepalives: hung
PUBLISH_RETRY_S = 1.0  # a resend paho did not take is tried again this much later
JSON = "application/json"
# Log the 1st, 10th, 100th... refusal of a kind: a flood must not flood the journal too.
_REPORT_COUNTS = frozenset(10**k for k in range(12))


class LinkState(StrEnum):
    DISCONNECTED = "disconnected"  # no session; paho (re)connects by itself
    SUBSCRIBING = "subscribing"  # CONNACK seen, SUBSCRIBE sent, its SUBACK awaited
    SETTLING = "settling"  # SUBACK seen: ACK_GRACE_S for the retained ack
    READY = "ready"  # sending rows
    CUT = "cut"  # the watchdog cut the socket; paho has not reported it yet


_CONNECTED = frozenset({LinkState.SUBSCRIBING, LinkState.SETTLING, LinkState.READY})


@dataclass(slots=True)
class DeliveryCounters:
    published: int = 0
    resent: int = 0
    unrouted: int = 0
    refused: int = 0
    dead_letters: int = 0
    cuts: int = 0
    connect_failures: int = 0
    rebuilds: int = 0
    acks_refused: int = 0
    retained_commands_ignored: int = 0
    connects: int = 0  # CONNACKs accepted
    losses: int = 0  # connections that had been up and went down (dropped or cut)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Tracked:
    """An event row awaiting the watermark."""

    token: int | None  # the send awaiting its PUBACK, else None
    due: float  # when to resend if still not watermarked
    sends: int
    stored: bool = False  # the broker took it (PUBACK success) at least once


@dataclass(slots=True)
class _InFlight:
    """A send awaiting its PUBACK."""

    key: int  # seq, or health id
    priority: Priority
    resend: bool
    mid: int | None = None  # paho's id, once the glue has answered


class Delivery:
    """Outbox rows to the broker, the backend's ack watermark to outbox deletes; no I/O."""

    def __init__(
        self,
        outbox: Outbox,
        topics: LaneTopics,
        *,
        address: BrokerAddress,
        wall_clock: Callable[[], float],
        keepalive_s: float = 10,
        resend_after_s: float = 30.0,
        window: int = 200,
        max_unacked: int = 1000,
    ) -> None:
        self.outbox = outbox
        self.topics = topics
        self._address = address
        self._wall_clock = wall_clock
        self._keepalive_s = keepalive_s
        self._resend_after_s = resend_after_s
        self._window = window
        self._max_unacked = max_unacked
        self.state = LinkState.DISCONNECTED
        self.counters = DeliveryCounters()
        self.acked_upto = 0
        self.last_error: str | None = None
        self._tracked: dict[int, _Tracked] = {}
        self._due: list[tuple[float, int, int]] = []  # heap of (due, seq, sends)
        self._in_flight: dict[int, _InFlight] = {}  # token -> send
        self._by_mid: dict[int, int] = {}  # paho mid -> token
        self._next_token = 1
        self._cursor = dict.fromkeys(Priority, 0)
        self._ready_at = 0.0  # SETTLING until then
        self._cut_at = 0.0  # CUT since then
        self._sub_mid: int | None = None
        self._waiting_since: float | None = None  # oldest unanswered PUBACK wait
        self._fresh_client = False  # rebuilt: paho holds none of our rows in its queue

    # -- views -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state in _CONNECTED

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def unacked(self) -> int:
        return len(self._tracked)

    @property
    def will(self) -> Publish:
        """The retained offline state the broker sends if the lane vanishes (the last will)."""
        offline = encode(state_message(False, self.outbox.boot_id, reason="lost"))
        return Publish(self.topics.state, offline, retain=True)

    def farewell(self, reason: str = "stopped", by: str | None = None,
                 detail: str | None = None) -> Publish:
        """The retained offline state of an agent that stops on purpose (or on a failure)."""
        offline = state_message(False, self.outbox.boot_id, reason=reason, by=by, detail=detail)
        return Publish(self.topics.state, encode(offline), retain=True)

    def handed_over(self, seq: int) -> bool:
        """The broker has event ``seq`` (PUBACKed) or the backend has acked it."""
        tracked = self._tracked.get(seq)
        return seq <= self.acked_upto or (tracked is not None and tracked.stored)

    def next_deadline(self) -> float | None:
        """The monotonic time by which ``tick`` must run, or None: only an event can help."""
        deadlines: list[float] = []
        if self.state is LinkState.SETTLING:
            deadlines.append(self._ready_at)
        elif self.state is LinkState.READY:
            if self._due and len(self._in_flight) < self._window:
                deadlines.append(self._due[0][0])  # with a full window a PUBACK wakes us
            if self._waiting_since is not None:
                deadlines.append(self._waiting_since + self._keepalive_s)
        elif self.state is LinkState.CUT:
            deadlines.append(self._cut_at + HUNG_AFTER_KEEPALIVES * self._keepalive_s)
        return min(deadlines, default=None)

    # -- input -----------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        match event:
            case PubAck(mid, code):
                self._on_puback(mid, code, now)
            case MessageReceived():
                return self._on_message(event)
            case Connected():
                return self._on_connected(now)
            case ConnectRefused(reason):
                self.counters.connect_failures += 1
                self.last_error = f"connect refused: {reason}"
                self._lose()
            case ConnectFailed():
                self.counters.connect_failures += 1
                self.last_error = f"cannot connect to {self._address.host}:{self._address.port}"
                if self._address.tls:  # or the broker's certificate fails our CA file
                    self.last_error += " (unreachable, or the TLS handshake failed)"
                self._lose()
            case Disconnected(reason):
                self._on_disconnected(reason)
            case SubAck(mid, codes):
                self._on_suback(mid, codes, now)
            case SendTransient(topic, payload, expiry_s):
                if self.connected:
                    return [Publish(topic, payload, expiry_s=expiry_s, content_type=JSON)]
            case _:
                assert_never(event)
        return []

    def published(self, token: int, mid: int) -> None:
        """paho took the ``Publish`` with ``token`` as message ``mid``."""
        send = self._in_flight.get(token)
        if send is None:
            return
        older = self._by_mid.get(mid)
        if older is not None and older != token:  # paho wrapped its ids past a lost send
            self._forget(older)
        send.mid = mid
        self._by_mid[mid] = token
        self.counters.published += 1
        self.counters.resent += send.resend

    def not_published(self, token: int, error: str, now: float) -> None:
        """paho refused the ``Publish`` with ``token``: it is tried again later."""
        self.last_error = f"publish failed: {error}"
        send = self._forget(token)
        if send is None:
            return
        if not self._in_flight:
            self._waiting_since = None  # no PUBACK is awaited: nothing for the watchdog
        if send.resend:  # the row stays tracked, on a short timer
            tracked = self._tracked.get(send.key)
            if tracked is not None:
                self._schedule(send.key, tracked, now + PUBLISH_RETRY_S)
            return
        # A first send (or health) that never went out: the next refill fetches it again.
        if send.priority is not Priority.HEALTH:
            self._tracked.pop(send.key, None)
        self._cursor[send.priority] = min(self._cursor[send.priority], send.key - 1)

    def subscribed(self, mid: int) -> None:
        self._sub_mid = mid

    def not_subscribed(self, error: str) -> None:
        self.last_error = f"subscribe failed: {error}"

    def tick(self, now: float) -> list[Action]:
        """Run what is due: the hung-client check, resends, the window refill, the watchdog."""
        if self.state is LinkState.CUT:
            if now - self._cut_at >= HUNG_AFTER_KEEPALIVES * self._keepalive_s:
                return [self._rebuild(now)]
            return []
        if self.state is LinkState.SETTLING and now >= self._ready_at:
            self.state = LinkState.READY
        if self.state is not LinkState.READY:
            return []
        actions: list[Action] = []
        self._resend_due(now, actions)
        self._fill_window(now, actions)
        if self._waiting_since is not None and now - self._waiting_since >= self._keepalive_s:
            actions.append(self._cut(now))
        return actions

    # -- connection ------------------------------------------------------------------------

    def _on_connected(self, now: float) -> list[Action]:
        self.counters.connects += 1
        self.state = LinkState.SUBSCRIBING
        self._sub_mid = None
        self._waiting_since = now if self._in_flight else None
        # paho resends its own queue after a reconnect; give everything a fresh timer. A new
        # client has no queue: what it never sent goes out as soon as the link is ready.
        fresh, self._fresh_client = self._fresh_client, False
        self._due = []
        for seq, tracked in self._tracked.items():
            tracked.due = now if fresh else now + self._resend_after_s
            self._due.append((tracked.due, seq, tracked.sends))
        heapq.heapify(self._due)
        birth = state_message(True, self.outbox.boot_id, self.outbox.agent_version)
        return [
            Subscribe((
                Subscription(self.topics.ack, send_retained=True),
                Subscription(self.topics.commands, send_retained=False),
            )),
            Publish(self.topics.state, encode(birth), retain=True),
        ]

    def _on_disconnected(self, reason: str) -> None:
        if self.state is LinkState.DISCONNECTED:
            self.counters.connect_failures += 1
            self.last_error = f"connection closed before CONNACK ({reason})"
            if self._address.tls:
                self.last_error += (": the broker may refuse this lane's TLS certificate "
                                    "(wrong CA, expired or revoked)")
        else:
            if self.state is not LinkState.CUT:  # a cut was counted when it was made
                self.counters.losses += 1
            self.last_error = f"disconnected: {reason}"
        self._lose()

    def _on_suback(self, mid: int, codes: tuple[int, ...], now: float) -> None:
        if mid != self._sub_mid:
            return
        if any(code >= 128 for code in codes):
            self.last_error = f"subscription refused: {list(codes)}"
        if self.state is LinkState.SUBSCRIBING:
            self.state = LinkState.SETTLING
            self._ready_at = now + ACK_GRACE_S

    def _lose(self) -> None:
        self.state = LinkState.DISCONNECTED
        self._waiting_since = None

    def _cut(self, now: float) -> Cut:
        """No PUBACK for a whole keepalive while publishes wait: the link is dead."""
        assert self._waiting_since is not None
        self.last_error = f"no PUBACK for {now - self._waiting_since:.1f} s: reconnecting"
        self.counters.cuts += 1
        self.counters.losses += 1
        self.state = LinkState.CUT
        self._waiting_since = None
        self._cut_at = now
        return Cut()

    def _rebuild(self, now: float) -> Rebuild:
        """paho's thread ignored the cut: a new client, and every unwatermarked row again."""
        log.error("MQTT network thread unresponsive %.1f s after a cut: new client",
                  now - self._cut_at)
        self.counters.rebuilds += 1
        self.last_error = "MQTT client rebuilt: its network thread hung"
        self._lose()
        self._in_flight.clear()
        self._by_mid.clear()
        self._due = []  # rescheduled when the new client connects (all due at once)
        for tracked in self._tracked.values():
            tracked.token = None
        self._fresh_client = True
        return Rebuild()

    # -- messages from the broker ----------------------------------------------------------

    def _on_message(self, event: MessageReceived) -> list[Action]:
        if event.topic == self.topics.ack:
            self._on_ack(event.payload)
            return []
        if event.retained:
            self.counters.retained_commands_ignored += 1
            return []
        parsed = parse_topic(event.topic)
        if parsed is None or parsed.name is None:
            return []
        return [DeliverCommand(parsed.name, event.payload)]

    def _on_ack(self, payload: bytes) -> None:
        try:
            upto, epoch = decode_ack(payload)
            if upto <= self.acked_upto and epoch == self.outbox.epoch:
                return  # stale: already applied
            self.outbox.apply_ack(upto, epoch=epoch)
        except RemoteProtocolError as exc:  # AckRefused too: nothing was deleted
            self.counters.acks_refused += 1
            if self.counters.acks_refused in _REPORT_COUNTS:
                log.warning("ack refused (%d so far): %s", self.counters.acks_refused, exc)
            self.last_error = f"ack refused: {exc}"
            return
        self.acked_upto = upto
        for seq in [s for s in self._tracked if s <= upto]:
            tracked = self._tracked.pop(seq)
            if tracked.token is not None:
                self._forget(tracked.token)
        if not self._in_flight:
            self._waiting_since = None

    def _on_puback(self, mid: int, code: int, now: float) -> None:
        token = self._by_mid.pop(mid, None)
        send = None if token is None else self._in_flight.pop(token, None)
        if send is None:
            return  # untracked (birth, transient), or resent or watermarked meanwhile
        self._waiting_since = now if self._in_flight else None
        if send.priority is Priority.HEALTH:
            # Health is done once the broker has it (or refused it): it is sheddable.
            self.outbox.mark_sent([send.key])
            return
        seq = send.key
        tracked = self._tracked.get(seq)
        if tracked is None or tracked.token != token:
            return
        tracked.token = None
        if code == NO_MATCHING_SUBSCRIBERS:
            # Certainly not delivered (backend ingest absent): retry soon, backing off,
            # instead of waiting the whole watermark timeout.
            self.counters.unrouted += 1
            retry = min(0.5 * 2.0 ** (tracked.sends - 1), self._resend_after_s)
            self._schedule(seq, tracked, now + retry)
            return
        if code < 128:
            tracked.stored = True
            return  # success: from here the watermark timer decides
        self.counters.refused += 1
        if code in PERMANENT_REFUSALS:
            self._dead_letter(seq, code, now)
            return
        self.last_error = f"publish of seq {seq} refused with reason {code}"
        self._schedule(seq, tracked, now + min(2.0**tracked.sends, self._resend_after_s))

    def _dead_letter(self, seq: int, code: int, now: float) -> None:
        reason = PERMANENT_REFUSALS[code]
        rows = self.outbox.rows([seq])
        self._tracked.pop(seq, None)
        if not rows or not self.outbox.dead_letter(seq, code, reason, wall_ms=self._wall_ms()):
            return
        self.counters.dead_letters += 1
        self.last_error = f"seq {seq} dead-lettered: {reason}"
        if rows[0].topic == self.topics.event("dead_letter"):
            return  # never chain tombstones
        self.outbox.add_event(
            "dead_letter",
            {"seq": seq, "topic": rows[0].topic, "reason_code": code, "reason": reason},
            transit_id=None,
            mono_ms=int(now * 1000),
            wall_ms=self._wall_ms(),
            clock_synced=False,
        )

    # -- sending ---------------------------------------------------------------------------

    def _send(self, row: OutboxRow, now: float) -> Publish | None:
        """The publish of ``row``, now in flight; None for a health row past its expiry."""
        token = self._next_token
        if row.is_health and row.expires_ms is not None:
            remaining_s = (row.expires_ms - self._wall_ms()) // 1000
            if remaining_s <= 0:
                self.outbox.drop_health([row.key])
                return None
            publish = Publish(row.topic, row.payload, expiry_s=remaining_s, content_type=JSON,
                              token=token)
        else:
            publish = Publish(row.topic, row.payload, content_type=JSON, utf8=True, token=token)
        self._next_token += 1
        if not self._in_flight:
            self._waiting_since = now
        resend = False
        if not row.is_health:
            tracked = self._tracked.get(row.key)
            if tracked is None:
                tracked = self._tracked[row.key] = _Tracked(token, 0.0, 0)
            else:
                if tracked.token is not None:
                    self._forget(tracked.token)  # its PUBACK, if it comes, is stale now
                tracked.token = token
                resend = True
            tracked.sends += 1
            self._schedule(row.key, tracked, now + self._resend_after_s)
        self._in_flight[token] = _InFlight(row.key, row.priority, resend)
        return publish

    def _forget(self, token: int) -> _InFlight | None:
        """Stop waiting for the PUBACK of this send."""
        send = self._in_flight.pop(token, None)
        if send is None:
            return None
        if send.mid is not None and self._by_mid.get(send.mid) == token:
            del self._by_mid[send.mid]
        tracked = self._tracked.get(send.key) if send.priority is not Priority.HEALTH else None
        if tracked is not None and tracked.token == token:
            tracked.token = None
        return send

    def _schedule(self, seq: int, tracked: _Tracked, due: float) -> None:
        tracked.due = due
        heapq.heappush(self._due, (due, seq, tracked.sends))

    def _resend_due(self, now: float, actions: list[Action]) -> None:
        due: dict[int, None] = {}  # seqs in due order
        room = self._window - len(self._in_flight)
        while self._due and self._due[0][0] <= now:
            entry = heapq.heappop(self._due)
            tracked = self._tracked.get(entry[1])
            if tracked is None or tracked.sends != entry[2] or tracked.due > now or (
                    entry[1] in due):
                continue  # superseded by a later send, watermarked, or a twin entry
            if tracked.token is None:
                if room <= 0:
                    heapq.heappush(self._due, entry)
                    break
                room -= 1  # a resend of an in-flight row replaces its old send instead
            due[entry[1]] = None
        if not due:
            return
        rows = {row.key: row for row in self.outbox.rows(due)}
        for seq in due:
            row = rows.get(seq)
            if row is None:
                self._tracked.pop(seq, None)  # watermarked or dead-lettered meanwhile
            elif (publish := self._send(row, now)) is not None:
                actions.append(publish)

    def _fill_window(self, now: float, actions: list[Action]) -> None:
        room = min(self._window - len(self._in_flight), self._max_unacked - len(self._tracked))
        # Refill in batches: one query per quarter window, not one per PUBACK.
        if room <= 0 or (room < self._window // 4 and self._in_flight):
            return
        events_waiting = False
        for priority in (Priority.URGENT, Priority.NORMAL):
            if room <= 0:
                return
            rows = self.outbox.pending(room, after_seq=self._cursor[priority], priority=priority)
            events_waiting = events_waiting or bool(rows)
            for row in rows:
                if row.key not in self._tracked:  # else it is already out on a resend timer
                    publish = self._send(row, now)
                    assert publish is not None  # only health expires
                    actions.append(publish)
                    room -= 1
                self._cursor[priority] = row.key
        if events_waiting or room <= 0:
            return  # health waits until no event is waiting
        for row in self.outbox.pending_health(room, after_id=self._cursor[Priority.HEALTH]):
            if (publish := self._send(row, now)) is not None:
                actions.append(publish)
            self._cursor[Priority.HEALTH] = row.key

    def _wall_ms(self) -> int:
        return int(self._wall_clock() * 1000)

