"""The weighing and plate settings of the configuration file: validated, and handed to the lane."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import ConfigFileError, check_config, load_config
from edge_agent.protocols import gp1
from edge_agent.site_policy import policy_from_config
from edge_agent.tests.test_config import GOOD, with_setting, write
from edge_agent.translate import DeviceInputs, PassAuthority
from edge_agent.weighing.declared import Tare, TolerancePolicy
from edge_agent.weighing.events import WeightCommitted

SETTINGS = """
[passes]
trust_list = "trust.json"
default_tolerance_kg = 150
tolerance_rule = "both"
tolerance_percent = 2.5
tare_band_kg = 300
tares = { "SU-A1001" = 14200, "SU-B2002" = { kg = 15800, band_kg = 800 } }

[plates]
region = [0, 360, 1280, 360]
wait_s = 1.5
unread = "flag"
"""


def configured(tmp_path: Path, text: str) -> Path:
    base = GOOD.replace('[passes]\ntrust_list = "trust.json"\n', "")
    return write(tmp_path, base + text)


def test_the_file_s_rules_reach_the_lane_s_policy(tmp_path: Path) -> None:
    text = SETTINGS.replace("[plates]", '[plates]\nengine = "fake-plates://gate"')
    config = load_config(configured(tmp_path, text))
    policy = policy_from_config(config)
    assert policy.tolerance_policy == TolerancePolicy(rule="both", absolute_kg=150.0,
                                                      percent=2.5)
    assert policy.tares == {"SU-A1001": Tare(14200.0, 300.0), "SU-B2002": Tare(15800.0, 800.0)}
    identity = policy.identity
    assert identity.checks == ("plate",) and identity.wait_s == 1.5
    assert identity.unread_policy("plate") == "flag"
    assert config.plates.region == (0, 360, 1280, 360)


def test_without_those_keys_the_lane_decides_as_it_always_did(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    policy = policy_from_config(config)
    assert policy.identity.checks == ()  # no plate source: no plate check
    assert policy.tolerance_policy == TolerancePolicy()  # both: 1 %, at least 5 e
    assert policy.tares == {}
    assert not config.plates.configured and config.weighbridge.indication_wait_s == 5.0


@pytest.mark.parametrize(("section", "line", "key", "words"), [
    ("passes", 'tolerance_rule = "percentage"', "passes.tolerance_rule",
     "must be one of absolute, percent, both"),
    ("passes", "tolerance_percent = 75", "passes.tolerance_percent", "at most 50 %"),
    ("passes", 'tares = { "SU-1" = 0 }', "passes.tares", '"SU-1": kg must be more than 0 kg'),
    ("passes", 'tares = { "SU-1" = { kg = 9000, band = 100 } }', "passes.tares",
     "unknown key 'band'"),
    ("passes", 'tares = { "SU-1" = 9000, "su 1" = 9100 }', "passes.tares",
     'names one plate twice: "SU-1" and "su 1"'),
    ("weighbridge", "indication_wait_s = 0", "weighbridge.indication_wait_s",
     "more than 0 s"),
    ("plates", "wait_s = 60", "plates.wait_s", "at most 30 s"),
    ("plates", 'unread = "ignore"', "plates.unread", "must be one of hold, flag"),
    ("plates", "region = [0, 0, 8, 8]", "plates.region", "width, height >= 16"),
    ("plates", 'region = "top"', "plates.region", "must be [x, y, width, height]"),
    ("plates", 'engine = "tesseract"', "plates.engine", "must be one of hyperlpr2"),
])
def test_a_wrong_value_is_refused_naming_its_key(
    tmp_path: Path, section: str, line: str, key: str, words: str,
) -> None:
    name, _, value = line.partition(" = ")
    path = write(tmp_path, with_setting(section, name, value))
    [problem] = check_config(path)
    assert problem.key == key and words in problem.reason, problem
    with pytest.raises(ConfigFileError, match=key.replace(".", r"\.")):
        load_config(path)


def test_the_indication_wait_reaches_the_gate_behind_the_watcher(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, with_setting("weighbridge", "indication_wait_s",
                                                      "2.5")))
    inputs = DeviceInputs(config, PassAuthority(gp1.TrustList([]), frozenset()),
                          is_used=lambda cti: False, pass_time=lambda: 0.0)
    committed = WeightCommitted(10.0, 30_000.0, 10.0, 9.0, ())
    assert inputs.indication.pass_on(10.0, [committed]) == []  # waits for the indicator
    assert inputs.next_deadline() == 12.5
