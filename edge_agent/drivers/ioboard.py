"""The IO board driver: link supervision around the sans-I/O codec in protocols/iolink.py.

One thread calls ``read_events`` in a loop; it also sends the host heartbeat every 200 ms,
retransmits unanswered commands with the same seq, notices a silent or reset board, and
reopens an unplugged port with back-off (re-running the HELLO handshake and CONFIG). Other
threads may call ``open_barrier``/``close_when_clear``/``pulse_output``: they only queue a
command and write it once, under the same lock as the heartbeat writer.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import ConfigError, DeviceError, DeviceTimeout, LocalProtocolError
from edge_agent.protocols import iolink

HEARTBEAT_S = 0.2
RETRANSMIT_S = 0.1
BOARD_SILENT_S = 1.0
HELLO_RETRY_S = 0.25
RESULT_GRACE_S = 0.3  # after a deadline, how long an answer may still be on its way
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
_READ_TIMEOUT_S = 0.005
# The board refuses a CONFIG outside these (firmware/PROTOCOL.md); checked here up front.
CONFIG_LIMITS_S = {"t_clear_s": (0.1, 60.0), "travel_timeout_s": (0.5, 60.0),
                   "dead_time_s": (0.01, 5.0)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class BoardHello:
    at: float
    firmware: str
    protocol: int
    manifest: str
    reset_cause: str
    uptime_ms: int


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    at: float
    inputs: Mapping[str, bool]
    outputs: Mapping[str, bool]
    barrier: str
    faults: frozenset[str]
    uptime_ms: int
    loop_max_us: int
    flags: frozenset[str] = frozenset()
    periodic: bool = True  # False: sent at once because something changed


@dataclass(frozen=True, slots=True)
class InputChanged:
    at: float
    name: str
    value: bool


@dataclass(frozen=True, slots=True)
class CommandResult:
    """``result`` is a board code (ok, pending, expired, stale, not_ready, fault,
    bad_request, unknown_type) or ``no_answer`` when none came before the deadline."""

    at: float
    seq: int
    result: str


@dataclass(frozen=True, slots=True)
class LinkLost:
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class LinkUp:
    at: float


IoEvent = BoardHello | BoardSnapshot | InputChanged | CommandResult | LinkLost | LinkUp


@dataclass(slots=True)
class _Pending:
    seq: int
    build: Callable[[int], bytes]  # host ms deadline -> frame
    deadline: float
    internal: bool
    sent_at: float | None = None
    last_result: str = "no_answer"


@dataclass(slots=True)
class LinkStats:
    frames: int = 0
    errors: int = 0
    reconnects: int = 0
    retransmits: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


class IoBoard:
    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        clock: Callable[[], float] = time.monotonic,
        t_clear_s: float = 0.5,
        travel_timeout_s: float = 4.0,
        dead_time_s: float = 0.2,
        opener: Callable[..., Any] = open_port,
    ) -> None:
        self.url = url
        for name, value, low, high in (
            ("t_clear_s", t_clear_s, *CONFIG_LIMITS_S["t_clear_s"]),
            ("travel_timeout_s", travel_timeout_s, *CONFIG_LIMITS_S["travel_timeout_s"]),
            ("dead_time_s", dead_time_s, *CONFIG_LIMITS_S["dead_time_s"]),
        ):
            if not low <= value <= high:
                raise ConfigError(f"IO board {name}={value}: the board accepts {low}..{high} s")
        self._settings = LineSettings(baudrate=baudrate)
        self._clock = clock
        self._config = (round(t_clear_s * 1000), round(travel_timeout_s * 1000),
                        round(dead_time_s * 1000))  # fmt: skip
        self._opener = opener
        self._lock = threading.RLock()
        self._port: Any = None
        self._codec = iolink.LinkCodec()
        self._events: list[IoEvent] = []
        self._pending: dict[int, _Pending] = {}
        self._seq = 0
        self._host_boot = int.from_bytes(os.urandom(4), "big")
        self._hello_seq: int | None = None
        self._hello_sent = 0.0
        self._link_up = False
        self._last_rx = 0.0
        self._last_heartbeat = 0.0
        self._inputs: Mapping[str, bool] | None = None
        self._reconnect_at = 0.0
        self._backoff = BACKOFF_FIRST_S
        self._closed = False
        self.stats = LinkStats()
        self.hello: BoardHello | None = None
        self.snapshot: BoardSnapshot | None = None

    # ---- public API ----
    def open(self, timeout: float = 3.0) -> None:
        """Open the port and complete the handshake.

        Raises:
            DeviceError: the port cannot be opened.
            DeviceTimeout: the board did not answer HELLO within ``timeout``.
        """
        self._closed = False
        self._connect()
        give_up = time.monotonic() + timeout
        while not self._link_up:
            if time.monotonic() >= give_up:
                self._drop_port()
                raise DeviceTimeout(f"IO board on {self.url!r} did not answer HELLO")
            self._service(self._clock())
            self._read_once()

    def read_events(self, timeout: float) -> list[IoEvent]:
        """Events that arrived within ``timeout`` seconds (returns as soon as there are any)."""
        give_up = time.monotonic() + timeout
        while True:
            self._service(self._clock())
            self._read_once()
            if self._events or time.monotonic() >= give_up:
                events, self._events = self._events, []
                return events

    def open_barrier(self, *, valid_for_s: float = 1.0) -> int:
        """Queue OPEN; the board rejects it after ``valid_for_s``. Returns the command seq."""
        return self._command(iolink.encode_open, valid_for_s)

    def close_when_clear(self, *, valid_for_s: float = 1.0) -> int:
        """Ask the board to close once the path has been clear for T_clear."""
        return self._command(iolink.encode_close_when_clear, valid_for_s)

    def clear_fault(self, *, valid_for_s: float = 1.0) -> int:
        return self._command(iolink.encode_clear_fault, valid_for_s)

    def maintenance(self, enter: bool, *, valid_for_s: float = 1.0) -> int:
        """Enter (or leave) maintenance: relays off, red, Ctrl-C enabled for mpremote."""
        return self._command(
            lambda seq, deadline: iolink.encode_maintenance(seq, deadline, enter), valid_for_s
        )

    def pulse_output(self, output: str, seconds: float, *, valid_for_s: float = 1.0) -> int:
        """Queue OUTPUT_PULSE: ``output`` (light_red or buzzer) on for ``seconds``
        (0.01..10), on top of what the interlock drives. Returns the command seq.

        Raises:
            LocalProtocolError: the board would refuse the output or the duration.
        """
        if not math.isfinite(seconds):
            raise LocalProtocolError(f"pulse of {seconds} s is not a duration")
        pulse_ms = round(seconds * 1000)
        iolink.check_output_pulse(output, pulse_ms)  # here, not later in the reader thread
        return self._command(
            lambda seq, deadline: iolink.encode_output_pulse(seq, deadline, output, pulse_ms),
            valid_for_s,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_port()

    @property
    def link_up(self) -> bool:
        return self._link_up

    # ---- commands ----
    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; 0 is never a command seq
        return self._seq

    def _command(
        self, encoder: Callable[[int, int], bytes], valid_for_s: float, internal: bool = False
    ) -> int:
        with self._lock:
            seq = self._next_seq()
            pending = _Pending(
                seq, lambda deadline_ms: encoder(seq, deadline_ms),
                self._clock() + valid_for_s, internal,
            )  # fmt: skip
            self._pending[seq] = pending
            if self._link_up:
                self._send_pending(pending, self._clock())
            return seq

    def _send_pending(self, pending: _Pending, now: float) -> None:
        if pending.sent_at is not None:
            self.stats.retransmits += 1
        pending.sent_at = now
        self._write(pending.build(self._host_ms(pending.deadline)))

    def _host_ms(self, t: float) -> int:
        return int(t * 1000) & 0xFFFFFFFF

    # ---- the loop body ----
    def _service(self, now: float) -> None:
        with self._lock:
            if self._closed:
                return
            if self._port is None:
                if now >= self._reconnect_at:
                    try:
                        self._connect()
                    except DeviceError as exc:
                        self._schedule_reconnect(now, str(exc))
                return
            if self._link_up and now - self._last_rx > BOARD_SILENT_S:
                self._lose_link(now, f"board silent for more than {BOARD_SILENT_S} s")
            if now - self._last_heartbeat >= HEARTBEAT_S:
                self._last_heartbeat = now
                self._write(iolink.encode_heartbeat(self._host_ms(now)))
            if not self._link_up and now - self._hello_sent >= HELLO_RETRY_S:
                self._send_hello(now)
            for seq, pending in list(self._pending.items()):
                if now > pending.deadline + RESULT_GRACE_S:
                    del self._pending[seq]
                    if not pending.internal:
                        self._events.append(CommandResult(now, seq, pending.last_result))
                elif (
                    self._link_up
                    and now <= pending.deadline
                    and (pending.sent_at is None or now - pending.sent_at >= RETRANSMIT_S)
                ):
                    self._send_pending(pending, now)

    def _read_once(self) -> None:
        port = self._port
        if port is None:
            time.sleep(_READ_TIMEOUT_S)
            return
        try:
            data = port.read(max(1, port.in_waiting))
        except Exception as exc:  # pyserial raises SerialException on unplug
            with self._lock:
                if port is self._port:
                    self._port_failed(self._clock(), f"read failed: {exc}")
            return
        if data:
            now = self._clock()
            for message in self._codec.receive_data(data):
                self._on_message(message, now)

    def _on_message(self, message: iolink.Message, now: float) -> None:
        if isinstance(message, iolink.LinkError):
            self.stats.errors += 1
            self.stats.error_kinds[message.kind] = self.stats.error_kinds.get(message.kind, 0) + 1
            return
        self.stats.frames += 1
        with self._lock:
            self._last_rx = now
            if isinstance(message, iolink.HelloAck):
                self._on_hello_ack(message, now)
            elif isinstance(message, iolink.BoardState):
                self._on_state(message, now)
            elif isinstance(message, iolink.Result):
                self._on_result(message, now)

    def _on_hello_ack(self, message: iolink.HelloAck, now: float) -> None:
        self.hello = BoardHello(now, message.firmware, message.protocol, message.manifest,
                                message.reset_cause, message.uptime_ms)  # fmt: skip
        self._events.append(self.hello)
        if self._hello_seq is None or message.ack != self._hello_seq:
            return
        self._hello_seq = None
        self._link_up = True
        self._backoff = BACKOFF_FIRST_S
        self._events.append(LinkUp(now))
        # Waiting commands first: the CONFIG takes the next seq, and if it reached the board
        # first the board's window would move past them (they would come back ``stale``).
        for pending in self._pending.values():
            if pending.sent_at is None and now <= pending.deadline:
                self._send_pending(pending, now)
        t_clear, travel, dead = self._config
        self._command(lambda seq, _d: iolink.encode_config(seq, t_clear, travel, dead),
                      1.0, internal=True)  # fmt: skip

    def _on_state(self, message: iolink.BoardState, now: float) -> None:
        if self._link_up and "handshake" not in message.flags:
            self._lose_link(now, "board restarted")
        self.snapshot = BoardSnapshot(
            now, message.inputs, message.outputs, message.barrier, message.faults,
            message.uptime_ms, message.loop_max_us, message.flags, message.periodic,
        )  # fmt: skip
        self._events.append(self.snapshot)
        if self._inputs is not None:
            for name, value in message.inputs.items():
                if self._inputs.get(name) != value:
                    self._events.append(InputChanged(now, name, value))
        self._inputs = message.inputs

    def _on_result(self, message: iolink.Result, now: float) -> None:
        pending = self._pending.get(message.command)
        if pending is None:
            return  # the answer to a retransmission we already have
        if message.result == "not_ready" and now <= pending.deadline:
            pending.last_result = message.result  # retried until its deadline
            return
        del self._pending[message.command]
        if not pending.internal:
            self._events.append(CommandResult(now, message.command, message.result))

    # ---- connection management ----
    def _connect(self) -> None:
        with self._lock:
            port = self._opener(self.url, self._settings, timeout=_READ_TIMEOUT_S)
            with contextlib.suppress(Exception):  # not every transport has an input buffer
                port.reset_input_buffer()
            self._port = port
            self._codec = iolink.LinkCodec()
            self._inputs = None
            self._last_rx = self._clock()
            self._send_hello(self._clock())

    def _send_hello(self, now: float) -> None:
        if self._hello_seq is None:
            # Commands still waiting must stay ahead of the board's window after HELLO.
            waiting = [p.seq for p in self._pending.values()]
            if waiting:
                oldest = max(waiting, key=lambda s: (self._seq - s) % 255)
                self._hello_seq = (oldest - 2) % 255 + 1
            else:
                self._hello_seq = self._seq
        self._hello_sent = now
        self._write(iolink.encode_hello(self._hello_seq, self._host_boot, self._host_ms(now)))

    def _write(self, frame: bytes) -> None:
        port = self._port
        if port is None:
            return
        try:
            port.write(frame)
        except Exception as exc:  # SerialException, write timeout
            self._port_failed(self._clock(), f"write failed: {exc}")

    def _lose_link(self, now: float, reason: str) -> None:
        was_up = self._link_up
        self._link_up = False
        self._hello_seq = None
        self._hello_sent = 0.0
        for pending in self._pending.values():
            pending.sent_at = None
        if was_up:
            self._events.append(LinkLost(now, reason))

    def _port_failed(self, now: float, reason: str) -> None:
        self._lose_link(now, reason)
        self._drop_port()
        self._schedule_reconnect(now, reason)

    def _schedule_reconnect(self, now: float, reason: str) -> None:
        self.stats.reconnects += 1
        self._reconnect_at = now + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _drop_port(self) -> None:
        port, self._port = self._port, None
        self._link_up = False
        self._hello_seq = None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()


class BoardEvents:
    """A board's events as one stream to wait on; each event is handed out once.

    Waiting reads the driver, so its heartbeats and resends go on meanwhile (tools and tests
    that drive the board without the agent's reader thread).
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
        deadline = time.monotonic() + timeout
        while True:
            while self._cursor < len(self.seen):
                event = self.seen[self._cursor]
                self._cursor += 1
                if predicate(event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.seen.extend(self.board.read_events(min(left, 0.05)))

    def pump(self, seconds: float) -> None:
        """Keep the link alive for ``seconds``, collecting what arrives."""
        self.next(lambda _event: False, seconds)
