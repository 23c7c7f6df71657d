"""``lanectl fw install`` on a board that runs plain MicroPython: the MicroPython unix port
with the simulated pins, booting like a blank board (main.py from its filesystem, else the
REPL), gets the firmware and then runs it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host_tools import fw_release, lanectl
from simulators.iohost import FIRMWARE_DIR, BarrierLoop, IoBoardHost, micropython_executable

pytestmark = pytest.mark.skipif(
    not micropython_executable().exists(), reason="MicroPython unix port not installed"
)
Capture = pytest.CaptureFixture[str]
RELEASE, _ = fw_release.manifest(FIRMWARE_DIR)

# A Pico's boot: run main.py from the filesystem (the working directory) when there is one;
# otherwise the script ends and the REPL (served by the host machine module) takes the port.
BLANK_BOOT = """\
import os
import sys

import machine

sys.path[0] = ""
try:
    os.stat("main.py")
except OSError:
    pass
else:
    with open("main.py") as f:
        source = f.read()
    exec(source, {"__name__": "__main__"})
"""


@pytest.fixture
def blank_board(tmp_path: Path) -> Iterator[IoBoardHost]:
    boot = tmp_path / "blank"
    boot.mkdir()
    (boot / "main.py").write_text(BLANK_BOOT, encoding="utf-8")
    shutil.copy(FIRMWARE_DIR / "board.py", boot)  # the pin map the simulator reads
    shutil.copytree(FIRMWARE_DIR / "hostsim", boot / "hostsim")
    with IoBoardHost(firmware_dir=boot) as host, BarrierLoop(host, travel_s=0.3):
        yield host


def install(port: str, capsys: Capture, *extra: str) -> tuple[int, dict[str, Any]]:
    code = lanectl.main(["fw", "install", "--port", port, "--json", "--timeout", "6", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_a_fresh_board_gets_the_firmware_and_runs_it(
    blank_board: IoBoardHost, capsys: Capture
) -> None:
    code, report = install(blank_board.port, capsys)
    assert code == 0, (report, blank_board.log())
    assert report["outcome"] == "installed"
    assert [s["step"] for s in report["steps"]] == [
        "compile", "repl", "copy", "verify", "reset", "self_test"]
    assert "main.py" not in report["before"]["files"]
    assert report["after"] | {"manifest": RELEASE, "version": "0.1.0", "barrier": "closed"} \
        == report["after"]
    assert fw_release.ask_board(blank_board.port, 3.0).manifest == RELEASE
    # Installed once, it is updated with deploy, not installed again over itself.
    code, report = install(blank_board.port, capsys)
    assert code == 1 and report["outcome"] == "refused"
    assert "already runs the gatelane firmware 0.1.0" in report["error"]
    assert "lanectl fw deploy" in report["error"]


def test_a_board_with_another_program_is_left_alone(
    blank_board: IoBoardHost, tmp_path: Path, capsys: Capture
) -> None:
    other = tmp_path / "main.py"
    other.write_text("print('someone else')\n", encoding="utf-8")
    from host_tools.fw_deploy import BoardRepl

    BoardRepl(blank_board.port).run("fs", "cp", str(other), ":main.py")
    code, report = install(blank_board.port, capsys)
    assert code == 1 and report["outcome"] == "refused"
    assert "already holds a main.py" in report["error"] and "--force" in report["error"]
    assert [s["step"] for s in report["steps"]] == ["compile", "repl"]
