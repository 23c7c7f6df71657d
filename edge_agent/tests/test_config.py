"""Configuration loading: good files load, bad ones name the key that is wrong and why."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edge_agent import config as config_module
from edge_agent.config import SETTING_RANGES, load_config
from edge_agent.drivers.ioboard import CONFIG_LIMITS_S
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
    with pytest.raises(ConfigError, match=r"agent.toml: io_board.url: is required$"):
        load_config(write(tmp_path, GOOD.replace('url = "/dev/serial/by-id/usb-gatelane-io"', "")))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError,
                       match=r'weighbridge\.baudrate: must be a whole number, got "fast"'):
        load_config(write(tmp_path, GOOD.replace("baudrate = 4800", 'baudrate = "fast"')))


def test_plain_mqtt_is_refused_unless_marked_as_lab(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.broker: .* is plain TCP, not TLS"):
        load_config(write(tmp_path, GOOD.replace("lab = true", "")))


def test_tls_needs_certificates(tmp_path: Path) -> None:
    text = GOOD.replace('broker = "mqtt://127.0.0.1:1883"', 'broker = "mqtts://broker:8883"')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert [str(item) for item in caught.value.problems] == [  # type: ignore[attr-defined]
        f"mqtt.{name}: is required for an mqtts:// broker" for name in ("ca", "cert", "key")
    ]


def test_bad_toml_and_missing_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[lane\nsite="))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_direction_must_be_exit_or_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'lane\.direction: must be one of exit, entry, got "up"'):
        load_config(write(tmp_path, GOOD.replace('gate = "G3"', 'gate = "G3"\ndirection = "up"')))


def test_reconnect_window_defaults_to_a_fleet_safe_spread_and_is_checked(tmp_path: Path) -> None:
    mqtt = load_config(write(tmp_path, GOOD)).mqtt
    assert (mqtt.reconnect_first_min_s, mqtt.reconnect_first_max_s) == (1.0, 30.0)
    narrow = GOOD.replace("lab = true", "lab = true\nreconnect_first_min_s = 5\n"
                          "reconnect_first_max_s = 2")
    with pytest.raises(ConfigError, match=r"mqtt\.reconnect_first_min_s: must be at most "
                       r"reconnect_first_max_s = 2 s, got 5; needs 0 < reconnect_first_min_s"):
        load_config(write(tmp_path, narrow))


# -- ranges ---------------------------------------------------------------------------------------

def with_setting(section: str, key: str, value: str) -> str:
    """GOOD with ``key = value`` in ``section`` (replacing the key if GOOD sets it)."""
    lines = GOOD.splitlines()
    if f"[{section}]" not in lines:
        lines += ["", f"[{section}]"]
    current = ""
    out = []
    for line in lines:
        if line.startswith("["):
            current = line.strip("[]")
        if current == section and line.split("=")[0].strip() == key:
            continue
        out.append(line)
        if line == f"[{section}]":
            out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


WAIT = "0 < {} <= 86400 s"
REFUSED = [
    # (section, key, TOML value, the value as the message shows it, the allowed range)
    ("lane", "pass_without_truck_s", "nan", "nan", WAIT),
    ("lane", "pass_without_truck_s", "0", "0", WAIT),
    ("lane", "pass_without_truck_s", "-1", "-1", WAIT),
    ("lane", "pass_without_truck_s", "86401", "86401", WAIT),
    ("io_board", "baudrate", "0", "0", "300 <= {} <= 4000000 baud"),
    ("io_board", "baudrate", "-115200", "-115200", "300 <= {} <= 4000000 baud"),
    ("io_board", "baudrate", "4000001", "4000001", "300 <= {} <= 4000000 baud"),
    ("io_board", "t_clear_s", "0", "0", "0.1 <= {} <= 60 s"),
    ("io_board", "t_clear_s", "0.09", "0.09", "0.1 <= {} <= 60 s"),
    ("io_board", "t_clear_s", "60.5", "60.5", "0.1 <= {} <= 60 s"),
    ("io_board", "t_clear_s", "inf", "inf", "0.1 <= {} <= 60 s"),
    ("weighbridge", "baudrate", "0", "0", "300 <= {} <= 4000000 baud"),
    ("weighbridge", "baudrate", "-9600", "-9600", "300 <= {} <= 4000000 baud"),
    ("weighbridge", "max_kg", "nan", "nan", "0 < {} <= 1000000 kg"),
    ("weighbridge", "max_kg", "inf", "inf", "0 < {} <= 1000000 kg"),
    ("weighbridge", "max_kg", "-inf", "-inf", "0 < {} <= 1000000 kg"),
    ("weighbridge", "max_kg", "1e400", "inf", "0 < {} <= 1000000 kg"),
    ("weighbridge", "max_kg", "0", "0", "0 < {} <= 1000000 kg"),
    ("weighbridge", "max_kg", "-60000", "-60000", "0 < {} <= 1000000 kg"),
    ("weighbridge", "max_kg", "1000001", "1000001", "0 < {} <= 1000000 kg"),
    ("weighbridge", "max_kg", "1" + "0" * 400, "100000000000... (401 digits)",
     "0 < {} <= 1000000 kg"),
    ("weighbridge", "e_kg", "0", "0", "0 < {} <= 50000 kg"),
    ("weighbridge", "e_kg", "-20", "-20", "0 < {} <= 50000 kg"),
    ("weighbridge", "e_kg", "nan", "nan", "0 < {} <= 50000 kg"),
    ("weighbridge", "unstable_timeout_s", "nan", "nan", WAIT),
    ("weighbridge", "unstable_timeout_s", "inf", "inf", WAIT),
    ("weighbridge", "unstable_timeout_s", "0", "0", WAIT),
    ("weighbridge", "unstable_timeout_s", "-15", "-15", WAIT),
    ("weighbridge", "unstable_timeout_s", "86400.5", "86400.5", WAIT),
    ("weighbridge", "not_on_deck_s", "0", "0", WAIT),
    ("weighbridge", "not_on_deck_s", "nan", "nan", WAIT),
    ("weighbridge", "frozen_s", "-6", "-6", WAIT),
    ("weighbridge", "frozen_s", "-nan", "nan", WAIT),
    ("camera", "confirm_frames", "0", "0", "1 <= {} <= 10 frames"),
    ("camera", "confirm_frames", "-2", "-2", "1 <= {} <= 10 frames"),
    ("camera", "confirm_frames", "11", "11", "1 <= {} <= 10 frames"),
    ("camera", "snapshot_cap_mb", "0", "0", "1 <= {} <= 1048576 MB"),
    ("camera", "snapshot_cap_mb", "-200", "-200", "1 <= {} <= 1048576 MB"),
    ("camera", "snapshot_cap_mb", "0.5", "0.5", "1 <= {} <= 1048576 MB"),
    ("camera", "snapshot_cap_mb", "nan", "nan", "1 <= {} <= 1048576 MB"),
    ("camera", "snapshot_cap_mb", "1048577", "1048577", "1 <= {} <= 1048576 MB"),
    ("passes", "skew_s", "-1", "-1", "0 <= {} <= 3600 s"),
    ("passes", "skew_s", "3601", "3601", "0 <= {} <= 3600 s"),
    ("passes", "skew_s", "315360000", "315360000", "0 <= {} <= 3600 s"),  # ten years
    ("passes", "skew_s", "1" + "0" * 30, "100000000000... (31 digits)", "0 <= {} <= 3600 s"),
    ("passes", "default_tolerance_kg", "-1", "-1", "0 <= {} <= 100000 kg"),
    ("passes", "default_tolerance_kg", "-0.5", "-0.5", "0 <= {} <= 100000 kg"),
    ("passes", "default_tolerance_kg", "100001", "100001", "0 <= {} <= 100000 kg"),
    ("passes", "default_tolerance_kg", "nan", "nan", "0 <= {} <= 100000 kg"),
    ("mqtt", "keepalive_s", "0", "0", "1 <= {} <= 3600 s"),
    ("mqtt", "keepalive_s", "-10", "-10", "1 <= {} <= 3600 s"),
    ("mqtt", "keepalive_s", "3601", "3601", "1 <= {} <= 3600 s"),
    ("mqtt", "health_interval_s", "nan", "nan", WAIT),
    ("mqtt", "health_interval_s", "inf", "inf", WAIT),
    ("mqtt", "health_interval_s", "0", "0", WAIT),
    ("mqtt", "health_interval_s", "-30", "-30", WAIT),
    ("mqtt", "health_interval_s", "86401", "86401", WAIT),
    ("mqtt", "outbox_max_mb", "0", "0", "1 <= {} <= 1048576 MB"),
    ("mqtt", "outbox_max_mb", "-512", "-512", "1 <= {} <= 1048576 MB"),
    ("mqtt", "outbox_max_mb", "nan", "nan", "1 <= {} <= 1048576 MB"),
    ("mqtt", "outbox_max_mb", "0.5", "0.5", "1 <= {} <= 1048576 MB"),
    ("mqtt", "reconnect_first_min_s", "0", "0", WAIT),
    ("mqtt", "reconnect_first_min_s", "nan", "nan", WAIT),
    ("mqtt", "reconnect_first_max_s", "-1", "-1", WAIT),
    ("mqtt", "reconnect_max_s", "86401", "86401", WAIT),
    ("mqtt", "reconnect_max_s", "inf", "inf", WAIT),
]


@pytest.mark.parametrize(
    ("section", "key", "toml_value", "shown", "allowed"),
    REFUSED,
    ids=[f"{s}.{k}={v[:12]}" for s, k, v, _, _ in REFUSED],
)
def test_a_number_out_of_range_names_file_key_value_and_range(
    tmp_path: Path, section: str, key: str, toml_value: str, shown: str, allowed: str
) -> None:
    path = write(tmp_path, with_setting(section, key, toml_value))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {section}.{key}: must be ")
    assert message.endswith(f", got {shown}; allowed: " + allowed.format(key))
    assert "\n" not in message


def test_e_kg_is_at_most_a_twentieth_of_max_kg(tmp_path: Path) -> None:
    path = write(tmp_path, with_setting("weighbridge", "e_kg", "3000.5"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: weighbridge.e_kg: must be at most max_kg / 20 = 3000 kg "
                                 "(a scale has at least 20 divisions), got 3000.5")


ACCEPTED = [
    # (section, key, TOML value, the value loaded)
    ("lane", "pass_without_truck_s", "0.001", 0.001),
    ("lane", "pass_without_truck_s", "86400", 86400.0),
    ("io_board", "baudrate", "300", 300),
    ("io_board", "baudrate", "4000000", 4_000_000),
    ("io_board", "t_clear_s", "0.1", 0.1),
    ("io_board", "t_clear_s", "60", 60.0),
    ("weighbridge", "max_kg", "1000000", 1_000_000.0),
    ("weighbridge", "max_kg", "400", 400.0),  # exactly 20 e with the default e_kg = 20
    ("weighbridge", "e_kg", "3000", 3000.0),  # exactly max_kg / 20 with the default max_kg
    ("weighbridge", "e_kg", "0.001", 0.001),
    ("weighbridge", "unstable_timeout_s", "0.001", 0.001),
    ("weighbridge", "unstable_timeout_s", "86400", 86400.0),
    ("weighbridge", "not_on_deck_s", "86400", 86400.0),
    ("weighbridge", "frozen_s", "0.5", 0.5),
    ("camera", "confirm_frames", "1", 1),
    ("camera", "confirm_frames", "10", 10),
    ("camera", "snapshot_cap_mb", "1", 1.0),
    ("camera", "snapshot_cap_mb", "1048576", 1_048_576.0),
    ("passes", "skew_s", "0", 0),
    ("passes", "skew_s", "3600", 3600),
    ("passes", "default_tolerance_kg", "0", 0.0),
    ("passes", "default_tolerance_kg", "100000", 100_000.0),
    ("mqtt", "keepalive_s", "1", 1),
    ("mqtt", "keepalive_s", "3600", 3600),
    ("mqtt", "health_interval_s", "0.5", 0.5),
    ("mqtt", "health_interval_s", "86400", 86400.0),
    ("mqtt", "outbox_max_mb", "1", 1.0),
    ("mqtt", "outbox_max_mb", "1048576", 1_048_576.0),
    ("mqtt", "reconnect_max_s", "86400", 86400.0),
]


@pytest.mark.parametrize(
    ("section", "key", "toml_value", "loaded"),
    ACCEPTED,
    ids=[f"{s}.{k}={v}" for s, k, v, _ in ACCEPTED],
)
def test_the_edges_of_each_range_are_accepted(
    tmp_path: Path, section: str, key: str, toml_value: str, loaded: float
) -> None:
    config = load_config(write(tmp_path, with_setting(section, key, toml_value)))
    value = getattr(getattr(config, section), key)
    assert value == loaded and type(value) is type(loaded)


def test_every_numeric_setting_has_a_range_and_its_default_lies_in_it() -> None:
    numeric: dict[str, object] = {}
    for name, section in config_module.SECTIONS.items():
        for item in dataclasses.fields(section):
            kind = str(item.type)
            if "int" in kind or "float" in kind:
                # The range the field is checked against is the table's entry for its own key.
                assert f"('{name}.{item.name}')" in kind, (name, item.name, kind)
                numeric[f"{name}.{item.name}"] = item.default
    assert set(numeric) == set(SETTING_RANGES)
    for name, default in numeric.items():
        assert default is None or default in SETTING_RANGES[name], name


def test_the_io_boards_own_t_clear_limits_are_the_files_range() -> None:
    allowed = SETTING_RANGES["io_board.t_clear_s"]
    assert (allowed.low, allowed.high, allowed.low_open) == (*CONFIG_LIMITS_S["t_clear_s"], False)


def test_an_integer_setting_given_a_float_names_the_type_and_the_range(tmp_path: Path) -> None:
    for value in ("300.0", "nan"):
        with pytest.raises(
            ConfigError,
            match=r"passes.skew_s: must be a whole number, got .*; "
            r"allowed: 0 <= skew_s <= 3600 s$",
        ):
            load_config(write(tmp_path, with_setting("passes", "skew_s", value)))


def test_a_boolean_is_not_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"weighbridge.max_kg: must be a number, got true"):
        load_config(write(tmp_path, with_setting("weighbridge", "max_kg", "true")))


def test_an_integer_too_long_for_python_is_bad_toml_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, with_setting("passes", "skew_s", "1" * 5000)))


def test_a_file_that_is_not_utf8_or_not_a_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(GOOD.encode() + b"# \xff\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("0.0.0.0:8787", "is not a loopback address"),
        ("[::]:8787", "is not a loopback address"),
        ("::0:8787", "is not a loopback address"),
        ("192.168.1.10:8787", "is not a loopback address"),
        ("10.0.0.5:8787", "is not a loopback address"),
        ("lane.example:8787", "is not a loopback address"),
        ("127.1:8787", "is not a loopback address"),  # short forms are not loopback literals
        ("127.0.0.1", "is not HOST:PORT"),
        ("127.0.0.1:", "is not HOST:PORT"),
        (":8787", "is not HOST:PORT"),
        ("localhost:http", "is not HOST:PORT"),
        ("127.0.0.1:-1", "is not HOST:PORT"),
        ("127.0.0.1:８７８７", "is not HOST:PORT"),  # fullwidth digits
        ("[::1]8787", "is not HOST:PORT"),
        ("127.0.0.1:0", "has a port outside 1..65535"),
        ("127.0.0.1:65536", "has a port outside 1..65535"),
        ("127.0.0.1:" + "9" * 5000, "has a port outside 1..65535"),
    ],
)
def test_status_listen_must_be_a_loopback_host_and_a_valid_port(
    tmp_path: Path, listen: str, problem: str
) -> None:
    path = write(tmp_path, with_setting("status", "listen", json.dumps(listen)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: status.listen: ")
    assert problem in message and "\n" not in message
    if "loopback" in problem:  # the way out: a token, or a loopback address
        assert "set token_file" in message and "127.0.0.0/8, ::1 or localhost" in message


@pytest.mark.parametrize(
    "listen",
    [
        "127.0.0.1:8787",
        "127.255.255.254:1",
        "localhost:65535",
        "Localhost:8787",
        "[::1]:8787",
        "::1:8787",
    ],
)
def test_status_listen_on_loopback_is_accepted(tmp_path: Path, listen: str) -> None:
    config = load_config(write(tmp_path, with_setting("status", "listen", json.dumps(listen))))
    assert config.status.listen == listen


def test_status_listen_defaults_to_loopback(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, GOOD)).status.listen == "127.0.0.1:8787"


def test_the_example_file_is_within_every_range(tmp_path: Path) -> None:
    example = Path(config_module.__file__).parent / "deploy" / "agent.example.toml"
    text = example.read_text().replace('# gate = "G3"', 'gate = "G3"', 1)
    config = load_config(write(tmp_path, text))
    assert config.weighbridge.max_kg == 60000.0 and config.mqtt.outbox_max_mb == 512.0
