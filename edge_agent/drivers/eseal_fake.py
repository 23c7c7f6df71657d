"""An e-seal / RFID reader in-process, opened as ``fake-eseal://NAME``: the real encoder on
the clock of whoever built it.

    reader = ESEAL_READERS.register("gate1", FakeEsealReader(clock=clock))
    driver = EsealReader("fake-eseal://gate1", clock=clock)
    reader.show("ES-00471135", "closed", rssi_dbm=-58)

While a tag is shown the fake reports it ``rate_hz`` times a second, and a heartbeat every
``heartbeat_s``, each made by ``edge_agent.protocols.eseal``'s encoder. The test says what
goes wrong on the line (``damage_next``, ``inject``, ``set_silent``, ``unplug``).

Nothing runs in the background: sentences are made when the port is read. On a virtual clock
a read returns at once with what is due by then; on the wall clock a read waits for the next
sentence up to the port's timeout, as a serial port does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import serial

from edge_agent.drivers.fakes import FakeRegistry
from edge_agent.errors import DeviceError
from edge_agent.protocols.eseal import SealRead, encode_heartbeat, encode_read

MAX_BACKLOG_TICKS = 50  # a reader that stayed away gets the newest sentences only
TICK_EPSILON = 1e-9


class FakeEsealPort:
    """The pyserial subset the driver uses; dies with its device (``unplug``)."""

    def __init__(self, reader: FakeEsealReader) -> None:
        self._reader = reader
        self.timeout: float | None = 0.05
        self.is_open = True
        self.dead = False

    @property
    def in_waiting(self) -> int:
        return self._reader._waiting(self)

    def read(self, size: int = 1) -> bytes:
        return self._reader._read(self, size, self.timeout)

    def write(self, data: bytes) -> int:
        self._reader._check(self)
        return len(data)  # the reader takes no commands

    def reset_input_buffer(self) -> None:
        with self._reader._lock:
            self._reader._line.clear()

    def close(self) -> None:
        self._reader._release(self)


class FakeEsealReader:
    """A gate reader that hears the tags the test shows it."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, rate_hz: float = 4.0,
                 heartbeat_s: float = 1.0, sleep: Callable[[float], None] | None = None) -> None:
        if rate_hz <= 0 or heartbeat_s <= 0:
            raise ValueError("rate_hz and heartbeat_s must be positive")
        self._clock = clock
        self._sleep = sleep if sleep is not None or clock is not time.monotonic else time.sleep
        self._rate = rate_hz
        self._heartbeat_ticks = max(1, round(heartbeat_s * rate_hz))
        self._lock = threading.Lock()
        self._t0 = clock()
        self._ticks_done = 0
        self._tags: dict[str, SealRead] = {}
        self._damage_left = 0
        self._silent = False
        self._plugged = True
        self._line = bytearray()
        self._port: FakeEsealPort | None = None
        self.sentences_sent = 0

    # ------------------------------------------------------------------ the tags and the line
    def show(self, tag_id: str, status: str = "closed", *, rssi_dbm: int | None = -55) -> None:
        """The reader hears this tag from now on (``LocalProtocolError`` if unsendable)."""
        read = SealRead(tag_id, status, rssi_dbm)
        encode_read(read)  # refuse now what the protocol cannot carry, not mid-run
        with self._lock:
            self._catch_up(self._clock())
            self._tags[tag_id] = read

    def hide(self, tag_id: str) -> None:
        with self._lock:
            self._catch_up(self._clock())
            self._tags.pop(tag_id, None)

    def damage_next(self, count: int = 1) -> None:
        """The next ``count`` sentences arrive with a wrong checksum."""
        with self._lock:
            self._catch_up(self._clock())
            self._damage_left += count

    def inject(self, data: bytes) -> None:
        """Put ``data`` on the line now, as it is."""
        with self._lock:
            self._catch_up(self._clock())
            if self._port is not None:
                self._line += data

    def set_silent(self, silent: bool = True) -> None:
        with self._lock:
            self._catch_up(self._clock())
            self._silent = silent

    def unplug(self) -> None:
        with self._lock:
            self._catch_up(self._clock())
            self._plugged = False
            if self._port is not None:
                self._port.dead = True
                self._port = None
            self._line.clear()

    def plug(self) -> None:
        with self._lock:
            self._plugged = True

    # ------------------------------------------------------------------------- the port
    def open(self) -> FakeEsealPort:
        """A fresh port; ``DeviceError`` when unplugged or already open (ports are exclusive)."""
        with self._lock:
            if not self._plugged:
                raise DeviceError("fake e-seal reader: no such device (unplugged)")
            if self._port is not None:
                raise DeviceError("fake e-seal reader: port busy")
            self._catch_up(self._clock())
            self._line.clear()
            self._port = FakeEsealPort(self)
            return self._port

    def _check(self, port: FakeEsealPort) -> None:
        if port.dead:
            raise serial.SerialException("device disconnected")
        if not port.is_open:
            raise serial.SerialException("port not open")

    def _waiting(self, port: FakeEsealPort) -> int:
        with self._lock:
            self._check(port)
            self._catch_up(self._clock())
            return len(self._line)

    def _read(self, port: FakeEsealPort, size: int, timeout: float | None) -> bytes:
        deadline: float | None = None
        while True:
            with self._lock:
                self._check(port)
                now = self._clock()
                self._catch_up(now)
                if self._line or timeout == 0 or self._sleep is None:
                    data = bytes(self._line[:size])
                    del self._line[:size]
                    return data
                if deadline is None:
                    deadline = now + (math.inf if timeout is None else timeout)
                if now >= deadline:
                    return b""
                wait = min(deadline, self._t0 + self._ticks_done / self._rate) - now
            self._sleep(max(0.0, wait))

    def _release(self, port: FakeEsealPort) -> None:
        with self._lock:
            port.is_open = False
            if self._port is port:
                self._port = None

    def _catch_up(self, now: float) -> None:
        """Send what is due by ``now``; what was due while nobody listened is lost."""
        due = math.floor((now - self._t0) * self._rate + TICK_EPSILON) + 1
        if due <= self._ticks_done:
            return
        if self._port is not None and not self._silent:
            for tick in range(max(self._ticks_done, due - MAX_BACKLOG_TICKS), due):
                if tick % self._heartbeat_ticks == 0:
                    self._send(encode_heartbeat())
                for read in self._tags.values():
                    self._send(encode_read(read))
        self._ticks_done = due

    def _send(self, sentence: bytes) -> None:
        if self._damage_left:
            self._damage_left -= 1
            wrong = b"0" if sentence[-3:-2] != b"0" else b"1"
            sentence = sentence[:-3] + wrong + sentence[-2:]  # the checksum's low digit
        self._line += sentence
        self.sentences_sent += 1


ESEAL_READERS: FakeRegistry[FakeEsealReader] = FakeRegistry(
    "fake-eseal", lambda name: FakeEsealReader()
)
"""Fake readers by name; a name nobody registered gets a reader on the wall clock."""


def open_fake_port(url: str) -> FakeEsealPort:
    """Open the fake reader ``fake-eseal://NAME`` names.

    Raises:
        DeviceError: the fake is unplugged or its port already open.
        ConfigError: the URL names no reader.
    """
    return ESEAL_READERS.lookup(url).open()
