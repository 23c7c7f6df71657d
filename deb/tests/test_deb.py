"""The Debian package, installed with apt and dpkg into a clean Debian 12 root, as on a Pi.

One root for the module: installed once, then the layout, the commands on PATH, the plate
engine (OpenCV and the models from the shipped wheels), the agent itself (started as its
unit starts it, as user gatelane, on the simulated lane devices and a real Mosquitto on the
host's loopback), then the package's life: reinstall, upgrade, remove
and purge, and last an install where systemd's sysusers and tmpfiles are missing. The
Raspberry Pi's package is built too and its wheels checked. The package size and the install
time are printed (``pytest -s``).
"""

from __future__ import annotations

import configparser
import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage
from PIL import Image

from edge_agent import __version__
from edge_agent.drivers import ioboard_fake
from edge_agent.protocols import gp1
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from simulators.broker import MosquittoBroker, free_port
from simulators.polling import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chroot

pytestmark = [pytest.mark.slow, pytest.mark.process]

SITE, LANE = "BZ01", "exit-03"
UNIT = "/lib/systemd/system/gatelane-agent.service"
PREFIX = "/opt/gatelane"
NEWER = ".".join([*__version__.split(".")[:-1], str(int(__version__.split(".")[-1]) + 1)])


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This machine's package; debootstrap and the other packages (a newer version to upgrade
    to, the Raspberry Pi's) build meanwhile."""
    chroot.start_pristine(tmp_path_factory)
    chroot.start_deb(tmp_path_factory, version=NEWER)
    chroot.start_deb(tmp_path_factory, arch="arm64")
    return chroot.session_deb(tmp_path_factory)


@pytest.fixture(scope="module")
def root(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[chroot.DebianRoot]:
    with chroot.fresh_root(tmp_path_factory) as root:
        started = time.monotonic()
        root.install(deb, apt=True)  # as the README says: apt install ./gatelane_....deb
        took = time.monotonic() - started
        venv_kb = int(root.run(["du", "-sk", f"{PREFIX}/versions/{__version__}"]).stdout.split()[0])
        print(f"\npackage {deb.name}: {deb.stat().st_size / 1e6:.1f} MB; apt install in a clean "
              f"Debian 12 root: {took:.1f} s; venv on disk: {venv_kb / 1024:.0f} MB")  # fmt: skip
        yield root


def stat(root: chroot.DebianRoot, path: str) -> tuple[str, str, str]:
    """(owner, group, octal mode) of a path inside the root, by the root's own names."""
    owner, group, mode = root.run(["stat", "-c", "%U %G %a", path]).stdout.split()
    return owner, group, mode


def exists(root: chroot.DebianRoot, path: str) -> bool:
    return root.run(["test", "-e", path], check=False).returncode == 0


def test_files_land_where_the_layout_says(root: chroot.DebianRoot) -> None:
    version_dir = f"{PREFIX}/versions/{__version__}"
    assert root.run(["readlink", f"{PREFIX}/current"]).stdout.strip() == f"versions/{__version__}"
    for command in ("edge-agent", "lanectl"):
        target = root.run(["readlink", f"/usr/bin/{command}"]).stdout.strip()
        assert target == f"{PREFIX}/current/bin/{command}"
        assert exists(root, f"{version_dir}/bin/{command}")
    wheels = root.run(["ls", f"{PREFIX}/wheels/{__version__}"]).stdout.split()
    assert f"gatelane-{__version__}-py3-none-any.whl" in wheels
    assert any(name.startswith("numpy-") for name in wheels)
    # The venv sees Debian's own packages (python3-picamera2 on a Pi).
    config = root.run(["cat", f"{version_dir}/pyvenv.cfg"]).stdout
    assert "include-system-site-packages = true" in config
    shipped = (UNIT, "/lib/udev/rules.d/99-gatelane.rules", "/usr/lib/sysusers.d/gatelane.conf",
               "/usr/lib/tmpfiles.d/gatelane.conf", "/etc/gatelane/agent.example.toml")  # fmt: skip
    for path in shipped:
        assert stat(root, path) == ("root", "root", "644"), path
    conffiles = root.run(["dpkg-query", "-W", "-f=${Conffiles}", "gatelane"]).stdout
    assert "/etc/gatelane/agent.example.toml" in conffiles
    # agent.toml is made from the example, readable by the agent, not by everyone.
    assert stat(root, "/etc/gatelane/agent.toml") == ("root", "gatelane", "640")
    example = root.host_path("/etc/gatelane/agent.example.toml").read_text()
    assert root.host_path("/etc/gatelane/agent.toml").read_text() == example


def wheels_in(deb: Path) -> list[str]:
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    return [line.rsplit("/", 1)[-1] for line in listing.splitlines() if line.endswith(".whl")]


def test_the_raspberry_pi_package_carries_aarch64_wheels(
    deb: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pi = chroot.session_deb(tmp_path_factory, arch="arm64")
    fields = subprocess.run(["dpkg-deb", "--field", str(pi), "Architecture", "Depends"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "Architecture: arm64" in fields and "libzbar0" in fields
    pi_wheels, here = wheels_in(pi), wheels_in(deb)
    binary = [name for name in pi_wheels if not name.endswith("-any.whl")]
    assert binary and all("aarch64" in name for name in binary), binary
    # The same distributions at the same versions as this machine's package.
    assert {tuple(w.split("-")[:2]) for w in pi_wheels} == {tuple(w.split("-")[:2]) for w in here}


def test_the_fake_io_board_finds_the_shipped_firmware(root: chroot.DebianRoot) -> None:
    # The installed package has no repository firmware/: the wheel carries its sources.
    probe = ("from edge_agent.drivers import ioboard_fake as f; print(f.FIRMWARE_DIR); "
             "print(*f.load_firmware().version, sep='.')")  # fmt: skip
    where, version = root.run([f"{PREFIX}/current/bin/python", "-c", probe],
                              user="gatelane").stdout.split()  # fmt: skip
    assert where.startswith(PREFIX) and where.endswith("/share/gatelane/firmware")
    files = set(root.run(["ls", where]).stdout.split())
    assert {"controller.py", "interlock.py", "main.py"} <= files and "tests" not in files
    assert version == ".".join(map(str, ioboard_fake.load_firmware().version))


PLATE_PROBE = """
import importlib.metadata as metadata, json
import cv2, numpy as np
from edge_agent.vision.plates import default_engine
reads = default_engine().read(np.zeros((720, 1280, 3), np.uint8))
names = {d.metadata["Name"].lower() for d in metadata.distributions()}
print(json.dumps({"opencv": cv2.__version__, "cv2_file": cv2.__file__, "reads": len(reads),
                  "headless": "opencv-python-headless" in names,
                  "full_opencv": "opencv-python" in names,
                  "hyperlpr2": metadata.version("hyperlpr2")}))
"""


def test_the_installed_venv_reads_plates(root: chroot.DebianRoot) -> None:
    venv = f"{PREFIX}/versions/{__version__}"
    done = root.run([f"{venv}/bin/python", "-c", PLATE_PROBE], user="gatelane")
    engine = json.loads(done.stdout)
    # OpenCV 4 (the Caffe importer), headless, from the venv; hyperlpr2 without opencv-python.
    assert engine["opencv"].startswith("4.") and engine["cv2_file"].startswith(venv), engine
    assert engine["headless"] and not engine["full_opencv"], engine
    assert engine["hyperlpr2"] == "2.0.0"
    assert engine["reads"] == 0  # a black frame has no plate

    Image.new("RGB", (640, 480), (255, 255, 255)).save(root.host_path("/tmp/blank.png"))
    read = root.run(["lanectl", "plate", "read", "/tmp/blank.png", "--json"], user="gatelane",
                    check=False)  # fmt: skip
    assert read.returncode == 0 and "Traceback" not in read.stderr, read.stderr
    [entry] = json.loads(read.stdout)
    assert entry["file"] == "/tmp/blank.png" and entry["plates"] == [] and "error" not in entry
    assert isinstance(entry["ms"], float)


def test_the_account_and_its_folders(root: chroot.DebianRoot) -> None:
    groups = root.run(["id", "-nG", "gatelane"]).stdout.split()
    assert {"gatelane", "dialout", "video"} <= set(groups)
    shell = root.run(["getent", "passwd", "gatelane"]).stdout.strip().split(":")[-1]
    assert shell.endswith("nologin")
    assert stat(root, "/var/lib/gatelane") == ("gatelane", "gatelane", "750")
    assert stat(root, "/run/gatelane") == ("gatelane", "gatelane", "750")


def test_commands_on_path_report_the_package_version(root: chroot.DebianRoot) -> None:
    for command in ("edge-agent", "lanectl"):
        done = root.run([command, "--version"], user="gatelane")
        assert __version__ in done.stdout + done.stderr, command


def test_site_init_from_the_package_makes_a_lane_folder(root: chroot.DebianRoot) -> None:
    root.run(["lanectl", "site", "init", "--site", SITE, "--lanes", LANE, "--out", "/tmp/site",
              "--broker-host", "broker.bz01.example"])  # fmt: skip
    lane = f"/tmp/site/lanes/{LANE}"
    files = set(root.run(["ls", lane]).stdout.split())
    assert {"agent.toml", "ca.crt", f"{LANE}.crt", f"{LANE}.key", "command_keys.json"} <= files
    # Its agent.toml waits for the technician: the gate (and here the trust list) are missing.
    check = root.run(["edge-agent", "check-config", f"{lane}/agent.toml"], check=False)
    assert check.returncode == 78
    assert "lane.gate" in check.stderr and "Traceback" not in check.stderr


def test_the_unit_names_the_installed_programs(root: chroot.DebianRoot) -> None:
    # systemd-analyze checks every Exec line's program exists and the user is known.
    done = root.run(["systemd-analyze", "verify", UNIT], check=False)
    assert done.returncode == 0, done.stderr


def unit_service(root: chroot.DebianRoot) -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(root.host_path(UNIT).read_text())
    return unit["Service"]


def exec_argv(line: str) -> list[str]:
    """An Exec line's command, without systemd's prefixes (-, @, +, !, :)."""
    return shlex.split(line.lstrip("-@+!:"))


class BirthWatcher:
    """The lane's retained state topic on the broker: online or offline, as last published."""

    def __init__(self, broker_url: str) -> None:
        self.states: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        address = parse_broker_url(broker_url)
        self.client: Client = make_client("deb-test-observer", address)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"gate/v1/{SITE}/{LANE}/state", qos=1)
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    def _on_message(self, _client: Client, _userdata: Any, message: MQTTMessage) -> None:
        with self._lock:
            self.states.append(json.loads(message.payload))

    def online(self) -> bool:
        with self._lock:
            return bool(self.states) and bool(self.states[-1].get("online"))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def write_lane_files(root: chroot.DebianRoot, broker_url: str, keys: Path) -> None:
    """What a technician puts in /etc/gatelane: the trust list and agent.toml."""
    _key, trust = gp1.write_keypair(keys)
    root.host_path("/etc/gatelane/trust.json").write_bytes(trust.read_bytes())
    root.host_path("/etc/gatelane/agent.toml").write_text(chroot.lane_toml(
        site=SITE, lane=LANE, broker_url=broker_url, listen=f"127.0.0.1:{free_port()}",
        mqtt_extra="reconnect_first_min_s = 0.2\nreconnect_first_max_s = 0.5\n"))


def test_the_agent_runs_as_its_unit_says_on_the_simulated_lane(
    root: chroot.DebianRoot, tmp_path: Path
) -> None:
    service = unit_service(root)
    user = service.get("User", "root")
    with MosquittoBroker(workdir=tmp_path / "broker") as broker:
        write_lane_files(root, broker.url, tmp_path / "keys")
        # ExecStartPre (the config check) passes on the lane's file, as systemd would run it.
        for line in service.get("ExecStartPre", "").splitlines():
            if line.strip():
                root.run(exec_argv(line), user=user)
        watcher = BirthWatcher(broker.url)
        log = (tmp_path / "agent.log").open("w")
        agent = root.popen(exec_argv(service["ExecStart"]), user=user, stdout=log,
                           stderr=subprocess.STDOUT)  # fmt: skip
        try:
            came_up = wait_until(lambda: watcher.online() or agent.poll() is not None, 60.0)
            assert came_up and agent.poll() is None, (tmp_path / "agent.log").read_text()[-4000:]
            # The process is the gatelane account, with its device groups.
            status = Path(f"/proc/{agent.pid}/status").read_text()
            uid = root.run(["id", "-u", "gatelane"]).stdout.strip()
            assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status
            groups = {int(g) for g in status.split("Groups:")[1].splitlines()[0].split()}
            assert {20, 44} <= groups  # dialout, video in Debian's base-passwd
            # Its state is its own: nobody else can read the outbox or the evidence folder.
            assert stat(root, "/var/lib/gatelane/outbox.sqlite")[0] == "gatelane"
            peek = root.run(["cat", "/var/lib/gatelane/outbox.sqlite"], user="nobody:nogroup",
                            check=False)  # fmt: skip
            assert peek.returncode != 0 and "Permission denied" in peek.stderr
        finally:
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(timeout=30)
            log.close()
            watcher.close()
        assert code == 0, (tmp_path / "agent.log").read_text()[-4000:]


def test_reinstall_upgrade_remove_and_purge(
    root: chroot.DebianRoot, deb: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config, example = "/etc/gatelane/agent.toml", "/etc/gatelane/agent.example.toml"
    marker = "[stauts]  # this lane's own edit, with a typo\n"
    for path in (config, example):
        with root.host_path(path).open("a") as fh:
            fh.write(marker)
    root.run(["sh", "-c", "echo kept > /var/lib/gatelane/state-marker"], user="gatelane")

    def edits_kept() -> bool:
        return all(root.host_path(p).read_text().endswith(marker) for p in (config, example))

    again = root.install(deb)  # the same version again: succeeds, and names the typo
    assert edits_kept()
    assert f"{config} is not ready" in again.stderr and "stauts" in again.stderr
    assert f"sudo edge-agent check-config {config}" in again.stderr

    newer = chroot.session_deb(tmp_path_factory, version=NEWER)
    started = time.monotonic()
    root.install(newer)
    print(f"\nupgrade {__version__} -> {NEWER} with dpkg -i: {time.monotonic() - started:.1f} s")
    assert edits_kept()
    assert root.run(["readlink", f"{PREFIX}/current"]).stdout.strip() == f"versions/{NEWER}"
    assert NEWER in root.run(["edge-agent", "--version"]).stdout
    # The version before stays runnable (a rollback); its wheels went with its package.
    old = root.run([f"{PREFIX}/versions/{__version__}/bin/edge-agent", "--version"])
    assert __version__ in old.stdout
    assert not exists(root, f"{PREFIX}/wheels/{__version__}")
    assert root.host_path("/var/lib/gatelane/state-marker").read_text() == "kept\n"

    root.dpkg("--remove", "gatelane")
    for gone in ("/usr/bin/edge-agent", "/usr/bin/lanectl", PREFIX, UNIT):
        assert not exists(root, gone), gone
    assert root.host_path("/var/lib/gatelane/state-marker").read_text() == "kept\n"
    assert edits_kept()
    status = root.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "gatelane"]).stdout
    assert status == "config-files"

    root.dpkg("--purge", "gatelane")
    for gone in ("/var/lib/gatelane", config, example):
        assert not exists(root, gone), gone
    assert root.run(["dpkg-query", "-W", "gatelane"], check=False).returncode != 0


def test_install_without_systemd_tools_falls_back_to_shadow_utils(
    root: chroot.DebianRoot, deb: Path
) -> None:
    # A system whose systemd has no sysusers/tmpfiles (or none at all): useradd and mkdir.
    root.dpkg("--purge", "gatelane")
    root.run(["sh", "-c", "userdel gatelane 2>/dev/null; groupdel gatelane 2>/dev/null; true"])
    tools = ("/usr/bin/systemd-sysusers", "/usr/bin/systemd-tmpfiles")
    for tool in tools:
        root.run(["mv", tool, f"{tool}.away"])
    try:
        root.install(deb)
    finally:
        for tool in tools:
            root.run(["mv", f"{tool}.away", tool])
    groups = root.run(["id", "-nG", "gatelane"]).stdout.split()
    assert {"gatelane", "dialout", "video"} <= set(groups)
    assert stat(root, "/var/lib/gatelane") == ("gatelane", "gatelane", "750")
    assert stat(root, "/run/gatelane") == ("gatelane", "gatelane", "750")
    assert stat(root, "/etc/gatelane/agent.toml") == ("root", "gatelane", "640")
    assert __version__ in root.run(["edge-agent", "--version"], user="gatelane").stdout
