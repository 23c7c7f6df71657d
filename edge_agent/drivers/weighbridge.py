"""Weighbridge indicator over a serial transport chosen by URL: bytes in, timestamped events out.

The driver owns the port and the clock; decoding is the sans-I/O codec's job. An unplugged
USB adapter or a closed pty never raises to the caller: the reader reports nothing, retries
with back-off and starts a fresh decoder once the port is back (``serial_reader``; the
watcher raises ``weight.comm_loss`` from the silence). Polled formats (SMA) get their request
sent here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.backoff import Backoff
from edge_agent.drivers.serial_reader import PORT_ERRORS, SerialLineReader
from edge_agent.drivers.serialport import LineSettings
from edge_agent.protocols.indicators import (
    DEFAULT_LINE,
    POLLED,
    FrameError,
    IndicatorReading,
    make_decoder,
    sma_command,
)

log = logging.getLogger("edge_agent.weighbridge")

POLL_INTERVAL_S = 0.1


@dataclass(frozen=True, slots=True)
class IndicatorArrival:
    """One decoded frame (or frame error) and the monotonic time its last byte arrived."""

    at: float
    item: IndicatorReading | FrameError


class WeighbridgeReader(SerialLineReader):
    """Reads one indicator; ``read(timeout)`` returns what arrived, with arrival times."""

    def __init__(
        self,
        url: str,
        protocol: str,
        *,
        line: LineSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        self._decoder = make_decoder(protocol)  # validates the protocol name up front
        self.protocol = protocol
        super().__init__(url, line or LineSettings.parse(DEFAULT_LINE[protocol], 9600),
                         label="weighbridge", log=log, clock=clock, sleep=sleep,
                         backoff=backoff)
        self._last_poll = -math.inf
        self.frames = 0
        self.errors = 0

    def read(self, timeout: float) -> list[IndicatorArrival]:
        """Wait up to about ``timeout`` s for bytes; return the readings and frame errors
        they completed. While the port is away this waits out the back-off instead."""
        data = self._read_bytes(timeout)
        if not data:
            return []
        now = self._clock()
        events = self._decoder.receive_data(data)
        # Frames read in one burst did not arrive together: date each by where its last byte
        # sat in the burst, at the line's character time (start + data + parity + stop bits).
        char_s = (2 + self._line.bytesize + (self._line.parity != "N")) / self._line.baudrate
        behind = sum(len(e.raw) for e in events)
        arrivals: list[IndicatorArrival] = []
        for event in events:
            behind -= len(event.raw)
            arrivals.append(IndicatorArrival(now - max(0, behind) * char_s, event))
            if isinstance(event, FrameError):
                self.errors += 1
            else:
                self.frames += 1
        return arrivals

    def send(self, data: bytes) -> bool:
        """Send bytes to the indicator (a poll, zero or tare command); False if not connected."""
        if self._port is None and not self._open():
            return False
        try:
            self._port.write(data)
        except PORT_ERRORS as exc:
            self._drop(f"write failed: {exc}")
            return False
        return True

    def _reset_decoder(self) -> None:
        self._decoder = make_decoder(self.protocol)

    def _before_read(self) -> None:
        if self.protocol not in POLLED:
            return
        now = self._clock()
        if now - self._last_poll >= POLL_INTERVAL_S:
            self._port.write(sma_command("W"))
            self._last_poll = now
