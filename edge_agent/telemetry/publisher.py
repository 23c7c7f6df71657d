"""Drains the outbox to the broker and deletes rows only when the backend's watermark covers them.

Threads: paho's network thread runs the callbacks, which only put tuples on a queue (paho
calls ``on_publish`` while holding its own lock, so taking any application lock there risks
a deadlock). One sender thread owns every piece of delivery state below and is the only one
that publishes outbox rows. The producer only commits rows (``Outbox.add_event``) and calls
``wake()``.

Delivery per event row (keyed by seq):
  fetched -> published (in flight, counts against ``window``) -> PUBACKed -> watermarked (row
  deleted). A row not watermarked ``resend_after_s`` after its last send, counted only while
  connected, is published again: this covers brokers that PUBACK and then drop (queue limit,
  SIGKILL, a backend that was not subscribed). Duplicates are expected; the backend removes
  them by ``event_id``. A permanent refusal (not authorized, bad topic, bad payload) moves the
  row to the dead-letter table and publishes a ``dead_letter`` event naming the seq, so the
  backend can close the gap. PUBACK reason 16 (no matching subscribers: backend ingest
  absent) retries sooner, with back-off.

Flow control: at most ``window`` publishes await a PUBACK (paho itself keeps 20 on the wire,
Mosquitto's default receive maximum) and at most ``max_unacked`` rows await the watermark,
which must stay below the broker's per-subscriber queue (Mosquitto ``max_queued_messages``,
1000 by default) or the broker drops the excess after PUBACKing it.

Liveness: a silent drop must be noticed within 1.5 x ``keepalive_s`` + 1 s. paho pings after
one MQTT keepalive of silence and gives up one keepalive later, so the MQTT keepalive sent to
the broker is 3/4 of ``keepalive_s`` (idle link: found within 1.5 x). While traffic flows, a
watchdog shuts the socket down when publishes wait ``keepalive_s`` without any PUBACK, and
paho reconnects. If paho's network thread does not even report that disconnect within
3 x ``keepalive_s`` it is hung (paho #891: an SSL error can leave it stuck while
``is_connected()`` still says True): the client is abandoned and a new one built, and every
row not yet watermarked is sent again through it.

Reconnects follow ``ReconnectJitter``: the first delay is drawn afresh on every loss from a
window (1-30 s by default), so a fleet that lost its broker together comes back spread out.
``on_command(name, payload)`` runs on the sender thread, never on paho's.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.errors import RemoteProtocolError
from edge_agent.telemetry.envelope import decode_ack, encode, state_message
from edge_agent.telemetry.link import BrokerLink
from edge_agent.telemetry.mqtt import (
    ReconnectJitter,
    TlsFiles,
    parse_broker_url,
    publish_properties,
)
from edge_agent.telemetry.outbox import Outbox, OutboxRow, Priority
from edge_agent.telemetry.topics import LaneTopics, parse_topic

log = logging.getLogger(__name__)

# PUBACK reason codes after which resending the same message cannot succeed.
PERMANENT_REFUSALS = {
    135: "not authorized",
    144: "topic name invalid",
    153: "payload format invalid",
}
NO_MATCHING_SUBSCRIBERS = 16
ACK_GRACE_S = 0.1  # after SUBACK, let the retained ack arrive before re-sending old rows
# Commands waiting for the lane's main loop; past this a flood is dropped (and counted) here,
# before it costs the lane anything.
MAX_PENDING_COMMANDS = 64
# Log the 1st, 10th, 100th... refusal of a kind: a flood must not flood the journal too.
_REPORT_COUNTS = frozenset(10**k for k in range(12))


@dataclass(slots=True)
class _Tracked:
    mid: int | None  # paho message id while waiting for PUBACK, else None
    due: float  # monotonic time at which to resend if still not watermarked
    sends: int


class Publisher:
    """The lane's MQTT sender: outbox -> broker, backend ack watermark -> outbox deletes."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        broker_url: str,
        site: str,
        lane: str,
        keepalive_s: int = 10,
        resend_after_s: float = 30.0,
        on_command: Callable[[str, bytes], None] | None = None,
        window: int = 200,
        max_unacked: int = 1000,
        reconnect: ReconnectJitter | None = None,
        session_expiry_s: int = 600,
        tls: TlsFiles | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.topics = LaneTopics(site, lane)
        self._address = parse_broker_url(broker_url)
        self._keepalive_s = keepalive_s
        self._resend_after_s = resend_after_s
        self._on_command = on_command
        self._window = window
        self._max_unacked = max_unacked
        self._clock = clock
        self._wall_clock = wall_clock
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._commands_lock = threading.Lock()
        self._pending_commands = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

        # Delivery state: touched only by the sender thread.
        self._tracked: dict[int, _Tracked] = {}
        self._due: list[tuple[float, int, int]] = []  # heap of (due, seq, sends)
        self._mids: dict[int, tuple[str, int]] = {}  # mid -> ("evt"|"health", key)
        self._cursor = {Priority.URGENT: 0, Priority.NORMAL: 0, Priority.HEALTH: 0}
        self._connected = False
        self._connack = False  # CONNACK seen on the current connection (not reset by a stall cut)
        self._ready_at: float | None = None
        self._sub_mid: int | None = None
        self._waiting_since: float | None = None
        self._stats = dict.fromkeys(
            ("published", "resent", "unrouted", "refused", "dead_letters", "cuts",
             "connect_failures", "rebuilds", "acks_refused", "commands_dropped",
             "retained_commands_ignored"), 0
        )
        self._acked_upto = 0
        self._last_error: str | None = None
        self._cut_at: float | None = None  # the watchdog cut the socket; paho has not reacted
        self._fresh_client = False  # rebuilt: paho holds none of our rows in its queue

        self._event_props = publish_properties()
        self._event_props.ContentType = "application/json"
        self._event_props.PayloadFormatIndicator = 1
        self._link = BrokerLink(
            lane,
            self._address,
            post=self._post,
            will=(self.topics.state, encode(state_message(False, outbox.boot_id))),
            keepalive_s=keepalive_s,
            session_expiry_s=session_expiry_s,
            jitter=reconnect,
            tls=tls,
        )

    # -- public ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        self._link.start()
        self._thread = threading.Thread(target=self._run, name=f"publisher-{self.topics.lane}")
        self._thread.daemon = True
        self._thread.start()

    def wake(self) -> None:
        """Tell the sender that new rows were committed (cheap; call after every add)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending, publish the retained offline state and disconnect cleanly (no LWT)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        client = self._link.client
        if client.is_connected():
            offline = encode(state_message(False, self.outbox.boot_id))
            info = client.publish(self.topics.state, offline, qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout)
        client.disconnect()
        client.loop_stop()
        self._connected = False

    def publish_transient(self, topic: str, payload: bytes, expiry_s: int) -> None:
        """Send a message that is not in the outbox (a health alarm while the disk is full),
        once, if connected; nothing tracks it."""
        self._post("transient", topic, payload, expiry_s)

    def status(self) -> dict[str, Any]:
        outbox = self.outbox.stats()
        return {
            "connected": self._connected,
            "pending": outbox["events"],
            "disk_alarm": outbox["disk_alarm"],
            "acked_upto": self._acked_upto,
            "last_error": self._last_error,
            "in_flight": len(self._mids),
            "unacked": len(self._tracked),
            **self._stats,
        }

    def _post(self, *item: Any) -> None:
        """What paho's thread reports (see BrokerLink): queued for the sender thread.

        Connection events, PUBACKs and acks always queue; commands only while fewer than
        ``MAX_PENDING_COMMANDS`` wait, so a flood cannot grow the lane's memory.
        """
        if item[0] == "message" and item[1] != self.topics.ack:
            with self._commands_lock:
                if self._pending_commands >= MAX_PENDING_COMMANDS:
                    self._stats["commands_dropped"] += 1
                    return
                self._pending_commands += 1
        self._inbox.put(item)
        self._wake.set()

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._next_timeout())
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._step()
            except Exception as exc:  # keep the lane alive; the rows stay in the outbox
                log.exception("publisher step failed")
                self._last_error = f"internal: {exc!r}"
                time.sleep(0.5)

    def _step(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._handle(item)
        now = self._clock()
        if self._cut_at is not None and now - self._cut_at >= 3 * self._keepalive_s:
            self._rebuild(now)
        if not self._connected:
            return
        if self._ready_at is None or now < self._ready_at:
            return
        self._resend_due(now)
        self._fill_window(now)
        self._check_stall(now)

    def _next_timeout(self) -> float:
        now = self._clock()
        deadlines = [now + 1.0]
        if self._connected and self._ready_at is not None:
            if self._ready_at > now:
                deadlines.append(self._ready_at)
            elif self._due and len(self._mids) < self._window:
                deadlines.append(self._due[0][0])  # with a full window a PUBACK wakes us
        if self._waiting_since is not None:
            deadlines.append(self._waiting_since + self._keepalive_s)
        if self._cut_at is not None:
            deadlines.append(self._cut_at + 3 * self._keepalive_s)
        return max(0.0, min(deadlines) - now)

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        now = self._clock()
        if kind in ("connect", "connect_failed", "disconnect"):
            self._cut_at = None  # paho's thread is alive and reconnecting
        if kind == "connect":
            failed, reason = item[1], item[2]
            if failed:
                self._last_error = f"connect refused: {reason}"
                self._stats["connect_failures"] += 1
                return
            self._connack = True
            self._on_connected(now)
        elif kind == "connect_failed":
            # No TCP or no TLS session (paho does not say which): unreachable, or the
            # broker's certificate does not verify against our CA file.
            self._stats["connect_failures"] += 1
            self._last_error = f"cannot connect to {self._address.host}:{self._address.port}" + (
                " (unreachable, or the TLS handshake failed)" if self._address.tls else ""
            )
        elif kind == "disconnect":
            if self._connack:
                self._last_error = f"disconnected: {item[1]}"
            else:
                # With TLS 1.3 a rejected client certificate shows up only here.
                self._stats["connect_failures"] += 1
                self._last_error = f"connection closed before CONNACK ({item[1]})" + (
                    ": the broker may refuse this lane's TLS certificate "
                    "(wrong CA, expired or revoked)" if self._address.tls else ""
                )
            self._connack = False
            self._connected = False
            self._ready_at = None
            self._waiting_since = None
        elif kind == "puback":
            self._on_puback(item[1], item[2], now)
        elif kind == "suback":
            if item[1] == self._sub_mid:
                self._ready_at = now + ACK_GRACE_S
                if any(code >= 128 for code in item[2]):
                    self._last_error = f"subscription refused: {item[2]}"
        elif kind == "transient":
            if self._connected:
                props = publish_properties()
                props.ContentType = "application/json"
                props.MessageExpiryInterval = item[3]
                self._link.client.publish(item[1], item[2], qos=1, properties=props)
        elif kind == "message":
            if item[1] != self.topics.ack:
                with self._commands_lock:
                    self._pending_commands -= 1
            self._on_message(item[1], item[2], retained=item[3])

    def _on_connected(self, now: float) -> None:
        self._connected = True
        self._ready_at = None
        self._waiting_since = now if self._mids else None
        client = self._link.client
        no_retained = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        result, self._sub_mid = client.subscribe(
            [(self.topics.ack, SubscribeOptions(qos=1)), (self.topics.commands, no_retained)]
        )
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._last_error = f"subscribe failed: {result}"
        # Birth after SUBSCRIBE on the same connection: once a backend sees the lane online,
        # a command it sends is delivered (a clean start has no subscription before this).
        birth = state_message(True, self.outbox.boot_id, self.outbox.agent_version)
        client.publish(self.topics.state, encode(birth), qos=1, retain=True)
        # paho resends its own queue after a reconnect; give everything a fresh timer. A new
        # client has no queue: what it never sent goes out as soon as the link is ready.
        fresh, self._fresh_client = self._fresh_client, False
        self._due = []
        for seq, tracked in self._tracked.items():
            tracked.due = now if fresh else now + self._resend_after_s
            self._due.append((tracked.due, seq, tracked.sends))
        heapq.heapify(self._due)

    def _on_message(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        if topic == self.topics.ack:
            self._on_ack(payload)
            return
        if retained:
            # A command is an act, not a state: one left retained on the broker would run
            # again (or crash-loop the lane) on every reconnect. Commands are never retained.
            self._stats["retained_commands_ignored"] += 1
            return
        parsed = parse_topic(topic)
        if parsed is None or parsed.name is None or self._on_command is None:
            return
        try:
            self._on_command(parsed.name, payload)
        except Exception:
            log.exception("command handler failed for %s", topic)

    def _on_ack(self, payload: bytes) -> None:
        try:
            upto, epoch = decode_ack(payload)
            if upto <= self._acked_upto and epoch == self.outbox.epoch:
                return
            self.outbox.apply_ack(upto, epoch=epoch)
        except RemoteProtocolError as exc:  # AckRefused too: nothing was deleted
            self._stats["acks_refused"] += 1
            if self._stats["acks_refused"] in _REPORT_COUNTS:
                log.warning("ack refused (%d so far): %s", self._stats["acks_refused"], exc)
            self._last_error = f"ack refused: {exc}"
            return
        self._acked_upto = upto
        for seq in [s for s in self._tracked if s <= upto]:
            tracked = self._tracked.pop(seq)
            if tracked.mid is not None:
                self._mids.pop(tracked.mid, None)
        if not self._mids:
            self._waiting_since = None

    def _on_puback(self, mid: int, code: int, now: float) -> None:
        entry = self._mids.pop(mid, None)
        if entry is None:
            return  # a stale mid: the row was resent or watermarked meanwhile
        self._waiting_since = now if self._mids else None
        kind, key = entry
        if kind == "health":
            # Health is done once the broker has it (or refused it): it is sheddable.
            self.outbox.mark_sent([key])
            return
        tracked = self._tracked.get(key)
        if tracked is None or tracked.mid != mid:
            return
        tracked.mid = None
        if code == NO_MATCHING_SUBSCRIBERS:
            # Certainly not delivered (backend ingest absent): retry soon, backing off,
            # instead of waiting the whole watermark timeout.
            self._stats["unrouted"] += 1
            retry = min(0.5 * 2.0 ** (tracked.sends - 1), self._resend_after_s)
            self._schedule(key, tracked, now + retry)
            return
        if code < 128:
            return  # success: from here the watermark timer decides
        self._stats["refused"] += 1
        if code in PERMANENT_REFUSALS:
            self._dead_letter(key, code)
            return
        self._last_error = f"publish of seq {key} refused with reason {code}"
        backoff = min(2.0**tracked.sends, self._resend_after_s)
        self._schedule(key, tracked, now + backoff)

    def _dead_letter(self, seq: int, code: int) -> None:
        reason = PERMANENT_REFUSALS[code]
        rows = self.outbox.rows([seq])
        self._tracked.pop(seq, None)
        if not rows or not self.outbox.dead_letter(seq, code, reason, wall_ms=self._wall_ms()):
            return
        self._stats["dead_letters"] += 1
        self._last_error = f"seq {seq} dead-lettered: {reason}"
        if rows[0].topic == self.topics.event("dead_letter"):
            return  # never chain tombstones
        self.outbox.add_event(
            "dead_letter",
            {"seq": seq, "topic": rows[0].topic, "reason_code": code, "reason": reason},
            transit_id=None,
            mono_ms=int(self._clock() * 1000),
            wall_ms=self._wall_ms(),
            clock_synced=False,
        )

    def _schedule(self, seq: int, tracked: _Tracked, due: float) -> None:
        tracked.due = due
        heapq.heappush(self._due, (due, seq, tracked.sends))

    def _publish(self, row: OutboxRow, now: float) -> bool:
        props = self._event_props
        if row.is_health and row.expires_ms is not None:
            remaining_s = (row.expires_ms - self._wall_ms()) // 1000
            if remaining_s <= 0:
                self.outbox.drop_health([row.key])
                return True
            props = publish_properties()
            props.ContentType = "application/json"
            props.MessageExpiryInterval = int(remaining_s)
        info = self._link.client.publish(row.topic, row.payload, qos=1, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            # Not queued by paho (e.g. queue full): leave it to the resend timer.
            self._last_error = f"publish failed: {info.rc}"
            return False
        # MQTT_ERR_NO_CONN with QoS1 still queues the message for the next connection.
        if not self._mids:
            self._waiting_since = now
        self._mids[info.mid] = ("health" if row.is_health else "evt", row.key)
        self._stats["published"] += 1
        if not row.is_health:
            tracked = self._tracked.get(row.key)
            if tracked is None:
                tracked = self._tracked[row.key] = _Tracked(info.mid, 0.0, 0)
            else:
                if tracked.mid is not None:
                    self._mids.pop(tracked.mid, None)
                tracked.mid = info.mid
                self._stats["resent"] += 1
            tracked.sends += 1
            self._schedule(row.key, tracked, now + self._resend_after_s)
        return True

    def _resend_due(self, now: float) -> None:
        due: list[int] = []
        room = self._window - len(self._mids)
        while self._due and self._due[0][0] <= now:
            entry = heapq.heappop(self._due)
            tracked = self._tracked.get(entry[1])
            if tracked is None or tracked.sends != entry[2] or tracked.due > now:
                continue  # superseded by a later send, or watermarked
            if tracked.mid is None:
                if room <= 0:
                    heapq.heappush(self._due, entry)
                    break
                room -= 1  # a resend of an in-flight row replaces its old mid instead
            due.append(entry[1])
        if not due:
            return
        rows = {row.key: row for row in self.outbox.rows(due)}
        for seq in due:
            row = rows.get(seq)
            if row is None:
                self._tracked.pop(seq, None)  # watermarked or dead-lettered meanwhile
            elif not self._publish(row, now):
                self._schedule(seq, self._tracked[seq], now + 1.0)

    def _fill_window(self, now: float) -> None:
        room = min(self._window - len(self._mids), self._max_unacked - len(self._tracked))
        # Refill in batches: one query per quarter window, not one per PUBACK.
        if room <= 0 or (room < self._window // 4 and self._mids):
            return
        events_waiting = False
        for priority in (Priority.URGENT, Priority.NORMAL):
            if room <= 0:
                return
            rows = self.outbox.pending(room, after_seq=self._cursor[priority], priority=priority)
            events_waiting = events_waiting or bool(rows)
            for row in rows:
                if row.key not in self._tracked:  # else it is already out on a resend timer
                    if not self._publish(row, now):
                        return
                    room -= 1
                self._cursor[priority] = row.key
        if events_waiting or room <= 0:
            return  # health waits until no event is waiting
        for row in self.outbox.pending_health(room, after_id=self._cursor[Priority.HEALTH]):
            if not self._publish(row, now):
                return
            self._cursor[Priority.HEALTH] = row.key

    def _wall_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def _check_stall(self, now: float) -> None:
        """No PUBACK for a whole keepalive while publishes wait: the link is dead, cut it."""
        if self._waiting_since is None or now - self._waiting_since < self._keepalive_s:
            return
        self._last_error = f"no PUBACK for {now - self._waiting_since:.1f} s: reconnecting"
        self._stats["cuts"] += 1
        self._connected = False
        self._waiting_since = None
        self._cut_at = now
        self._link.cut()

    def _rebuild(self, now: float) -> None:
        """paho's thread ignored the cut: abandon that client and start a fresh one."""
        log.error("MQTT network thread unresponsive %.1f s after a cut: new client",
                  now - (self._cut_at or now))
        self._stats["rebuilds"] += 1
        self._last_error = "MQTT client rebuilt: its network thread hung"
        self._cut_at = None
        self._connected = self._connack = False
        self._ready_at = self._waiting_since = None
        self._mids.clear()
        self._due = []  # rescheduled when the new client connects (all due at once)
        for tracked in self._tracked.values():
            tracked.mid = None
        self._fresh_client = True
        self._link.replace()
