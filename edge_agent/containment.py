"""Containment: an error in one stage of the agent is reported, never fatal.

Every stage of the main loop (device input, command, health, barrier and record commands) runs
under ``Faults.guard(stage)``. An exception there is logged with its traceback the first time,
then at most once a minute per stage with a count, and counted for the health report; the
lane goes on, and what the stage could not do fails safe (the machine holds, the IO board
keeps its own safe state).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("edge_agent.faults")

REPORT_EVERY_S = 60.0


class Faults:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.counts: dict[str, int] = {}
        self._reported: dict[str, tuple[float, int]] = {}

    @contextlib.contextmanager
    def guard(self, stage: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # containment: nothing one stage does may stop the lane
            self.record(stage, exc)

    def record(self, stage: str, exc: BaseException) -> None:
        count = self.counts[stage] = self.counts.get(stage, 0) + 1
        now = self._clock()
        last = self._reported.get(stage)
        if last is None:
            log.error("%s failed: %r (the lane goes on)", stage, exc, exc_info=exc)
        elif now - last[0] >= REPORT_EVERY_S:
            log.error("%s failed %d more times, last: %r", stage, count - last[1], exc)
        else:
            return
        self._reported[stage] = (now, count)
