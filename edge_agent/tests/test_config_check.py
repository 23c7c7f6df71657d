"""``check_config``: every problem of a file at once, in file order, in plain words."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from edge_agent import config as config_module
from edge_agent.config import ConfigFileError, ConfigProblem, check_config, load_config
from edge_agent.errors import ConfigError

GOOD = """\
[lane]
site = "BZ01"
lane = "exit-03"
gate = "G3"

[io_board]
url = "/dev/serial/by-id/usb-gatelane-io"

[weighbridge]
url = "/dev/ttyUSB0"

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
    path.write_text(text, encoding="utf-8")
    return path


def lines(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).splitlines()


def test_a_good_file_has_no_problems_and_loads(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert check_config(path) == []
    config = load_config(path)
    assert config.lane.gate == "G3" and config.lane.any_gate is False
    # The new sections' defaults.
    assert config.logging.level == "info"
    assert config.clock.wait_for_sync_s == 0.0
    assert config.control.socket == Path("/run/gatelane/control.sock")
    assert config.status.token_file is None


def test_five_problems_give_five_lines_in_file_order(tmp_path: Path) -> None:
    text = (GOOD.replace('gate = "G3"', 'gate = "G3"\ndirection = "up"')
            .replace('url = "/dev/ttyUSB0"', 'url = "/dev/ttyUSB0"\nfrozen_sec = 5\nmax_kg = "60"')
            .replace("lab = true", 'lab = true\nkeepalive_s = 0')
            + '\n[stauts]\nlisten = "127.0.0.1:8787"\n')  # fmt: skip
    path = write(tmp_path, text)
    problems = check_config(path)
    assert [str(item) for item in problems] == [
        'lane.direction: must be one of exit, entry, got "up"',
        "weighbridge.frozen_sec: unknown key; did you mean frozen_s?",
        'weighbridge.max_kg: must be a number, got "60"; allowed: 0 < max_kg <= 1000000 kg',
        "mqtt.keepalive_s: must be at least 1 s, got 0; allowed: 1 <= keepalive_s <= 3600 s",
        "stauts: unknown section; did you mean [status]?",
    ]
    # load_config raises one error listing the same problems, each line naming the file.
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert caught.value.problems == problems
    assert str(caught.value).splitlines() == [f"{path}: {item}" for item in problems]


def test_keys_are_checked_against_each_other_beside_a_sections_other_problems(
    tmp_path: Path,
) -> None:
    scale = 'url = "/dev/ttyUSB0"\nfrozen_sec = 5\ne_kg = 5000'
    text = (GOOD.replace('url = "/dev/ttyUSB0"', scale)
            .replace("lab = true", "keepalive_s = -1"))  # plain TCP without lab, a bad number
    assert [str(item) for item in check_config(write(tmp_path, text))] == [
        "weighbridge.frozen_sec: unknown key; did you mean frozen_s?",
        "weighbridge.e_kg: must be at most max_kg / 20 = 3000 kg (a scale has at least 20 "
        "divisions), got 5000",
        'mqtt.broker: "mqtt://127.0.0.1:1883" is plain TCP, not TLS; use mqtts:// with ca, cert '
        "and key, or set lab = true only for a lab or simulator setup",
        "mqtt.keepalive_s: must be at least 1 s, got -1; allowed: 1 <= keepalive_s <= 3600 s",
    ]
    # A check across keys waits until the keys it reads are right: no guess from a default.
    wrong = GOOD.replace('url = "/dev/ttyUSB0"', 'url = "/dev/ttyUSB0"\nmax_kg = "60"\ne_kg = 5000')
    assert [item.key for item in check_config(write(tmp_path, wrong))] == ["weighbridge.max_kg"]


def test_a_problem_is_one_line_key_colon_reason() -> None:
    assert str(ConfigProblem("lane.gate", "is required")) == "lane.gate: is required"
    assert str(ConfigProblem("", "not valid TOML: x")) == "not valid TOML: x"


@pytest.mark.parametrize(
    ("section", "line", "problem"),
    [
        ("weighbridge", "frozen_sec = 5",
         "weighbridge.frozen_sec: unknown key; did you mean frozen_s?"),
        ("mqtt", "keepalive = 5", "mqtt.keepalive: unknown key; did you mean keepalive_s?"),
        ("lane", "gates = 'G3'", "lane.gates: unknown key; did you mean gate?"),
        ("camera", "zoom = 2", "camera.zoom: unknown key; known keys: source, confirm_frames, "
                               "snapshot_dir, snapshot_cap_mb"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_refused_with_the_closest_known_name(
    tmp_path: Path, section: str, line: str, problem: str
) -> None:
    text = GOOD.replace(f"[{section}]\n", f"[{section}]\n{line}\n")
    assert [str(item) for item in check_config(write(tmp_path, text))] == [problem]


def test_an_unknown_section_or_a_key_outside_any_section_is_refused(tmp_path: Path) -> None:
    text = ('site = "BZ01"\n' + GOOD
            + '\n[stauts]\nlisten = "127.0.0.1:1"\n[cameras]\n[frobnicate]\n')
    assert [str(item) for item in check_config(write(tmp_path, text))] == [
        "site: unknown key at the top of the file; it belongs in [lane]",
        "stauts: unknown section; did you mean [status]?",
        "cameras: unknown section; did you mean [camera]?",
        "frobnicate: unknown section; known sections: lane, io_board, weighbridge, camera, "
        "passes, mqtt, plates, containers, eseal, status, logging, clock, control",
    ]


@pytest.mark.parametrize(
    ("section", "line", "problem"),
    [
        ("weighbridge", 'e_kg = "5"', 'weighbridge.e_kg: must be a number, got "5"'),
        ("weighbridge", "max_kg = true", "weighbridge.max_kg: must be a number, got true"),
        ("io_board", "baudrate = 9600.0", "io_board.baudrate: must be a whole number, got 9600.0"),
        ("camera", "confirm_frames = false",
         "camera.confirm_frames: must be a whole number, got false"),
        ("lane", "site = 5", "lane.site: must be text in quotes, got 5"),
        ("lane", "site = ''", "lane.site: must not be empty"),
        ("mqtt", 'lab = "yes"', 'mqtt.lab: must be true or false, got "yes"'),
        ("mqtt", "lab = 1", "mqtt.lab: must be true or false, got 1"),
        ("passes", "trust_list = ['a']", "passes.trust_list: must be a path in quotes, got a list"),
        ("camera", "source = 1979-05-27", "camera.source: must be text in quotes, got a date"),
    ],
)  # fmt: skip
def test_types_are_strict(tmp_path: Path, section: str, line: str, problem: str) -> None:
    key, current, out = line.split(" =")[0], "", []
    for row in GOOD.splitlines():
        current = row.strip("[]") if row.startswith("[") else current
        if not (current == section and row.startswith(f"{key} =")):
            out.append(row)
        if row == f"[{section}]":
            out.append(line)
    found = [str(item) for item in check_config(write(tmp_path, "\n".join(out) + "\n"))]
    assert len(found) == 1 and found[0].startswith(problem), found


def test_text_settings_with_a_fixed_form_say_what_they_expect(tmp_path: Path) -> None:
    text = (GOOD.replace('url = "/dev/ttyUSB0"', 'url = "/dev/ttyUSB0"\nprotocol = "toldeo"\n'
                         'line = "9X1"')
            .replace('broker = "mqtt://127.0.0.1:1883"', 'broker = "tcp://127.0.0.1:1883"'))
    assert [str(item) for item in check_config(write(tmp_path, text))] == [
        "weighbridge.protocol: must be one of yaohua-tf0, yaohua-eq, yaohua-eq-rev, toledo, "
        'ad-ascii, sma, got "toldeo"; did you mean toledo?',
        "weighbridge.line: must be like 8N1 or 7E1 (7 or 8 data bits, parity N, E or O, "
        '1 or 2 stop bits), got "9X1"',
        'mqtt.broker: must be mqtts://HOST[:PORT] (mqtt:// in a lab), got "tcp://127.0.0.1:1883":'
        " scheme must be mqtt:// or mqtts://",
    ]


def test_a_section_that_is_not_a_table_is_named(tmp_path: Path) -> None:
    text = 'logging = "debug"\n' + GOOD
    assert [str(item) for item in check_config(write(tmp_path, text))] == [
        'logging: must be a section [logging], got "debug"'
    ]


def test_a_missing_section_names_its_required_keys(tmp_path: Path) -> None:
    text = GOOD.replace('[io_board]\nurl = "/dev/serial/by-id/usb-gatelane-io"\n', "")
    found = [str(item) for item in check_config(write(tmp_path, text))]
    assert found == ["io_board.url: is required"]


# -- the gate --------------------------------------------------------------------------------


def test_a_lane_without_a_gate_is_refused_unless_any_gate_is_set(tmp_path: Path) -> None:
    no_gate = GOOD.replace('gate = "G3"\n', "")
    [problem] = check_config(write(tmp_path, no_gate))
    assert problem.key == "lane.gate" and problem.reason.startswith("is required")
    assert "any_gate = true" in problem.reason
    config = load_config(write(tmp_path, no_gate.replace("[lane]\n", "[lane]\nany_gate = true\n")))
    assert config.lane.gate is None and config.lane.any_gate is True
    both = GOOD.replace("[lane]\n", "[lane]\nany_gate = true\n")
    assert [str(item) for item in check_config(write(tmp_path, both))] == [
        "lane.any_gate: cannot be true when gate is set; remove one of them"
    ]
    false = no_gate.replace("[lane]\n", "[lane]\nany_gate = false\n")
    assert [item.key for item in check_config(write(tmp_path, false))] == ["lane.gate"]


# -- the status page's token -----------------------------------------------------------------


def with_status(lines_: str) -> str:
    return GOOD + "\n[status]\n" + lines_


def test_a_network_listen_needs_a_token_file_with_a_long_enough_token(tmp_path: Path) -> None:
    [problem] = check_config(write(tmp_path, with_status('listen = "0.0.0.0:8787"\n')))
    assert problem.key == "status.listen" and "set token_file" in problem.reason
    (tmp_path / "page.token").write_text("0123456789abcdef\n")  # 16 characters
    config = load_config(write(tmp_path, with_status(
        'listen = "0.0.0.0:8787"\ntoken_file = "page.token"\n')))  # fmt: skip
    assert config.status.token_file == tmp_path / "page.token"  # relative to the file
    assert config.status.listen == "0.0.0.0:8787"


ONE_WORD = "{path} must hold one word of at least 16 characters, it holds "
MAKE_ONE = " (make one with: openssl rand -hex 16 > {path})"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found: {path}"),
        ("short-token\n", ONE_WORD + "11" + MAKE_ONE),
        ("   \n", ONE_WORD + "0" + MAKE_ONE),
        ("two words of enough length\n", ONE_WORD + "26" + MAKE_ONE),
        (b"\xff" * 20, "cannot be read: {path}: not UTF-8 text"),
    ],
)
def test_a_token_file_is_checked_at_load(
    tmp_path: Path, content: str | bytes | None, reason: str
) -> None:
    token = tmp_path / "page.token"
    if isinstance(content, str):
        token.write_text(content)
    elif isinstance(content, bytes):
        token.write_bytes(content)
    path = write(tmp_path, with_status('token_file = "page.token"\n'))
    assert [str(item) for item in check_config(path)] == [
        "status.token_file: " + reason.format(path=token)
    ]
    assert lines(path) == [f"{path}: status.token_file: " + reason.format(path=token)]


def test_a_token_file_on_loopback_is_still_checked_and_the_secret_never_shown(
    tmp_path: Path,
) -> None:
    (tmp_path / "page.token").write_text("s3cr3t")
    [problem] = check_config(write(tmp_path, with_status('token_file = "page.token"\n')))
    assert problem.key == "status.token_file" and "s3cr3t" not in problem.reason


# -- the new keys ----------------------------------------------------------------------------


def test_logging_clock_and_control_keys(tmp_path: Path) -> None:
    text = GOOD + ('\n[logging]\nlevel = "debug"\n[clock]\nwait_for_sync_s = 90\n'
                   '[control]\nsocket = "run/control.sock"\n')  # fmt: skip
    config = load_config(write(tmp_path, text))
    assert config.logging.level == "debug"
    assert config.clock.wait_for_sync_s == 90.0 and isinstance(config.clock.wait_for_sync_s, float)
    assert config.control.socket == tmp_path / "run" / "control.sock"
    bad = GOOD + '\n[logging]\nlevel = "loud"\n[clock]\nwait_for_sync_s = 3601\n'
    assert [str(item) for item in check_config(write(tmp_path, bad))] == [
        'logging.level: must be one of debug, info, warning, error, got "loud"',
        "clock.wait_for_sync_s: must be at most 3600 s, got 3601; "
        "allowed: 0 <= wait_for_sync_s <= 3600 s",
    ]


def test_file_level_problems_are_one_problem_without_a_key(tmp_path: Path) -> None:
    [missing] = check_config(tmp_path / "nope.toml")
    assert (missing.key, missing.reason) == ("", "configuration file not found")
    [broken] = check_config(write(tmp_path, "[lane\n"))
    assert broken.key == "" and broken.reason.startswith("not valid TOML: ")


# -- the shipped example ---------------------------------------------------------------------


def test_the_example_file_passes_once_its_gate_is_set_and_documents_every_key(
    tmp_path: Path,
) -> None:
    example = Path(config_module.__file__).parent / "deploy" / "agent.example.toml"
    copy = tmp_path / "agent.toml"
    shutil.copy(example, copy)
    # As shipped it names the one value every lane must set: no lane takes a made-up gate.
    assert [item.key for item in check_config(copy)] == ["lane.gate"]
    text = example.read_text()
    copy.write_text(text.replace('# gate = "G3"', 'gate = "G3"', 1))
    assert check_config(copy) == []
    copy.write_text(text.replace("# any_gate = false", "any_gate = true", 1))
    assert check_config(copy) == []
    for name, section in config_module.SECTIONS.items():
        assert f"[{name}]" in text, name
        for key in (item.name for item in dataclasses.fields(section)):
            # Set or shown commented out, so a technician finds every key in the file.
            assert f"\n{key} = " in text or f"\n# {key} = " in text, f"{name}.{key}"
