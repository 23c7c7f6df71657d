"""Fixtures shared by every test folder: a private Mosquitto, the backend simulator on it, lanes
(the real SQLite outbox + publisher) sending to it, and a deadline poll; and the test tiers.

A test module that needs a differently configured broker (TLS, ACL) defines its own ``broker``,
which takes precedence over this one.

Tiers: a test that needs a broker is marked ``broker`` (it uses one of the broker fixtures, or
its module starts Mosquitto itself); a test whose module starts another program (the agent, the
MicroPython firmware, ``lanectl``) is marked ``process``. ``make check`` runs everything else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.ingest import IngestWorker
from edge_agent.telemetry.mqtt import ReconnectJitter
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher
from simulators.broker import MosquittoBroker
from simulators.polling import wait_until as poll_until

SITE, LANE = "site-1", "lane-01"
AGENT_VERSION = "9.9.9"
# Tests restart brokers on purpose: a lane must come back in well under a second.
FAST_RECONNECT = {"reconnect": ReconnectJitter(first_min_s=0.1, first_max_s=0.2, max_s=0.5)}
# A realistic passage, so byte budgets (disk quota, windows) see real-sized rows.
PASSAGE = {"plate": "AB-123-CD", "gross_kg": 31_240}

WaitUntil = Callable[..., bool]


class LaneRig:
    """One lane wired as the app wires it: an outbox and its publisher, started."""

    def __init__(
        self,
        path: Path,
        broker_url: str,
        *,
        site: str,
        lane: str,
        agent_version: str,
        max_bytes: int | None,
        publisher_args: dict[str, Any],
    ) -> None:
        self.path, self.broker_url, self.site, self.lane = path, broker_url, site, lane
        self.settings: dict[str, Any] = {
            "site": site,
            "lane": lane,
            "agent_version": agent_version,
            "max_bytes": max_bytes,
            "publisher_args": publisher_args,
        }
        self.outbox = Outbox(
            path, site=site, lane=lane, agent_version=agent_version, max_bytes=max_bytes
        )
        self.publisher = Publisher(
            self.outbox,
            broker_url=broker_url,
            site=site,
            lane=lane,
            **{**FAST_RECONNECT, **publisher_args},
        )
        self.publisher.start()
        self._produced = 0
        self._closed = False

    def produce(
        self, count: int, *, wall_ms: int | None = None, synced: bool = True
    ) -> list[dict[str, Any]]:
        """Commit ``count`` vehicle_passed events, waking the publisher after each commit.

        Their ``data.n`` runs on across calls. ``wall_ms``/``synced`` stand for the lane's wall
        clock (a stepped or unsynced clock when given); returns the committed envelopes.
        """
        envelopes = []
        for _ in range(count):
            n = self._produced
            self._produced += 1
            envelope = self.outbox.add_event(
                "vehicle_passed",
                {"n": n, **PASSAGE},
                transit_id=f"t-{n}",
                mono_ms=int(time.monotonic() * 1000),
                wall_ms=int(time.time() * 1000) if wall_ms is None else wall_ms,
                clock_synced=synced,
            )
            assert envelope is not None  # only sheddable events are ever refused
            envelopes.append(envelope)
            self.publisher.wake()
        return envelopes

    def status(self) -> dict[str, Any]:
        return self.publisher.status()

    def drained(self) -> bool:
        """True when the outbox holds no event: every one was watermarked by the backend."""
        return bool(self.outbox.stats()["events"] == 0)

    def wait_stored(self, backend: IngestWorker, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``backend`` holds at least ``count`` of this lane's events."""
        return backend.wait_for(
            lambda events: sum(event["lane"] == self.lane for event in events) >= count, timeout
        )

    def deliver(self, backend: IngestWorker, count: int, timeout: float = 30.0) -> bool:
        """Produce ``count`` events, then wait until ``backend`` holds this lane's every seq so far.

        Seq runs on over restarts of the same outbox, so this counts what earlier runs sent too.
        """
        last_seq: int = self.produce(count)[-1]["seq"]
        return self.wait_stored(backend, last_seq, timeout)

    def close(self) -> None:
        """Stop the publisher (clean offline state), close the outbox; again: a no-op."""
        if self._closed:
            return
        self._closed = True
        self.publisher.stop()
        self.outbox.close()


class LaneRigs:
    """Opens lanes (by default on one broker, outbox files under one folder) and closes them all."""

    def __init__(self, workdir: Path, broker_url: str) -> None:
        self._workdir = workdir
        self._broker_url = broker_url
        self._opened: list[LaneRig] = []

    def __call__(
        self,
        *,
        lane: str = LANE,
        site: str = SITE,
        broker_url: str | None = None,
        agent_version: str = AGENT_VERSION,
        max_bytes: int | None = None,
        **publisher_args: Any,
    ) -> LaneRig:
        """Open and start a lane, its outbox at ``<workdir>/<lane>.db``.

        ``publisher_args`` go to ``Publisher``, over a fast reconnect.
        """
        rig = LaneRig(
            self._workdir / f"{lane}.db",
            broker_url or self._broker_url,
            site=site,
            lane=lane,
            agent_version=agent_version,
            max_bytes=max_bytes,
            publisher_args=publisher_args,
        )
        self._opened.append(rig)
        return rig

    def reopen(self, rig: LaneRig) -> LaneRig:
        """The lane's agent restarted: close ``rig`` (if still open), open its outbox again."""
        rig.close()
        reopened = LaneRig(rig.path, rig.broker_url, **rig.settings)
        self._opened.append(reopened)
        return reopened

    def close_all(self) -> None:
        for rig in reversed(self._opened):
            rig.close()


_BROKER_FIXTURES = frozenset({"broker", "backend", "lane_rig", "agent", "demo_run"})
# Modules whose tests start another program: MicroPython, the agent, lanectl, a whole lane.
_PROCESS_MODULES = (
    "edge_agent/tests/test_service_process.py", "edge_agent/tests/test_service_journal.py",
    "edge_agent/tests/test_unit_file.py", "edge_agent/tests/test_lane_control.py",
    "firmware/tests/test_fw_micropython.py", "firmware/tests/test_fw_types.py",
    "host_tools/tests/test_fw_deploy.py", "host_tools/tests/test_io_cli.py",
    "host_tools/tests/test_pass_cli.py", "host_tools/tests/test_fw_install.py",
    "host_tools/tests/test_status_cli.py", "host_tools/tests/test_weigh_ports.py",
    "host_tools/tests/test_site_agent.py",
    "simulators/tests/test_iohost.py",
    "host_tools/tests/test_agent_cli.py", "deb/tests/test_agent_update.py",
    "simulators/tests/test_iohost_faults.py", "redteam/test_config_files.py",
    "redteam/test_indicators.py", "redteam/test_passes.py", "redteam/test_storage_truck.py",
    "edge_agent/tests/test_camera_devices.py", "edge_agent/tests/test_soak_short.py",
    "redteam/test_trucks.py", "hil_tests/", "deb/tests/test_deb.py",
    "edge_agent/tests/test_config_cli.py", "edge_agent/web/tests/test_lane_page_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.as_posix()
        module = getattr(item, "module", None)
        if _BROKER_FIXTURES & set(getattr(item, "fixturenames", ())) or (
            module is not None and hasattr(module, "MosquittoBroker")
        ):
            item.add_marker(pytest.mark.broker)
        if any(part in path for part in _PROCESS_MODULES):
            item.add_marker(pytest.mark.process)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(workdir=tmp_path / "broker") as running:
        yield running


@pytest.fixture
def backend(broker: MosquittoBroker) -> Iterator[IngestWorker]:
    with IngestWorker(broker.url) as sim:
        yield sim


@pytest.fixture
def lane_rig(tmp_path: Path, broker: MosquittoBroker) -> Iterator[LaneRigs]:
    """Opens lanes on the shared broker (``broker_url=`` for another); all closed at teardown.

    It depends on ``broker`` so that its lanes close before that broker stops. A lane on a
    broker the test runs itself should be closed by the test while that broker still runs.
    """
    rigs = LaneRigs(tmp_path, broker.url)
    yield rigs
    rigs.close_all()


@pytest.fixture
def wait_until() -> WaitUntil:
    """``wait_until(condition, timeout=30.0) -> bool``: poll with a deadline, never a bare sleep."""
    return poll_until
