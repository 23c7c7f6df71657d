"""``lanectl io`` and ``lanectl fw`` against the firmware running in the MicroPython unix port."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols import iolink
from edge_agent.protocols.iolink import Barrier
from edge_agent.protocols.iolink_session import BoardSnapshot
from host_tools import io_checks, lanectl
from host_tools.board_session import BoardSession
from simulators.iohost import BarrierLoop, IoBoardHost, micropython_executable

Capture = pytest.CaptureFixture[str]
needs_micropython = pytest.mark.skipif(
    not micropython_executable().exists(), reason="MicroPython unix port not installed"
)


def run(argv: list[str]) -> int:
    return lanectl.main(argv)


@pytest.fixture(scope="module")
def host() -> Iterator[IoBoardHost]:
    with IoBoardHost() as host:
        yield host


@needs_micropython
def test_io_status_json_is_one_snapshot(host: IoBoardHost, capsys: Capture) -> None:
    deadline = time.monotonic() + 5.0
    while True:  # the board may still be in its boot self-check
        assert run(["io", "status", "--port", host.port, "--json"]) == 0
        state = json.loads(capsys.readouterr().out)
        if state["barrier"] != "boot" or time.monotonic() > deadline:
            break
    assert state["type"] in ("snapshot", "state")
    assert state["inputs"]["limit_closed"] is True
    assert state["outputs"]["light_red"] is True and state["outputs"]["barrier_open"] is False
    assert state["barrier"] == "wait_host"  # nobody shook hands: nothing moves


@needs_micropython
def test_io_status_text(host: IoBoardHost, capsys: Capture) -> None:
    assert run(["io", "status", "--port", host.port]) == 0
    out = capsys.readouterr().out
    assert "barrier" in out and "light_red" in out


@needs_micropython
def test_io_watch_shows_input_changes(host: IoBoardHost, capsys: Capture) -> None:
    timer = threading.Timer(0.4, lambda: host.set_inputs(photo_eye=True))
    timer.start()
    try:
        assert run(["io", "watch", "--port", host.port, "--json", "--seconds", "1.2"]) == 0
    finally:
        timer.cancel()
        host.set_inputs(photo_eye=False)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(r["type"] == "state" and r["inputs"]["photo_eye"] for r in records)
    assert all(r["type"] != "snapshot" for r in records)  # heartbeats hidden without --all


@needs_micropython
def test_fw_info_matches_the_running_board(host: IoBoardHost, capsys: Capture) -> None:
    assert run(["fw", "info", "--port", host.port, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["match"] is True
    assert report["board"]["manifest"] == report["release"]["manifest"]
    assert report["board"]["version"] == report["release"]["version"] == "0.1.0"
    assert "interlock.py" in report["release"]["files"]


def test_fw_info_without_a_board(tmp_path: Path, capsys: Capture) -> None:
    assert run(["fw", "info", "--json"]) == 0
    release = json.loads(capsys.readouterr().out)["release"]
    assert len(release["manifest"]) == 16
    assert run(["fw", "info", "--firmware-dir", str(tmp_path)]) == 2
    assert "main.py missing" in capsys.readouterr().err


def test_io_status_bad_port(capsys: Capture) -> None:
    assert run(["io", "status", "--port", "/dev/does-not-exist", "--timeout", "0.2"]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_io_status_times_out_on_a_silent_port(capsys: Capture) -> None:
    start = time.monotonic()
    assert run(["io", "status", "--port", "loop://", "--timeout", "0.3"]) == 2
    assert "no state frame" in capsys.readouterr().err
    assert time.monotonic() - start < 5


# ---- io test / io set: the tool acts as the board's host on a lane with a moving barrier ----
T_CLEAR = "0.2"


@pytest.fixture(scope="module")
def lane() -> Iterator[IoBoardHost]:
    with IoBoardHost() as host, BarrierLoop(host, travel_s=0.3):
        yield host


def run_io_test(host: IoBoardHost, stuck: set[str]) -> tuple[int, dict[str, Any], list[str]]:
    """``lanectl io test --yes`` in a subprocess; a technician thread follows its prompts
    (stderr) by driving the simulated inputs, except those in ``stuck``."""
    command = [sys.executable, "-m", "host_tools.lanectl", "io", "test", "--port", host.port,
               "--yes", "--json", "--step-timeout", "2", "--t-clear", T_CLEAR]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prompts = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        prompts.append(line.rstrip())
        asked = re.match(r">>> (\w+) -> (on|off):", line)
        if asked and asked[1] not in stuck:
            host.set_inputs(**{asked[1]: asked[2] == "on"})
    out = proc.stdout.read()
    assert proc.wait(timeout=60) is not None
    return proc.returncode, json.loads(out), prompts


def changes_since(host: IoBoardHost, mark: int) -> list[tuple[str, bool]]:
    """Relay changes after the first ``mark`` ones (by order, not by clock)."""
    return [(name, on) for _at, name, on in host.output_changes()[mark:]]


@needs_micropython
def test_io_test_passes_on_a_healthy_lane(lane: IoBoardHost) -> None:
    mark = len(lane.output_changes())
    code, report, prompts = run_io_test(lane, stuck=set())
    assert code == 0, (report, prompts)
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["limit_switches", "lamps_at_rest", "photo_eye", "deck_front",
                            "deck_rear", "tech_key", "buzzer", "loop_a_blocks_close",
                            "loop_b_blocks_close", "light_green"]  # fmt: skip
    assert all(c["ok"] for c in checks.values()) and report["ok"] is True
    assert "light_red=1 light_green=0" in checks["lamps_at_rest"]["evidence"]
    assert "green shown, red dark" in checks["light_green"]["evidence"]
    assert "drove the buzzer" in checks["buzzer"]["evidence"]
    # The beams are blocked (off) when asked, then clear again; the key turned on, then off.
    assert any(p.startswith(">>> deck_front -> off:") for p in prompts)
    assert any(p.startswith(">>> deck_rear -> on:") for p in prompts)
    assert any(p.startswith(">>> tech_key -> on:") for p in prompts)
    assert "pending" in checks["loop_a_blocks_close"]["evidence"]
    assert "stayed open" in checks["loop_b_blocks_close"]["evidence"]
    assert "limit_closed=1" in checks["limit_switches"]["evidence"]
    assert any(p.startswith(">>> photo_eye -> on:") for p in prompts)
    assert changes_since(lane, mark).count(("barrier_open", True)) == 2  # one per loop check
    assert lane.inputs()["limit_closed"] and not lane.outputs()["barrier_close"]


@needs_micropython
def test_io_test_fails_with_evidence_when_sensors_are_stuck(lane: IoBoardHost) -> None:
    mark = len(lane.output_changes())
    code, report, _ = run_io_test(lane, stuck={"photo_eye", "loop_b", "deck_rear", "tech_key"})
    assert code == 1 and report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("photo_eye", "deck_rear", "tech_key"):
        assert not checks[name]["ok"]
        assert "no change within 2 s" in checks[name]["evidence"], checks[name]
    assert "stayed off" in checks["photo_eye"]["evidence"]
    assert "stayed on" in checks["deck_rear"]["evidence"]  # a beam reads on while clear
    assert checks["deck_front"]["ok"] and checks["buzzer"]["ok"] and checks["light_green"]["ok"]
    assert checks["loop_a_blocks_close"]["ok"]
    assert not checks["loop_b_blocks_close"]["ok"]
    assert "was not opened" in checks["loop_b_blocks_close"]["evidence"]
    # A loop that never reads occupied never opens the barrier: only loop A's check did.
    assert changes_since(lane, mark).count(("barrier_open", True)) == 1


def test_limit_check_names_what_contradicts() -> None:
    def snap(barrier: str, lim_open: bool, lim_closed: bool) -> BoardSnapshot:
        inputs = dict.fromkeys(iolink.INPUT_NAMES, False)
        inputs.update(limit_open=lim_open, limit_closed=lim_closed)
        outputs = dict.fromkeys(iolink.OUTPUT_NAMES, False)
        return BoardSnapshot(0.0, inputs, outputs, Barrier(barrier), frozenset(), 0, 0)

    assert io_checks.check_limits(snap("closed", False, True)).ok
    assert io_checks.check_limits(snap("open", True, False)).ok
    both = io_checks.check_limits(snap("closed", True, True))
    assert not both.ok and "exactly one" in both.evidence
    assert "contradict" in io_checks.check_limits(snap("closed", True, False)).evidence
    assert "rest at a limit" in io_checks.check_limits(snap("stopped", False, True)).evidence


@needs_micropython
def test_io_set_pulses_the_buzzer(lane: IoBoardHost, capsys: Capture) -> None:
    mark = len(lane.output_changes())
    assert run(["io", "set", "--port", lane.port, "buzzer", "--pulse", "0.3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["result"] == "ok" and report["seen_on"] and report["seen_off"]
    assert report["barrier"] == "closed"
    # A board just booted also reports its start-up state; the pin's last change may land a
    # moment after the report.
    deadline = time.monotonic() + 5.0
    while True:
        changes = changes_since(lane, mark)
        buzzer = [on for name, on in changes if name == "buzzer"]
        if (buzzer[-1:] == [False] and True in buzzer) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert buzzer.count(True) == 1 and buzzer[-2:] == [True, False], changes
    assert ("barrier_open", True) not in changes and ("barrier_close", True) not in changes


@needs_micropython
@pytest.mark.parametrize("output", ["barrier_open", "barrier_close", "light_green"])
def test_io_set_refuses_barrier_relays_and_green(
    lane: IoBoardHost, output: str, capsys: Capture
) -> None:
    mark = len(lane.output_changes())
    assert run(["io", "set", "--port", lane.port, output, "--pulse", "0.5"]) == 2
    assert "not pulsed by hand" in capsys.readouterr().err
    assert run(["io", "set", "--port", lane.port, output, "--pulse", "0.5", "--json"]) == 2
    refusal = json.loads(capsys.readouterr().out)
    assert refusal["ok"] is False and "not pulsed by hand" in refusal["error"]
    assert changes_since(lane, mark) == []


def test_io_set_refuses_durations_outside_the_board_limits(capsys: Capture) -> None:
    for seconds in ("0.005", "20", "nan"):
        argv = ["io", "set", "--port", "/dev/does-not-exist", "buzzer", "--pulse", seconds]
        assert run(argv) == 2
        assert "the board accepts 0.01..10 s" in capsys.readouterr().err


@needs_micropython
def test_a_pulse_the_board_would_refuse_is_never_sent(lane: IoBoardHost) -> None:
    mark = len(lane.output_changes())
    session = BoardSession(lane.port)
    session.open(5.0)
    try:
        for output, seconds in (("barrier_close", 0.5), ("light_green", 0.5), ("buzzer", 20.0)):
            with pytest.raises(LocalProtocolError):
                session.board.pulse_output(output, seconds)
        assert session.result(session.board.pulse_output("light_red", 0.2)) == "ok"
        session.pump(0.4)
    finally:
        session.close()
    assert {name for name, _ in changes_since(lane, mark)} <= {"light_red"}  # red was on
    assert not lane.outputs()["barrier_close"]


def test_io_watch_on_a_silent_port_exits_non_zero(capsys: Capture) -> None:
    assert run(["io", "watch", "--port", "loop://", "--seconds", "0.3"]) == 1
    assert "no frame from loop://" in capsys.readouterr().err
    assert run(["io", "status", "--port", "loop://", "--timeout", "0.2", "--json"]) == 2
    assert "no state frame" in json.loads(capsys.readouterr().out)["error"]


def test_a_busy_port_names_the_process_holding_it(tmp_path: Path) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import serial, sys; s = serial.Serial(sys.argv[1], "
         "exclusive=True); print('held', flush=True); sys.stdin.read()", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        for argv in (["io", "status", "--port", path], ["io", "test", "--port", path, "--yes"],
                     ["weigh", "monitor", "--port", path, "--protocol", "sma"],
                     ["fw", "info", "--port", path]):
            proc = subprocess.run([sys.executable, "-m", "host_tools.lanectl", *argv],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            assert proc.returncode == 2 and "Traceback" not in proc.stderr
            [line] = proc.stderr.splitlines()
            assert "is held by PID" in line and f"PID {holder.pid} (" in line
            assert line.endswith("close that program first")
    finally:
        holder.kill()
        holder.wait(timeout=10)
        os.close(master)
        os.close(slave)
