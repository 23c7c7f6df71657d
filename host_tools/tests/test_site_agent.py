"""The lane folder ``lanectl site init`` writes is one the agent starts with: only the device
URLs and folders this machine has are swapped in (fakes for the IO board and the indicator,
a frame folder for the camera), and ``lanectl status`` then reads the running agent."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.protocols import gp1
from host_tools import lanectl

ON_THIS_MACHINE = [  # setting in the generated file -> what this test machine has
    (r'(?m)^url = "/dev/serial/by-id/usb-MicroPython[^"]*"', 'url = "fake-ioboard://exit-03"'),
    (r'(?m)^url = "/dev/serial/by-id/usb-FTDI[^"]*"', 'url = "fake-indicator://exit-03"'),
    (r'(?m)^source = "picamera2:"', 'source = "dir://{frames}"'),
    (r'(?m)^state_dir = "[^"]*"', 'state_dir = "{state}"'),
    (r'(?m)^listen = "[^"]*"', 'listen = "127.0.0.1:{port}"'),
    (r'(?m)^# socket = "[^"]*/control.sock"', 'socket = "{state}/control.sock"'),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_agent_starts_from_a_generated_lane_folder(tmp_path: Path) -> None:
    _, trust = gp1.write_keypair(tmp_path / "customs")
    site = tmp_path / "site"
    assert lanectl.main(["site", "init", "--site", "BZ01", "--lanes", "exit-03=G3", "--trust",
                         str(trust), "--out", str(site)]) == 0  # fmt: skip
    generated = site / "lanes" / "exit-03" / "agent.toml"
    text, port = generated.read_text(encoding="utf-8"), free_port()
    for pattern, value in ON_THIS_MACHINE:
        text, count = re.subn(pattern, value.format(frames=tmp_path / "frames",
                                                    state=tmp_path / "state", port=port), text)
        assert count == 1, pattern
    (tmp_path / "frames").mkdir()
    config = generated.with_name("here.toml")  # beside it: its relative paths still hold
    config.write_text(text, encoding="utf-8")
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.service", "run", "--config",
                              str(config)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            status = subprocess.run([sys.executable, "-m", "host_tools.lanectl", "status",
                                     "--config", str(config), "--json"],
                                    capture_output=True, text=True, timeout=60)  # fmt: skip
            if status.returncode == 0 or agent.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status.returncode == 0, (status.stdout, agent.poll())
        doc = json.loads(status.stdout)
        assert (doc["site"], doc["lane"]) == ("BZ01", "exit-03")
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err
    assert "Traceback" not in err
