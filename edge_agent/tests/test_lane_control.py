"""The real agent process and its control socket, driven by ``lanectl lane`` as a program.

The agent runs as ``python -m edge_agent run`` on the in-package fakes (the IO board is the
real firmware core); every lanectl call is its own process on the real unix socket. A
restart keeps the mode; every change is an ``evt/lane_mode`` record in the outbox.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from simulators.scenarios import DEMO
from simulators.virtual_lane import VirtualLane

if TYPE_CHECKING:
    from conftest import WaitUntil

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A lane file on fakes (keys, trust list) with its own status port and control socket."""
    VirtualLane(tmp_path, DEMO).close()
    path = tmp_path / "agent.toml"
    text = re.sub(r"(?ms)^\[(status|control)\].*?(?=^\[|\Z)", "", path.read_text())
    text += (f'\n[status]\nlisten = "127.0.0.1:{_free_port()}"\n\n'
             f'[control]\nsocket = "{tmp_path / "run" / "control.sock"}"\n')  # fmt: skip
    path.write_text(text)
    return path


class Agent:
    def __init__(self, config: Path, wait_until: WaitUntil) -> None:
        self.socket = config.parent / "run" / "control.sock"
        self.log = (config.parent / "agent.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        assert wait_until(lambda: self.socket.exists() or self.process.poll() is not None,
                          timeout=60), "the agent never made its control socket"
        assert self.process.poll() is None, (config.parent / "agent.log").read_text()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def agents(config: Path, wait_until: WaitUntil) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        if agent.process.poll() is None:
            agent.stop()


def lanectl(
    sock: Path, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "host_tools.lanectl", "lane", *args,
         "--socket", str(sock)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def lane_mode_records(state_dir: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(state_dir / "outbox.sqlite")
    try:
        rows = db.execute("SELECT payload FROM events WHERE topic LIKE '%/evt/lane_mode' "
                          "ORDER BY seq").fetchall()  # fmt: skip
    finally:
        db.close()
    return [json.loads(row[0]) for row in rows]


def test_lanectl_sets_the_mode_the_agent_keeps_across_a_restart(
    config: Path, agents: list[Agent], wait_until: WaitUntil
) -> None:
    agents.append(Agent(config, wait_until))
    sock = agents[0].socket
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660

    shown = lanectl(sock, "mode")
    assert shown.returncode == 0, shown.stderr
    assert "mode        in_service" in shown.stdout and "technician  unknown" in shown.stdout

    changed = lanectl(sock, "mode", "out_of_service", "--reason", "deck repair",
                      "--by", "J. Doe", "--json")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    doc = as_json(changed)
    assert doc["ok"] and doc["detail"] == "lane mode out_of_service (was in_service)"
    assert doc["mode"]["by"] == "J. Doe" and doc["mode"]["uid"] == os.getuid()

    refused = lanectl(sock, "barrier", "open")
    assert refused.returncode == 1
    assert "refused: the barrier is driven by hand only in manual mode" in refused.stdout

    agents[0].stop()
    records = lane_mode_records(config.parent / "state")
    assert [r["data"]["mode"] for r in records] == ["out_of_service"]
    data = records[0]["data"]
    assert (data["previous"], data["reason"], data["via"]) == ("in_service", "deck repair",
                                                               "local")  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["since"])

    agents.append(Agent(config, wait_until))
    again = as_json(lanectl(sock, "mode", "--json"))
    assert again["mode"]["mode"] == "out_of_service" and again["mode"]["by"] == "J. Doe"
    assert again["mode"]["since"] == data["since"]


def test_lanectl_says_what_is_wrong_without_a_traceback(
    config: Path, agents: list[Agent], wait_until: WaitUntil
) -> None:
    sock = config.parent / "run" / "control.sock"
    missing = lanectl(sock, "mode")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"is the agent running? no agent answers on socket {sock}" in missing.stderr

    agents.append(Agent(config, wait_until))
    no_reason = lanectl(sock, "mode", "maintenance")
    assert no_reason.returncode == 2 and "give --reason TEXT" in no_reason.stderr
    unknown = lanectl(sock, "mode", "closed", "--reason", "x")
    assert unknown.returncode == 2 and "invalid choice: 'closed'" in unknown.stderr
    signed = as_json(lanectl(sock, "sign-in", "K. Tech", "--json"))
    assert signed["ok"] and signed["mode"]["technician"] == "K. Tech"
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        # A socket of another owner; root without its capabilities is then one more user
        # outside the agent's group.
        os.chown(sock, 65534, 65534)
        prefix = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--")
    else:
        sock.chmod(0)
    denied = lanectl(sock, "mode", prefix=prefix)
    assert denied.returncode == 1 and "Traceback" not in denied.stderr
    assert f"permission denied on socket {sock}: join group gatelane" in denied.stderr
