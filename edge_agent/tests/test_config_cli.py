"""``edge-agent check-config FILE`` the way the unit's ExecStartPre and a technician run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from edge_agent import config as config_module

REPO = Path(__file__).resolve().parents[2]
EX_CONFIG = 78  # sysexits.h: the unit does not restart on it


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "check-config", str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shipped_example_asks_for_the_gate_and_then_passes(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    shutil.copy(Path(config_module.__file__).parent / "deploy" / "agent.example.toml", path)
    done = check_config(path)
    assert done.returncode == EX_CONFIG
    [line] = done.stderr.splitlines()
    assert line.startswith(f"edge-agent: {path}: lane.gate: is required")
    path.write_text(path.read_text().replace('# gate = "G3"', 'gate = "G3"', 1))
    done = check_config(path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_every_bad_key_is_on_stderr_in_file_order_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        """\
[lane]
site = "BZ01"
lane = "exit-03"

[io_board]
url = "/dev/ttyACM0"
t_clear_s = 61

[weighbridge]
url = "/dev/ttyUSB0"
frozen_sec = 5

[stauts]
listen = "127.0.0.1:8787"

[camera]
source = "picamera2:"
confirm_frames = "2"

[passes]
trust_list = "trust.json"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
""",
        encoding="utf-8",
    )
    done = check_config(path)
    assert done.returncode == EX_CONFIG, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    named = [line.split(": ")[2] for line in lines]
    assert named == ["lane.gate", "io_board.t_clear_s", "weighbridge.frozen_sec", "stauts",
                     "camera.confirm_frames", "mqtt.broker"]  # fmt: skip
    assert all(line.startswith(f"edge-agent: {path}: ") for line in lines)
    assert "did you mean frozen_s?" in lines[2] and "did you mean [status]?" in lines[3]


def test_a_missing_file_is_one_line_and_a_config_error(tmp_path: Path) -> None:
    done = check_config(tmp_path / "nope.toml")
    assert done.returncode == EX_CONFIG
    assert done.stderr.strip().splitlines() == [
        f"edge-agent: {tmp_path / 'nope.toml'}: configuration file not found"
    ]
