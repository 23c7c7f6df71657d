"""A lane's files for running the real ``edge-agent`` on fakes: keys, trust list, config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edge_agent.protocols import gp1
from simulators.broker import free_port

REPO = Path(__file__).resolve().parents[2]
SITE, LANE = "BZ01", "exit-03"


def lane_config(workdir: Path, *, broker: str = "mqtt://127.0.0.1:9", name: str = "svc",
                mqtt: str = "", extra: str = "") -> str:
    """A valid config on fake devices (``fake-ioboard://NAME`` ...), state under ``workdir``."""
    keys = workdir / "keys"
    trust = keys / "trust.json"
    if not trust.exists():
        _issuer, trust = gp1.write_keypair(keys, "ed25519")
    return f"""[lane]
site = "{SITE}"
lane = "{LANE}"
gate = "G3"
state_dir = "{workdir / 'state'}"

[io_board]
url = "fake-ioboard://{name}"

[weighbridge]
url = "fake-indicator://{name}"
protocol = "yaohua-tf0"

[camera]
source = "fake-camera://{name}"

[passes]
trust_list = "{trust}"

[mqtt]
broker = "{broker}"
lab = true
health_interval_s = 30
{mqtt}
[status]
listen = "127.0.0.1:{free_port()}"

[control]
socket = "{workdir / 'control.sock'}"
{extra}"""


def write_config(workdir: Path, **kwargs: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "agent.toml"
    path.write_text(lane_config(workdir, **kwargs), encoding="utf-8")
    return path


class AgentProcess:
    """``edge-agent run --config FILE`` as its own process, its output in ``log``."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None, umask: int = -1,
                 args: tuple[str, ...] = ()) -> None:
        self.log = config.parent / "agent.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "--config", str(config), *args],
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                stdout=out, stderr=subprocess.STDOUT, umask=umask,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``signum`` (if still running) and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)
