"""The console's way to the lanes: its own MQTT connection for commands, the store for the rest.

The console subscribes to nothing (the ingest workers store every lane's events and results,
and the console reads them from the store); it only publishes signed commands, QoS 1, with
the command's lifetime as the message expiry, and waits for the broker's PUBACK so that the
officer hears at once when a command did not leave. It is what ``CommandService`` sends
through (its ``Backend``): ``events`` and ``pass_uses`` come from the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
from paho.mqtt.reasoncodes import ReasonCode

from backend.commands import COMMAND_LIFETIME_S
from backend.errors import BackendError, BackendTimeout
from backend.store import EventStore
from edge_agent.telemetry.mqtt import (
    TlsFiles,
    connect_properties,
    make_client,
    parse_broker_url,
    publish_properties,
)
from edge_agent.telemetry.topics import LaneTopics

PUBACK_TIMEOUT_S = 5.0
T = TypeVar("T")


class StoreReader:
    """The event store behind one lock: the console's HTTP threads share one connection."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._lock = threading.Lock()

    def read(self, query: Callable[[EventStore], T]) -> T:
        with self._lock:
            return query(self.store)

    def close(self) -> None:
        with self._lock:
            self.store.close()


class CommandLink:
    """Publishes commands to the lanes; ``start()`` connects (and reconnects by itself)."""

    def __init__(self, broker_url: str, reader: StoreReader, *, client_id: str = "console",
                 tls: TlsFiles | None = None) -> None:  # fmt: skip
        self._address = parse_broker_url(broker_url)
        self._reader = reader
        self._client: Client = make_client(client_id, self._address, tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.reconnect_delay_set(0.5, 10)  # type: ignore[arg-type]
        self._connected = threading.Event()
        self.last_error: str | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Connect; BackendTimeout if the broker did not accept within ``timeout``."""
        try:
            self._client.connect_async(self._address.host, self._address.port, keepalive=30,
                                       clean_start=True, properties=connect_properties())
        except (OSError, ValueError) as exc:
            raise BackendError(f"broker {self._address.host}:{self._address.port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            why = f" ({self.last_error})" if self.last_error else ""
            raise BackendTimeout(f"the console could not connect to the broker at "
                                 f"{self._address.host}:{self._address.port} within "
                                 f"{timeout:g} s{why}: check --broker and that it runs")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- CommandService's backend ---------------------------------------------------------
    def publish_command(self, site: str, lane: str, name: str, payload: bytes) -> None:
        """Publish one signed command; BackendError unless the broker confirmed it."""
        if not self._connected.is_set():
            raise BackendError("the console is not connected to the broker: nothing was sent")
        props = publish_properties()
        props.MessageExpiryInterval = COMMAND_LIFETIME_S
        info = self._client.publish(LaneTopics(site, lane).command(name), payload, qos=1,
                                    properties=props)
        try:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # not queued: the connection just dropped
            raise BackendError(f"the broker did not take the command: {exc}") from exc
        if not info.is_published():
            raise BackendError(
                f"the broker did not confirm the command within {PUBACK_TIMEOUT_S:g} s; it may "
                f"still reach the lane within {COMMAND_LIFETIME_S} s: check the lane before "
                "sending again")

    def events(self, lane: str | None = None) -> list[dict[str, Any]]:
        return self._reader.read(lambda store: store.events(lane))

    def pass_uses(self) -> dict[str, list[tuple[str, str | None]]]:
        uses: dict[str, list[tuple[str, str | None]]] = {}
        for event in self._reader.read(lambda store: store.events(types=("pass_used",))):
            pass_hash = event["data"].get("pass_hash")
            use = (str(event["lane"]), event.get("transit_id"))
            if isinstance(pass_hash, str) and pass_hash and use not in uses.get(pass_hash, []):
                uses.setdefault(pass_hash, []).append(use)
        return uses

    # -- paho callbacks -------------------------------------------------------------------
    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags, rc: ReasonCode,
                    props: Any) -> None:  # fmt: skip
        if rc.is_failure:
            self.last_error = str(rc)
            return
        self.last_error = None
        self._connected.set()

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags,
                       rc: ReasonCode, props: Any) -> None:  # fmt: skip
        self._connected.clear()
        if rc.is_failure:
            self.last_error = str(rc)
