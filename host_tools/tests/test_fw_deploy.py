"""``lanectl fw deploy`` / ``fw rollback`` against the real firmware in the MicroPython unix
port: mpremote uploads into the simulated board's filesystem (its working directory), and the
board boots what was deployed there."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host_tools import fw_deploy, fw_release, lanectl
from host_tools.board_session import BoardSession
from simulators.iohost import FIRMWARE_DIR, BarrierLoop, IoBoardHost, micropython_executable

pytestmark = pytest.mark.skipif(
    not micropython_executable().exists(), reason="MicroPython unix port not installed"
)
Capture = pytest.CaptureFixture[str]
INSTALLED, _ = fw_release.manifest(FIRMWARE_DIR)


def report_of(argv: list[str], capsys: Capture) -> tuple[int, dict[str, Any]]:
    code = lanectl.main([*argv, "--json", "--timeout", "4"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def lane() -> Iterator[IoBoardHost]:
    with IoBoardHost() as host, BarrierLoop(host, travel_s=0.3):
        yield host


def release(tmp_path: Path, version: str, name: str = "release") -> Path:
    """A copy of the firmware files with FW_VERSION set to ``version``."""
    folder = tmp_path / name
    folder.mkdir()
    for source in FIRMWARE_DIR.glob("*.py"):
        shutil.copy(source, folder)
    main = (folder / "main.py").read_text(encoding="utf-8")
    assert "FW_VERSION = (0, 1, 0)" in main
    digits = ", ".join(version.split("."))
    (folder / "main.py").write_text(main.replace("(0, 1, 0)", f"({digits})"), encoding="utf-8")
    return folder


def board_manifest(url: str) -> str:
    return fw_release.ask_board(url, 3.0).manifest


def test_version_bump_deploys_then_rolls_back(
    lane: IoBoardHost, tmp_path: Path, capsys: Capture
) -> None:
    folder = release(tmp_path, "0.1.1")
    new_manifest, _ = fw_release.manifest(folder)
    code, report = report_of(["fw", "deploy", "--port", lane.port, "--firmware-dir",
                              str(folder)], capsys)  # fmt: skip
    assert code == 0, report
    assert report["outcome"] == "deployed"
    assert report["before"]["manifest"] == INSTALLED
    assert report["after"] == report["after"] | {"version": "0.1.1", "manifest": new_manifest,
                                                 "barrier": "closed"}  # fmt: skip
    assert [s["step"] for s in report["steps"]] == [
        "compile", "safe_state", "maintenance", "repl", "stage", "verify", "manifest", "swap",
        "reset", "self_test",
    ]  # fmt: skip
    assert board_manifest(lane.port) == new_manifest  # it stays after the self-test

    code, report = report_of(["fw", "rollback", "--port", lane.port], capsys)
    assert code == 0, report
    assert report["outcome"] == "rolled_back"
    assert report["after"]["manifest"] == INSTALLED and report["after"]["version"] == "0.1.0"
    assert not lane.outputs()["barrier_open"] and lane.inputs()["limit_closed"]


def test_a_second_rollback_does_not_roll_forward(
    lane: IoBoardHost, tmp_path: Path, capsys: Capture
) -> None:
    first, second = release(tmp_path, "0.1.1", "first"), release(tmp_path, "0.1.2", "second")
    for folder in (first, second):
        code, report = report_of(["fw", "deploy", "--port", lane.port, "--firmware-dir",
                                  str(folder)], capsys)  # fmt: skip
        assert code == 0 and report["outcome"] == "deployed", report
    code, report = report_of(["fw", "rollback", "--port", lane.port], capsys)
    assert code == 0 and report["outcome"] == "rolled_back", report
    assert report["after"]["version"] == "0.1.1"
    # Again: 0.1.1 stays; swapping app and app.prev once more would bring 0.1.2 back.
    code, report = report_of(["fw", "rollback", "--port", lane.port], capsys)
    assert code == 0 and report["outcome"] == "unchanged", report
    assert "nothing older to roll back to" in report["error"]
    assert report["after"]["version"] == "0.1.1"
    assert board_manifest(lane.port) == fw_release.manifest(first)[0]
    # A deploy clears the mark: rolling back from it returns to the release it replaced.
    code, report = report_of(["fw", "deploy", "--port", lane.port, "--firmware-dir",
                              str(second)], capsys)  # fmt: skip
    assert code == 0, report
    code, report = report_of(["fw", "rollback", "--port", lane.port], capsys)
    assert code == 0 and report["after"]["version"] == "0.1.1", report


def cut_link(folder: Path) -> None:
    """link.py cut short (an interrupted copy): it compiles, the firmware dies importing it."""
    kept = (folder / "link.py").read_text(encoding="utf-8").splitlines(keepends=True)[:30]
    (folder / "link.py").write_text("".join(kept), encoding="utf-8")


def swap_limit_pins(folder: Path) -> None:
    """A wrong pin map: the firmware runs, but sees the barrier open and never reaches closed."""
    board = (folder / "board.py").read_text(encoding="utf-8")
    old = '("limit_open", 5, True),\n    ("limit_closed", 6, True),'
    assert old in board
    new = '("limit_open", 6, True),\n    ("limit_closed", 5, True),'
    (folder / "board.py").write_text(board.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "how"),
    [
        (cut_link, "fell back by itself"),  # crashed on trial: the board resets into the old one
        (swap_limit_pins, "swapped back"),  # runs but fails the self-test: the tool swaps back
    ],
)
def test_a_bad_release_rolls_back_to_the_running_one(
    lane: IoBoardHost, tmp_path: Path, capsys: Capture, damage: Any, how: str
) -> None:
    folder = release(tmp_path, "0.2.0")
    damage(folder)
    code, report = report_of(["fw", "deploy", "--port", lane.port, "--firmware-dir",
                              str(folder)], capsys)  # fmt: skip
    assert code == 1
    assert report["outcome"] == "rolled_back", report
    failed = [s for s in report["steps"] if not s["ok"]]
    assert [s["step"] for s in failed] == ["self_test"]
    assert how in report["steps"][-1]["detail"]
    assert report["after"]["manifest"] == INSTALLED == board_manifest(lane.port)
    assert report["after"]["barrier"] == "closed"
    # The failed release is marked: no rollback returns to it.
    code, report = report_of(["fw", "rollback", "--port", lane.port], capsys)
    assert code == 1 and report["outcome"] == "refused"
    assert "failed its trial" in report["error"]
    assert board_manifest(lane.port) == INSTALLED


def test_deploy_is_refused_unless_the_barrier_rests_closed(
    lane: IoBoardHost, tmp_path: Path, capsys: Capture
) -> None:
    session = BoardSession(lane.port)
    session.open(5.0)
    try:
        assert session.result(session.board.open_barrier()) == "ok"
        assert session.barrier("open", 5.0) is not None
    finally:
        session.close()
    code, report = report_of(["fw", "deploy", "--port", lane.port, "--firmware-dir",
                              str(release(tmp_path, "0.1.1"))], capsys)  # fmt: skip
    assert code == 1 and report["outcome"] == "refused"
    assert "barrier open" in report["error"]
    assert [s["step"] for s in report["steps"]] == ["compile", "safe_state"]
    state = BoardSession(lane.port)
    try:  # no maintenance, nothing changed: the barrier is still up and the board follows a host
        assert state.open(5.0).barrier == "open"
        assert state.board.hello is not None and state.board.hello.manifest == INSTALLED
    finally:
        state.close()


def test_a_file_that_does_not_compile_never_reaches_the_board(
    tmp_path: Path, capsys: Capture
) -> None:
    folder = release(tmp_path, "0.1.1")
    (folder / "ticks.py").write_text("def broken(:\n", encoding="utf-8")
    code, report = report_of(["fw", "deploy", "--port", "loop://", "--firmware-dir",
                              str(folder)], capsys)  # fmt: skip
    assert code == 1 and report["outcome"] == "failed"
    assert [s["step"] for s in report["steps"]] == ["compile"]
    assert "ticks.py does not compile" in report["error"]


def test_a_file_changed_during_the_upload_fails_verification(
    lane: IoBoardHost, tmp_path: Path
) -> None:
    folder = release(tmp_path, "0.1.1")

    def meddle(line: str) -> None:  # someone edits the release folder mid-deploy
        if " repl " in line:
            with (folder / "cobs.py").open("a", encoding="utf-8") as f:
                f.write("# edited\n")

    report = fw_deploy.deploy(lane.port, folder, timeout=4.0, log=meddle)
    assert report.outcome == "rolled_back" and not report.ok
    verify = next(s for s in report.steps if s["step"] == "verify")
    assert not verify["ok"] and "cobs.py" in verify["detail"]
    assert "swap" not in {s["step"] for s in report.steps}
    assert report.after is not None and report.after["manifest"] == INSTALLED


class SocketToPty:
    """``socket://127.0.0.1:PORT`` for the simulated board: one TCP client at a time is
    joined to the board's pty (like a serial device server)."""

    def __init__(self, pty: str) -> None:
        self.pty = pty
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = os.open(self.pty, os.O_RDWR | os.O_NOCTTY)
            try:
                self._join(client, fd)
            finally:
                os.close(fd)
                client.close()

    def _join(self, client: socket.socket, fd: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([client, fd], [], [], 0.1)
            if client in ready:
                data = client.recv(4096)
                if not data:
                    return
                # ACK at once: pyserial's client writes small pieces with Nagle on.
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                os.write(fd, data)
            if fd in ready:
                client.sendall(os.read(fd, 4096))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.server.close()


def test_deploy_over_socket(lane: IoBoardHost, tmp_path: Path, capsys: Capture) -> None:
    relay = SocketToPty(lane.port)
    try:
        folder = release(tmp_path, "0.3.0")
        code, report = report_of(["fw", "deploy", "--port", relay.url, "--firmware-dir",
                                  str(folder)], capsys)  # fmt: skip
    finally:
        with contextlib.suppress(OSError):
            relay.close()
    assert code == 0, report
    assert report["after"]["version"] == "0.3.0"
    assert board_manifest(lane.port) == fw_release.manifest(folder)[0]
