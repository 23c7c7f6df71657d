"""Remote settings: what a signed config may change, how it is checked, and what is reported."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from edge_agent.config import SETTING_RANGES, AgentConfig, parse_config
from edge_agent.remote_config import (
    REMOTE_SETTINGS,
    RemoteSetting,
    apply_settings,
    check_config_args,
    reported,
    settings_problems,
)

LOCAL_TEXT = """
[lane]
site = "BZ01"
lane = "exit-03"
gate = "G3"
[io_board]
url = "/dev/ttyACM0"
[weighbridge]
url = "/dev/ttyUSB0"
not_on_deck_s = 7
[camera]
source = "picamera2:"
[passes]
trust_list = "trust.json"
[mqtt]
broker = "mqtt://127.0.0.1:1883"
lab = true
"""
LOCAL = parse_config(tomllib.loads(LOCAL_TEXT))


def test_desired_settings_override_the_file_and_the_rest_keep_the_files_values() -> None:
    effective = apply_settings(LOCAL, {"passes.skew_s": 60, "passes.default_tolerance_kg": 400})
    assert effective.passes.skew_s == 60
    assert effective.passes.default_tolerance_kg == 400.0
    assert effective.weighbridge.not_on_deck_s == 7.0  # from the file
    assert effective.lane == LOCAL.lane and effective.io_board == LOCAL.io_board
    # A later document that leaves a setting out returns it to the file's value.
    assert apply_settings(effective, {}) == effective
    assert apply_settings(LOCAL, {"passes.skew_s": 60}).passes.default_tolerance_kg is None


def test_reported_lists_every_remote_setting_as_json_numbers() -> None:
    values = reported(apply_settings(LOCAL, {"weighbridge.frozen_s": 9}))
    assert set(values) == set(REMOTE_SETTINGS)
    assert values["weighbridge.frozen_s"] == 9 and isinstance(values["weighbridge.frozen_s"], int)
    assert values["weighbridge.not_on_deck_s"] == 7
    assert values["passes.default_tolerance_kg"] is None


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"lane.gate": "G1"}, "lane.gate: not a remote setting"),
        ({"io_board.t_clear_s": 1}, "io_board.t_clear_s: not a remote setting"),
        ({"passes.skew_s": 3601}, "outside 0..3600"),
        ({"weighbridge.frozen_s": 1}, "outside 2..120"),
        ({"weighbridge.frozen_s": "10"}, "expected an integer"),
        ({"weighbridge.frozen_s": True}, "expected an integer"),
        ({"weighbridge.frozen_s": None}, "may not be null"),
    ],
)
def test_each_bad_setting_is_named_with_its_reason(settings: dict[str, object],
                                                   problem: str) -> None:
    [found] = settings_problems(settings)
    assert problem in found
    with pytest.raises(ValueError, match=r"remote setting|outside|integer|null"):
        apply_settings(LOCAL, settings)


def test_every_problem_of_a_document_is_reported_at_once() -> None:
    problems = check_config_args({"settings": {"passes.skew_s": -1, "nope": 1,
                                               "passes.default_tolerance_kg": None}})
    assert len(problems) == 2
    assert check_config_args({"settings": []}) == ["settings must be an object"]


def test_safety_and_identity_settings_are_never_remote() -> None:
    sections = {setting.section for setting in REMOTE_SETTINGS.values()}
    assert sections <= {"weighbridge", "passes", "mqtt"}
    forbidden = {"weighbridge.max_kg", "weighbridge.e_kg", "mqtt.broker", "passes.trust_list"}
    assert not forbidden & set(REMOTE_SETTINGS)
    assert isinstance(apply_settings(LOCAL, {}), AgentConfig)


def _with(section: str, key: str, value: int) -> AgentConfig:
    """The lane's file with ``key = value`` in ``section``, through the file's own checks."""
    raw = tomllib.loads(LOCAL_TEXT)
    raw[section][key] = value
    return parse_config(raw)


@pytest.mark.parametrize("name", sorted(REMOTE_SETTINGS))
def test_a_remote_range_is_never_wider_than_the_files(name: str) -> None:
    setting = REMOTE_SETTINGS[name]
    allowed = SETTING_RANGES[name]
    assert setting.file_range is allowed and setting.unit == allowed.unit
    # Each end the backend may send is a value the lane's own file may hold too.
    for value in (setting.low, setting.high):
        assert value in allowed
        from_file = getattr(
            getattr(_with(setting.section, setting.key, value), setting.section), setting.key
        )
        assert from_file == getattr(
            getattr(apply_settings(LOCAL, {name: value}), setting.section), setting.key
        )
    # null is remote only where the file may leave the setting out (its default is None).
    field = {f.name: f for f in dataclasses.fields(getattr(LOCAL, setting.section))}[setting.key]
    assert setting.nullable == (field.default is None)


@pytest.mark.parametrize(
    ("section", "key", "low", "high"),
    [
        ("passes", "skew_s", 0, 3601),  # above the file's 3600
        ("passes", "skew_s", -1, 60),  # below the file's 0
        ("weighbridge", "frozen_s", 0, 10),  # the file refuses 0 s
        ("passes", "default_tolerance_kg", 1, 100_001),
        ("mqtt", "health_interval_s", 60, 5),  # empty
    ],
)
def test_a_remote_setting_wider_than_the_file_cannot_be_declared(
    section: str, key: str, low: int, high: int
) -> None:
    with pytest.raises(ValueError, match=f"{section}.{key}: remote .* wider than the file's"):
        RemoteSetting(section, key, low, high)


def test_a_remote_setting_must_be_a_numeric_file_setting() -> None:
    with pytest.raises(KeyError):
        RemoteSetting("lane", "gate", 0, 1)
