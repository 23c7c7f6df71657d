"""A lower bound of real time that survives restarts, for a Pi whose clock is not synced.

A Pi has no battery clock: it may boot with the time it last saved, or much older. Passes and
commands are checked against ``now(wall)`` = the later of the wall clock and this floor. The
floor rises with every time known to have passed: the wall clock while it is synced, and the
iat of each accepted signed command (capped by the verifier at its clock + skew). It is saved
(atomically, at most once a minute) so a restart keeps it. A synced clock that is behind the
floor wins: the floor then came from a clock that was wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from edge_agent.drivers.state_files import StateDamaged

log = logging.getLogger(__name__)


class TimeFloor:
    def __init__(self, path: Path, *, save_every_s: float = 60.0) -> None:
        self.path = path
        self._save_every_s = save_every_s
        self._floor = 0.0
        self._saved = 0.0
        try:
            value = json.loads(path.read_text(encoding="utf-8"))["floor"]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"floor {value!r} is not a time")
            self._floor = self._saved = float(value)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateDamaged(f"time floor {path.name} unreadable: {exc}") from exc

    @property
    def value(self) -> float:
        return self._floor

    def now(self, wall: float) -> float:
        """The time to check validity windows against."""
        return max(wall, self._floor)

    def observe(self, t: float, *, synced: bool = False) -> None:
        """``t`` is known to have passed; ``synced`` says it is the synced wall clock itself."""
        if synced and t < self._floor:
            self._floor = t  # the floor came from a wrong clock
            self._save()
            return
        if t <= self._floor:
            return
        self._floor = t
        if t - self._saved >= self._save_every_s:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                json.dump({"floor": int(self._floor)}, out)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(self.path)
            self._saved = self._floor
        except OSError as exc:  # a full disk: keep the floor in memory, try again later
            log.warning("time floor not saved: %s", exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
