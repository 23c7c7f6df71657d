"""The systemd unit: systemd's own judgement of its hardening and syntax, and its contract."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "gatelane-agent.service"
AGENT = "/opt/gatelane/current/bin/edge-agent"
MAX_EXPOSURE = 2.5

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (package systemd)")


def _directives() -> list[tuple[str, str]]:
    pairs = []
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


@needs_analyze
def test_systemd_rates_the_unit_at_most_2_5() -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for gatelane-agent\.service: (\d+\.\d+)",
                      done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


@needs_analyze
def test_systemd_verify_finds_nothing_wrong(tmp_path: Path) -> None:
    # verify also checks that the binaries exist: point them at one that does on this machine.
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(AGENT, "/bin/true"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                          capture_output=True, text=True, timeout=60, check=False)
    # Unknown keys and bad values are warnings on stderr with exit 0: none may be there.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_unit_keeps_the_install_layout_contract() -> None:
    unit = _directives()
    values = dict(unit)
    assert values["Type"] == "notify" and int(values["WatchdogSec"]) > 0
    assert values["ExecStart"] == f"{AGENT} run --config /etc/gatelane/agent.toml"
    assert values["ExecStartPre"].lstrip("-") == f"{AGENT} check-config /etc/gatelane/agent.toml"
    assert values["RestartPreventExitStatus"] == "78"
    assert values["UMask"] == "0027"
    assert values["StateDirectory"] == "gatelane" and values["RuntimeDirectory"] == "gatelane"
    assert values["User"] == "gatelane" and values["SupplementaryGroups"] == "dialout video"
    allowed = {value.split()[0] for key, value in unit if key == "DeviceAllow"}
    assert {"char-ttyACM", "char-ttyUSB", "char-video4linux", "char-dma_heap"} <= allowed
    assert set(values["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
