"""IO-board link codec (firmware/PROTOCOL.md), sans-I/O: bytes in, messages out.

Frames are COBS-encoded and delimited by 0x00; the decoded frame is
``ver type seq ack payload crc16`` with CRC-16/CCITT-FALSE (big-endian) over ver..payload.
``LinkCodec.receive_data`` never raises on line garbage: it yields ``LinkError`` messages and
resynchronises on the next delimiter. The encoders serve both ends (the agent, simulators and
tests), and the golden vectors in firmware/vectors/link_vectors.json pin them to the firmware.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

from edge_agent.errors import LocalProtocolError

VERSION = 1
PROTOCOL = 1
MAX_PAYLOAD = 240
MAX_FRAME = 4 + MAX_PAYLOAD + 2
MAX_ENCODED = MAX_FRAME + 2  # COBS overhead for a maximal frame

INPUT_NAMES = (
    "loop_a", "loop_b", "photo_eye", "limit_open", "limit_closed",
    "deck_front", "deck_rear", "tech_key",
)  # fmt: skip
OUTPUT_NAMES = ("barrier_open", "barrier_close", "light_red", "light_green", "buzzer")
BARRIER_STATES = (
    "boot", "wait_host", "closed", "opening", "open", "closing", "stopped", "fault",
    "maintenance",
)  # fmt: skip


class Barrier(StrEnum):
    """The barrier as the board reports it; ``UNKNOWN`` until the board has said."""

    BOOT = "boot"
    WAIT_HOST = "wait_host"
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    STOPPED = "stopped"
    FAULT = "fault"
    MAINTENANCE = "maintenance"
    UNKNOWN = "unknown"

FAULT_NAMES = ("both_limits", "open_timeout", "close_timeout", "stale_input", "self_check")
FLAG_NAMES = ("link", "handshake", "close_pending", "passed", "path_clear", "granted")
RESULT_NAMES = (
    "ok", "pending", "expired", "stale", "not_ready", "fault", "bad_request", "unknown_type",
)  # fmt: skip
RESET_CAUSES = ("unknown", "power_on", "watchdog")
# OUTPUT_PULSE may switch only these: the barrier relays belong to the interlock and green
# keeps its meaning (S7). The board answers bad_request to anything else.
PULSE_OUTPUTS = ("light_red", "buzzer")
PULSE_MS_LIMITS = (10, 10000)

_STATE = struct.Struct(">HBBHBIIB")
_HELLO_ACK = struct.Struct(">BBIBBB8sI")


class MsgType(IntEnum):
    HELLO = 0x01
    HEARTBEAT = 0x02
    OPEN = 0x10
    CLOSE_WHEN_CLEAR = 0x11
    CONFIG = 0x12
    CLEAR_FAULT = 0x13
    MAINTENANCE = 0x14
    OUTPUT_PULSE = 0x15
    HELLO_ACK = 0x81
    SNAPSHOT = 0x82
    STATE = 0x83
    RESULT = 0x84


# ---- messages (what receive_data yields) ----
@dataclass(frozen=True, slots=True)
class Frame:
    """A valid frame of a type this codec does not decode further (or a host message)."""

    type: int
    seq: int
    ack: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class HelloAck:
    seq: int
    ack: int
    protocol: int
    reset_cause: str
    host_boot: int
    firmware: str
    manifest: str  # 16 hex digits
    uptime_ms: int


@dataclass(frozen=True, slots=True)
class BoardState:
    """A SNAPSHOT (heartbeat) or STATE (sent on change) frame: the same full picture."""

    seq: int
    ack: int
    periodic: bool
    inputs: Mapping[str, bool]
    outputs: Mapping[str, bool]
    barrier: Barrier
    faults: frozenset[str]
    flags: frozenset[str]
    uptime_ms: int
    loop_max_us: int
    last_command: int


@dataclass(frozen=True, slots=True)
class Result:
    seq: int  # the frame's own seq
    command: int  # the command's seq
    result: str
    barrier: Barrier


@dataclass(frozen=True, slots=True)
class LinkError:
    """Garbage on the line: kind is cobs | crc | size | version | payload."""

    kind: str
    detail: str


Message = Frame | HelloAck | BoardState | Result | LinkError


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (binascii.crc_hqx is the same polynomial, unreflected)."""
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte:
            block.append(byte)
        if not byte or len(block) == 254:
            out.append(len(block) + 1)
            out += block
            block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """Decode one COBS block sequence; None when it is not valid COBS."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        end = i + code
        if code == 0 or end > len(data) or 0 in data[i + 1 : end]:
            return None
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def encode_frame(ftype: int, seq: int, ack: int, payload: bytes = b"") -> bytes:
    """A whole on-wire frame, delimiter included.

    Raises:
        LocalProtocolError: a field is out of range or the payload is too long.
    """
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    for name, value in (("type", ftype), ("seq", seq), ("ack", ack)):
        if not 0 <= value <= 0xFF:
            raise LocalProtocolError(f"frame {name} {value} is not a byte")
    raw = bytes((VERSION, ftype, seq, ack)) + payload
    return cobs_encode(raw + crc16(raw).to_bytes(2, "big")) + b"\x00"


def _u16(name: str, value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise LocalProtocolError(f"{name} {value} does not fit 16 bits")
    return value


# ---- host -> board encoders ----
def encode_hello(seq: int, host_boot: int, host_ms: int) -> bytes:
    payload = struct.pack(">BII", PROTOCOL, host_boot & 0xFFFFFFFF, host_ms & 0xFFFFFFFF)
    return encode_frame(MsgType.HELLO, seq, 0, payload)


def encode_heartbeat(host_ms: int, ack: int = 0) -> bytes:
    return encode_frame(MsgType.HEARTBEAT, 0, ack, struct.pack(">I", host_ms & 0xFFFFFFFF))


def encode_open(seq: int, deadline_ms: int) -> bytes:
    return encode_frame(MsgType.OPEN, seq, 0, struct.pack(">I", deadline_ms & 0xFFFFFFFF))


def encode_close_when_clear(seq: int, deadline_ms: int) -> bytes:
    payload = struct.pack(">I", deadline_ms & 0xFFFFFFFF)
    return encode_frame(MsgType.CLOSE_WHEN_CLEAR, seq, 0, payload)


def encode_clear_fault(seq: int, deadline_ms: int) -> bytes:
    payload = struct.pack(">I", deadline_ms & 0xFFFFFFFF)
    return encode_frame(MsgType.CLEAR_FAULT, seq, 0, payload)


def encode_maintenance(seq: int, deadline_ms: int, enter: bool) -> bytes:
    payload = struct.pack(">IB", deadline_ms & 0xFFFFFFFF, int(enter))
    return encode_frame(MsgType.MAINTENANCE, seq, 0, payload)


def check_output_pulse(output: str, pulse_ms: int) -> int:
    """The output's bit number for OUTPUT_PULSE.

    Raises:
        LocalProtocolError: the board would refuse the output or the duration.
    """
    if output not in PULSE_OUTPUTS:
        raise LocalProtocolError(
            f"output {output!r} cannot be pulsed: only {' and '.join(PULSE_OUTPUTS)}"
        )
    low, high = PULSE_MS_LIMITS
    if not low <= pulse_ms <= high:
        raise LocalProtocolError(f"pulse of {pulse_ms} ms is outside {low}..{high} ms")
    return OUTPUT_NAMES.index(output)


def encode_output_pulse(seq: int, deadline_ms: int, output: str, pulse_ms: int) -> bytes:
    """OUTPUT_PULSE: ``output`` (light_red or buzzer) on for ``pulse_ms`` (10..10000).

    Raises:
        LocalProtocolError: the output or the duration is one the board refuses.
    """
    bit = check_output_pulse(output, pulse_ms)
    payload = struct.pack(">IBH", deadline_ms & 0xFFFFFFFF, bit, pulse_ms)
    return encode_frame(MsgType.OUTPUT_PULSE, seq, 0, payload)


def encode_config(seq: int, t_clear_ms: int, travel_ms: int, dead_ms: int) -> bytes:
    payload = struct.pack(
        ">HHH", _u16("t_clear_ms", t_clear_ms), _u16("travel_ms", travel_ms),
        _u16("dead_ms", dead_ms),
    )  # fmt: skip
    return encode_frame(MsgType.CONFIG, seq, 0, payload)


# ---- board -> host encoders (simulators, tests) ----
def _bits(names: tuple[str, ...], values: Mapping[str, bool] | frozenset[str]) -> int:
    if isinstance(values, frozenset):
        return sum(1 << i for i, n in enumerate(names) if n in values)
    return sum(1 << i for i, n in enumerate(names) if values.get(n))


def encode_state(state: BoardState) -> bytes:
    payload = _STATE.pack(
        _bits(INPUT_NAMES, state.inputs), _bits(OUTPUT_NAMES, state.outputs),
        BARRIER_STATES.index(state.barrier), _bits(FAULT_NAMES, state.faults),
        _bits(FLAG_NAMES, state.flags), state.uptime_ms, state.loop_max_us, state.last_command,
    )  # fmt: skip
    ftype = MsgType.SNAPSHOT if state.periodic else MsgType.STATE
    return encode_frame(ftype, state.seq, state.ack, payload)


def encode_result(seq: int, command: int, result: str, barrier: str) -> bytes:
    payload = bytes((command, RESULT_NAMES.index(result), BARRIER_STATES.index(barrier)))
    return encode_frame(MsgType.RESULT, seq, command, payload)


def _name(names: tuple[str, ...], index: int) -> str:
    return names[index] if index < len(names) else f"unknown_{index}"


def _barrier(index: int) -> Barrier:
    return Barrier(BARRIER_STATES[index]) if index < len(BARRIER_STATES) else Barrier.UNKNOWN


def _mapping(names: tuple[str, ...], bits: int) -> Mapping[str, bool]:
    return MappingProxyType({n: bool(bits >> i & 1) for i, n in enumerate(names)})


def _set(names: tuple[str, ...], bits: int) -> frozenset[str]:
    found = {n for i, n in enumerate(names) if bits >> i & 1}
    extra = bits >> len(names)
    return frozenset(found | ({f"unknown_{extra:#x}"} if extra else set()))


def decode_frame(ftype: int, seq: int, ack: int, payload: bytes) -> Message:
    """Decode one CRC-checked frame body into a message."""
    try:
        if ftype == MsgType.HELLO_ACK:
            proto, cause, boot, major, minor, patch, manifest, up = _HELLO_ACK.unpack_from(payload)
            return HelloAck(seq, ack, proto, _name(RESET_CAUSES, cause), boot,
                            f"{major}.{minor}.{patch}", manifest.hex(), up)  # fmt: skip
        if ftype in (MsgType.SNAPSHOT, MsgType.STATE):
            ins, outs, st, faults, flags, up, loop_us, last = _STATE.unpack_from(payload)
            return BoardState(
                seq, ack, ftype == MsgType.SNAPSHOT, _mapping(INPUT_NAMES, ins),
                _mapping(OUTPUT_NAMES, outs), _barrier(st),
                _set(FAULT_NAMES, faults), _set(FLAG_NAMES, flags), up, loop_us, last,
            )  # fmt: skip
        if ftype == MsgType.RESULT:
            command, code, st = payload[0], payload[1], payload[2]
            return Result(seq, command, _name(RESULT_NAMES, code), _barrier(st))
    except (struct.error, IndexError):
        return LinkError("payload", f"type {ftype:#04x}: {len(payload)}-byte payload too short")
    return Frame(ftype, seq, ack, payload)


def message_json(message: Message) -> dict[str, Any]:
    """A decoded message as a JSON-ready dict, tagged by ``type``."""
    if isinstance(message, BoardState):
        return {
            "type": "snapshot" if message.periodic else "state",
            "seq": message.seq,
            "barrier": message.barrier,
            "inputs": dict(message.inputs),
            "outputs": dict(message.outputs),
            "faults": sorted(message.faults),
            "flags": sorted(message.flags),
            "uptime_ms": message.uptime_ms,
            "loop_max_us": message.loop_max_us,
            "last_command": message.last_command,
        }
    if isinstance(message, HelloAck):
        return {
            "type": "hello_ack",
            "protocol": message.protocol,
            "firmware": message.firmware,
            "manifest": message.manifest,
            "reset_cause": message.reset_cause,
            "host_boot": message.host_boot,
            "uptime_ms": message.uptime_ms,
        }
    if isinstance(message, Result):
        return {"type": "result", "command": message.command, "result": message.result,
                "barrier": message.barrier}  # fmt: skip
    if isinstance(message, LinkError):
        return {"type": "error", "kind": message.kind, "detail": message.detail}
    return {"type": "frame", "frame_type": message.type, "seq": message.seq,
            "payload": message.payload.hex()}  # fmt: skip


class LinkCodec:
    """Stream decoder: feed any chunking of bytes, get messages in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = False
        self.frames = 0
        self.errors = 0

    def receive_data(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        for chunk_end in _split_points(data):
            part, delimited = chunk_end
            if not self._overflow:
                self._buffer += part
                if len(self._buffer) > MAX_ENCODED:
                    self._overflow = True
                    self._buffer.clear()
            if not delimited:
                continue
            if self._overflow:
                self._overflow = False
                out.append(self._error("size", f"frame longer than {MAX_ENCODED} bytes"))
                continue
            encoded = bytes(self._buffer)
            self._buffer.clear()
            if encoded:
                out.append(self._decode(encoded))
        return out

    def _error(self, kind: str, detail: str) -> LinkError:
        self.errors += 1
        return LinkError(kind, detail)

    def _decode(self, encoded: bytes) -> Message:
        raw = cobs_decode(encoded)
        if raw is None:
            return self._error("cobs", f"invalid COBS in {encoded[:16].hex()}")
        if len(raw) < 6:
            return self._error("size", f"{len(raw)}-byte frame is shorter than 6")
        if crc16(raw[:-2]) != int.from_bytes(raw[-2:], "big"):
            return self._error("crc", f"CRC mismatch in {raw[:16].hex()}")
        if raw[0] != VERSION:
            return self._error("version", f"frame version {raw[0]}, expected {VERSION}")
        message = decode_frame(raw[1], raw[2], raw[3], raw[4:-2])
        if isinstance(message, LinkError):
            self.errors += 1
        else:
            self.frames += 1
        return message


def _split_points(data: bytes) -> list[tuple[bytes, bool]]:
    """Split at delimiters: [(bytes before, ended by a delimiter)]."""
    parts = data.split(b"\x00")
    return [(p, i < len(parts) - 1) for i, p in enumerate(parts)]
