"""Remote settings: what a signed config may change, how it is checked, and what is reported."""

from __future__ import annotations

import tomllib

import pytest

from edge_agent.config import AgentConfig, parse_config
from edge_agent.remote_config import (
    REMOTE_SETTINGS,
    apply_settings,
    check_config_args,
    reported,
    settings_problems,
)

LOCAL = parse_config(tomllib.loads("""
[lane]
site = "BZ01"
lane = "exit-03"
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
"""))


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
