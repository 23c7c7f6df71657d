"""What a re-read configuration file (SIGHUP) can change while the lane runs.

Reloadable: the log level and every setting the backend may tune remotely (the weight
watcher's time limits, the pass clock skew, the default tolerance, the health interval) —
the values the running lane already knows how to take on the fly. Everything else (identity,
device URLs, the broker, keys, the state folder, listen addresses) is read once at start: a
change to it is reported as needing a restart and the running value is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edge_agent.config import AgentConfig
from edge_agent.remote_config import REMOTE_SETTINGS

RELOADABLE = frozenset({"logging.level", *REMOTE_SETTINGS})


@dataclass(frozen=True, slots=True)
class Reload:
    """The running file's config with the reloadable changes of the new file applied."""

    config: AgentConfig
    applied: list[str]  # "section.key" changed and applied now
    restart: list[str]  # "section.key" changed in the file, kept until a restart

    def summary(self, path: object) -> str:
        if not self.applied and not self.restart:
            return f"config {path} re-read: nothing changed"
        applied = ", ".join(self.applied) or "nothing"
        line = f"config {path} re-read: applied {applied}"
        if self.restart:
            line += f"; needs a restart: {', '.join(self.restart)} (running values kept)"
        return line


def plan_reload(running: AgentConfig, new: AgentConfig) -> Reload:
    """Compare section by section, key by key; apply what may change, report the rest."""
    applied: list[str] = []
    restart: list[str] = []
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(running):
        if section.name == "source":
            continue
        old_part, new_part = getattr(running, section.name), getattr(new, section.name)
        changes: dict[str, Any] = {}
        for key in dataclasses.fields(old_part):
            name = f"{section.name}.{key.name}"
            value = getattr(new_part, key.name)
            if getattr(old_part, key.name) == value:
                continue
            if name in RELOADABLE:
                changes[key.name] = value
                applied.append(name)
            else:
                restart.append(name)
        if changes:
            sections[section.name] = dataclasses.replace(old_part, **changes)
    return Reload(dataclasses.replace(running, **sections), applied, restart)
