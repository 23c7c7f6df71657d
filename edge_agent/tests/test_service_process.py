"""The real ``edge-agent run`` on fake devices, as systemd runs it: a notify socket of our own
(``NOTIFY_SOCKET``, ``WATCHDOG_USEC``), signals, exit codes, the files it leaves, and what the
backend sees of a planned stop and of a crash (real Mosquitto)."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.ingest import IngestWorker
from edge_agent.app import LaneAgent
from edge_agent.clock import judge_kernel, read_kernel_clock
from edge_agent.config import load_config
from edge_agent.notify import LoopHealth, Notifier, Service
from edge_agent.tests.agent_files import LANE, REPO, AgentProcess, lane_config, write_config
from simulators.broker import MosquittoBroker
from simulators.polling import wait_until

EX_CONFIG = 78


class NotifySocket:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[str] = []

    def _drain(self) -> None:
        try:
            while True:
                self.received.append(self.sock.recv(65536).decode())
        except TimeoutError:
            pass

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 30.0) -> bool:
        def seen() -> bool:
            self._drain()
            return predicate(self.received)

        return wait_until(seen, timeout=timeout)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def _after(lines: list[str], marker: str) -> list[str]:
    return lines[lines.index(marker) + 1:] if marker in lines else []


def test_ready_status_watchdog_reload_and_a_clean_stop(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_config(tmp_path / "lane")
    agent = AgentProcess(config, umask=0, env={
        "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})
    try:
        assert notify.wait_for(lambda got: "READY=1" in got), agent.output()
        assert notify.wait_for(lambda got: sum(m == "WATCHDOG=1" for m in got) >= 2)
        assert notify.wait_for(lambda got: any(
            m.startswith("STATUS=lane exit-03: idle, in_service; broker down, outbox ")
            for m in got)), notify.received

        # A broken file on SIGHUP is refused; the lane runs on.
        good = config.read_text()
        config.write_text(good.replace("health_interval_s = 30", "health_interval_s = -1"))
        agent.send(signal.SIGHUP)
        assert wait_until(lambda: "refused on reload" in agent.output(), timeout=30.0)
        # A tunable value applies now; a device URL waits for a restart.
        config.write_text(good.replace("health_interval_s = 30", "health_interval_s = 5")
                          .replace("fake-ioboard://svc", "fake-ioboard://other"))
        agent.send(signal.SIGHUP)
        assert wait_until(lambda: "re-read: applied" in agent.output(), timeout=30.0)
        assert notify.wait_for(lambda got: "READY=1" in _after(got, "RELOADING=1"))
        pings = sum(m == "WATCHDOG=1" for m in notify.received)
        assert notify.wait_for(lambda got: sum(m == "WATCHDOG=1" for m in got) > pings)
    finally:
        code = agent.stop(signal.SIGTERM)
    notify.wait_for(lambda got: any(m.startswith("STATUS=lane exit-03: stopping") for m in got),
                    timeout=5.0)
    out = agent.output()
    assert code == 0, out
    assert "Traceback" not in out
    [refused] = [line for line in out.splitlines() if "refused on reload" in line]
    assert "mqtt.health_interval_s" in refused and "the running config is kept" in refused
    [applied] = [line for line in out.splitlines() if "re-read: applied" in line]
    assert applied.endswith("applied mqtt.health_interval_s; needs a restart: io_board.url "
                            "(running values kept)")
    assert "STOPPING=1" in notify.received
    assert "STATUS=lane exit-03: stopping (stopped, SIGTERM)" in notify.received
    assert "lane exit-03 stopped (stopped, SIGTERM)" in out

    # Started with umask 0, the agent still keeps its files from other users.
    files = [p for p in (tmp_path / "lane" / "state").rglob("*") if p.is_file()]
    assert any(p.name == "outbox.sqlite" for p in files)
    world = {p.name: oct(p.stat().st_mode) for p in files if p.stat().st_mode & stat.S_IRWXO}
    assert world == {}


def test_the_lane_waits_for_the_clock_and_without_watchdog_usec_never_pings(
    tmp_path: Path, notify: NotifySocket
) -> None:
    synced = judge_kernel(read_kernel_clock())  # this machine's clock, as the agent sees it
    config = write_config(tmp_path / "lane", extra="\n[clock]\nwait_for_sync_s = 1\n")
    agent = AgentProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        assert notify.wait_for(lambda got: any(m.startswith("STATUS=lane exit-03: idle")
                                               for m in got)), agent.output()
    finally:
        assert agent.stop(signal.SIGINT) == 0, agent.output()
    assert "READY=1" in notify.received and "WATCHDOG=1" not in notify.received
    out = agent.output()
    assert "lane exit-03 stopped (stopped, SIGINT)" in out
    waited = "wall clock not synchronised after 1 s: the lane opens" in out
    assert waited is not synced
    if not synced:
        statuses = [m for m in notify.received if m.startswith("STATUS=")]
        # The outbox holds the start's transaction records already (docs/records.md).
        waiting = next(m for m in statuses if m.startswith(
            "STATUS=lane exit-03: waiting for clock sync, in_service; broker down, outbox "))
        first_idle = next(m for m in statuses if m.startswith("STATUS=lane exit-03: idle"))
        assert statuses.index(waiting) < statuses.index(first_idle)


@pytest.mark.parametrize("form", [["run", "--config"], ["--config"]])
def test_a_config_error_exits_78_with_one_line(tmp_path: Path, form: list[str]) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(lane_config(tmp_path).replace('gate = "G3"\n', 'gate = "G3"\ngaet = 1\n'))
    done = subprocess.run([sys.executable, "-m", "edge_agent", *form, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == EX_CONFIG
    assert done.stdout == "" and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"edge-agent: {path}: lane.gaet")


def test_a_bad_log_level_option_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(tmp_path / "x.toml"),
         "--log-level", "loud"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 64 and "Traceback" not in done.stderr
    assert done.stderr == ("edge-agent: --log-level: log level 'loud' is not one of debug, "
                           "info, warning, error\n")


def test_the_backend_tells_a_planned_stop_from_a_crash(
    tmp_path: Path, broker: MosquittoBroker, backend: IngestWorker
) -> None:
    fast = "keepalive_s = 1\nreconnect_first_min_s = 0.2\nreconnect_first_max_s = 0.5\n"
    config = write_config(tmp_path / "lane", broker=broker.url, mqtt=fast)

    def online() -> bool:
        return bool((backend.lane_state(LANE) or {}).get("online"))

    agent = AgentProcess(config)
    try:
        assert wait_until(online, timeout=30.0), agent.output()
    finally:
        assert agent.stop(signal.SIGTERM) == 0, agent.output()
    assert wait_until(lambda: backend.offline_history(LANE) == ["planned"], timeout=30.0)
    assert backend.lane_state(LANE) == {"online": False, "boot_id": 1, "reason": "stopped",
                                        "by": "SIGTERM"}
    assert backend.wait_for(lambda events: any(e["type"] == "lane_offline" for e in events),
                            timeout=30.0)
    [offline] = [e for e in backend.events(LANE) if e["type"] == "lane_offline"]
    assert offline["data"] == {"reason": "stopped", "by": "SIGTERM", "detail": None,
                               "state": "idle"}

    crashed = AgentProcess(config)
    try:
        assert wait_until(online, timeout=30.0), crashed.output()
    finally:
        crashed.stop(signal.SIGKILL)
    # The broker sends the last will once 1.5 keepalives pass without a word from the lane.
    assert wait_until(lambda: backend.offline_history(LANE) == ["planned", "crash"],
                      timeout=30.0), backend.offline_history(LANE)
    assert backend.lane_state(LANE) == {"online": False, "boot_id": 2, "reason": "lost"}


def test_a_loop_that_keeps_faulting_stops_the_watchdog_until_it_recovers(
    tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    config = load_config(write_config(tmp_path / "lane"))
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})
    agent = LaneAgent(config, service=Service(notifier, health=LoopHealth(faulting_s=1.0)))
    runner = threading.Thread(target=agent.run, name="lane")
    runner.start()
    try:
        assert notify.wait_for(lambda got: any(m.startswith("STATUS=lane exit-03: idle")
                                               for m in got))

        def storage_gone(now: float) -> None:
            raise OSError("state disk gone")

        with monkeypatch.context() as patch:
            patch.setattr(agent, "_watch_storage", storage_gone)  # faults on every turn
            assert notify.wait_for(lambda got: any(
                m.startswith("STATUS=unhealthy: decision loop faulting on every turn")
                for m in got))
            assert any("faulting" in problem for problem in agent.liveness())
            # Five more turns while unhealthy (each faults once), each one due for a ping.
            turns = agent.faults.counts["storage"] + 5
            assert wait_until(lambda: agent.faults.counts["storage"] >= turns, timeout=30.0)
            notify.wait_for(lambda got: True)  # what those turns sent
            withheld = list(notify.received)
        unhealthy = next(i for i, m in enumerate(withheld) if m.startswith("STATUS=unhealthy"))
        assert "WATCHDOG=1" not in withheld[unhealthy:]
        assert notify.wait_for(lambda got: "WATCHDOG=1" in got[len(withheld):])
        assert agent.liveness() == []
    finally:
        agent.stop(by="test")
        runner.join(30.0)
    assert not runner.is_alive()
