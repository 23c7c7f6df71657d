"""Configuration loading: good files load, bad ones name the key that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.errors import ConfigError

GOOD = """
[lane]
site = "BZ01"
lane = "exit-03"
gate = "G3"
state_dir = "state"

[io_board]
url = "/dev/serial/by-id/usb-gatelane-io"

[weighbridge]
url = "/dev/ttyUSB0"
protocol = "toledo"
line = "7E1"
baudrate = 4800

[camera]
source = "picamera2:"

[passes]
trust_list = "trust.json"

[mqtt]
broker = "mqtt://127.0.0.1:1883"
lab = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.lane.lane == "exit-03"
    assert config.weighbridge.protocol == "toledo" and config.weighbridge.baudrate == 4800
    assert config.weighbridge.e_kg == 20.0
    assert config.lane.state_dir == tmp_path / "state"
    assert config.passes.trust_list == tmp_path / "trust.json"
    assert config.passes.ledger == tmp_path / "state" / "passes.sqlite"
    assert config.outbox_path == tmp_path / "state" / "outbox.sqlite"


def test_missing_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[io_board\] url is required"):
        load_config(write(tmp_path, GOOD.replace('url = "/dev/serial/by-id/usb-gatelane-io"', "")))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[weighbridge\] baudrate"):
        load_config(write(tmp_path, GOOD.replace("baudrate = 4800", 'baudrate = "fast"')))


def test_plain_mqtt_is_refused_unless_marked_as_lab(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not TLS"):
        load_config(write(tmp_path, GOOD.replace("lab = true", "")))


def test_tls_needs_certificates(tmp_path: Path) -> None:
    text = GOOD.replace('broker = "mqtt://127.0.0.1:1883"', 'broker = "mqtts://broker:8883"')
    with pytest.raises(ConfigError, match="ca, cert and key"):
        load_config(write(tmp_path, text))


def test_bad_toml_and_missing_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[lane\nsite="))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_direction_must_be_exit_or_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected one of exit, entry"):
        load_config(write(tmp_path, GOOD.replace('gate = "G3"', 'gate = "G3"\ndirection = "up"')))


def test_reconnect_window_defaults_to_a_fleet_safe_spread_and_is_checked(tmp_path: Path) -> None:
    mqtt = load_config(write(tmp_path, GOOD)).mqtt
    assert (mqtt.reconnect_first_min_s, mqtt.reconnect_first_max_s) == (1.0, 30.0)
    narrow = GOOD.replace("lab = true", "lab = true\nreconnect_first_min_s = 5\n"
                          "reconnect_first_max_s = 2")
    with pytest.raises(ConfigError, match="reconnect_first_min_s <= reconnect_first_max_s"):
        load_config(write(tmp_path, narrow))
