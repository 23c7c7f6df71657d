"""The MQTT security baseline against a real Mosquitto started with `lanectl site init` output.

Mutual TLS per lane, the per-lane ACL and the CRL: what a lane may do, what it may not, which
certificates the broker refuses, and that the agent keeps its events while it is refused.
Every wait polls with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage

from backend.ingest import IngestWorker
from edge_agent.assembly import open_devices
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.protocols import gp1
from edge_agent.telemetry.mqtt import ReconnectJitter, TlsFiles, make_client, parse_broker_url
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher
from edge_agent.telemetry.topics import LaneTopics
from host_tools import site_init
from simulators import polling
from simulators.broker import MosquittoBroker

SITE = "BZ01"
LANES = ["exit-01", "exit-02", "exit-03", "entry-01"]
REVOKED = "exit-03"
TIMEOUT = 10.0


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    return polling.wait_until(condition, timeout)


def tls_of(site_dir: Path, cn: str) -> TlsFiles:
    return site_init.tls_files(site_dir, cn)


class Probe:
    """A bare MQTT v5 client that records what happens to it, for ACL and refusal checks."""

    def __init__(self, url: str, tls: TlsFiles, client_id: str = "probe") -> None:
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.messages: list[MQTTMessage] = []
        self.disconnects = 0
        self.connacks = 0  # successful connections
        self._lock = threading.Lock()
        address = parse_broker_url(url)
        self.client = make_client(client_id, address, tls)
        self.client.reconnect_delay_set(0.2, 0.2)  # type: ignore[arg-type]
        c = self.client
        c.on_connect = self._on_connect
        c.on_connect_fail = lambda _c, _u: self.events.put(("refused", "handshake failed"))
        c.on_disconnect = self._on_disconnect
        c.on_publish = lambda _c, _u, mid, rc, _p: self.events.put(("puback", mid, rc.value))
        c.on_subscribe = lambda _c, _u, mid, rcs, _p: self.events.put(("suback", mid))
        c.on_message = self._on_message
        c.connect_async(address.host, address.port, keepalive=10)
        c.loop_start()

    def _on_connect(self, *args: Any) -> None:
        code = args[3].value
        with self._lock:
            self.connacks += code == 0
        self.events.put(("connect", code))

    def _on_disconnect(self, *args: Any) -> None:
        with self._lock:
            self.disconnects += 1
        self.events.put(("refused", f"disconnected: {args[3]}"))

    def _on_message(self, _c: Client, _u: Any, message: MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def outcome(self) -> str:
        """``connected`` or ``refused: ...``: the first answer to our connection attempt."""
        kind, detail = self._next(lambda e: e[0] in ("connect", "refused"))[:2]
        if kind == "connect":
            return "connected" if detail == 0 else f"refused: CONNACK {detail}"
        return f"refused: {detail}"

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """QoS1 publish; returns the v5 PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        return int(self._next(lambda e: e[0] == "puback" and e[1] == info.mid)[2])

    def subscribe(self, *filters: str) -> None:
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        self._next(lambda e: e[0] == "suback" and e[1] == mid)

    def topics(self) -> list[str]:
        with self._lock:
            return [m.topic for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _next(self, wanted: Callable[[tuple[Any, ...]], bool]) -> tuple[Any, ...]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no answer from the broker before the deadline") from None
            if wanted(event):
                return event


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site") / "BZ01"
    site_init.init_site(folder, site=SITE, lanes=LANES, broker_host="broker.bz01.example")
    site_init.revoke(folder, REVOKED)
    return folder


@pytest.fixture(scope="module")
def broker(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    config = site / "broker" / "mosquitto.conf"
    with MosquittoBroker(workdir=tmp_path_factory.mktemp("broker"), config_file=config) as running:
        yield running


@pytest.fixture
def probes(broker: MosquittoBroker) -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def connect(tls: TlsFiles, client_id: str = "probe") -> Probe:
        probe = Probe(broker.url, tls, client_id)
        made.append(probe)
        return probe

    yield connect
    for probe in made:
        probe.close()


def test_the_generated_broker_config_listens_with_tls(broker: MosquittoBroker) -> None:
    assert broker.url.startswith("mqtts://127.0.0.1:")


def test_a_lane_publishes_as_itself_and_not_as_another_lane(
    site: Path, probes: Callable[..., Probe]
) -> None:
    backend = probes(tls_of(site, site_init.BACKEND_CN), "backend")
    assert backend.outcome() == "connected"
    backend.subscribe("gate/v1/#")
    lane = probes(tls_of(site, "exit-01"))
    assert lane.outcome() == "connected"

    forged = LaneTopics(SITE, "exit-02").event("vehicle_passed")
    assert lane.publish(forged) == 135  # not authorized, and said so (MQTT v5)
    assert lane.publish(LaneTopics(SITE, "exit-02").state) == 135
    assert lane.publish(LaneTopics(SITE, "exit-01").command("remote_release")) == 135
    assert lane.publish(LaneTopics(SITE, "exit-01").ack) == 135
    own = LaneTopics(SITE, "exit-01").event("vehicle_passed")
    assert lane.publish(own) == 0
    # The backend got the lane's own event; the forged one was sent first and never came.
    assert wait_until(lambda: own in backend.topics())
    assert forged not in backend.topics()


def test_a_lane_reads_only_its_own_commands(site: Path, probes: Callable[..., Probe]) -> None:
    spy = probes(tls_of(site, "exit-01"))
    assert spy.outcome() == "connected"
    spy.subscribe(LaneTopics(SITE, "exit-02").commands, LaneTopics(SITE, "exit-02").ack,
                  LaneTopics(SITE, "exit-01").commands)
    victim = probes(tls_of(site, "exit-02"))
    assert victim.outcome() == "connected"
    victim.subscribe(LaneTopics(SITE, "exit-02").commands)
    backend = probes(tls_of(site, site_init.BACKEND_CN), "backend")
    assert backend.outcome() == "connected"

    secret = LaneTopics(SITE, "exit-02").command("remote_release")
    assert backend.publish(secret) == 0
    assert backend.publish(LaneTopics(SITE, "exit-02").ack, b'{"upto_seq":1,"boot_id":1}') == 0
    marker = LaneTopics(SITE, "exit-01").command("config")
    assert backend.publish(marker) == 0  # sent last: once the spy has it, it had the others
    assert wait_until(lambda: marker in spy.topics())
    assert wait_until(lambda: secret in victim.topics())
    assert spy.topics() == [marker]


def test_a_lane_cannot_take_over_another_lanes_session(
    site: Path, probes: Callable[..., Probe]
) -> None:
    victim = probes(tls_of(site, "exit-02"), "exit-02")
    assert victim.outcome() == "connected"
    impostor = probes(tls_of(site, "exit-01"), "exit-02")  # asks for the victim's client id
    assert impostor.outcome() == "connected"  # ...and is renamed to its own CN by the broker
    assert victim.publish(LaneTopics(SITE, "exit-02").health) < 128  # 16: no subscriber
    assert victim.disconnects == 0


def test_an_identity_from_another_site_ca_is_refused(
    site: Path, probes: Callable[..., Probe], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    site_init.init_site(other, site=SITE, lanes=["exit-01"])
    stranger = tls_of(other, "exit-01")
    # Trusting our broker (our CA) but presenting a certificate the broker's CA never signed.
    outcome = probes(dataclasses.replace(stranger, ca_file=tls_of(site, "exit-01").ca_file))
    assert outcome.outcome().startswith("refused")


def test_no_client_certificate_is_refused(site: Path, probes: Callable[..., Probe]) -> None:
    anonymous = TlsFiles(ca_file=tls_of(site, "exit-01").ca_file)
    assert probes(anonymous).outcome().startswith("refused")


def test_an_expired_certificate_is_refused(
    site: Path, probes: Callable[..., Probe], tmp_path: Path
) -> None:
    past = datetime.now(UTC) - timedelta(days=30)
    expired = site_init.make_leaf(site_init.load_ca(site), "exit-01", now=past, days=1)
    site_init.write_identity(expired, tmp_path / "old.crt", tmp_path / "old.key")
    ca = tls_of(site, "exit-01").ca_file
    assert probes(TlsFiles(ca, tmp_path / "old.crt", tmp_path / "old.key")).outcome().startswith(
        "refused"
    )
    assert probes(tls_of(site, "exit-01")).outcome() == "connected"  # same CA, fresh cert


def test_a_revoked_certificate_is_refused(site: Path, probes: Callable[..., Probe]) -> None:
    assert probes(tls_of(site, REVOKED)).outcome().startswith("refused")


def test_a_lane_refuses_a_broker_its_ca_did_not_sign(
    site: Path, probes: Callable[..., Probe], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    site_init.init_site(other, site=SITE, lanes=["exit-01"])
    foreign_ca = tls_of(other, "exit-01").ca_file
    wrong_trust = dataclasses.replace(tls_of(site, "exit-01"), ca_file=foreign_ca)
    assert probes(wrong_trust).outcome() == "refused: handshake failed"


def test_revoking_refuses_new_connections_after_sighup_and_a_restart_cuts_open_ones(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "site"
    site_init.init_site(folder, site=SITE, lanes=["exit-01"])
    config = folder / "broker" / "mosquitto.conf"
    with MosquittoBroker(workdir=tmp_path / "broker", config_file=config) as broker:
        open_session = Probe(broker.url, tls_of(folder, "exit-01"), "exit-01")
        try:
            assert open_session.outcome() == "connected"
            site_init.revoke(folder, "exit-01")
            broker.reload()

            def refused() -> bool:
                probe = Probe(broker.url, tls_of(folder, "exit-01"))
                try:
                    return probe.outcome().startswith("refused")
                finally:
                    probe.close()

            assert wait_until(refused)  # SIGHUP is asynchronous: retry until it was read
            # A session opened before the revocation survives SIGHUP; a restart cuts it,
            # and its automatic reconnection is refused (a second disconnect, never a CONNACK).
            broker.restart()
            assert wait_until(lambda: open_session.disconnects >= 2)
            assert open_session.connacks == 1
        finally:
            open_session.close()


def test_an_expired_crl_locks_every_lane_out_until_it_is_signed_again(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    site_init.init_site(folder, site=SITE, lanes=["exit-01"])
    site_init.refresh_crl(folder, days=1, now=datetime.now(UTC) - timedelta(days=10))
    config = folder / "broker" / "mosquitto.conf"
    with MosquittoBroker(workdir=tmp_path / "broker", config_file=config) as broker:

        def outcome() -> str:
            probe = Probe(broker.url, tls_of(folder, "exit-01"))
            try:
                return probe.outcome()
            finally:
                probe.close()

        assert outcome().startswith("refused")  # a valid, unrevoked certificate
        site_init.refresh_crl(folder, days=30)  # `lanectl site crl`
        broker.reload()
        assert wait_until(lambda: outcome() == "connected")


# -- the agent's publisher over mqtts:// -------------------------------------------------------


def produce(outbox: Outbox, count: int) -> None:
    for n in range(count):
        outbox.add_event("vehicle_passed", {"n": n}, transit_id=f"t-{n}", mono_ms=n,
                         wall_ms=int(time.time() * 1000), clock_synced=True)


def publisher(outbox: Outbox, url: str, tls: TlsFiles, lane: str) -> Publisher:
    sender = Publisher(outbox, broker_url=url, site=SITE, lane=lane, tls=tls,
                       reconnect=ReconnectJitter(first_min_s=0.1, first_max_s=0.2, max_s=0.5))
    sender.start()
    sender.wake()
    return sender


def test_the_publisher_delivers_over_mutual_tls(
    site: Path, broker: MosquittoBroker, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", site=SITE, lane="exit-01", agent_version="9.9.9")
    with IngestWorker(broker.url, tls=tls_of(site, site_init.BACKEND_CN)) as backend:
        sender = publisher(outbox, broker.url, tls_of(site, "exit-01"), "exit-01")
        try:
            produce(outbox, 20)
            sender.wake()
            assert backend.wait_for(lambda events: len(events) == 20, timeout=TIMEOUT)
            assert [e["seq"] for e in backend.events("exit-01")] == list(range(1, 21))
            assert wait_until(lambda: sender.status()["pending"] == 0)  # the ack came back
            assert sender.status()["connected"] is True
        finally:
            sender.stop()
            outbox.close()


@pytest.mark.parametrize("refusal", ["revoked", "foreign_ca", "untrusted_broker"])
def test_a_refused_lane_keeps_its_events_and_delivers_them_with_a_valid_cert(
    tmp_path: Path, refusal: str
) -> None:
    folder = tmp_path / "site"
    site_init.init_site(folder, site=SITE, lanes=["exit-01"])
    other = tmp_path / "other"
    site_init.init_site(other, site=SITE, lanes=["exit-01"])
    good = tls_of(folder, "exit-01")
    if refusal == "revoked":
        site_init.revoke(folder, "exit-01")
        bad = good
    elif refusal == "foreign_ca":
        bad = dataclasses.replace(tls_of(other, "exit-01"), ca_file=good.ca_file)
    else:
        bad = dataclasses.replace(good, ca_file=tls_of(other, "exit-01").ca_file)
    config = folder / "broker" / "mosquitto.conf"
    outbox = Outbox(tmp_path / "outbox.db", site=SITE, lane="exit-01", agent_version="9.9.9")
    with MosquittoBroker(workdir=tmp_path / "broker", config_file=config) as broker, \
            IngestWorker(broker.url, tls=tls_of(folder, site_init.BACKEND_CN)) as backend:
        produce(outbox, 30)
        sender = publisher(outbox, broker.url, bad, "exit-01")
        try:
            assert wait_until(lambda: sender.status()["connect_failures"] >= 2)  # retrying
            status = sender.status()
            assert status["connected"] is False
            assert status["pending"] == 30
            assert "TLS" in status["last_error"]  # the alarm the status page shows
        finally:
            sender.stop()
        assert backend.events() == []
        if refusal == "revoked":
            site_init.issue(folder, "exit-01")  # the technician's fix: a fresh certificate
        sender = publisher(outbox, broker.url, tls_of(folder, "exit-01"), "exit-01")
        try:
            assert backend.wait_for(lambda events: len(events) == 30, timeout=TIMEOUT)
            assert [e["seq"] for e in backend.events("exit-01")] == list(range(1, 31))
            assert wait_until(lambda: sender.status()["pending"] == 0)
        finally:
            sender.stop()
            outbox.close()


def test_unusable_tls_files_are_a_config_error_naming_them(site: Path) -> None:
    files = tls_of(site, "exit-01")
    mismatched = dataclasses.replace(files, key_file=tls_of(site, "exit-02").key_file)
    address = parse_broker_url("mqtts://127.0.0.1:8883")
    with pytest.raises(ConfigError, match=r"exit-02\.key"):
        make_client("exit-01", address, mismatched)
    with pytest.raises(ConfigError, match=r"missing\.crt"):
        make_client("exit-01", address, dataclasses.replace(files, cert_file=site / "missing.crt"))


# -- the generated agent configuration ---------------------------------------------------------


def test_the_generated_agent_config_loads_and_its_lane_connects(
    site: Path, broker: MosquittoBroker, tmp_path: Path
) -> None:
    # A lane no other test publishes for: retained acks stay on the shared broker.
    path = site / "lanes" / "entry-01" / "agent.toml"
    text = path.read_text()
    if "\ngate = " not in text:  # the technician sets the lane's gate before it runs
        path.write_text(text.replace("[lane]\n", '[lane]\ngate = "G1"\n', 1))
    config = load_config(path)
    assert config.lane.site == SITE and config.lane.lane == "entry-01"
    assert config.mqtt.broker == "mqtts://broker.bz01.example:8883"
    assert not config.mqtt.lab
    # Wire the lane the way the agent does, pointed at the test broker ("localhost" is in
    # the broker certificate's names).
    _, trust = gp1.write_keypair(tmp_path / "keys")
    config = dataclasses.replace(
        config,
        lane=dataclasses.replace(config.lane, state_dir=tmp_path / "state"),
        io_board=dataclasses.replace(config.io_board, url="loop://"),
        weighbridge=dataclasses.replace(config.weighbridge, url="loop://"),
        camera=dataclasses.replace(config.camera, source=f"dir://{tmp_path / 'frames'}"),
        passes=dataclasses.replace(config.passes, trust_list=trust, ledger=tmp_path / "l.db"),
        mqtt=dataclasses.replace(config.mqtt, broker=f"mqtts://localhost:{broker.port}"),
    )
    with IngestWorker(broker.url, tls=tls_of(site, site_init.BACKEND_CN)) as backend:
        devices = open_devices(config, time.monotonic)
        try:
            devices.publisher.start()
            produce(devices.outbox, 3)
            devices.publisher.wake()
            assert backend.wait_for(lambda events: len(events) == 3, timeout=TIMEOUT)
            assert [e["lane"] for e in backend.events()] == ["entry-01"] * 3
        finally:
            devices.close()
