"""What the agent tells systemd, decided in virtual time; and sent to a real notify socket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cysystemd.daemon import Notification

from edge_agent.lifecycle import Stop, readiness
from edge_agent.notify import LaneSummary, LoopHealth, Notifier, Pulse, watchdog_interval


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_only_for_us() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval({}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid=7) is None


def test_a_turning_healthy_loop_pings_at_the_interval_and_sends_status_changes() -> None:
    pulse = Pulse(watchdog_s=5.0, status_every_s=1.0)
    line = "lane exit-03: idle, in_service; broker up, outbox 0"
    assert pulse.turn(0.0, problems=[], status=lambda: line) == [
        (Notification.STATUS, line), (Notification.WATCHDOG, None)]
    assert pulse.turn(0.2, problems=[], status=lambda: line) == []
    assert pulse.turn(1.2, problems=[], status=lambda: line) == []  # unchanged: not resent
    assert pulse.turn(5.0, problems=[], status=lambda: line) == [(Notification.WATCHDOG, None)]
    busy = "lane exit-03: loading, in_service; broker up, outbox 2"
    assert pulse.turn(5.1, problems=[], status=lambda: busy) == []  # at most once a second
    assert pulse.turn(6.0, problems=[], status=lambda: busy) == [(Notification.STATUS, busy)]


def test_problems_stop_the_pings_and_show_in_the_status() -> None:
    pulse = Pulse(watchdog_s=1.0, status_every_s=0.0)
    pulse.turn(0.0, problems=[], status=lambda: "ok")
    notes = pulse.turn(2.0, problems=["decision loop faulting on every turn for 31 s"],
                       status=lambda: "ok")
    assert notes == [(Notification.STATUS,
                      "unhealthy: decision loop faulting on every turn for 31 s")]
    assert pulse.withheld
    assert pulse.turn(3.0, problems=[], status=lambda: "ok") == [
        (Notification.STATUS, "ok"), (Notification.WATCHDOG, None)]


def test_without_a_watchdog_nothing_pings() -> None:
    pulse = Pulse(watchdog_s=None)
    assert pulse.turn(0.0, problems=[], status=lambda: "x") == [(Notification.STATUS, "x")]
    assert pulse.turn(100.0, problems=[], status=lambda: "x") == []


def test_the_status_line_is_only_built_when_one_may_go_out() -> None:
    built: list[float] = []
    pulse = Pulse(watchdog_s=None, status_every_s=1.0)

    def status() -> str:
        built.append(0.0)
        return "x"

    for step in range(10):
        pulse.turn(step * 0.1, problems=[], status=status)
    assert len(built) == 1


def test_loop_health_stuck_and_faulting() -> None:
    health = LoopHealth(stall_s=10.0, faulting_s=30.0)
    assert health.problems(0.0) == ["decision loop not running"]
    health.turned(0.0, faults=0)
    assert health.problems(5.0) == []
    assert health.problems(12.0) == ["decision loop stuck for 12 s"]
    for step in range(1, 40):  # a stage fails on every turn
        health.turned(float(step), faults=step)
    assert health.problems(39.0) == ["decision loop faulting on every turn for 38 s"]
    health.turned(40.0, faults=39)  # one clean turn: it recovered
    assert health.problems(40.0) == []


def test_an_occasional_fault_is_not_a_failing_loop() -> None:
    health = LoopHealth(stall_s=10.0, faulting_s=30.0)
    faults = 0
    for step in range(100):
        faults += step % 3 == 0
        health.turned(step * 0.5, faults=faults)
    assert health.problems(50.0) == []


def test_the_status_line_reads_like_systemctl_should_show_it() -> None:
    summary = LaneSummary("exit-03", "idle", "in_service", broker_up=True, outbox=0)
    assert summary.line() == "lane exit-03: idle, in_service; broker up, outbox 0"
    waiting = LaneSummary("exit-03", "waiting for clock sync", None, False, 12)
    assert waiting.line() == "lane exit-03: waiting for clock sync; broker down, outbox 12"


def test_readiness_names_each_reason() -> None:
    assert readiness("running", [], board_up=True, camera_up=True, storage_error=None) == []
    assert readiness("waiting for clock sync", [], board_up=True, camera_up=None,
                     storage_error=None) == ["lane waiting for clock sync"]
    assert readiness("running", ["decision loop stuck for 12 s"], board_up=False,
                     camera_up=False, storage_error="disk full") == [
        "decision loop stuck for 12 s", "io board link down", "camera down",
        "storage fault: disk full"]


def test_a_stop_describes_itself() -> None:
    stop = Stop("stopped", "SIGTERM")
    assert str(stop) == "stopped, SIGTERM"
    assert stop.event("idle") == {"reason": "stopped", "by": "SIGTERM", "detail": None,
                                  "state": "idle"}


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_the_notifier_sends_sd_notify_datagrams(notify_socket: socket.socket) -> None:
    notifier = Notifier({**os.environ, "WATCHDOG_USEC": "4000000"})
    assert notifier.enabled and notifier.watchdog_s == 2.0
    notifier.ready("lane exit-03: starting")
    notifier.send([(Notification.WATCHDOG, None)])
    notifier.stopping("lane exit-03: stopping (stopped, SIGTERM)")
    received = [notify_socket.recv(4096) for _ in range(5)]
    assert received == [b"READY=1", b"STATUS=lane exit-03: starting", b"WATCHDOG=1",
                        b"STOPPING=1", b"STATUS=lane exit-03: stopping (stopped, SIGTERM)"]


def test_without_notify_socket_the_notifier_does_nothing() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "4000000"})
    assert not notifier.enabled and notifier.watchdog_s is None
    notifier.ready("x")  # no socket to write to, no error
