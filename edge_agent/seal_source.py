"""The lane's e-seal reader: sightings in, ``IdentitySeen(kind="seal")`` out.

``EsealReader`` (``drivers/eseal.py``) reads the port; ``SealLog`` keeps each tag's worst
status and the reader's last sign of life. ``pump`` is one turn of the reader thread, with the
time and the open transit as parameters: the seals heard since the transit started are handed
to the lane whenever they change (a tag first heard, a tag turned open or tampered), as
``ID#status`` texts. Only a transit's own sightings count, as for plates; when a transit ends
the tags not heard since are forgotten.

A reader that says nothing for ``SILENT_S`` (no heartbeat, no sighting: the port is gone or
the reader is dead) is down: the lane hears ``IdentitySourceChanged(kind="seal", up=False)``
and decides without waiting for a seal; ``up=True`` follows its next sentence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from edge_agent.config import EsealSection
from edge_agent.drivers.eseal import EsealReader, SealArrival, SealLog
from edge_agent.drivers.serialport import LineSettings
from edge_agent.lane.inputs import IdentitySeen, IdentitySourceChanged

log = logging.getLogger("edge_agent.eseal")

KIND = "seal"
READ_S = 0.1  # one read of the port; the thread checks for stop this often
SILENT_S = 3.0  # the reader heartbeats about once a second: three missed is a dead reader

SealInput = IdentitySeen | IdentitySourceChanged
OpenTransit = tuple[str, float]  # (transit id, when it started)


class SealSource:
    """One lane's e-seal reading; ``pump`` is one turn, ``run`` the reader thread."""

    def __init__(self, config: EsealSection, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        assert config.url is not None
        self.config = config
        self.reader = EsealReader(config.url, line=LineSettings.parse(config.line,
                                                                      config.baudrate),
                                  clock=clock, sleep=sleep)
        self.log = SealLog(min_rssi_dbm=config.min_rssi_dbm)
        self.problem: str | None = None  # why no seal is read now
        self._started: float | None = None
        self._transit: str | None = None
        self._last_texts: tuple[str, ...] = ()
        self.handed = 0  # IdentitySeen handed to the lane

    def pump(self, now: float, arrivals: Iterable[SealArrival],
             transit: OpenTransit | None) -> list[SealInput]:
        """Take what the reader read by ``now``; what the lane must hear."""
        self.log.add(arrivals)
        out: list[SealInput] = []
        if self._started is None:
            self._started = now
        change = self._health(now)
        if change is not None:
            out.append(change)
        transit_id, since = transit if transit is not None else (None, now)
        if transit_id != self._transit:
            if self._transit is not None:
                self.log.forget_before(now)  # the last truck's seals, unless still heard
            self._transit, self._last_texts = transit_id, ()
        if transit_id is None:
            return out
        texts = self.log.texts(since=since)
        if texts and texts != self._last_texts:
            self._last_texts = texts
            self.handed += 1
            out.append(IdentitySeen(now, KIND, texts))
        return out

    def _health(self, now: float) -> IdentitySourceChanged | None:
        assert self._started is not None
        alive = self.log.alive(now, within_s=SILENT_S)
        if alive and self.problem is not None:
            self.problem = None
            log.warning("e-seal reader %s: heard again", self.config.url)
            return IdentitySourceChanged(now, KIND, True)
        if not alive and self.problem is None and now - self._started >= SILENT_S:
            where = "port open" if self.reader.connected else "port not open"
            self.problem = f"e-seal reader {self.config.url} silent for {SILENT_S:g} s ({where})"
            log.error("%s; trucks are decided without waiting for a seal", self.problem)
            return IdentitySourceChanged(now, KIND, False, self.problem)
        return None

    def status(self, now: float) -> dict[str, Any]:
        """For health and the status page."""
        reader = self.reader
        return {"ok": self.problem is None, "url": self.config.url, "error": self.problem,
                "connected": reader.connected, "alive": self.log.alive(now, within_s=SILENT_S),
                "sentences": reader.sentences, "errors": reader.errors,
                "reconnects": reader.reconnects, "handed": self.handed}

    def close(self) -> None:
        self.reader.close()

    def run(self, put: Callable[[SealInput], None], clock: Callable[[], float],
            stop: threading.Event, transit: Callable[[], OpenTransit | None]) -> None:
        """Read until ``stop``; the reader itself never raises for a lost port."""
        while not stop.is_set():
            arrivals = self.reader.read(READ_S)
            for item in self.pump(clock(), arrivals, transit()):
                put(item)
