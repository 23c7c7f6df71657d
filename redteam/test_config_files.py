"""Hostile lane config files, run the way a lane runs: ``python -m edge_agent --config FILE``.

Each must stop the agent before any device is opened: exit code 78 (EX_CONFIG) and one line on
stderr that names the file and the key, no traceback. The devices in the file do not exist, so
an agent that got past its configuration would fail differently (or hang until the timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.config import load_config

REPO = Path(__file__).resolve().parents[1]
EX_CONFIG = 78  # sysexits.h: the unit does not restart on it

BASE: dict[str, dict[str, object]] = {
    "lane": {"site": "BZ01", "lane": "exit-03", "gate": "G3"},
    "io_board": {"url": "/dev/gatelane-redteam-no-such-io"},
    "weighbridge": {"url": "/dev/gatelane-redteam-no-such-scale"},
    "camera": {"source": "dir:///nonexistent/gatelane-redteam"},
    "passes": {"trust_list": "trust.json"},
    "mqtt": {"broker": "mqtt://127.0.0.1:1", "lab": True},
}


@dataclass(frozen=True)
class Case:
    section: str
    key: str
    toml: str  # the value as written in the file
    shown: str  # how the error shows it

    @property
    def id(self) -> str:
        return f"{self.section}.{self.key}={self.toml}"


def _toml(sections: Mapping[str, Mapping[str, object]], extra: Case | None) -> str:
    lines: list[str] = []
    names = list(sections) + ([extra.section] if extra and extra.section not in sections else [])
    for name in names:
        lines.append(f"[{name}]")
        for key, value in sections.get(name, {}).items():
            lines.append(f"{key} = {json.dumps(value)}")
        if extra and extra.section == name:
            lines.append(f"{extra.key} = {extra.toml}")
    return "\n".join(lines) + "\n"


NUMBERS = [
    ("lane", "pass_without_truck_s"),
    ("io_board", "baudrate"),
    ("io_board", "t_clear_s"),
    ("weighbridge", "baudrate"),
    ("weighbridge", "max_kg"),
    ("weighbridge", "e_kg"),
    ("weighbridge", "unstable_timeout_s"),
    ("weighbridge", "not_on_deck_s"),
    ("weighbridge", "frozen_s"),
    ("camera", "confirm_frames"),
    ("camera", "snapshot_cap_mb"),
    ("passes", "skew_s"),
    ("passes", "default_tolerance_kg"),
    ("mqtt", "keepalive_s"),
    ("mqtt", "health_interval_s"),
    ("mqtt", "outbox_max_mb"),
    ("mqtt", "reconnect_first_min_s"),
    ("mqtt", "reconnect_first_max_s"),
    ("mqtt", "reconnect_max_s"),
]

CASES = [
    # NaN on every number.
    *(Case(section, key, "nan", "nan") for section, key in NUMBERS),
    # Infinity.
    Case("weighbridge", "max_kg", "inf", "inf"),
    Case("weighbridge", "max_kg", "-inf", "-inf"),
    Case("weighbridge", "unstable_timeout_s", "inf", "inf"),
    Case("mqtt", "health_interval_s", "inf", "inf"),
    # Absurd clock skew: negative, ten years.
    Case("passes", "skew_s", "-1", "-1"),
    Case("passes", "skew_s", "315360000", "315360000"),
    # Negative tolerance.
    Case("passes", "default_tolerance_kg", "-1", "-1"),
    Case("passes", "default_tolerance_kg", "-500.5", "-500.5"),
    # Zero and negative scale interval and capacity.
    Case("weighbridge", "e_kg", "0", "0"),
    Case("weighbridge", "e_kg", "-20", "-20"),
    Case("weighbridge", "max_kg", "0", "0"),
    Case("weighbridge", "max_kg", "-60000", "-60000"),
    # Zero and negative intervals and timeouts.
    Case("mqtt", "health_interval_s", "0", "0"),
    Case("mqtt", "health_interval_s", "-30", "-30"),
    Case("mqtt", "reconnect_max_s", "-1", "-1"),
    Case("weighbridge", "unstable_timeout_s", "0", "0"),
    Case("weighbridge", "not_on_deck_s", "-5", "-5"),
    Case("weighbridge", "frozen_s", "0", "0"),
    Case("lane", "pass_without_truck_s", "0", "0"),
    Case("io_board", "t_clear_s", "-0.5", "-0.5"),
    # Zero and negative disk caps.
    Case("camera", "snapshot_cap_mb", "0", "0"),
    Case("camera", "snapshot_cap_mb", "-200", "-200"),
    Case("mqtt", "outbox_max_mb", "0", "0"),
    Case("mqtt", "outbox_max_mb", "-512", "-512"),
    # Zero and negative baud rates, keepalive, confirm frames.
    Case("io_board", "baudrate", "0", "0"),
    Case("weighbridge", "baudrate", "-9600", "-9600"),
    Case("mqtt", "keepalive_s", "0", "0"),
    Case("mqtt", "keepalive_s", "-10", "-10"),
    Case("camera", "confirm_frames", "0", "0"),
    Case("camera", "confirm_frames", "-1", "-1"),
    # The status page on the network, or not a valid HOST:PORT.
    Case("status", "listen", '"0.0.0.0:8787"', '"0.0.0.0:8787"'),
    Case("status", "listen", '"[::]:8787"', '"[::]:8787"'),
    Case("status", "listen", '"192.168.1.20:8787"', '"192.168.1.20:8787"'),
    Case("status", "listen", '"gate-lane.local:8787"', '"gate-lane.local:8787"'),
    Case("status", "listen", '"127.0.0.1"', '"127.0.0.1"'),
    Case("status", "listen", '"127.0.0.1:0"', '"127.0.0.1:0"'),
    Case("status", "listen", '"127.0.0.1:99999"', '"127.0.0.1:99999"'),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str, str]]:
    """Every case's file and agent run (exit code, stdout, stderr), run side by side."""
    folder = tmp_path_factory.mktemp("redteam-config")

    def run(index: int, case: Case) -> tuple[Path, int, str, str]:
        path = folder / f"agent-{index}.toml"
        path.write_text(_toml(BASE, case), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-m", "edge_agent", "--config", str(path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return path, done.returncode, done.stdout, done.stderr

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda item: run(*item), enumerate(CASES))
        return {case.id: result for case, result in zip(CASES, results, strict=True)}


def test_the_base_file_alone_is_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(_toml(BASE, None), encoding="utf-8")
    config = load_config(path)
    assert config.mqtt.lab and config.status.listen == "127.0.0.1:8787"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_value_stops_the_agent_with_one_line_naming_the_key(
    runs: dict[str, tuple[Path, int, str, str]], case: Case
) -> None:
    path, code, stdout, stderr = runs[case.id]
    assert "Traceback" not in stderr + stdout
    assert code == EX_CONFIG, stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith(f"edge-agent: {path}: {case.section}.{case.key}: ")
    assert case.shown in line
    if case.section != "status":  # a number: the line gives its range
        assert "allowed: " in line


def test_mutated_config_files_give_a_config_error_or_a_config_never_a_crash(
    tmp_path: Path,
) -> None:
    """Byte-level fuzz of the lane's file: whatever it says, loading it either yields a
    configuration or a ConfigError (which the agent prints one line per problem, exit 78)."""
    import random

    from edge_agent.errors import ConfigError

    seed = _toml(BASE, None).encode()
    (tmp_path / "trust.json").write_text('{"keys": []}')
    rng = random.Random(7)
    outcomes = {"config": 0, "error": 0}
    for n in range(600):
        data = bytearray(seed)
        for _ in range(rng.randrange(1, 6)):
            where = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[where] = rng.randrange(256)
            elif action == 1:
                del data[where : where + rng.randrange(1, 8)]
            else:
                data[where:where] = rng.choice(
                    [b"=", b"[", b"]", b'"', b"\n", b"nan", b"1e999", b"-", b"9" * 5000, b"\\u"]
                )
        path = tmp_path / f"fuzz-{n}.toml"
        path.write_bytes(bytes(data))
        try:
            load_config(path)
            outcomes["config"] += 1
        except ConfigError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and sum(outcomes.values()) == 600
