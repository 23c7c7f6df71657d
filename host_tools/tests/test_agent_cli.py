"""``lanectl agent`` and its machine layer on this machine: real dpkg-deb and dpkg on small
packages built here, real restart commands, and the command line as a technician runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.protocols import gp1
from host_tools.agent_package import PackageError, sha256_of
from host_tools.agent_system import DebianSystem
from host_tools.agent_update import UpdateError

REPO = Path(__file__).resolve().parents[2]


def build_deb(tmp_path: Path, name: str, version: str, arch: str) -> Path:
    root = tmp_path / f"root-{name}-{version}-{arch}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: tests <tests@example.org>\nDescription: a test package\n"
    )
    deb = tmp_path / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    return deb


def lane_config(tmp_path: Path) -> Path:
    """An agent configuration on fakes: what ``lanectl agent`` reads is the status port."""
    _key, trust = gp1.write_keypair(tmp_path / "keys", "ed25519")
    config = tmp_path / "agent.toml"
    config.write_text(f"""[lane]
site = "BZ01"
lane = "exit-03"
gate = "G3"
direction = "exit"
state_dir = "{tmp_path / 'state'}"

[io_board]
url = "fake-ioboard://cli"

[weighbridge]
url = "fake-indicator://cli"
protocol = "yaohua-tf0"
max_kg = 60000
e_kg = 20

[camera]
source = "fake-camera://cli"

[passes]
trust_list = "{trust}"

[mqtt]
broker = "mqtt://127.0.0.1:9"
lab = true

[status]
listen = "127.0.0.1:9"
""")
    return config


def lanectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host_tools.lanectl", "agent", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip


def test_dpkg_deb_reads_the_fields_of_a_real_package(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "gatelane", "0.2.0", "arm64")
    assert DebianSystem(()).package_fields(deb) == {
        "Package": "gatelane", "Version": "0.2.0", "Architecture": "arm64"}


def test_a_file_that_is_not_a_package_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "gatelane_0.2.0_arm64.deb"
    junk.write_bytes(b"PK\x03\x04 a zip, not a deb")
    with pytest.raises(PackageError, match=r"is not a Debian package: dpkg-deb -f .* exited 2"):
        DebianSystem(()).package_fields(junk)


def test_versions_compare_in_debian_order() -> None:
    system = DebianSystem(())
    assert system.compare("0.10.0", "0.9.0") > 0
    assert system.compare("1.0~rc1", "1.0") < 0
    assert system.compare("1.0", "1.0") == 0


def test_a_restart_command_that_leaves_the_agent_running_returns(tmp_path: Path) -> None:
    """The agent started in the background keeps the command's output open: no wait on it."""
    pid_file = tmp_path / "agent.pid"
    DebianSystem(["sh", "-c", f"sleep 600 & echo $! > {pid_file}"]).restart()
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)  # still running after the restart command returned
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_failing_restart_says_what_the_command_said() -> None:
    with pytest.raises(UpdateError, match="exited 3: unit gatelane-agent is masked"):
        DebianSystem(["sh", "-c", "echo unit gatelane-agent is masked; exit 3"]).restart()
    with pytest.raises(UpdateError, match="no-such-supervisor: command not found"):
        DebianSystem(["no-such-supervisor", "restart"]).restart()


def test_a_package_that_is_not_a_deb_is_one_line_and_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "gatelane_0.2.0_arm64.deb"
    junk.write_bytes(b"<html>404 not found</html>")
    done = lanectl("update", str(junk), "--sha256", sha256_of(junk),
                   "--config", str(lane_config(tmp_path)), "--restart-command", "true")
    assert (done.returncode, done.stdout) == (2, "")
    [line] = done.stderr.splitlines()
    assert line.startswith(f"lanectl agent update: {junk} is not a Debian package: dpkg-deb")


def test_a_wrong_hash_is_a_json_error_with_json(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "gatelane", "0.2.0", "amd64")
    done = lanectl("update", str(deb), "--sha256", "0" * 64, "--json",
                   "--config", str(lane_config(tmp_path)), "--restart-command", "true")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] is False and f"but --sha256 says {'0' * 64}" in doc["error"]


def test_a_signed_package_for_another_machine_is_refused(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "root.key.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    public = tmp_path / "release.pem"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    other = "arm64" if DebianSystem(()).architecture() == "amd64" else "amd64"
    deb = build_deb(tmp_path, "gatelane", "0.2.0", other)
    signed = lanectl("sign", str(deb), "--key", str(pem), "--json")
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["signature"] == f"{deb}.sig"
    done = lanectl("update", str(deb), "--release-key", str(public),
                   "--config", str(lane_config(tmp_path)), "--restart-command", "true")
    assert done.returncode == 2
    assert f"is built for {other}; this lane is " in done.stderr


def test_every_agent_command_shows_an_example() -> None:
    for action in ("update", "versions", "rollback", "sign"):
        done = lanectl(action, "--help")
        assert done.returncode == 0 and "\nexample" in done.stdout, action


def test_a_timeout_that_is_not_seconds_is_refused() -> None:
    done = lanectl("rollback", "--timeout", "-1")
    assert done.returncode == 2
    assert "--timeout: '-1': give seconds, more than 0 and at most 3600" in done.stderr
