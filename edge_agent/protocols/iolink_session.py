"""The Pi side of the IO-board link as a sans-I/O session: bytes and time in, events and bytes out.

``IoLinkSession`` keeps the host's rules of firmware/PROTOCOL.md; it owns no port, clock or
thread (``drivers/ioboard.py`` is the glue). The caller feeds what the port read with
``receive(data, now)``, queues commands with ``command(cmd, now)``, calls ``timers(now)`` once
``next_deadline()`` has passed, and writes whatever ``data_to_send(now)`` returns. The rules:

- Handshake: on a new connection, HELLO; again every 250 ms until a HELLO_ACK answers that
  HELLO's seq. Then LinkUp, the commands still waiting go out first, then CONFIG (the board's
  window must not move past them, or they would come back ``stale``). HELLO carries the seq
  just before the oldest waiting command, so those stay ahead of the board's window.
- Heartbeat every 200 ms while connected, with the host time in ms.
- Commands: seq 1..255 (0 is never a command seq), a deadline in host ms; resent with the
  same seq every 100 ms until answered or past the deadline. ``not_ready`` is retried until
  the deadline. An answer may still come up to 300 ms after the deadline; after that the
  command ends as ``no_answer`` (or its last ``not_ready``).
- The link is lost when the board has been silent for 1 s, when a state frame lacks the
  ``handshake`` flag (the board restarted), or when the connection is lost; the next HELLO
  follows at once and waiting commands are resent after the new handshake.
- One ``BoardSnapshot`` each time inputs, outputs, barrier, faults or flags change, and the
  first after every handshake; the 5 Hz periodic frames that change nothing are not events.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_agent import defaults
from edge_agent.errors import ConfigError, LocalProtocolError
from edge_agent.protocols import iolink
from edge_agent.protocols.iolink import Barrier

HEARTBEAT_S = 0.2
RETRANSMIT_S = 0.1
BOARD_SILENT_S = 1.0
HELLO_RETRY_S = 0.25
RESULT_GRACE_S = 0.3  # after a deadline, how long an answer may still be on its way
CONFIG_VALID_S = 1.0
# The board refuses a CONFIG outside these (firmware/PROTOCOL.md); checked here up front.
CONFIG_LIMITS_S = {"t_clear_s": (0.1, 60.0), "travel_timeout_s": (0.5, 60.0),
                   "dead_time_s": (0.01, 5.0)}  # fmt: skip


# ---- what the session hands to the lane ----
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
    """The board's whole picture; the session emits one each time something in it changed."""

    at: float
    inputs: Mapping[str, bool]
    outputs: Mapping[str, bool]
    barrier: Barrier
    faults: frozenset[str]
    uptime_ms: int
    loop_max_us: int
    flags: frozenset[str] = frozenset()
    periodic: bool = True  # False: sent at once because something changed

    def input(self, name: str, default: bool = False) -> bool:
        return bool(self.inputs.get(name, default))


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


IoEvent = BoardHello | BoardSnapshot | CommandResult | LinkLost | LinkUp


# ---- what the host may ask of the board ----
@dataclass(frozen=True, slots=True)
class OpenBarrier:
    pass


@dataclass(frozen=True, slots=True)
class CloseWhenClear:
    """Close once the barrier's path has been clear for T_clear (``pending`` until then)."""


@dataclass(frozen=True, slots=True)
class ClearFault:
    pass


@dataclass(frozen=True, slots=True)
class Maintenance:
    """Enter (or leave) maintenance: relays off, red, Ctrl-C enabled for mpremote."""

    enter: bool


@dataclass(frozen=True, slots=True)
class PulseOutput:
    """``output`` (light_red or buzzer) on for ``seconds`` (0.01..10) on top of the interlock."""

    output: str
    seconds: float


BoardCommand = OpenBarrier | CloseWhenClear | ClearFault | Maintenance | PulseOutput

Encoder = Callable[[int, int], bytes]  # (seq, deadline in host ms) -> frame


def _encoder(command: BoardCommand) -> Encoder:
    """The frame builder for ``command``, checked now rather than when it is first sent.

    Raises:
        LocalProtocolError: the board would refuse the output or the duration.
    """
    match command:
        case OpenBarrier():
            return iolink.encode_open
        case CloseWhenClear():
            return iolink.encode_close_when_clear
        case ClearFault():
            return iolink.encode_clear_fault
        case Maintenance(enter=enter):
            return lambda seq, deadline: iolink.encode_maintenance(seq, deadline, enter)
        case PulseOutput(output=output, seconds=seconds):
            if not math.isfinite(seconds):
                raise LocalProtocolError(f"pulse of {seconds} s is not a duration")
            pulse_ms = round(seconds * 1000)
            iolink.check_output_pulse(output, pulse_ms)
            return lambda seq, deadline: iolink.encode_output_pulse(seq, deadline, output,
                                                                    pulse_ms)  # fmt: skip
    raise TypeError(f"not a board command: {command!r}")


@dataclass(slots=True)
class _Pending:
    seq: int
    build: Callable[[int], bytes]  # host ms deadline -> frame
    deadline: float
    internal: bool  # the session's own CONFIG: its result is no event
    sent_at: float | None = None
    last_result: str = "no_answer"


@dataclass(slots=True)
class LinkStats:
    frames: int = 0
    errors: int = 0
    retransmits: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


def host_ms(t: float) -> int:
    """The host clock on the wire: milliseconds mod 2^32."""
    return int(t * 1000) & 0xFFFFFFFF


def _check_config(t_clear_s: float, travel_timeout_s: float, dead_time_s: float) -> None:
    for name, value in (("t_clear_s", t_clear_s), ("travel_timeout_s", travel_timeout_s),
                        ("dead_time_s", dead_time_s)):  # fmt: skip
        low, high = CONFIG_LIMITS_S[name]
        if not low <= value <= high:
            raise ConfigError(f"IO board {name}={value}: the board accepts {low}..{high} s")


class IoLinkSession:
    def __init__(
        self,
        *,
        t_clear_s: float = defaults.T_CLEAR_S,
        travel_timeout_s: float = defaults.TRAVEL_TIMEOUT_S,
        dead_time_s: float = defaults.DEAD_TIME_S,
        host_boot: int | None = None,
    ) -> None:
        """The CONFIG sent after each handshake; ``host_boot`` identifies this host process
        to the board (random when not given).

        Raises:
            ConfigError: the board would refuse one of the settings.
        """
        _check_config(t_clear_s, travel_timeout_s, dead_time_s)
        self._config = (round(t_clear_s * 1000), round(travel_timeout_s * 1000),
                        round(dead_time_s * 1000))  # fmt: skip
        self._host_boot = secrets.randbits(32) if host_boot is None else host_boot
        self._codec = iolink.LinkCodec()
        self._outgoing = bytearray()
        self._queued_at = 0.0  # when the first of the bytes in _outgoing was queued
        self._pending: dict[int, _Pending] = {}
        self._seq = 0
        self._connected = False
        self._link_up = False
        self._hello_seq: int | None = None
        self._hello_sent = 0.0
        self._last_rx = 0.0
        self._last_heartbeat: float | None = None
        self._reported: tuple[object, ...] | None = None  # the picture last emitted
        self.stats = LinkStats()
        self.hello: BoardHello | None = None
        self.snapshot: BoardSnapshot | None = None  # the latest picture, emitted or not

    @property
    def link_up(self) -> bool:
        return self._link_up

    def link_stats(self) -> dict[str, Any]:
        """Frames and garbage received, resends: for health."""
        stats = asdict(self.stats)
        stats["error_kinds"] = dict(self.stats.error_kinds)
        return stats

    # ---- the connection ----
    def connection_made(self, now: float) -> None:
        """A port is open: start the handshake (HELLO goes out with the next data_to_send)."""
        self._codec = iolink.LinkCodec()
        self._outgoing.clear()
        self._connected = True
        self._link_up = False
        self._hello_seq = None
        self._last_rx = now
        self._last_heartbeat = None
        self._reported = None
        for pending in self._pending.values():
            pending.sent_at = None  # whatever went out on an earlier connection is resent
        self._send_hello(now)

    def connection_lost(self, now: float, reason: str) -> list[IoEvent]:
        """The port failed or was closed: LinkLost when the link was up; nothing is sent
        until the next ``connection_made``."""
        events = self._lose_link(now, reason)
        self._connected = False
        self._outgoing.clear()
        return events

    # ---- bytes in ----
    def receive(self, data: bytes, now: float) -> list[IoEvent]:
        """What the port read; never raises on garbage (it is counted in the stats)."""
        events: list[IoEvent] = []
        for message in self._codec.receive_data(data):
            if isinstance(message, iolink.LinkError):
                self.stats.errors += 1
                kinds = self.stats.error_kinds
                kinds[message.kind] = kinds.get(message.kind, 0) + 1
                continue
            self.stats.frames += 1
            self._last_rx = now
            if isinstance(message, iolink.HelloAck):
                events += self._on_hello_ack(message, now)
            elif isinstance(message, iolink.BoardState):
                events += self._on_state(message, now)
            elif isinstance(message, iolink.Result):
                events += self._on_result(message, now)
        return events

    def _on_hello_ack(self, message: iolink.HelloAck, now: float) -> list[IoEvent]:
        self.hello = BoardHello(now, message.firmware, message.protocol, message.manifest,
                                message.reset_cause, message.uptime_ms)  # fmt: skip
        if self._hello_seq is None or message.ack != self._hello_seq:
            return [self.hello]  # an answer to an earlier HELLO, or to another host's
        self._hello_seq = None
        self._link_up = True
        self._reported = None  # the first picture after a handshake is always an event
        for pending in self._pending.values():
            if pending.sent_at is None and now <= pending.deadline:
                self._send_pending(pending, now)
        t_clear, travel, dead = self._config
        self._queue(lambda seq, _deadline: iolink.encode_config(seq, t_clear, travel, dead),
                    now, now + CONFIG_VALID_S, internal=True)  # fmt: skip
        return [self.hello, LinkUp(now)]

    def _on_state(self, message: iolink.BoardState, now: float) -> list[IoEvent]:
        events: list[IoEvent] = []
        if self._link_up and "handshake" not in message.flags:
            events += self._lose_link(now, "board restarted")
        self.snapshot = BoardSnapshot(
            now, message.inputs, message.outputs, message.barrier, message.faults,
            message.uptime_ms, message.loop_max_us, message.flags, message.periodic,
        )  # fmt: skip
        picture = (tuple(message.inputs.items()), tuple(message.outputs.items()),
                   message.barrier, message.faults, message.flags)  # fmt: skip
        if picture != self._reported:
            self._reported = picture
            events.append(self.snapshot)
        return events

    def _on_result(self, message: iolink.Result, now: float) -> list[IoEvent]:
        pending = self._pending.get(message.command)
        if pending is None:
            return []  # the answer to a retransmission we already have
        if message.result == "not_ready" and now <= pending.deadline:
            pending.last_result = message.result  # retried until its deadline
            return []
        del self._pending[message.command]
        return [] if pending.internal else [CommandResult(now, message.command, message.result)]

    # ---- commands ----
    def command(self, command: BoardCommand, now: float, *, valid_for_s: float = 1.0) -> int:
        """Queue ``command``; the board rejects it after ``valid_for_s``. Returns its seq.

        Raises:
            LocalProtocolError: the board would refuse it (an output or duration out of range).
        """
        return self._queue(_encoder(command), now, now + valid_for_s, internal=False)

    def _queue(self, encoder: Encoder, now: float, deadline: float, *, internal: bool) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; 0 is never a command seq
        seq = self._seq
        pending = _Pending(seq, lambda deadline_ms: encoder(seq, deadline_ms), deadline, internal)
        self._pending[seq] = pending
        if self._link_up:
            self._send_pending(pending, now)
        return seq

    def _send_pending(self, pending: _Pending, now: float) -> None:
        if pending.sent_at is not None:
            self.stats.retransmits += 1
        pending.sent_at = now
        self._put(pending.build(host_ms(pending.deadline)), now)

    def _put(self, frame: bytes, now: float) -> None:
        if not self._outgoing:
            self._queued_at = now
        self._outgoing += frame

    # ---- time ----
    def timers(self, now: float) -> list[IoEvent]:
        """What time alone decides: a silent board, commands past their deadline and grace."""
        events: list[IoEvent] = []
        if self._link_up and now >= self._last_rx + BOARD_SILENT_S:
            events += self._lose_link(now, f"board silent for more than {BOARD_SILENT_S} s")
        for seq, pending in list(self._pending.items()):
            if now >= pending.deadline + RESULT_GRACE_S:
                del self._pending[seq]
                if not pending.internal:
                    events.append(CommandResult(now, seq, pending.last_result))
        return events

    def data_to_send(self, now: float) -> bytes:
        """The bytes to write now: queued commands, then what is due (heartbeat, HELLO,
        retransmissions)."""
        if not self._connected:
            return b""
        if self._last_heartbeat is None or now >= self._last_heartbeat + HEARTBEAT_S:
            self._last_heartbeat = now
            self._put(iolink.encode_heartbeat(host_ms(now)), now)
        if not self._link_up and now >= self._hello_sent + HELLO_RETRY_S:
            self._send_hello(now)
        if self._link_up:
            for pending in self._pending.values():
                if now <= pending.deadline and (
                    pending.sent_at is None or now >= pending.sent_at + RETRANSMIT_S
                ):
                    self._send_pending(pending, now)
        data, self._outgoing = bytes(self._outgoing), bytearray()
        return data

    def next_deadline(self) -> float | None:
        """When ``timers`` or ``data_to_send`` next have something to do (None: nothing waits
        on time). Bytes queued by ``command`` or ``receive`` are due when they were queued."""
        due: list[float] = [p.deadline + RESULT_GRACE_S for p in self._pending.values()]
        if self._connected:
            if self._outgoing:
                due.append(self._queued_at)
            if self._last_heartbeat is not None:  # None: the HELLO just queued comes first
                due.append(self._last_heartbeat + HEARTBEAT_S)
            if self._link_up:
                due.append(self._last_rx + BOARD_SILENT_S)
                # With the link up every command not past its deadline has been sent.
                due += [p.sent_at + RETRANSMIT_S for p in self._pending.values()
                        if p.sent_at is not None and p.sent_at + RETRANSMIT_S <= p.deadline]
            else:
                due.append(self._hello_sent + HELLO_RETRY_S)
        return min(due, default=None)

    # ---- the handshake ----
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
        self._put(iolink.encode_hello(self._hello_seq, self._host_boot, host_ms(now)), now)

    def _lose_link(self, now: float, reason: str) -> list[IoEvent]:
        was_up = self._link_up
        self._link_up = False
        self._hello_seq = None
        self._hello_sent = now - HELLO_RETRY_S  # the next HELLO goes out at once
        for pending in self._pending.values():
            pending.sent_at = None
        return [LinkLost(now, reason)] if was_up else []
