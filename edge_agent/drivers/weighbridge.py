"""Weighbridge indicator over a serial transport chosen by URL: bytes in, timestamped events out.

The driver owns the port and the clock; decoding is the sans-I/O codec's job. An unplugged
USB adapter or a closed pty never raises to the caller: the reader reports nothing, retries
with back-off and starts a fresh decoder once the port is back (the watcher raises
``weight.comm_loss`` from the silence). Polled formats (SMA) get their request sent here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from edge_agent.backoff import Backoff
from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import DeviceError
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
READ_CHUNK = 512
READ_SLICE_S = 0.02  # the port's own read timeout: one empty read waits this long


def reopen_backoff() -> Backoff:
    """Reopening a lost port: 0.2 s doubling to 5 s, so an unplugged adapter is not hammered."""
    return Backoff(0.2, 5.0)


@dataclass(frozen=True, slots=True)
class IndicatorArrival:
    """One decoded frame (or frame error) and the monotonic time its last byte arrived."""

    at: float
    item: IndicatorReading | FrameError


class WeighbridgeReader:
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
        self.url = url
        self.protocol = protocol
        self._line = line or LineSettings.parse(DEFAULT_LINE[protocol], 9600)
        self._clock = clock
        self._sleep = sleep
        self._port: Any = None
        self._backoff = backoff or reopen_backoff()
        self._next_try = -math.inf
        self._last_poll = -math.inf
        self._opened_before = False
        self.frames = 0
        self.errors = 0
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._port is not None

    def read(self, timeout: float) -> list[IndicatorArrival]:
        """Wait up to about ``timeout`` s for bytes; return the readings and frame errors
        they completed. While the port is away this waits out the back-off instead."""
        if self._port is None and not self._open():
            self._sleep(max(0.0, min(timeout, self._next_try - self._clock())))
            return []
        try:
            self._poll()
            data = self._read_some(timeout)
        except (serial.SerialException, OSError, termios.error) as exc:
            self._drop(f"read failed: {exc}")
            return []
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
        except (serial.SerialException, OSError, termios.error) as exc:
            self._drop(f"write failed: {exc}")
            return False
        return True

    def _read_some(self, timeout: float) -> bytes:
        """Bytes that arrive within about ``timeout``; returns as soon as a burst has been read.

        The wait is spent in empty reads of the port's own short timeout, so the port's
        transport keeps time: a real line blocks in each read, a fake on a virtual clock
        answers at once. The port keeps the timeout it was opened with: changing it
        reconfigures the line, which some adapters (and ptys at 7E1) refuse.
        """
        empty_reads_left = max(1, math.ceil(timeout / READ_SLICE_S))
        data = b""
        while True:
            chunk: bytes = self._port.read(max(1, min(self._port.in_waiting, READ_CHUNK)))
            data += chunk
            if data and not self._port.in_waiting:
                return data
            if not chunk:
                empty_reads_left -= 1
                if empty_reads_left <= 0:
                    return data

    def close(self) -> None:
        """Close the port; a later ``read`` opens it again."""
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                port.close()

    def _open(self) -> bool:
        now = self._clock()
        if now < self._next_try:
            return False
        try:
            self._port = open_port(self.url, self._line, timeout=READ_SLICE_S)
        except (DeviceError, termios.error) as exc:
            self._retry_later(now)
            log.warning("weighbridge %s: %s", self.url, exc)
            return False
        if self._opened_before:
            self.reconnects += 1
            log.info("weighbridge %s: port open again", self.url)
        self._opened_before = True
        self._backoff.reset()
        self._next_try = -math.inf
        self._decoder = make_decoder(self.protocol)  # a fresh buffer: no half frame from before
        return True

    def _drop(self, why: str) -> None:
        log.warning("weighbridge %s: %s; reconnecting", self.url, why)
        self.close()
        self._retry_later(self._clock())

    def _retry_later(self, now: float) -> None:
        self._next_try = now + self._backoff.next()

    def _poll(self) -> None:
        if self.protocol not in POLLED:
            return
        now = self._clock()
        if now - self._last_poll >= POLL_INTERVAL_S:
            self._port.write(sma_command("W"))
            self._last_poll = now
