"""What every serial-line device reader does with its port: bytes in, losses survived.

A reader built on ``SerialLineReader`` owns its port and its clock and leaves decoding to its
sans-I/O codec. A lost port (an unplugged USB adapter, a closed pty) never raises to the
caller: a read reports no bytes, the port is reopened after a back-off, and on each open the
reader starts a fresh decoder so no half frame from before the loss is joined to new bytes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import termios
import time
from collections.abc import Callable
from typing import Any

import serial

from edge_agent.backoff import Backoff
from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import DeviceError

READ_CHUNK = 512
READ_SLICE_S = 0.02  # the port's own read timeout: one empty read waits this long
PORT_ERRORS = (serial.SerialException, OSError, termios.error)

Opener = Callable[[str, LineSettings, float], Any]


def reopen_backoff() -> Backoff:
    """Reopening a lost port: 0.2 s doubling to 5 s, so an unplugged adapter is not hammered."""
    return Backoff(0.2, 5.0)


def _open_serial(url: str, line: LineSettings, timeout: float) -> Any:
    return open_port(url, line, timeout=timeout)


class SerialLineReader:
    """The port side of a reader: open with back-off, read a burst, drop and reopen on loss.

    A subclass names itself (``label``, for the log), starts a fresh decoder in
    ``_reset_decoder`` and may write to the line before each read (``_before_read``).
    """

    def __init__(
        self,
        url: str,
        line: LineSettings,
        *,
        label: str,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff | None = None,
        opener: Opener = _open_serial,
    ) -> None:
        self.url = url
        self._line = line
        self._label = label
        self._log = log
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff or reopen_backoff()
        self._opener = opener
        self._port: Any = None
        self._next_try = -math.inf
        self._opened_before = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._port is not None

    def close(self) -> None:
        """Close the port; a later ``read`` opens it again."""
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(*PORT_ERRORS):
                port.close()

    def _reset_decoder(self) -> None:
        raise NotImplementedError

    def _before_read(self) -> None:
        """Called with the port open, before each read (a polled device's request)."""

    def _read_bytes(self, timeout: float) -> bytes:
        """The bytes of one read, or none while the port is away (then the back-off is
        waited out, up to ``timeout``) or when the read lost it."""
        if self._port is None and not self._open():
            self._sleep(max(0.0, min(timeout, self._next_try - self._clock())))
            return b""
        try:
            self._before_read()
            return self._read_some(timeout)
        except PORT_ERRORS as exc:
            self._drop(f"read failed: {exc}")
            return b""

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

    def _open(self) -> bool:
        now = self._clock()
        if now < self._next_try:
            return False
        try:
            self._port = self._opener(self.url, self._line, READ_SLICE_S)
        except (DeviceError, termios.error) as exc:
            self._retry_later(now)
            self._log.warning("%s %s: %s", self._label, self.url, exc)
            return False
        if self._opened_before:
            self.reconnects += 1
            self._log.info("%s %s: port open again", self._label, self.url)
        self._opened_before = True
        self._backoff.reset()
        self._next_try = -math.inf
        self._reset_decoder()  # a fresh buffer: no half frame from before
        return True

    def _drop(self, why: str) -> None:
        self._log.warning("%s %s: %s; reconnecting", self._label, self.url, why)
        self.close()
        self._retry_later(self._clock())

    def _retry_later(self, now: float) -> None:
        self._next_try = now + self._backoff.next()
