"""The lane's life as a service, around the decision loop (``app.py`` calls these).

Before the lane opens it waits (``[clock] wait_for_sync_s`` at most) for a synchronised wall
clock; SIGHUP re-reads the file and applies what may change while running (``reload.py``); a
planned stop stores a ``lane_offline`` event and hands it to the broker before the retained
farewell, so the backend tells a stop from a crash (whose last will says ``lost``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.clock import ClockStatus, wait_for_sync
from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError
from edge_agent.notify import LaneSummary
from edge_agent.reload import Reload, plan_reload
from edge_agent.telemetry.publisher import Publisher

log = logging.getLogger("edge_agent")

STOP_HANDOVER_S = 2.0  # on a planned stop, how long the lane_offline event may take to leave


@dataclass(frozen=True, slots=True)
class Stop:
    """Why the agent stops: ``stopped`` (planned) or ``failed`` (an error ended the run)."""

    reason: str
    by: str | None = None  # e.g. "SIGTERM"
    detail: str | None = None

    def __str__(self) -> str:
        return ", ".join(part for part in (self.reason, self.by, self.detail) if part)

    def event(self, lane_state: str) -> dict[str, Any]:
        """The ``lane_offline`` event's data."""
        return {"reason": self.reason, "by": self.by, "detail": self.detail,
                "state": lane_state}


def wait_for_clock(
    status: ClockStatus, wait_s: float, *, clock: Callable[[], float],
    stop: threading.Event, turned: Callable[[], None],
) -> bool:
    """Wait for a synced wall clock, ``turned()`` on each step (the watchdog goes on).
    False if the agent was stopped meanwhile."""

    def pause(seconds: float) -> bool:
        turned()
        return stop.wait(seconds)

    synced, _source = wait_for_sync(status, wait_s, clock=clock, sleep=pause)
    if stop.is_set():
        return False
    if not synced and wait_s > 0:
        log.warning("wall clock not synchronised after %g s: the lane opens, its records say "
                    "clock.synced=false", wait_s)
    return True


def reread(local: AgentConfig) -> Reload | None:
    """The reload of the running file, or None (logged) when the file is refused."""
    source = local.source
    try:
        if source is None:
            raise ConfigError("the running configuration was not read from a file")
        return plan_reload(local, load_config(source))
    except ConfigError as exc:
        log.error("config %s refused on reload, the running config is kept: %s", source,
                  str(exc).replace("\n", "; "))
        return None


def hand_over(publisher: Publisher, seq: int, timeout: float = STOP_HANDOVER_S) -> bool:
    """Wait until the broker has event ``seq`` (while connected, at most ``timeout``)."""
    give_up = time.monotonic() + timeout
    while not publisher.handed_over(seq):
        if time.monotonic() >= give_up or not publisher.status()["connected"]:
            log.warning("event seq %s not handed to the broker before stopping; it stays in "
                        "the outbox for the next start", seq)
            return False
        time.sleep(0.02)
    return True


def readiness(
    phase: str, alive: list[str], *, board_up: bool, camera_up: bool | None,
    storage_error: str | None,
) -> list[str]:
    """Why the lane cannot take trucks now (empty: ready)."""
    if phase != "running":
        return [f"lane {phase}"]
    problems = list(alive)
    if not board_up:
        problems.append("io board link down")
    if camera_up is False:
        problems.append("camera down")
    if storage_error is not None:
        problems.append(f"storage fault: {storage_error}")
    return problems


def summary(lane: str, state: str, mode: str | None, publisher: Publisher | None) -> str:
    """The ``STATUS=`` line."""
    telemetry = publisher.status() if publisher is not None else {}
    return LaneSummary(lane, state, mode, bool(telemetry.get("connected")),
                       int(telemetry.get("pending", 0))).line()
