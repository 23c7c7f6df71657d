"""The line side of an in-process serial device: a port that dies with its device, bytes due
on the device's clock, and the faults a line has (``inject``, ``set_silent``, ``unplug``).

A device built on ``FakeSerialDevice`` says what it sends at each tick of ``rate_hz``
(``_catch_up``); this base keeps the line those bytes wait on and the port the driver reads
them through. Nothing runs in the background: what is due is made when the port is read. On a
virtual clock a read returns at once with what is due by then; on the wall clock (or with
``sleep`` given) a read waits for the next tick up to the port's timeout, as a serial port does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import serial

from edge_agent.errors import DeviceError

TICK_EPSILON = 1e-9  # a tick due at exactly ``now`` is due despite float rounding


class FakeSerialPort:
    """What a fake device's ``open`` returns: the pyserial subset the drivers use.

    Like a real port it dies with its device: after ``unplug`` every call raises
    ``serial.SerialException`` until the driver closes it and opens a new one.
    """

    def __init__(self, device: FakeSerialDevice) -> None:
        self._device = device
        self.timeout: float | None = 0.05
        self.is_open = True
        self.dead = False

    @property
    def in_waiting(self) -> int:
        return self._device._waiting(self)

    def read(self, size: int = 1) -> bytes:
        return self._device._read(self, size, self.timeout)

    def write(self, data: bytes) -> int:
        return self._device._write(self, bytes(data))

    def reset_input_buffer(self) -> None:
        self._device._flush(self)

    def close(self) -> None:
        self._device._release(self)


class FakeSerialDevice:
    """A device whose bytes are due at ``t0 + k / rate_hz`` on ``clock``; one port at a time.

    Args:
        clock: the fake's time (monotonic seconds); ticks are due on it.
        rate_hz: ticks per second.
        sleep: how a read waits for the port timeout; default: ``time.sleep`` on the wall
            clock, no waiting on any other clock.
    """

    port_class: type[FakeSerialPort] = FakeSerialPort
    max_backlog_ticks = 50  # a driver that stayed away gets the newest ticks only

    def __init__(self, label: str, *, clock: Callable[[], float], rate_hz: float,
                 sleep: Callable[[float], None] | None) -> None:
        self.label = label  # what the device is called in its errors
        self._clock = clock
        if sleep is None and clock is time.monotonic:
            sleep = time.sleep  # on the wall clock a read waits, as a device does
        self._sleep = sleep
        self._rate = rate_hz
        self._lock = threading.Lock()
        self._t0 = clock()
        self._ticks_done = 0  # ticks due at t0 + k / rate for k < this are past
        self._damage_left = 0
        self._silent = False
        self._plugged = True
        self._line = bytearray()  # bytes on their way to the driver
        self._port: FakeSerialPort | None = None
        self.open_attempts: list[float] = []  # when the port was asked for, on the fake's clock

    # ---------------------------------------------------------------------------- the line
    def damage_next(self, count: int = 1) -> None:
        """The next ``count`` frames arrive with an error their format detects."""
        with self._lock:
            self._catch_up(self._clock())
            self._damage_left += count

    def set_silent(self, silent: bool = True) -> None:
        """Nothing at all while silent (cable cut, device switched off)."""
        with self._lock:
            self._catch_up(self._clock())
            self._silent = silent

    def inject(self, data: bytes) -> None:
        """Put ``data`` on the line now, as it is (garbage, a hand-made frame)."""
        with self._lock:
            self._catch_up(self._clock())
            if self._port is not None:
                self._line += data

    def unplug(self) -> None:
        """The device disappears: the open port fails and opening fails until ``plug``."""
        with self._lock:
            self._catch_up(self._clock())
            self._plugged = False
            if self._port is not None:
                self._port.dead = True
                self._port = None
            self._line.clear()

    def plug(self) -> None:
        with self._lock:
            self._catch_up(self._clock())
            self._plugged = True

    @property
    def connected(self) -> bool:
        """True while a driver holds the port open."""
        return self._port is not None

    # ---------------------------------------------------------------------------- the port
    def open(self) -> FakeSerialPort:
        """A fresh port on this device; bytes sent before it opened are gone.

        Raises:
            DeviceError: unplugged, or the port is already open (ports are exclusive).
        """
        with self._lock:
            now = self._clock()
            self.open_attempts.append(now)
            if not self._plugged:
                raise DeviceError(f"{self.label}: no such device (unplugged)")
            if self._port is not None:
                raise DeviceError(f"{self.label}: port busy")
            self._catch_up(now)
            self._line.clear()
            self._on_open()
            self._port = self.port_class(self)
            return self._port

    def _on_open(self) -> None:
        """Called (locked) as a new port opens: forget what the last one left behind."""

    def _on_write(self, data: bytes, now: float) -> None:
        """Called (locked) with what the driver wrote; a device that takes no commands
        ignores it."""

    def _check(self, port: FakeSerialPort) -> None:
        if port.dead:
            raise serial.SerialException("device disconnected")
        if not port.is_open:
            raise serial.SerialException("port not open")

    def _waiting(self, port: FakeSerialPort) -> int:
        with self._lock:
            self._check(port)
            self._catch_up(self._clock())
            return len(self._line)

    def _read(self, port: FakeSerialPort, size: int, timeout: float | None) -> bytes:
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
                if deadline is None:  # pyserial's timeout None: wait for as long as it takes
                    deadline = now + (math.inf if timeout is None else timeout)
                if now >= deadline:
                    return b""
                wait = min(deadline, self._t0 + self._ticks_done / self._rate) - now
            self._sleep(max(0.0, wait))

    def _write(self, port: FakeSerialPort, data: bytes) -> int:
        with self._lock:
            self._check(port)
            now = self._clock()
            self._catch_up(now)
            self._on_write(data, now)
            return len(data)

    def _flush(self, port: FakeSerialPort) -> None:
        with self._lock:
            self._check(port)
            self._catch_up(self._clock())
            self._line.clear()

    def _release(self, port: FakeSerialPort) -> None:
        with self._lock:
            port.is_open = False
            if self._port is port:
                self._port = None

    # ---------------------------------------------------------------------------- the ticks
    def _due(self, now: float) -> range:
        """The ticks due by ``now`` and not yet past, the newest ``max_backlog_ticks`` at most
        (as a full input buffer would keep); marks them all past. Empty while nobody listens
        or the device is silent: those ticks are lost."""
        due = math.floor((now - self._t0) * self._rate + TICK_EPSILON) + 1
        if due <= self._ticks_done:
            return range(0)
        first = self._ticks_done
        self._ticks_done = due
        if self._port is None or self._silent:
            return range(0)
        return range(max(first, due - self.max_backlog_ticks), due)

    def _catch_up(self, now: float) -> None:
        """Put on the line what is due by ``now`` (locked); see ``_due``."""
        raise NotImplementedError
