"""The lane's one paho client, seen from paho's network thread.

``BrokerLink`` builds the client (MQTT v5, TLS, last will, bounded in-flight), plans each
reconnect wait with ``ReconnectJitter``'s back-off, cuts the socket when the delivery
watchdog asks, and replaces the whole client when paho's thread hangs (paho #891). Its
callbacks only hand typed events (``delivery_events.Event``) to ``post``: paho calls ``on_publish``
while holding its own lock, so taking any application lock there risks a deadlock. The
reconnect plan is the one thing decided on paho's thread, because paho waits right after
``on_disconnect`` returns.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.telemetry.delivery_events import (
    Connected,
    ConnectFailed,
    ConnectRefused,
    Disconnected,
    Event,
    MessageReceived,
    PubAck,
    SubAck,
)
from edge_agent.telemetry.mqtt import (
    BrokerAddress,
    ReconnectJitter,
    TlsFiles,
    connect_properties,
    make_client,
)

MAX_INCOMING_PACKET = 320 * 1024  # a 256 KiB signed command, its topic and headers
BROKER_INFLIGHT = 20  # Mosquitto's default max_inflight_messages; paho ignores Receive Maximum
_CALLBACKS = ("on_connect", "on_disconnect", "on_connect_fail", "on_publish", "on_subscribe",
              "on_message")


class BrokerLink:
    """Owns the paho client for one lane; ``client`` is the current one."""

    def __init__(
        self,
        client_id: str,
        address: BrokerAddress,
        *,
        post: Callable[[Event], None],
        will: tuple[str, bytes],
        keepalive_s: int,
        session_expiry_s: int,
        jitter: ReconnectJitter | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self._client_id, self._address, self._tls = client_id, address, tls
        self._post = post
        self._will = will
        self._keepalive_s = keepalive_s
        self._connect_props = connect_properties()
        self._connect_props.SessionExpiryInterval = session_expiry_s
        # The broker must not even send us a packet larger than the largest command: a flood
        # of huge messages then costs the lane nothing.
        self._connect_props.MaximumPacketSize = MAX_INCOMING_PACKET
        # Touched only by paho's network thread (its callbacks), and before it starts.
        self._backoff = (jitter or ReconnectJitter()).backoff()
        self.client = self._new_client()

    def start(self) -> None:
        """Connect in the background; paho's thread retries by itself from then on."""
        self.client.connect_async(
            self._address.host,
            self._address.port,
            # paho pings after one keepalive of silence and gives up one later: 3/4 of ours
            # finds an idle dead link within 1.5 x keepalive_s.
            keepalive=max(1, self._keepalive_s * 3 // 4),
            properties=self._connect_props,
        )
        self.client.loop_start()

    def cut(self) -> None:
        """Shut the socket down: paho sees EOF, reconnects and resends its own queue."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def replace(self) -> None:
        """Abandon a client whose thread hangs and start a new one (it has an empty queue)."""
        old = self.client
        for name in _CALLBACKS:
            setattr(old, name, None)  # a thread that wakes up later must not feed us
        sock = old.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.close()
        # Its thread is a daemon and may never return: never join it (loop_stop would).
        self.client = self._new_client()
        self.start()

    def _new_client(self) -> Client:
        client = make_client(self._client_id, self._address, self._tls)
        client.max_inflight_messages_set(BROKER_INFLIGHT)
        client.max_queued_messages_set(0)  # bounded by the delivery window instead
        self._backoff.reset()
        self._plan_reconnect(client)
        topic, payload = self._will
        client.will_set(topic, payload, qos=1, retain=True)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_connect_fail = self._cb_connect_fail
        client.on_publish = self._cb_publish
        client.on_subscribe = self._cb_subscribe
        client.on_message = self._cb_message
        return client

    def _plan_reconnect(self, client: Client) -> None:
        """Set paho's next reconnect wait (paho itself only doubles, without jitter): a fresh
        first delay after a success (``reset``), else the last one doubled."""
        delay = self._backoff.next()
        # Equal bounds: paho waits exactly this long before its next attempt.
        client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _cb_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            self._plan_reconnect(client)
            self._post(ConnectRefused(str(rc)))
        else:
            self._backoff.reset()  # the next loss draws a fresh first delay
            self._post(Connected())

    def _cb_disconnect(
        self, client: Client, userdata: Any, flags: DisconnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        # paho waits right after this callback returns: plan that wait here, not later.
        self._plan_reconnect(client)
        self._post(Disconnected(str(rc)))

    def _cb_connect_fail(self, client: Client, userdata: Any) -> None:
        self._plan_reconnect(client)
        self._post(ConnectFailed())

    def _cb_publish(
        self, client: Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        self._post(PubAck(mid, rc.value))

    def _cb_subscribe(
        self, client: Client, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        self._post(SubAck(mid, tuple(rc.value for rc in rcs)))

    def _cb_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        self._post(MessageReceived(message.topic, bytes(message.payload), bool(message.retain)))
