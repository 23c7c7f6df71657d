"""What the agent tells systemd: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

``Pulse`` decides (sans-I/O, time as a parameter): on each turn of the decision loop it is
given the loop's problems and the lane's status line and returns the notifications due. The
watchdog is pinged at half of ``WATCHDOG_USEC`` and only while the loop is healthy: a loop that
stops turning sends nothing, and a loop whose stages keep faulting (``LoopHealth``) stops
pinging on purpose, so systemd restarts the agent. ``Notifier`` sends them with libsystemd
(``cysystemd``); without ``NOTIFY_SOCKET`` (a terminal, a test) sending is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cysystemd.daemon import Notification, notify

log = logging.getLogger("edge_agent.notify")

Note = tuple[Notification, str | None]

STALL_S = 10.0  # no turn of the decision loop for this long: it is stuck
FAULTING_S = 30.0  # every turn faulted for this long: the loop keeps failing
STATUS_EVERY_S = 1.0  # a changed STATUS= line goes out at most this often


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None: no watchdog for us."""
    usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None  # meant for another process (we were started by one that has it)
    return int(usec) / 2e6


class LoopHealth:
    """Is the decision loop alive? It turns at least every 0.2 s while healthy.

    ``turned(now, faults)`` on every turn with the loop's fault count so far; ``problems(now)``
    from any thread (the status server's /healthz reads it).
    """

    def __init__(self, *, stall_s: float = STALL_S, faulting_s: float = FAULTING_S) -> None:
        self.stall_s, self.faulting_s = stall_s, faulting_s
        self._last_turn: float | None = None
        self._faults = 0
        self._faulting_since: float | None = None

    def turned(self, now: float, faults: int) -> None:
        if faults > self._faults:
            if self._faulting_since is None:
                self._faulting_since = now
        else:
            self._faulting_since = None
        self._faults = faults
        self._last_turn = now

    def problems(self, now: float) -> list[str]:
        last, since = self._last_turn, self._faulting_since
        if last is None:
            return ["decision loop not running"]
        problems = []
        if now - last > self.stall_s:
            problems.append(f"decision loop stuck for {now - last:.0f} s")
        if since is not None and now - since >= self.faulting_s:
            problems.append(f"decision loop faulting on every turn for {now - since:.0f} s")
        return problems


@dataclass(frozen=True, slots=True)
class LaneSummary:
    """What ``systemctl status`` shows on its Status: line."""

    lane: str
    state: str
    mode: str | None
    broker_up: bool
    outbox: int

    def line(self) -> str:
        doing = self.state if self.mode is None else f"{self.state}, {self.mode}"
        broker = "up" if self.broker_up else "down"
        return f"lane {self.lane}: {doing}; broker {broker}, outbox {self.outbox}"


class Pulse:
    """The notifications due on each turn; ``watchdog_s`` None: the unit has no watchdog."""

    def __init__(self, watchdog_s: float | None, *, status_every_s: float = STATUS_EVERY_S):
        self.watchdog_s = watchdog_s
        self.status_every_s = status_every_s
        self._next_ping = 0.0
        self._next_status = 0.0
        self._status = ""
        self.withheld: list[str] = []  # why the last ping was not sent (empty: pinging)

    def turn(self, now: float, *, problems: list[str], status: Callable[[], str]) -> list[Note]:
        """``status()`` gives the lane's line; it is asked for only when one may go out."""
        notes: list[Note] = []
        if problems:
            unhealthy = "unhealthy: " + "; ".join(problems)
            status = lambda: unhealthy  # noqa: E731
            if not self.withheld:
                log.error("decision loop unhealthy (%s): %s", self._consequence,
                          "; ".join(problems))
        elif self.withheld:
            log.warning("decision loop healthy again")
        self.withheld = problems
        if now >= self._next_status:
            line, self._next_status = status(), now + self.status_every_s
            if line != self._status:
                self._status = line
                notes.append((Notification.STATUS, line))
        if self.watchdog_s is not None and not problems and now >= self._next_ping:
            self._next_ping = now + self.watchdog_s
            notes.append((Notification.WATCHDOG, None))
        return notes

    @property
    def _consequence(self) -> str:
        if self.watchdog_s is None:
            return "no watchdog is configured"
        return "watchdog pings stopped: systemd restarts the agent unless it recovers"


class Notifier:
    """Sends notifications to systemd's ``NOTIFY_SOCKET``; a no-op without one."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.watchdog_s = watchdog_interval(env, os.getpid()) if self.enabled else None

    def send(self, notes: list[Note]) -> None:
        if not self.enabled:
            return
        for kind, value in notes:
            result = notify(kind) if value is None else notify(kind, value)
            if isinstance(result, Exception):  # the socket went away: nothing else to do
                log.debug("sd_notify %s failed: %s", kind.name, result)

    def ready(self, status: str) -> None:
        self.send([(Notification.READY, None), (Notification.STATUS, status)])

    def status(self, status: str) -> None:
        self.send([(Notification.STATUS, status)])

    def reloading(self) -> None:
        self.send([(Notification.RELOADING, None)])

    def reloaded(self) -> None:
        self.send([(Notification.READY, None)])

    def stopping(self, status: str) -> None:
        self.send([(Notification.STOPPING, None), (Notification.STATUS, status)])


class Service:
    """The agent's side of its unit: notifications, the loop's health, the log level."""

    def __init__(
        self, notifier: Notifier | None = None, *, health: LoopHealth | None = None,
        set_log_level: Callable[[str], None] | None = None,
    ) -> None:
        self.notifier = Notifier({}) if notifier is None else notifier
        self.health = LoopHealth() if health is None else health
        self.pulse = Pulse(self.notifier.watchdog_s)
        self._set_log_level = set_log_level

    def turned(self, now: float, faults: int, status: Callable[[], str]) -> None:
        """One turn of the decision loop (or of the wait before it)."""
        self.health.turned(now, faults)
        self.notifier.send(self.pulse.turn(now, problems=self.health.problems(now),
                                           status=status))

    def log_level(self, level: str) -> None:
        if self._set_log_level is not None:
            self._set_log_level(level)
