"""SIGHUP's reload, decided on real configuration files: what applies now, what waits."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.lifecycle import reread
from edge_agent.reload import RELOADABLE, plan_reload
from edge_agent.remote_config import REMOTE_SETTINGS
from edge_agent.tests.agent_files import lane_config


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_an_unchanged_file_changes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "agent.toml", lane_config(tmp_path))
    running = load_config(path)
    plan = plan_reload(running, load_config(path))
    assert plan.applied == [] and plan.restart == [] and plan.config == running
    assert plan.summary(path) == f"config {path} re-read: nothing changed"


def test_tunable_values_apply_and_device_changes_wait_for_a_restart(tmp_path: Path) -> None:
    text = lane_config(tmp_path)
    path = _write(tmp_path / "agent.toml", text)
    running = load_config(path)
    changed = (text.replace("health_interval_s = 30", "health_interval_s = 5")
               .replace('url = "fake-ioboard://svc"', 'url = "fake-ioboard://other"')
               .replace('protocol = "yaohua-tf0"', 'protocol = "yaohua-tf0"\nfrozen_s = 9')
               + '\n[logging]\nlevel = "debug"\n')
    plan = plan_reload(running, load_config(_write(path, changed)))
    assert plan.applied == ["weighbridge.frozen_s", "mqtt.health_interval_s", "logging.level"]
    assert plan.restart == ["io_board.url"]
    assert plan.config.mqtt.health_interval_s == 5
    assert plan.config.weighbridge.frozen_s == 9
    assert plan.config.logging.level == "debug"
    assert plan.config.io_board.url == "fake-ioboard://svc"  # the running board stays
    assert plan.summary(path) == (
        f"config {path} re-read: applied weighbridge.frozen_s, mqtt.health_interval_s, "
        "logging.level; needs a restart: io_board.url (running values kept)")


def test_reloadable_is_what_the_backend_may_tune_plus_the_log_level() -> None:
    assert set(REMOTE_SETTINGS) | {"logging.level"} == RELOADABLE


def test_a_bad_file_is_refused_and_nothing_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "agent.toml", lane_config(tmp_path))
    running = load_config(path)
    _write(path, lane_config(tmp_path).replace("health_interval_s = 30", "health_interval_s = -1"))
    assert reread(running) is None
    path.unlink()
    assert reread(running) is None
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusals) == 2
    assert all("refused on reload, the running config is kept" in line for line in refusals)
    assert "mqtt.health_interval_s" in refusals[0] and "not found" in refusals[1]
