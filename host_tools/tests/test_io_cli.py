"""``lanectl io`` and ``lanectl fw`` against the firmware running in the MicroPython unix port."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from host_tools import cmd_fw, cmd_io
from simulators.iohost import IoBoardHost, micropython_executable

Capture = pytest.CaptureFixture[str]
needs_micropython = pytest.mark.skipif(
    not micropython_executable().exists(), reason="MicroPython unix port not installed"
)


def lanectl(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lanectl")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cmd_io.register(subparsers)
    cmd_fw.register(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture(scope="module")
def host() -> Iterator[IoBoardHost]:
    with IoBoardHost() as host:
        yield host


@needs_micropython
def test_io_status_json_is_one_snapshot(host: IoBoardHost, capsys: Capture) -> None:
    deadline = time.monotonic() + 5.0
    while True:  # the board may still be in its boot self-check
        assert lanectl(["io", "status", "--port", host.port, "--json"]) == 0
        state = json.loads(capsys.readouterr().out)
        if state["barrier"] != "boot" or time.monotonic() > deadline:
            break
    assert state["type"] in ("snapshot", "state")
    assert state["inputs"]["limit_closed"] is True
    assert state["outputs"]["light_red"] is True and state["outputs"]["barrier_open"] is False
    assert state["barrier"] == "wait_host"  # nobody shook hands: nothing moves


@needs_micropython
def test_io_status_text(host: IoBoardHost, capsys: Capture) -> None:
    assert lanectl(["io", "status", "--port", host.port]) == 0
    out = capsys.readouterr().out
    assert "barrier" in out and "light_red" in out


@needs_micropython
def test_io_watch_shows_input_changes(host: IoBoardHost, capsys: Capture) -> None:
    timer = threading.Timer(0.4, lambda: host.set_inputs(photo_eye=True))
    timer.start()
    try:
        assert lanectl(["io", "watch", "--port", host.port, "--json", "--seconds", "1.2"]) == 0
    finally:
        timer.cancel()
        host.set_inputs(photo_eye=False)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(r["type"] == "state" and r["inputs"]["photo_eye"] for r in records)
    assert all(r["type"] != "snapshot" for r in records)  # heartbeats hidden without --all


@needs_micropython
def test_fw_info_matches_the_running_board(host: IoBoardHost, capsys: Capture) -> None:
    assert lanectl(["fw", "info", "--port", host.port, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["match"] is True
    assert report["board"]["manifest"] == report["release"]["manifest"]
    assert report["board"]["version"] == report["release"]["version"] == "0.1.0"
    assert "interlock.py" in report["release"]["files"]


def test_fw_info_without_a_board(tmp_path: Path, capsys: Capture) -> None:
    assert lanectl(["fw", "info", "--json"]) == 0
    release = json.loads(capsys.readouterr().out)["release"]
    assert len(release["manifest"]) == 16
    assert lanectl(["fw", "info", "--firmware-dir", str(tmp_path)]) == 2
    assert "main.py missing" in capsys.readouterr().err


def test_io_status_bad_port(capsys: Capture) -> None:
    assert lanectl(["io", "status", "--port", "/dev/does-not-exist", "--timeout", "0.2"]) == 2
    assert "cannot open" in capsys.readouterr().err


def test_io_status_times_out_on_a_silent_port(capsys: Capture) -> None:
    start = time.monotonic()
    assert lanectl(["io", "status", "--port", "loop://", "--timeout", "0.3"]) == 2
    assert "no state frame" in capsys.readouterr().err
    assert time.monotonic() - start < 5
