"""The agent update's steps on a real folder tree (versions, the ``current`` symlink, the
history file) with a real HTTP status server standing for the agent: update, automatic
rollback, manual rollback, and every refusal before anything changes."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from host_tools import agent_update
from host_tools.agent_package import PackageError, Proof, sha256_of
from host_tools.agent_system import HttpProbe, restart_argv
from host_tools.agent_update import (
    Candidate,
    Layout,
    NothingOlder,
    Refused,
    Report,
    UpdateError,
)
from host_tools.cmd_agent import describe, render_versions


class Agent:
    """A status server on loopback that answers as the version it was last started as."""

    def __init__(self) -> None:
        self.version: str | None = None  # None: stopped
        self.broken: set[str] = set()  # versions that start but never become ready
        self.token: str | None = None
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if agent.token and self.headers.get("Authorization") != f"Bearer {agent.token}":
                    return self._send(401, b"token needed\n")
                if self.path == "/readyz":
                    if agent.version in agent.broken:
                        return self._send(503, b"io board link down\ncamera down\n")
                    return self._send(200, b"ok\n")
                self._send(200, json.dumps({"agent_version": agent.version}).encode())

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.listen = f"127.0.0.1:{self.server.server_address[1]}"


class Lane:
    """The machine as the update sees it: installs like the postinst, restarts the agent.

    Packages are files holding their control fields as JSON; time is virtual (sleep moves it).
    """

    def __init__(self, layout: Layout, agent: Agent) -> None:
        self.layout, self.agent = layout, agent
        self.now = 0.0
        self.restarts = 0
        self.install_error: str | None = None
        self.install_flips = True  # a failing postinst may or may not have flipped already
        self.restart_error: str | None = None

    def architecture(self) -> str:
        return "arm64"

    def package_fields(self, package: Path) -> dict[str, str]:
        try:
            fields: dict[str, str] = json.loads(package.read_text())
        except ValueError:
            raise PackageError(f"{package} is not a Debian package") from None
        return fields

    def compare(self, a: str, b: str) -> int:
        ka, kb = (tuple(int(p) for p in v.split(".")) for v in (a, b))
        return (ka > kb) - (ka < kb)

    def install(self, package: Path) -> None:
        version = self.package_fields(package)["Version"]
        if self.install_error and not self.install_flips:
            raise UpdateError(self.install_error)
        make_version(self.layout, version)
        self.layout.switch(version)
        if self.install_error:
            raise UpdateError(self.install_error)

    def restart(self) -> None:
        self.restarts += 1
        if self.restart_error:
            raise UpdateError(self.restart_error)
        self.agent.version = self.layout.current()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_version(layout: Layout, version: str) -> None:
    entry = layout.versions_dir / version / "bin" / "edge-agent"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text("#!/bin/sh\n")


def package(tmp_path: Path, version: str, *, name: str = "gatelane", arch: str = "arm64") -> Path:
    path = tmp_path / f"{name}_{version}_{arch}.deb"
    path.write_text(json.dumps({"Package": name, "Version": version, "Architecture": arch}))
    return path


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    running = Agent()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def lane(tmp_path: Path, agent: Agent) -> Lane:
    """Version 1.0.0 installed, selected and running."""
    layout = Layout(root=tmp_path / "opt", state_dir=tmp_path / "state")
    agent.broken.clear()
    agent.token = None
    machine = Lane(layout, agent)
    machine.install(package(tmp_path, "1.0.0"))
    machine.restart()
    return machine


def update(lane: Lane, tmp_path: Path, version: str, **kwargs: Any) -> Report:
    pkg = package(tmp_path, version)
    candidate = agent_update.check_package(pkg, layout=lane.layout, system=lane,
                                           expected_sha256=sha256_of(pkg), **kwargs)
    return agent_update.install(candidate, layout=lane.layout, system=lane,
                                probe=HttpProbe(lane.agent.listen), timeout=5)


def test_a_good_version_is_installed_beside_and_runs(lane: Lane, tmp_path: Path) -> None:
    report = update(lane, tmp_path, "1.1.0")
    assert (report.ok, report.outcome, report.running) == (True, "updated", "1.1.0")
    assert lane.agent.version == "1.1.0"
    assert os.readlink(lane.layout.current_link) == "versions/1.1.0"
    assert lane.layout.runnable("1.0.0")  # the previous venv stays
    [entry] = lane.layout.history()
    assert (entry["action"], entry["from"], entry["to"], entry["outcome"]) == (
        "update", "1.0.0", "1.1.0", "updated")
    assert entry["started_at"].startswith("2027-01-15T")
    assert describe(report) == "updated: 1.1.0 runs now (was 1.0.0)"


def test_a_version_that_never_becomes_ready_is_rolled_back(lane: Lane, tmp_path: Path) -> None:
    lane.agent.broken.add("1.2.0")
    report = update(lane, tmp_path, "1.2.0")
    assert (report.ok, report.outcome, report.running) == (False, "rolled-back", "1.0.0")
    assert lane.agent.version == "1.0.0" and lane.restarts == 3
    assert report.error == (
        "version 1.2.0 did not become ready within 5 s: io board link down; camera down")
    assert lane.now >= 5  # it waited the whole timeout before giving up
    [entry] = lane.layout.history()
    assert (entry["from"], entry["to"], entry["outcome"], entry["running"]) == (
        "1.0.0", "1.2.0", "rolled-back", "1.0.0")
    assert "1.0.0 runs again" in describe(report)
    listing = agent_update.versions(lane.layout, lane)
    assert [(r["version"], r["current"], r["failed_update"]) for r in listing["versions"]] == [
        ("1.0.0", True, False), ("1.2.0", False, True)]


def test_a_failing_restart_rolls_back_and_both_failures_are_told(
    lane: Lane, tmp_path: Path
) -> None:
    lane.restart_error = "systemctl restart gatelane-agent exited 1: unit masked"
    report = update(lane, tmp_path, "1.1.0")
    assert (report.outcome, report.running) == ("rollback-failed", "1.0.0")
    assert [s["step"] for s in report.steps if not s["ok"]] == ["restarted", "restarted"]
    assert "unit masked" in describe(report) and "did not come back" in describe(report)


def test_an_install_that_fails_before_the_switch_changes_nothing(
    lane: Lane, tmp_path: Path
) -> None:
    lane.install_error, lane.install_flips = "dpkg -i exited 1: pip: no matching wheel", False
    report = update(lane, tmp_path, "1.1.0")
    assert (report.outcome, report.running, lane.restarts) == ("install-failed", "1.0.0", 1)
    assert "no matching wheel" in (report.error or "")


def test_an_install_that_fails_after_the_switch_goes_back(lane: Lane, tmp_path: Path) -> None:
    lane.install_error = "dpkg -i exited 1: postinst failed"
    report = update(lane, tmp_path, "1.1.0")
    assert (report.outcome, report.running, lane.agent.version) == (
        "install-failed", "1.0.0", "1.0.0")


@pytest.mark.parametrize(
    ("version", "name", "arch", "error"),
    [
        ("1.1.0", "nginx", "arm64", "is the package 'nginx', not 'gatelane'"),
        ("1.1.0", "gatelane", "amd64", "is built for amd64; this lane is arm64"),
        ("0.9.0", "gatelane", "arm64", "older than 1.0.0, which runs now: add --allow-downgrade"),
        ("1.0.0", "gatelane", "arm64", "version 1.0.0 is the one that runs already"),
        ("1.0 rc", "gatelane", "arm64", "is not one a lane can install"),
    ],
)
def test_a_package_that_does_not_fit_is_refused_before_anything_changes(
    lane: Lane, tmp_path: Path, version: str, name: str, arch: str, error: str
) -> None:
    pkg = package(tmp_path, version, name=name, arch=arch)
    with pytest.raises((PackageError, Refused), match=re.escape(error)):
        agent_update.check_package(pkg, layout=lane.layout, system=lane,
                                   expected_sha256=sha256_of(pkg))
    assert lane.layout.current() == "1.0.0" and lane.layout.history() == []


def test_a_downgrade_is_installed_when_allowed(lane: Lane, tmp_path: Path) -> None:
    assert update(lane, tmp_path, "0.9.0", allow_downgrade=True).running == "0.9.0"


def test_a_file_that_is_not_a_package_is_refused(lane: Lane, tmp_path: Path) -> None:
    junk = tmp_path / "photo.deb"
    junk.write_bytes(b"\xff\xd8\xff\xe0 not a deb")
    with pytest.raises(PackageError, match="is not a Debian package"):
        agent_update.check_package(junk, layout=lane.layout, system=lane,
                                   expected_sha256=sha256_of(junk))


def test_rollback_goes_one_back_each_time_and_never_forward(lane: Lane, tmp_path: Path) -> None:
    update(lane, tmp_path, "1.1.0")
    update(lane, tmp_path, "1.2.0")
    probe = HttpProbe(lane.agent.listen)
    first = agent_update.rollback(layout=lane.layout, system=lane, probe=probe, timeout=5)
    assert (first.outcome, first.previous, first.running) == ("switched", "1.2.0", "1.1.0")
    second = agent_update.rollback(layout=lane.layout, system=lane, probe=probe, timeout=5)
    assert (second.previous, second.running, lane.agent.version) == ("1.1.0", "1.0.0", "1.0.0")
    with pytest.raises(NothingOlder, match=r"1\.0\.0 is the oldest runnable version installed"):
        agent_update.rollback(layout=lane.layout, system=lane, probe=probe, timeout=5)
    to = agent_update.rollback(layout=lane.layout, system=lane, probe=probe, timeout=5,
                               to="1.2.0")
    assert to.running == "1.2.0"
    assert [e["outcome"] for e in lane.layout.history()] == ["updated"] * 2 + ["switched"] * 3


def test_a_rollback_target_that_is_not_ready_is_left_at_once(lane: Lane, tmp_path: Path) -> None:
    update(lane, tmp_path, "1.1.0")
    lane.agent.broken.add("1.0.0")
    report = agent_update.rollback(layout=lane.layout, system=lane,
                                   probe=HttpProbe(lane.agent.listen), timeout=2)
    assert (report.outcome, report.running, lane.agent.version) == ("reverted", "1.1.0", "1.1.0")
    assert describe(report).startswith("rollback to 1.0.0 failed: 1.1.0 runs again")


def test_rollback_refuses_what_is_not_installed(lane: Lane) -> None:
    probe = HttpProbe(lane.agent.listen)
    with pytest.raises(Refused, match=r"version 7.0.0 is not installed .* installed: 1.0.0"):
        agent_update.rollback(layout=lane.layout, system=lane, probe=probe, timeout=1,
                              to="7.0.0")


def test_one_update_at_a_time(lane: Lane, tmp_path: Path) -> None:
    with lane.layout.locked(), pytest.raises(Refused, match="another agent update"):
        update(lane, tmp_path, "1.1.0")
    assert lane.layout.current() == "1.0.0"


def test_switch_refuses_a_version_that_is_not_runnable(lane: Lane) -> None:
    (lane.layout.versions_dir / "2.0.0").mkdir()  # a venv whose build stopped half way
    with pytest.raises(Refused, match="is not a runnable version"):
        lane.layout.switch("2.0.0")
    assert lane.layout.current() == "1.0.0"
    rows = agent_update.versions(lane.layout, lane)["versions"]
    assert [(r["version"], r["runnable"]) for r in rows] == [("1.0.0", True), ("2.0.0", False)]


def test_the_history_keeps_the_newest_entries(lane: Lane) -> None:
    for n in range(agent_update.HISTORY_KEEP + 5):
        lane.layout.record({"n": n})
    kept = lane.layout.history()
    assert (len(kept), kept[0]["n"], kept[-1]["n"]) == (agent_update.HISTORY_KEEP, 5, 104)


def test_the_probe_sends_the_token_and_says_what_is_wrong(agent: Agent) -> None:
    agent.version, agent.token = "1.0.0", "s3cret"
    assert HttpProbe(agent.listen, token="s3cret")().why_not("1.0.0") is None
    assert HttpProbe(agent.listen, token="s3cret")().why_not("1.1.0") == (
        "the agent that answers is version 1.0.0, not 1.1.0")
    assert HttpProbe(agent.listen)().reasons == ("token needed",)
    agent.token = None
    agent.broken.add("1.0.0")
    assert HttpProbe(agent.listen)().reasons == ("io board link down", "camera down")
    port = agent.listen.rpartition(":")[2]
    assert HttpProbe(f"0.0.0.0:{port}").base == f"http://127.0.0.1:{port}"
    assert HttpProbe("[::]:8787").base == "http://[::1]:8787"
    assert "does not answer on http://127.0.0.1:9" in str(HttpProbe("127.0.0.1:9")().why_not("x"))


def test_the_restart_is_the_technicians_command_then_systemd_else_refused() -> None:
    assert restart_argv("supervisorctl restart 'gate agent'", systemd_running=True) == [
        "supervisorctl", "restart", "gate agent"]
    assert restart_argv(None, systemd_running=True) == [
        "systemctl", "restart", "gatelane-agent"]
    with pytest.raises(Refused, match="give --restart-command CMD"):
        restart_argv(None, systemd_running=False)
    with pytest.raises(Refused, match="No closing quotation"):
        restart_argv("sh -c 'oops", systemd_running=False)


def test_the_report_is_json_with_every_step(lane: Lane, tmp_path: Path) -> None:
    report = update(lane, tmp_path, "1.1.0")
    doc = json.loads(json.dumps(report.as_json()))
    assert doc["ok"] is True and doc["from"] == "1.0.0" and doc["to"] == "1.1.0"
    assert [s["step"] for s in doc["steps"]] == ["verified", "installed", "restarted", "ready"]
    assert Candidate(Path("p"), "1", "0", Proof("ab" * 32)).proof.describe().startswith(
        "SHA-256 abababababababab")


def test_versions_says_which_runs_and_which_failed(lane: Lane, tmp_path: Path) -> None:
    lane.agent.broken.add("1.2.0")
    update(lane, tmp_path, "1.2.0")
    text = render_versions(agent_update.versions(lane.layout, lane), lane.layout)
    lines = text.splitlines()
    assert lines[:2] == ["* 1.0.0        current", "  1.2.0        its last update failed"]
    assert lines[2].startswith("last update: 1.0.0 -> 1.2.0 rolled-back at 2027-01-15T")
    assert lines[2].endswith("did not become ready within 5 s: io board link down; camera down")
    empty = Layout(root=tmp_path / "none", state_dir=tmp_path / "none-state")
    assert render_versions(agent_update.versions(empty, lane), empty) == (
        f"no version is installed under {tmp_path / 'none' / 'versions'}")


def test_an_update_needs_a_selected_version_and_one_that_did_not_change(
    lane: Lane, tmp_path: Path
) -> None:
    pkg = package(tmp_path, "1.1.0")
    candidate = agent_update.check_package(pkg, layout=lane.layout, system=lane,
                                           expected_sha256=sha256_of(pkg))
    make_version(lane.layout, "0.9.0")
    lane.layout.switch("0.9.0")  # someone rolled back in between
    with pytest.raises(Refused, match="changed while the package was checked"):
        agent_update.install(candidate, layout=lane.layout, system=lane,
                             probe=HttpProbe(lane.agent.listen), timeout=1)
    lane.layout.current_link.unlink()
    with pytest.raises(Refused, match="does not exist: install the first version with dpkg -i"):
        agent_update.check_package(pkg, layout=lane.layout, system=lane,
                                   expected_sha256=sha256_of(pkg))
