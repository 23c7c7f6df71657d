"""The agent's side of the outbox: records that wait in memory while storage is down.

``RecordKeeper.add`` commits an event to the outbox. When the outbox cannot take it (a full
or read-only disk, an I/O error) the event is parked in memory in order, the keeper reports
storage as down, and the lane holds trucks (rule L9) until ``retry`` has written every parked
event back. Events keep the times they happened at. Sheddable events (evidence chunks) are
never parked: with storage short they are the first to go, and are counted.

``RefusalBudget`` bounds what unauthenticated refusals may cost: a token bucket (time as a
parameter) decides which of them get a ``cmd_result`` record; the rest are only counted.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.telemetry.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Parked:
    type: str
    data: Mapping[str, Any]
    transit_id: str | None
    stamp: Mapping[str, Any]


class RecordKeeper:
    def __init__(self, outbox: Outbox, *, limit: int = 10_000) -> None:
        self.outbox = outbox
        self._parked: deque[_Parked] = deque()
        self._limit = limit
        self.lost = 0  # parked events beyond ``limit``: only if storage stays down for long
        self.error = ""

    @property
    def ok(self) -> bool:
        return not self._parked and not self.error

    @property
    def parked(self) -> int:
        return len(self._parked)

    def add(
        self,
        type: str,
        data: Mapping[str, Any],
        *,
        transit_id: str | None,
        stamp: Mapping[str, Any],
        sheddable: bool = False,
    ) -> dict[str, Any] | None:
        """The stored envelope; None when parked or shed."""
        if self._parked:
            if not sheddable:
                self._park(_Parked(type, data, transit_id, stamp))
            return None
        try:
            return self.outbox.add_event(
                type, data, transit_id=transit_id, sheddable=sheddable, **stamp
            )
        except OutboxError as exc:
            self.error = str(exc)
            if not sheddable:
                self._park(_Parked(type, data, transit_id, stamp))
            return None

    def retry(self) -> bool:
        """Write parked events back in order; True once nothing is parked."""
        while self._parked:
            record = self._parked[0]
            try:
                self.outbox.add_event(
                    record.type, record.data, transit_id=record.transit_id, **record.stamp
                )
            except OutboxError as exc:
                self.error = str(exc)
                return False
            self._parked.popleft()
        self.error = ""
        return True

    def fail(self, reason: str) -> None:
        """Another store (the pass ledger) failed: storage is down until ``retry`` says so."""
        self.error = reason

    def _park(self, record: _Parked) -> None:
        if len(self._parked) >= self._limit:
            self._parked.popleft()
            self.lost += 1
            log.error("storage down: %d events lost from memory", self.lost)
        self._parked.append(record)


class RefusalBudget:
    """A token bucket: ``burst`` refusals at once, then ``per_s`` a second."""

    def __init__(self, *, burst: int = 20, per_s: float = 0.2) -> None:
        self._burst, self._per_s = float(burst), per_s
        self._tokens = float(burst)
        self._at: float | None = None
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed += 1
        return False
