"""The IO board driver: a port, a lock and a reader around the sans-I/O ``IoLinkSession``.

One thread calls ``read_events`` in a loop; each pass lets the session's timers run, writes
what the session has to send (heartbeats, HELLO, resends), reads what the port has and hands
it to the session, and reopens an unplugged port after a back-off. Other threads may call
``open_barrier``/``close_when_clear``/``pulse_output``: they only queue a command in the
session and write it at once, under the same lock as the reader's writes. Time comes from
the injected clock only; waiting is the port's read timeout (or ``sleep`` while there is no
port), so a fake port on a virtual clock runs the link in virtual time.

The events are those of ``edge_agent.protocols.iolink_session`` (re-exported here for tools).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_agent import defaults
from edge_agent.backoff import Backoff
from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import DeviceError, DeviceTimeout
from edge_agent.protocols.iolink_session import (
    CONFIG_LIMITS_S,
    BoardCommand,
    BoardHello,
    BoardSnapshot,
    ClearFault,
    CloseWhenClear,
    CommandResult,
    IoEvent,
    IoLinkSession,
    LinkLost,
    LinkUp,
    Maintenance,
    OpenBarrier,
    PulseOutput,
)

__all__ = [
    "CONFIG_LIMITS_S", "BoardEvents", "BoardHello", "BoardSnapshot", "CommandResult", "IoBoard",
    "IoEvent", "LinkLost", "LinkUp",
]  # fmt: skip

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
READ_TIMEOUT_S = 0.005


class IoBoard:
    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        clock: Callable[[], float] = time.monotonic,
        t_clear_s: float = defaults.T_CLEAR_S,
        travel_timeout_s: float = defaults.TRAVEL_TIMEOUT_S,
        dead_time_s: float = defaults.DEAD_TIME_S,
        opener: Callable[..., Any] = open_port,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``sleep`` is how the reader waits while it has no port (a virtual clock's
        ``advance`` in virtual time).

        Raises:
            ConfigError: the board would refuse one of the settings.
        """
        self.url = url
        self.clock = clock
        self._session = IoLinkSession(t_clear_s=t_clear_s, travel_timeout_s=travel_timeout_s,
                                      dead_time_s=dead_time_s)  # fmt: skip
        self._settings = LineSettings(baudrate=baudrate)
        self._opener = opener
        self._sleep = sleep
        self._lock = threading.RLock()
        self._port: Any = None
        self._events: list[IoEvent] = []
        self._backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_MAX_S)
        self._reconnect_at = 0.0
        self._reconnects = 0
        self._closed = False

    # ---- public API ----
    def open(self, timeout: float = 3.0) -> None:
        """Open the port and complete the handshake.

        Raises:
            DeviceError: the port cannot be opened.
            DeviceTimeout: the board did not answer HELLO within ``timeout``.
        """
        self._closed = False
        self._connect()
        give_up = self.clock() + timeout
        while not self.link_up:
            if self.clock() >= give_up:
                with self._lock:
                    self._drop_port()
                raise DeviceTimeout(f"IO board on {self.url!r} did not answer HELLO")
            self._pass(give_up)

    def read_events(self, timeout: float) -> list[IoEvent]:
        """Events that arrived within ``timeout`` seconds (returns as soon as there are any)."""
        give_up = self.clock() + timeout
        while True:
            self._pass(give_up)
            with self._lock:
                if self._events or self.clock() >= give_up:
                    events, self._events = self._events, []
                    return events

    def open_barrier(self, *, valid_for_s: float = 1.0) -> int:
        """Queue OPEN; the board rejects it after ``valid_for_s``. Returns the command seq."""
        return self.command(OpenBarrier(), valid_for_s=valid_for_s)

    def close_when_clear(self, *, valid_for_s: float = 1.0) -> int:
        """Ask the board to close once the path has been clear for T_clear."""
        return self.command(CloseWhenClear(), valid_for_s=valid_for_s)

    def clear_fault(self, *, valid_for_s: float = 1.0) -> int:
        return self.command(ClearFault(), valid_for_s=valid_for_s)

    def maintenance(self, enter: bool, *, valid_for_s: float = 1.0) -> int:
        """Enter (or leave) maintenance: relays off, red, Ctrl-C enabled for mpremote."""
        return self.command(Maintenance(enter), valid_for_s=valid_for_s)

    def pulse_output(self, output: str, seconds: float, *, valid_for_s: float = 1.0) -> int:
        """Queue OUTPUT_PULSE: ``output`` (light_red or buzzer) on for ``seconds``
        (0.01..10), on top of what the interlock drives. Returns the command seq.

        Raises:
            LocalProtocolError: the board would refuse the output or the duration.
        """
        return self.command(PulseOutput(output, seconds), valid_for_s=valid_for_s)

    def command(self, command: BoardCommand, *, valid_for_s: float = 1.0) -> int:
        """Queue any board command (written at once while the link is up). Returns its seq.

        Raises:
            LocalProtocolError: the board would refuse it.
        """
        with self._lock:
            now = self.clock()
            seq = self._session.command(command, now, valid_for_s=valid_for_s)
            self._flush(now)
            return seq

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_port()

    @property
    def link_up(self) -> bool:
        return self._session.link_up

    @property
    def hello(self) -> BoardHello | None:
        return self._session.hello

    @property
    def snapshot(self) -> BoardSnapshot | None:
        """The board's latest picture (updated by every state frame, change or not)."""
        return self._session.snapshot

    def link_stats(self) -> dict[str, Any]:
        """Frames, garbage by kind, resends and port reopen attempts: for health."""
        with self._lock:
            return self._session.link_stats() | {"reconnects": self._reconnects}

    # ---- one pass of the reader ----
    def _pass(self, give_up: float) -> None:
        with self._lock:
            now = self.clock()
            if not self._closed:
                if self._port is None and now >= self._reconnect_at:
                    try:
                        self._connect()
                    except DeviceError:
                        self._schedule_reconnect()
                self._events += self._session.timers(now)
                self._flush(now)
            port = self._port
        if port is None:
            wait = min(READ_TIMEOUT_S, give_up - self.clock())
            if wait > 0:
                self._sleep(wait)
            return
        try:
            data = port.read(max(1, port.in_waiting))
        except Exception as exc:  # pyserial raises SerialException on unplug
            with self._lock:
                if port is self._port:
                    self._port_failed(f"read failed: {exc}")
            return
        if data:
            with self._lock:
                now = self.clock()
                events = self._session.receive(data, now)
                if any(isinstance(e, LinkUp) for e in events):
                    self._backoff.reset()
                self._events += events
                self._flush(now)

    def _flush(self, now: float) -> None:
        data = self._session.data_to_send(now)
        port = self._port
        if not data or port is None:
            return
        try:
            port.write(data)
        except Exception as exc:  # SerialException, write timeout
            self._port_failed(f"write failed: {exc}")

    # ---- the port ----
    def _connect(self) -> None:
        """Open the port and start the handshake.

        Raises:
            DeviceError: the port cannot be opened.
        """
        with self._lock:
            self._drop_port()
            port = self._opener(self.url, self._settings, timeout=READ_TIMEOUT_S)
            with contextlib.suppress(Exception):  # not every transport has an input buffer
                port.reset_input_buffer()
            self._port = port
            now = self.clock()
            self._session.connection_made(now)
            self._flush(now)

    def _port_failed(self, reason: str) -> None:
        self._events += self._drop_port(reason)
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        self._reconnects += 1
        self._reconnect_at = self.clock() + self._backoff.next()

    def _drop_port(self, reason: str = "port closed") -> list[IoEvent]:
        port, self._port = self._port, None
        if port is None:
            return []
        with contextlib.suppress(Exception):
            port.close()
        return self._session.connection_lost(self.clock(), reason)


class BoardEvents:
    """A board's events as one stream to wait on; each event is handed out once.

    Waiting reads the driver, so its heartbeats and resends go on meanwhile (tools and tests
    that drive the board without the agent's reader thread). Time is the board's clock.
    """

    def __init__(self, board: IoBoard) -> None:
        self.board = board
        self.seen: list[IoEvent] = []
        self._cursor = 0

    def mark(self) -> None:
        """Forget what came so far: ``next`` then looks only at what happens after."""
        self.seen.extend(self.board.read_events(0.0))
        self._cursor = len(self.seen)

    def next(self, predicate: Callable[[IoEvent], bool], timeout: float) -> IoEvent | None:
        """The next not yet handed out event matching ``predicate``, or None after ``timeout``."""
        deadline = self.board.clock() + timeout
        while True:
            while self._cursor < len(self.seen):
                event = self.seen[self._cursor]
                self._cursor += 1
                if predicate(event):
                    return event
            left = deadline - self.board.clock()
            if left <= 0:
                return None
            self.seen.extend(self.board.read_events(min(left, 0.05)))

    def pump(self, seconds: float) -> None:
        """Keep the link alive for ``seconds``, collecting what arrives."""
        self.next(lambda _event: False, seconds)
