"""Settings the backend may change with a signed ``config`` command (desired -> reported).

Only tuning that cannot make the barrier less safe is remote: time limits of the weight
watcher, the pass clock skew, the default declared-weight tolerance and the health interval.
Identity (site, lane, gate), devices, keys and everything the IO board enforces stay in the
lane's local file. Each remote range lies inside the file's range for the same key
(``config.SETTING_RANGES``), so a signed command can never set what the file would refuse.

A ``config`` command carries the whole desired document ``{"settings": {name: value}}``: a
setting it names overrides the local file, a setting it leaves out goes back to the file's
value, so one version always means one state. Values are integers (signed claims carry no
floats); ``null`` is allowed where the setting says so. The lane reports the effective values
of every remote setting in the command's result and in each health report.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_agent.config import SETTING_RANGES, AgentConfig, Range

if TYPE_CHECKING:
    from edge_agent.telemetry.commands import Applied

log = logging.getLogger("edge_agent")


@dataclass(frozen=True, slots=True)
class RemoteSetting:
    """A remote setting: the file's range for the same key, narrowed to ``low..high``."""

    section: str
    key: str
    low: int
    high: int
    nullable: bool = False

    def __post_init__(self) -> None:
        # A range is an interval, so both ends inside the file's range keep all of it inside.
        allowed = self.file_range
        if not (self.low <= self.high and self.low in allowed and self.high in allowed):
            raise ValueError(
                f"{self.name}: remote {self.low}..{self.high} is wider than the file's "
                f"{allowed.describe(self.key)}"
            )

    @property
    def name(self) -> str:
        return self.section + "." + self.key

    @property
    def file_range(self) -> Range:
        return SETTING_RANGES[self.name]

    @property
    def unit(self) -> str:
        return self.file_range.unit


REMOTE_SETTINGS: Mapping[str, RemoteSetting] = {
    setting.name: setting
    for setting in (
        RemoteSetting("weighbridge", "unstable_timeout_s", 5, 300),
        RemoteSetting("weighbridge", "not_on_deck_s", 1, 60),
        RemoteSetting("weighbridge", "frozen_s", 2, 120),
        RemoteSetting("passes", "skew_s", 0, 3600),
        RemoteSetting("passes", "default_tolerance_kg", 1, 5000, nullable=True),
        RemoteSetting("mqtt", "health_interval_s", 5, 3600),
    )
}


def settings_problems(settings: Any) -> list[str]:
    """Every reason the desired ``settings`` cannot be applied (empty when they can)."""
    if not isinstance(settings, Mapping):
        return ["settings must be an object"]
    problems = []
    for name, value in settings.items():
        setting = REMOTE_SETTINGS.get(name)
        if setting is None:
            problems.append(f"{name}: not a remote setting (remote: {', '.join(REMOTE_SETTINGS)})")
        elif value is None:
            if not setting.nullable:
                problems.append(f"{name}: may not be null")
        elif not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{name}: expected an integer number of {setting.unit}")
        elif not setting.low <= value <= setting.high:
            problems.append(
                f"{name}: {value} {setting.unit} is outside {setting.low}..{setting.high}"
            )
    return problems


def check_config_args(args: Mapping[str, Any]) -> list[str]:
    """The lane's check of a ``config`` command (plugged into the command verifier)."""
    return settings_problems(args.get("settings"))


def apply_settings(local: AgentConfig, settings: Mapping[str, Any]) -> AgentConfig:
    """The effective configuration: the local file with the desired remote settings on top."""
    problems = settings_problems(settings)
    if problems:
        raise ValueError("; ".join(problems))
    sections: dict[str, dict[str, Any]] = {}
    for name, value in settings.items():
        setting = REMOTE_SETTINGS[name]
        current = getattr(getattr(local, setting.section), setting.key)
        sections.setdefault(setting.section, {})[setting.key] = (
            value if value is None or isinstance(current, int) else float(value)
        )
    changed = {
        section: dataclasses.replace(getattr(local, section), **values)
        for section, values in sections.items()
    }
    return dataclasses.replace(local, **changed)


def reported(config: AgentConfig) -> dict[str, Any]:
    """The effective value of every remote setting, as JSON numbers."""
    out: dict[str, Any] = {}
    for name, setting in REMOTE_SETTINGS.items():
        value = getattr(getattr(config, setting.section), setting.key)
        out[name] = int(value) if isinstance(value, float) and value.is_integer() else value
    return out


def effective_config(local: AgentConfig, applied: Applied | None) -> AgentConfig:
    """The local file with the last applied remote settings on top (the file alone when none
    were applied, or when the stored ones no longer fit this version's limits)."""
    if applied is None:
        return local
    try:
        return apply_settings(local, applied.body.get("settings", {}))
    except ValueError as exc:  # stored by an agent version with wider limits
        log.error("remote settings (version %s) not applied: %s", applied.version, exc)
        return local
