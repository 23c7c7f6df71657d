"""E-seal / RFID reader over a serial transport chosen by URL: bytes in, timestamped sightings out.

The driver owns the port and the clock; decoding is the sans-I/O codec's job
(``edge_agent.protocols.eseal``). A lost port never raises to the caller: ``read`` reports
nothing, retries with back-off and starts a fresh decoder once the port is back. The URL is
any ``serialport.open_port`` URL, or ``fake-eseal://NAME`` for the in-process fake
(``edge_agent.drivers.eseal_fake``).

``SealLog`` keeps what the reader heard, so the lane can ask which seals were seen since the
truck arrived (``sightings(since)``) and whether the reader is alive (its heartbeats).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edge_agent.backoff import Backoff
from edge_agent.drivers.serial_reader import SerialLineReader
from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.identity.seals import CLOSED, OPEN, TAMPERED, sighting_text
from edge_agent.protocols.eseal import (
    EsealDecoder,
    EsealEvent,
    ReaderHeartbeat,
    SealFrameError,
    SealRead,
)

log = logging.getLogger("edge_agent.eseal")

FAKE_SCHEME = "fake-eseal://"
DEFAULT_LINE = LineSettings(9600)
_SEVERITY = {CLOSED: 0, OPEN: 1, TAMPERED: 2}


@dataclass(frozen=True, slots=True)
class SealArrival:
    """One decoded sentence (or frame error) and the monotonic time it was read."""

    at: float
    item: EsealEvent


def _open_transport(url: str, line: LineSettings, timeout: float) -> Any:
    if url.startswith(FAKE_SCHEME):
        from edge_agent.drivers.eseal_fake import open_fake_port

        port = open_fake_port(url)
        port.timeout = timeout
        return port
    return open_port(url, line, timeout=timeout)


class EsealReader(SerialLineReader):
    """Reads one e-seal reader; ``read(timeout)`` returns what arrived, with arrival times."""

    def __init__(
        self,
        url: str,
        *,
        line: LineSettings = DEFAULT_LINE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(url, line, label="e-seal reader", log=log, clock=clock, sleep=sleep,
                         backoff=backoff, opener=_open_transport)
        self._decoder = EsealDecoder()
        self.sentences = 0
        self.errors = 0

    def read(self, timeout: float) -> list[SealArrival]:
        """Wait up to about ``timeout`` s for bytes; return the sentences and frame errors they
        completed. While the port is away this waits out the back-off instead."""
        data = self._read_bytes(timeout)
        if not data:
            return []
        now = self._clock()
        arrivals = [SealArrival(now, event) for event in self._decoder.receive_data(data)]
        for arrival in arrivals:
            if isinstance(arrival.item, SealFrameError):
                self.errors += 1
            else:
                self.sentences += 1
        return arrivals

    def _reset_decoder(self) -> None:
        self._decoder = EsealDecoder()  # no half sentence from before the loss


class SealLog:
    """What the reader heard: the last sighting of each tag and the last sign of life.

    Pure bookkeeping, time as a parameter. A tag keeps its worst status (an e-seal latches a
    tamper, and a lost sentence must not turn it back to closed); ``min_rssi_dbm`` drops
    sightings too faint to be this lane's truck.
    """

    def __init__(self, *, min_rssi_dbm: int | None = None) -> None:
        self.min_rssi_dbm = min_rssi_dbm
        self._worst: dict[str, SealRead] = {}
        self._last_seen: dict[str, float] = {}
        self.alive_at: float | None = None  # last heartbeat or sighting

    def add(self, arrivals: Iterable[SealArrival]) -> None:
        for arrival in arrivals:
            item = arrival.item
            if isinstance(item, ReaderHeartbeat):
                self.alive_at = arrival.at
            elif isinstance(item, SealRead):
                self.alive_at = arrival.at
                if self.min_rssi_dbm is not None and (
                        item.rssi_dbm is None or item.rssi_dbm < self.min_rssi_dbm):
                    continue
                worst = self._worst.get(item.tag_id, item)
                if _SEVERITY[item.status] >= _SEVERITY[worst.status]:
                    self._worst[item.tag_id] = item
                self._last_seen[item.tag_id] = arrival.at

    def sightings(self, since: float) -> list[SealRead]:
        """Each tag heard at or after ``since``, with its worst status; for ``match_seals``."""
        return [read for tag, read in self._worst.items() if self._last_seen[tag] >= since]

    def texts(self, since: float) -> tuple[str, ...]:
        """The same as read texts (``ID#status``), for reads that travel as plain strings."""
        return tuple(sighting_text(r.tag_id, r.status) for r in self.sightings(since))

    def alive(self, now: float, within_s: float = 3.0) -> bool:
        """The reader said something within the last ``within_s`` seconds."""
        return self.alive_at is not None and now - self.alive_at <= within_s

    def forget_before(self, t: float) -> None:
        """Drop tags last heard before ``t`` (after a transit closes), so the log stays small."""
        for tag in [tag for tag, at in self._last_seen.items() if at < t]:
            del self._worst[tag], self._last_seen[tag]
