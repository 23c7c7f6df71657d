"""``lanectl agent update`` on a clean Debian 12 root, as on a lane's Pi without systemd.

Version A is installed and its agent runs (on the simulated lane devices). The installed
``lanectl`` updates it to B (signed with the site's root key): B runs. Then to C, a release
whose agent exits at start (its entry point replaced in a copy of the source it is built
from): the update rolls back by itself, B runs again, the history says so, and there is
nothing older to roll back to (the postinst keeps the version before, and A was two back).
The agent is restarted by a small script, given as ``--restart-command``, that stops it and
starts ``/opt/gatelane/current/bin/edge-agent run`` again in the background.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent import __version__
from edge_agent.protocols import gp1
from edge_agent.telemetry.commands import KeyRole
from host_tools.agent_package import sha256_of, sign_package
from host_tools.agent_system import HttpProbe
from host_tools.site_pki import CommandKey
from simulators.broker import free_port
from simulators.polling import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chroot

# The first module of a session debootstraps the root (minutes on a busy machine).
pytestmark = [pytest.mark.slow, pytest.mark.process, pytest.mark.timeout(900)]

PREFIX = "/opt/gatelane"
PARTS = __version__.split(".")
B = ".".join([*PARTS[:-1], str(int(PARTS[-1]) + 1)])  # the version test_deb upgrades to
C = ".".join([*PARTS[:-1], str(int(PARTS[-1]) + 2)])
TIMEOUT_S = 12  # for a version to become ready after its restart; C waits all of it
RESTART = "/usr/local/sbin/gatelane-restart"
RESTART_SCRIPT = """\
#!/bin/sh
# Stop the agent that runs, then start the selected version again in the background.
pidfile=/var/tmp/gatelane-agent.pid
if [ -f "$pidfile" ]; then
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    # Gone, or a zombie nobody reaped yet (its port is free then).
    while [ -d "/proc/$pid" ] && ! grep -q '^State:.Z' "/proc/$pid/status" 2>/dev/null; do
        sleep 0.1
    done
fi
setsid setpriv --reuid=gatelane --regid=gatelane --init-groups -- \\
    /opt/gatelane/current/bin/edge-agent run --config /etc/gatelane/agent.toml \\
    >>/var/log/gatelane-agent.log 2>&1 </dev/null &
echo $! > "$pidfile"
"""
BROKEN_MAIN = '''

def main(argv: list[str] | None = None) -> int:
    """This release's agent dies at start."""
    raise SystemExit("edge-agent: this build exits at start")
'''


def build_broken(out: Path, work: Path) -> Path:
    """Version C from a copy of the source whose ``edge-agent`` entry point exits at once."""
    source = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "tests", "*.egg-info")
    script = chroot.BUILD_SCRIPT.relative_to(chroot.REPO)  # and its folder: copied too
    for name in ("edge_agent", "host_tools", "simulators", "firmware", script.parts[0]):
        shutil.copytree(chroot.REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(chroot.REPO / name, source / name)
    with (source / "edge_agent" / "service.py").open("a") as handle:
        handle.write(BROKEN_MAIN)
    done = subprocess.run(
        [str(source / script), "--out", str(out), "--version", C],
        capture_output=True, text=True, timeout=900, env={"PATH": "/usr/bin:/bin",
                                                          "PYTHON": sys.executable},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    [deb] = out.glob(f"gatelane_{C}_*.deb")
    return deb


@pytest.fixture(scope="module")
def site_key() -> CommandKey:
    return CommandKey("root", KeyRole.ROOT, Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory, site_key: CommandKey) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("agent-update")
    # The root and A and B are made in the background (once a session) while C builds here.
    chroot.start_pristine(tmp_path_factory)
    good = {"A": chroot.start_deb(tmp_path_factory),
            "B": chroot.start_deb(tmp_path_factory, version=B)}  # fmt: skip
    broken = build_broken(tmp_path_factory.mktemp("deb"), work)
    built = {name: future.result() for name, future in good.items()} | {"C": broken}
    # B is signed by the site's root key (PACKAGE.sig beside it); C is proven by its hash.
    signed = work / built["B"].name
    shutil.copyfile(built["B"], signed)
    key_file = work / "root.key.pem"
    key_file.write_bytes(site_key.key_pem())
    sign_package(signed, key_file)
    built["B"] = signed
    return built


@pytest.fixture(scope="module")
def lane(
    debs: dict[str, Path], site_key: CommandKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[chroot.DebianRoot, HttpProbe]]:
    """Version A installed and running on the simulated lane; the packages in /var/tmp."""
    with chroot.fresh_root(tmp_path_factory) as root:
        root.install(debs["A"])
        for deb in debs.values():
            for path in deb.parent.glob(f"{deb.name}*"):  # with its .sig and .sha256
                shutil.copyfile(path, root.host_path(f"/var/tmp/{path.name}"))
        listen = write_lane_files(root, tmp_path_factory.mktemp("keys"), site_key)
        script = root.host_path(RESTART)
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(RESTART_SCRIPT)
        script.chmod(0o755)
        root.run([RESTART])
        probe = HttpProbe(listen)
        assert wait_until(lambda: probe().why_not(__version__) is None, 60), agent_log(root)
        yield root, probe


def write_lane_files(root: chroot.DebianRoot, keys: Path, site_key: CommandKey) -> str:
    """agent.toml on the simulated devices, its trust list and command keys; the listen."""
    _key, trust = gp1.write_keypair(keys)
    etc = root.host_path("/etc/gatelane")
    (etc / "trust.json").write_bytes(trust.read_bytes())
    (etc / "command_keys.json").write_text(json.dumps({"keys": [site_key.public_entry()]}))
    listen = f"127.0.0.1:{free_port()}"
    (etc / "agent.toml").write_text(chroot.lane_toml(
        site="BZ01", lane="exit-03", broker_url="mqtt://127.0.0.1:9", listen=listen,
        mqtt_extra='command_keys = "command_keys.json"\n'))
    return listen


def agent_log(root: chroot.DebianRoot) -> str:
    path = root.host_path("/var/log/gatelane-agent.log")
    return path.read_text()[-3000:] if path.exists() else "(no agent log)"


def lanectl(root: chroot.DebianRoot, *args: str) -> subprocess.CompletedProcess[str]:
    return root.run(["lanectl", "agent", *args], check=False, timeout=300)


def current(root: chroot.DebianRoot) -> str:
    return root.run(["readlink", f"{PREFIX}/current"]).stdout.strip()


def test_an_update_to_a_good_version_runs_it(
    lane: tuple[chroot.DebianRoot, HttpProbe], debs: dict[str, Path], site_key: CommandKey
) -> None:
    root, probe = lane
    done = lanectl(root, "update", f"/var/tmp/{debs['B'].name}", "--restart-command", RESTART,
                   "--timeout", str(TIMEOUT_S), "--json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + agent_log(root)
    report = json.loads(done.stdout)
    assert (report["from"], report["to"], report["outcome"]) == (__version__, B, "updated")
    assert report["signed_by"] == site_key.kid
    assert current(root) == f"versions/{B}"
    assert probe().why_not(B) is None
    assert root.run([f"{PREFIX}/versions/{__version__}/bin/edge-agent", "--version"]).returncode \
        == 0  # the version before stays runnable  # fmt: skip


def test_a_bad_package_changes_nothing(
    lane: tuple[chroot.DebianRoot, HttpProbe], debs: dict[str, Path]
) -> None:
    root, _probe = lane
    done = lanectl(root, "update", f"/var/tmp/{debs['C'].name}", "--sha256", "0" * 64,
                   "--restart-command", RESTART)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"but --sha256 says {'0' * 64}" in done.stderr
    assert current(root) == f"versions/{B}"


def test_an_update_that_never_becomes_ready_rolls_back_by_itself(
    lane: tuple[chroot.DebianRoot, HttpProbe], debs: dict[str, Path]
) -> None:
    root, probe = lane
    deb = debs["C"]
    done = lanectl(root, "update", f"/var/tmp/{deb.name}", "--sha256", sha256_of(deb),
                   "--restart-command", RESTART, "--timeout", str(TIMEOUT_S))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith(f"update to {C} failed and was rolled back: {B} runs again.")
    assert f"version {C} did not become ready within {TIMEOUT_S} s" in done.stdout
    assert "this build exits at start" in agent_log(root)
    assert current(root) == f"versions/{B}"
    assert probe().why_not(B) is None  # B runs, and is ready
    history = json.loads(root.host_path("/var/lib/gatelane/agent-update.json").read_text())
    assert [(e["from"], e["to"], e["outcome"], e["running"]) for e in history["history"]] == [
        (__version__, B, "updated", B), (B, C, "rolled-back", B)]
    listing = json.loads(lanectl(root, "versions", "--json").stdout)
    assert listing["current"] == B
    assert [(r["version"], r["current"], r["failed_update"]) for r in listing["versions"]] == [
        (B, True, False), (C, False, True)]


def test_a_rollback_never_goes_forward(lane: tuple[chroot.DebianRoot, HttpProbe]) -> None:
    root, probe = lane
    done = lanectl(root, "rollback", "--restart-command", RESTART)
    assert done.returncode == 1
    assert f"nothing to roll back to: {B} is the oldest runnable version installed" in done.stderr
    assert current(root) == f"versions/{B}" and probe().why_not(B) is None
    as_agent = root.run(["lanectl", "agent", "rollback", "--to", C, "--restart-command", RESTART],
                        user="gatelane", check=False)  # fmt: skip
    assert as_agent.returncode == 2 and "need root: run sudo lanectl agent rollback" in (
        as_agent.stderr)
