"""Broker URLs and paho-mqtt client construction shared by the publisher and the simulators."""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.backoff import Backoff
from edge_agent.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for mutual TLS: the CA that signed the broker, and this client's cert and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ReconnectJitter:
    """How a lane comes back after losing the broker.

    The first attempt waits a delay drawn uniformly from [first_min_s, first_max_s], drawn
    afresh on every loss, so a fleet that lost a broker together does not return in the same
    second; each failed attempt doubles the delay, up to ``max_s``. ``backoff`` hands out
    those delays (the window is the jitter: no further spread on top).
    """

    first_min_s: float = 1.0
    first_max_s: float = 30.0
    max_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.first_min_s <= self.first_max_s <= self.max_s:
            raise ConfigError("reconnect jitter needs 0 < first_min_s <= first_max_s <= max_s, "
                              f"got {self.first_min_s}, {self.first_max_s}, {self.max_s}")

    def backoff(self, rng: random.Random | None = None) -> Backoff:
        """Delays for one lane: ``next()`` per attempt, ``reset()`` once connected."""
        return Backoff(self.first_min_s, self.max_s, first_max=self.first_max_s, jitter=0.0,
                       rng=rng)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` (plain, lab only) or ``mqtts://host[:port]`` (TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(f"broker URL {url!r} has no host")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"broker URL {url!r}: {exc}") from exc
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"broker URL {url!r} must not have a path or query")
    return BrokerAddress(parts.hostname, port, parts.scheme == "mqtts")


def make_client(
    client_id: str, address: BrokerAddress, tls: TlsFiles | None = None, *, manual_ack: bool = False
) -> Client:
    """An MQTT v5 client with the VERSION2 callback API (paho defaults to 3.1.1 otherwise)."""
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if address.tls:
        files = tls or TlsFiles()
        try:
            client.tls_set(
                ca_certs=str(files.ca_file) if files.ca_file else None,
                certfile=str(files.cert_file) if files.cert_file else None,
                keyfile=str(files.key_file) if files.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(
                f"TLS files unusable (ca {files.ca_file}, cert {files.cert_file}, "
                f"key {files.key_file}): {exc}"
            ) from exc
    elif tls is not None:
        raise ConfigError("TLS files given for a plain mqtt:// broker URL; use mqtts://")
    return client


def publish_properties() -> Properties:
    """Empty MQTT v5 PUBLISH properties (paho's constructor is untyped)."""
    return Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def connect_properties() -> Properties:
    """Empty MQTT v5 CONNECT properties."""
    return Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
