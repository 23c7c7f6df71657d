"""A weighbridge indicator in-process, opened as ``fake-indicator://NAME``: the real encoders
on the clock of whoever built it.

    indicator = INDICATORS.register("gate1", FakeIndicator("toledo", clock=clock))
    reader = WeighbridgeReader("fake-indicator://gate1", "toledo", clock=clock)
    indicator.set_weight(12_340.0)

The test says what the deck weighs (``set_weight``, or a trace of samples with ``play``) and
what goes wrong on the line (``damage_next``, ``set_silent``, ``inject``, ``unplug``). A frame
is due every ``1 / rate_hz`` seconds of the fake's clock; each is made by the format's own
encoder, so the reader's decoder reads what a real indicator of that format sends. A polled
format (SMA) answers each ``W`` request at once and streams only after ``R``, as the real
indicator does; ``Z`` and ``T`` are taken, anything else is answered ``?``.

Nothing runs in the background: frames are made when the port is read. On a virtual clock a
read returns at once with what is due by then; on the wall clock (or with ``sleep`` given) a
read waits for the next frame up to the port's timeout, as a serial port does.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.drivers.fake_serial import FakeSerialDevice, FakeSerialPort
from edge_agent.drivers.fakes import FakeRegistry
from edge_agent.protocols.indicators import POLLED, IndicatorReading, make_encoder

DEFAULT_PROTOCOL = "yaohua-tf0"
# A reader that stayed away gets the newest frames only, as a full input buffer would.
MAX_BACKLOG_FRAMES = 200
# The indicator's own motion rule: the weight moved within the last second.
MOTION_WINDOW_S = 1.0


@dataclass(frozen=True, slots=True)
class _Trace:
    """Weights at times on the fake's clock: each sample holds until the next one."""

    times: tuple[float, ...]
    kgs: tuple[float, ...]
    motion_band_kg: float

    def kg_at(self, t: float) -> float:
        return self.kgs[max(0, bisect.bisect_right(self.times, t) - 1)]

    def reading_at(self, t: float) -> IndicatorReading:
        first = bisect.bisect_right(self.times, t - MOTION_WINDOW_S)
        last = bisect.bisect_right(self.times, t)
        window = [self.kg_at(t - MOTION_WINDOW_S), *self.kgs[first:last]]
        return IndicatorReading(self.kg_at(t), max(window) - min(window) > self.motion_band_kg)


class FakeIndicatorPort(FakeSerialPort):
    """What ``open_port`` returns for a fake indicator: the pyserial subset the reader uses.

    Like a real port it dies with its device: after ``unplug`` every call raises
    ``serial.SerialException`` until the reader closes it and opens a new one.
    """


class FakeIndicator(FakeSerialDevice):
    """A weighbridge indicator speaking ``protocol`` through its real encoder.

    Args:
        protocol: one of the indicator protocols (``edge_agent.protocols.indicators``).
        clock: the fake's time (monotonic seconds); frames are due on it.
        rate_hz: frames per second of a continuous format.
        sleep: how a read waits for the port timeout; default: ``time.sleep`` on the wall
            clock, no waiting on any other clock.
        encoder_options: options of the format's encoder (e.g. toledo ``with_checksum``).

    Raises:
        ConfigError: unknown protocol or encoder option.
    """

    port_class = FakeIndicatorPort
    max_backlog_ticks = MAX_BACKLOG_FRAMES

    def __init__(
        self,
        protocol: str = DEFAULT_PROTOCOL,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate_hz: float = 10.0,
        sleep: Callable[[float], None] | None = None,
        encoder_options: Mapping[str, Any] | None = None,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, not {rate_hz}")
        self.protocol = protocol
        self._encoder = make_encoder(protocol, **dict(encoder_options or {}))
        super().__init__(f"fake {protocol} indicator", clock=clock, rate_hz=rate_hz,
                         sleep=sleep)
        self._reading = IndicatorReading(0.0, False)
        self._trace: _Trace | None = None
        self._streaming = protocol not in POLLED
        self._requests = bytearray()  # what the reader wrote that is not yet a whole command
        self.frames_sent = 0
        self.commands: list[str] = []  # commands a polled indicator received, in order

    # ---------------------------------------------------------------- the deck and the line
    def set_weight(
        self, kg: float | None, *, motion: bool = False, overload: bool = False, net: bool = False
    ) -> None:
        """What the indicator shows from now on (``kg=None``: no number, e.g. overload).

        Raises:
            LocalProtocolError: the format cannot carry this reading.
        """
        reading = IndicatorReading(kg, motion, overload, net)
        self._encoder.encode(reading)  # refuse now what the format cannot send, not mid-run
        with self._lock:
            self._catch_up(self._clock())
            self._reading, self._trace = reading, None

    def play(self, samples: Sequence[tuple[float, float]], *, motion_band_kg: float = 0.0) -> None:
        """Follow a trace of ``(seconds from now, kg)`` samples; each holds until the next,
        the last one for good. Motion is the indicator's own rule: the weight moved more
        than ``motion_band_kg`` within the last second.

        Raises:
            ValueError: no samples, or times that go backwards.
            LocalProtocolError: the format cannot carry one of the weights.
        """
        times = [t for t, _ in samples]
        if not times or times != sorted(times):
            raise ValueError("a trace needs samples in time order")
        for _, kg in samples:
            self._encoder.encode(IndicatorReading(kg, False))
        with self._lock:
            now = self._clock()
            self._catch_up(now)
            self._trace = _Trace(
                tuple(now + t for t in times), tuple(kg for _, kg in samples), motion_band_kg
            )

    def damage_next(self, count: int = 1) -> None:
        """The next ``count`` frames arrive with an error their format detects: a wrong check
        character where it has one (yaohua-tf0, toledo with checksum), else a letter in the
        weight field."""
        super().damage_next(count)

    # ------------------------------------------------------------------------- the port
    def _on_open(self) -> None:
        self._requests.clear()

    def _on_write(self, data: bytes, now: float) -> None:
        if self.protocol in POLLED:
            self._requests += data
            self._answer(now)

    # ------------------------------------------------------------------------ the frames
    def _catch_up(self, now: float) -> None:
        """Send the frames due by ``now``; those due while nobody listened are lost."""
        ticks = self._due(now)
        if self._streaming:
            for tick in ticks:
                self._send(self._t0 + tick / self._rate)

    def _send(self, at: float) -> None:
        reading = self._reading if self._trace is None else self._trace.reading_at(at)
        frame = self._encoder.encode(reading)
        if self._damage_left:
            self._damage_left -= 1
            frame = _damaged(self.protocol, frame)
        self._line += frame
        self.frames_sent += 1

    def _answer(self, now: float) -> None:
        """A polled indicator's side: one reply per ``W``, ``R`` switches to streaming."""
        while b"\r" in self._requests:
            line, _, rest = bytes(self._requests).partition(b"\r")
            self._requests = bytearray(rest)
            command = line.strip(b"\n").decode("ascii", "replace")
            self.commands.append(command)
            if self._silent:
                continue
            if command == "W":
                self._send(now)
            elif command == "R":
                self._streaming = True
            elif command not in ("Z", "T"):
                self._line += b"\n?\r"


def _damaged(protocol: str, frame: bytes) -> bytes:
    """``frame`` with one error its decoder must reject, and nothing else changed."""
    data = bytearray(frame)
    if protocol == "yaohua-tf0":
        data[10] = ord("1") if data[10] == ord("0") else ord("0")  # the XOR's low nibble
    elif protocol == "toledo" and len(data) in (12, 18):  # short or full frame with checksum
        wrong = data[-1] ^ 0x01
        data[-1] = wrong ^ 0x05 if (wrong & 0x7F) == 0x02 else wrong  # never STX: it starts frames
    elif protocol == "toledo":
        data[9] = ord("X")  # the weight's last digit
    elif protocol == "ad-ascii":
        data[data.rindex(b",") + 2] = ord("X")  # the first character after the sign
    elif protocol == "sma":
        data[15] = ord("X")  # the weight field's last character
    else:  # yaohua-eq, yaohua-eq-rev: the frame's last character
        data[-1] = ord("X")
    return bytes(data)


INDICATORS: FakeRegistry[FakeIndicator] = FakeRegistry(
    "fake-indicator", lambda name: FakeIndicator(DEFAULT_PROTOCOL)
)
"""Fake indicators by name; a name nobody registered gets a yaohua-tf0 on the wall clock."""


def open_fake_port(url: str) -> FakeSerialPort:
    """Open the fake indicator ``fake-indicator://NAME`` names (``serialport.open_port``).

    Raises:
        DeviceError: the fake is unplugged or its port already open.
        ConfigError: the URL names no indicator.
    """
    return INDICATORS.lookup(url).open()
