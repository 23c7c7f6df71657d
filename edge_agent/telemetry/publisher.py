"""The lane's MQTT sender: paho and threads around the delivery machine (``delivery.py``).

``Delivery`` holds every delivery rule (window, resends, dead letters, watermark, stall cut,
rebuild); this module only runs it. paho's network thread runs ``BrokerLink``'s callbacks,
which put typed events on a queue and never take an application lock (paho calls
``on_publish`` holding its own). One sender thread owns the machine: it feeds it the queued
events with the monotonic time, performs the actions it returns on the paho client, answers
each tracked publish and the subscribe with paho's message id right away, and sleeps until
the machine's next deadline (at most ``POLL_S``) or ``wake()``. The producer only commits
rows (``Outbox.add_event``) and calls ``wake()``.

Commands are admitted on paho's thread through a ``CommandGate``: past
``MAX_PENDING_COMMANDS`` waiting, a flood is dropped and counted before it costs the lane
memory. ``on_command(name, payload)`` runs on the sender thread, never on paho's.

Reconnects follow ``ReconnectJitter``: the first delay is drawn afresh on every loss from a
window (1-30 s by default), so a fleet that lost its broker together comes back spread out.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, assert_never

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.telemetry.broker_link import BrokerLink
from edge_agent.telemetry.delivery import Delivery
from edge_agent.telemetry.delivery_events import (
    Action,
    Cut,
    DeliverCommand,
    Event,
    MessageReceived,
    Publish,
    Rebuild,
    SendTransient,
    Subscribe,
)
from edge_agent.telemetry.mqtt import (
    ReconnectJitter,
    TlsFiles,
    parse_broker_url,
    publish_properties,
)
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.topics import LaneTopics

log = logging.getLogger(__name__)

POLL_S = 1.0  # the sender looks at the machine at least this often, deadline or not
# Commands waiting for the lane's main loop; past this a flood is dropped (and counted) on
# paho's thread, before it costs the lane anything.
MAX_PENDING_COMMANDS = 64
_QUEUED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)  # QoS 1 waits


class CommandGate:
    """Admits at most ``limit`` commands waiting between paho's thread and the sender.

    ``admit`` on paho's thread before queueing a command, ``release`` on the sender when it
    takes one. A refused command is counted in ``dropped`` and costs the lane nothing more.
    """

    def __init__(self, limit: int = MAX_PENDING_COMMANDS) -> None:
        self.limit = limit
        self.dropped = 0
        self._waiting = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            if self._waiting >= self.limit:
                self.dropped += 1
                return False
            self._waiting += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._waiting -= 1


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
        address = parse_broker_url(broker_url)
        self._on_command = on_command
        self._clock = clock
        # Touched only by the sender thread (and read, never changed, by ``status``).
        self._delivery = Delivery(
            outbox, self.topics, address=address, wall_clock=wall_clock,
            keepalive_s=keepalive_s, resend_after_s=resend_after_s, window=window,
            max_unacked=max_unacked,
        )
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._gate = CommandGate()
        self._wake = threading.Event()
        self._stopping = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._properties: dict[tuple[str | None, bool], Properties | None] = {}
        will = self._delivery.will
        self._link = BrokerLink(
            lane,
            address,
            post=self._post,
            will=(will.topic, will.payload),
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

    def stop(self, timeout: float = 5.0, *, reason: str = "stopped", by: str | None = None,
             detail: str | None = None) -> None:
        """Stop sending, publish the retained offline state and disconnect cleanly (no LWT).

        The farewell says why (``reason`` ``stopped``: planned; ``failed``: the agent gave up),
        which the last will (``lost``) cannot. A second call does nothing.
        """
        if self._stopped:
            return
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        client = self._link.client
        if client.is_connected():
            offline = self._delivery.farewell(reason, by, detail)
            info = client.publish(offline.topic, offline.payload, qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout)
        client.disconnect()
        client.loop_stop()
        self._stopped = True

    def handed_over(self, seq: int) -> bool:
        """The broker (or already the backend) has event ``seq``: safe to disconnect."""
        return self._delivery.handed_over(seq)

    def publish_transient(self, topic: str, payload: bytes, expiry_s: int) -> None:
        """Send a message that is not in the outbox (a health alarm while the disk is full),
        once, if connected; nothing tracks it."""
        self._post(SendTransient(topic, payload, expiry_s))

    def status(self) -> dict[str, Any]:
        outbox = self.outbox.stats()
        delivery = self._delivery
        counters = delivery.counters.as_dict()
        retained_ignored = counters.pop("retained_commands_ignored")
        return {
            "connected": delivery.connected and not self._stopped,
            "pending": outbox["events"],
            "disk_alarm": outbox["disk_alarm"],
            "acked_upto": delivery.acked_upto,
            "last_error": delivery.last_error,
            "in_flight": delivery.in_flight,
            "unacked": delivery.unacked,
            **counters,
            "commands_dropped": self._gate.dropped,
            "retained_commands_ignored": retained_ignored,
        }

    # -- paho's thread ---------------------------------------------------------------------

    def _post(self, event: Event) -> None:
        """Queue an event for the sender; a command only if the gate admits it."""
        if self._is_command(event) and not self._gate.admit():
            return
        self._events.put(event)
        self._wake.set()

    def _is_command(self, event: Event) -> bool:
        return isinstance(event, MessageReceived) and event.topic != self.topics.ack

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._timeout())
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._step()
            except Exception as exc:  # keep the lane alive; the rows stay in the outbox
                log.exception("publisher step failed")
                self._delivery.last_error = f"internal: {exc!r}"
                time.sleep(0.5)

    def _timeout(self) -> float:
        now = self._clock()
        deadline = self._delivery.next_deadline()
        return max(0.0, min(POLL_S, POLL_S if deadline is None else deadline - now))

    def _step(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if self._is_command(event):
                self._gate.release()
            self._perform(self._delivery.handle(event, self._clock()))
        self._perform(self._delivery.tick(self._clock()))

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Publish():
                    self._publish(action)
                case Subscribe():
                    self._subscribe(action)
                case DeliverCommand(name, payload):
                    self._deliver(name, payload)
                case Cut():
                    self._link.cut()
                case Rebuild():
                    self._link.replace()
                case _:
                    assert_never(action)

    def _publish(self, action: Publish) -> None:
        info = self._link.client.publish(
            action.topic, action.payload, qos=action.qos, retain=action.retain,
            properties=self._properties_of(action),
        )
        if action.token is None:
            return
        if info.rc in _QUEUED:
            self._delivery.published(action.token, info.mid)
        else:  # not queued by paho: the machine retries it
            self._delivery.not_published(action.token, f"{info.rc}", self._clock())

    def _properties_of(self, action: Publish) -> Properties | None:
        if action.expiry_s is None:  # the same few for every event: built once
            key = (action.content_type, action.utf8)
            if key not in self._properties:
                self._properties[key] = _properties(action)
            return self._properties[key]
        return _properties(action)

    def _subscribe(self, action: Subscribe) -> None:
        options = [
            (s.topic, SubscribeOptions(qos=1, retainHandling=(
                SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE if s.send_retained
                else SubscribeOptions.RETAIN_DO_NOT_SEND)))
            for s in action.subscriptions
        ]
        result, mid = self._link.client.subscribe(options)
        if mid is not None:
            self._delivery.subscribed(mid)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._delivery.not_subscribed(f"{result}")

    def _deliver(self, name: str, payload: bytes) -> None:
        if self._on_command is None:
            return
        try:
            self._on_command(name, payload)
        except Exception:
            log.exception("command handler failed for %s", name)


def _properties(action: Publish) -> Properties | None:
    if action.content_type is None and not action.utf8 and action.expiry_s is None:
        return None
    props = publish_properties()
    if action.content_type is not None:
        props.ContentType = action.content_type
    if action.utf8:
        props.PayloadFormatIndicator = 1
    if action.expiry_s is not None:
        props.MessageExpiryInterval = action.expiry_s
    return props
