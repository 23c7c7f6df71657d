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

import time
from collections.abc import Callable

from edge_agent.drivers.fake_serial import FakeSerialDevice, FakeSerialPort
from edge_agent.drivers.fakes import FakeRegistry
from edge_agent.protocols.eseal import SealRead, encode_heartbeat, encode_read


class FakeEsealPort(FakeSerialPort):
    """The pyserial subset the driver uses; dies with its device (``unplug``)."""


class FakeEsealReader(FakeSerialDevice):
    """A gate reader that hears the tags the test shows it; it takes no commands."""

    port_class = FakeEsealPort
    max_backlog_ticks = 50  # a reader that stayed away gets the newest sentences only

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, rate_hz: float = 4.0,
                 heartbeat_s: float = 1.0, sleep: Callable[[float], None] | None = None) -> None:
        if rate_hz <= 0 or heartbeat_s <= 0:
            raise ValueError("rate_hz and heartbeat_s must be positive")
        super().__init__("fake e-seal reader", clock=clock, rate_hz=rate_hz, sleep=sleep)
        self._heartbeat_ticks = max(1, round(heartbeat_s * rate_hz))
        self._tags: dict[str, SealRead] = {}
        self.sentences_sent = 0

    # ---------------------------------------------------------------------------- the tags
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

    # --------------------------------------------------------------------------- the ticks
    def _catch_up(self, now: float) -> None:
        """Send what is due by ``now``; what was due while nobody listened is lost."""
        for tick in self._due(now):
            if tick % self._heartbeat_ticks == 0:
                self._send(encode_heartbeat())
            for read in self._tags.values():
                self._send(encode_read(read))

    def _send(self, sentence: bytes) -> None:
        if self._damage_left:  # a wrong checksum
            self._damage_left -= 1
            wrong = b"0" if sentence[-3:-2] != b"0" else b"1"
            sentence = sentence[:-3] + wrong + sentence[-2:]  # the checksum's low digit
        self._line += sentence
        self.sentences_sent += 1


ESEAL_READERS: FakeRegistry[FakeEsealReader] = FakeRegistry(
    "fake-eseal", lambda name: FakeEsealReader()
)
"""Fake readers by name; a name nobody registered gets a reader on the wall clock."""


def open_fake_port(url: str) -> FakeSerialPort:
    """Open the fake reader ``fake-eseal://NAME`` names.

    Raises:
        DeviceError: the fake is unplugged or its port already open.
        ConfigError: the URL names no reader.
    """
    return ESEAL_READERS.lookup(url).open()
