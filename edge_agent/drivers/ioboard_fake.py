"""A fake IO board: the real firmware core in-process, a barrier arm, and a port to open by URL.

``FakeIoBoard`` runs firmware/interlock.py, controller.py and link.py (with cobs, crc16 and
ticks) from this repository's ``firmware/`` directory, loaded under private names so nothing
else that imports the firmware sees them. Its loop is main.py's: every 5 ms, and at once when
host bytes arrive, sample the inputs, take link bytes, run the interlock checks, drive the
relays and report. The world around it is small: inputs the test sets (``set_input``: loops,
photo-eye, deck beams, key) and an arm that travels between its limit switches while exactly
one direction relay is on, so an OPEN really opens and the board closes by itself once a
truck has passed. main.py's REPL hand-over and the watchdog are not modelled.

The board only runs when someone looks: each read, write or input change first brings the
core up to the clock's time. On a ``VirtualClock`` (any clock with ``advance(seconds)``),
time passes only when the test advances it, except that a read finding nothing moves the
clock on, loop by loop, up to the port's timeout, as a blocking read would take; nothing
ever waits. On any other clock reads block for real, up to their timeout.

``open_fake_port("fake-ioboard://NAME")`` opens the board registered under NAME in
``REGISTRY`` (a fresh one on the wall clock if nobody registered it), with the subset of
pyserial that the driver uses. ``unplug``/``replug``, ``set_silent``, ``reset`` and
``lose_commands`` are the faults a link-loss test needs.
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import os
import sysconfig
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from serial import SerialException

from edge_agent.drivers.fakes import FakeRegistry
from edge_agent.errors import DeviceError
from edge_agent.protocols import iolink
from edge_agent.protocols.iolink import Barrier


def _firmware_dir() -> Path:
    """firmware/ of a source checkout, else the copy an installed package carries (its wheel's
    data files, share/gatelane/firmware under the environment's prefix)."""
    checkout = Path(__file__).resolve().parents[2] / "firmware"
    if (checkout / "controller.py").is_file():
        return checkout
    return Path(sysconfig.get_path("data")) / "share" / "gatelane" / "firmware"


FIRMWARE_DIR = _firmware_dir()
_CORE = ("ticks", "crc16", "cobs", "link", "interlock", "controller", "manifest")
LOOP_S = 0.005  # main.py PERIOD_MS
RX_BUDGET = 512  # main.py: link bytes taken per loop iteration
TICK_PERIOD = 1 << 30  # the RP2040's ticks_ms wrap
RESET_CODES = {"unknown": 0, "power_on": 1, "watchdog": 2}  # board.py
LIMIT_MARGIN = 0.01  # fraction of travel where a limit switch is already made
HISTORY = 10_000  # frames and relay changes kept for tests to look at
LIMITS = ("limit_open", "limit_closed")
SETTABLE_INPUTS = tuple(n for n in iolink.INPUT_NAMES if n not in LIMITS)
DEFAULT_INPUTS = {"loop_a": False, "loop_b": False, "photo_eye": False, "deck_front": True,
                  "deck_rear": True, "tech_key": False}  # fmt: skip


@runtime_checkable
class SteppableClock(Protocol):
    def __call__(self) -> float: ...

    def advance(self, seconds: float) -> None: ...


# ---- the firmware core, loaded privately ----
@dataclass(frozen=True, slots=True)
class FirmwareCore:
    modules: Mapping[str, types.ModuleType]
    version: tuple[int, int, int]  # main.py FW_VERSION
    manifest: bytes  # what the board reports in HELLO_ACK for these files

    def __getattr__(self, name: str) -> Any:
        try:
            return self.modules[name]
        except KeyError:
            raise AttributeError(name) from None


@functools.lru_cache(maxsize=4)
def load_firmware(firmware_dir: Path = FIRMWARE_DIR) -> FirmwareCore:
    """The firmware's core modules, executed from their files under private names: their
    ``import link`` and the like resolve among themselves, and ``sys.modules`` stays as it was.

    Raises:
        DeviceError: the directory does not hold the firmware (an installed package without
            the repository's firmware/ directory).
    """
    loaded: dict[str, types.ModuleType] = {}
    real_import = builtins.__import__

    def private_import(name: str, globs: Any = None, locs: Any = None,
                       fromlist: Any = (), level: int = 0) -> Any:  # fmt: skip
        if level == 0 and name in loaded:
            return loaded[name]
        return real_import(name, globs, locs, fromlist, level)

    scope = dict(vars(builtins), __import__=private_import)
    try:
        for name in _CORE:
            path = firmware_dir / f"{name}.py"
            module = types.ModuleType(f"{__name__}.firmware.{name}")
            module.__file__ = str(path)
            module.__dict__["__builtins__"] = scope
            exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
            loaded[name] = module
        version = _literal(firmware_dir / "main.py", "FW_VERSION")
    except OSError as exc:
        raise DeviceError(f"no IO-board firmware in {firmware_dir}: {exc}") from exc

    def read(file: str) -> bytes:
        return (firmware_dir / file).read_bytes()

    manifest = loaded["manifest"].manifest_hash(read, os.listdir(firmware_dir))
    return FirmwareCore(types.MappingProxyType(loaded), version, manifest)


def _literal(path: Path, name: str) -> Any:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise OSError(f"{path} defines no {name}")


# ---- the board and its world ----
class FakeIoBoard:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        travel_s: float = 1.0,
        firmware_dir: Path = FIRMWARE_DIR,
        advance_on_wait: bool = True,
        port_buffer: int = 4096,
    ) -> None:
        """``travel_s``: how long the arm takes from one limit to the other; ``port_buffer``:
        bytes the host's side holds before the board's frames are dropped (an unread port)."""
        if travel_s <= 0:
            raise ValueError(f"travel_s must be positive, got {travel_s}")
        self.clock = clock
        self._advance: Callable[[float], None] | None = None
        if advance_on_wait and isinstance(clock, SteppableClock):
            self._advance = clock.advance
        self.fw = load_firmware(firmware_dir)
        self.travel_s = travel_s
        self.port_buffer = port_buffer
        self._lock = threading.RLock()
        self._board_sent = threading.Condition(self._lock)
        self._inputs = dict(DEFAULT_INPUTS)
        self.arm = 0.0  # 0 closed .. 1 open
        self.arm_jammed = False  # the motor does not move the arm (an open/close timeout)
        self.relay_conflicts = 0  # loop iterations with both direction relays on (never)
        self._outputs = 0
        self._changes: deque[tuple[float, str, bool]] = deque(maxlen=HISTORY)
        self._received: deque[tuple[float, iolink.Message]] = deque(maxlen=HISTORY)
        self._host_codec = iolink.LinkCodec()
        self._rx = bytearray()  # host -> board, not yet taken by the loop
        self._tx = bytearray()  # board -> host, not yet read
        self._port: FakeIoPort | None = None
        self.plugged = True
        self.silent = False  # the board's frames never reach the host
        self._lose_commands = 0
        self.open_attempts: deque[tuple[float, bool]] = deque(maxlen=HISTORY)  # (when, opened)
        self._boot(clock(), "power_on")

    # ---- the firmware loop ----
    def _boot(self, t: float, reset_cause: str) -> None:
        fw, self._t0 = self.fw, t
        diff = fw.ticks.make_diff(TICK_PERIOD)
        now = self._tick(t)
        self.interlock = fw.interlock.Interlock(now, diff)
        self.controller = fw.controller.Controller(
            self.interlock, self._board_send, now, diff, reset_cause=RESET_CODES[reset_cause],
            fw=fw.version, manifest=fw.manifest,
        )  # fmt: skip
        self._receiver = fw.link.Receiver()
        self._rx.clear()
        self._last_t = t
        self._schedule(t)

    def _tick(self, t: float) -> int:
        return math.floor((t - self._t0) * 1000 + 1e-6) % TICK_PERIOD

    def _schedule(self, t: float) -> None:
        """Loop iterations at t, t + 5 ms, ... (counted, so no float drift)."""
        self._loop_base, self._loop_count = t, 0

    def _next_loop(self) -> float:
        return self._loop_base + self._loop_count * LOOP_S

    def _catch_up(self) -> None:
        now = self.clock()
        while self._next_loop() <= now:
            self._loop_once(self._next_loop())
            self._loop_count += 1

    def _loop_once(self, t: float) -> None:
        dt = max(0.0, t - self._last_t)
        self._move_arm(dt)
        self._last_t = t
        lock, ctl, now = self.interlock, self.controller, self._tick(t)
        lock.sample(self._input_bits(), now)
        taken = self._rx[:RX_BUDGET]
        del self._rx[:RX_BUDGET]
        for byte in taken:
            n = self._receiver.push(byte)
            if n:
                ctl.on_frame(self._receiver.frame, n, now)
        lock.step(now)
        self._drive(ctl.outputs(now), t)
        ctl.tick(now, round(dt * 1e6))

    def _board_send(self, frame: bytes) -> bool:
        if self._port is None or self.silent:
            return True  # nobody listening: gone, as main.py's TxQueue discards it
        if len(self._tx) + len(frame) > self.port_buffer:
            return False  # the host does not read: the frame is dropped, snapshots heal it
        self._tx += frame
        self._board_sent.notify_all()
        return True

    def _input_bits(self) -> int:
        values = self.inputs()
        return sum(1 << i for i, name in enumerate(iolink.INPUT_NAMES) if values[name])

    def _move_arm(self, dt: float) -> None:
        relays = self._outputs & 0b11  # barrier_open, barrier_close
        if relays == 0b11:
            self.relay_conflicts += 1
        elif relays and not self.arm_jammed:
            step = dt / self.travel_s
            self.arm = min(1.0, self.arm + step) if relays == 0b01 else max(0.0, self.arm - step)

    def _drive(self, bits: int, t: float) -> None:
        changed, self._outputs = bits ^ self._outputs, bits
        for i, name in enumerate(iolink.OUTPUT_NAMES):
            if changed >> i & 1:
                self._changes.append((t, name, bool(bits >> i & 1)))

    # ---- what a test does to the world ----
    def set_input(self, name: str, value: bool) -> None:
        """Set a logical input (loop_a, loop_b, photo_eye, deck_front, deck_rear, tech_key);
        the limit switches follow the arm.

        Raises:
            ValueError: not an input the world sets.
        """
        if name not in SETTABLE_INPUTS:
            raise ValueError(f"input {name!r} is not settable; settable: {SETTABLE_INPUTS}")
        with self._lock:
            self._catch_up()
            self._inputs[name] = bool(value)

    def set_inputs(self, **values: bool) -> None:
        for name, value in values.items():
            self.set_input(name, value)

    def unplug(self) -> None:
        """Pull the cable: the open port fails from now on and opening fails until ``replug``.
        The board keeps running (and soon finds its host silent)."""
        with self._lock:
            self._catch_up()
            self.plugged = False
            self._detach()

    def replug(self) -> None:
        with self._lock:
            self._catch_up()
            self.plugged = True

    def set_silent(self, silent: bool) -> None:
        """The board's frames stop reaching the host (or reach it again); it still listens."""
        with self._lock:
            self._catch_up()
            self.silent = silent

    def reset(self, reset_cause: str = "watchdog") -> None:
        """Reboot the firmware now: relays drop, the handshake is gone, the arm stays put."""
        with self._lock:
            self._catch_up()
            t = self.clock()
            self._drive(0, t)
            self._boot(t, reset_cause)

    def lose_commands(self, count: int) -> None:
        """The next ``count`` host commands (not HELLO or heartbeats) are lost on the line."""
        with self._lock:
            self._lose_commands = count

    # ---- what a test looks at ----
    def inputs(self) -> dict[str, bool]:
        with self._lock:
            return self._inputs | {"limit_open": self.arm >= 1.0 - LIMIT_MARGIN,
                                   "limit_closed": self.arm <= LIMIT_MARGIN}  # fmt: skip

    def outputs(self) -> dict[str, bool]:
        with self._lock:
            self._catch_up()
            return {n: bool(self._outputs >> i & 1) for i, n in enumerate(iolink.OUTPUT_NAMES)}

    def output_changes(self) -> list[tuple[float, str, bool]]:
        """(clock time, output, value) for every relay change, oldest first."""
        with self._lock:
            self._catch_up()
            return list(self._changes)

    def received(self, ftype: int | None = None) -> list[tuple[float, iolink.Message]]:
        """(clock time, frame) for what reached the board from the host, of one type or all."""
        with self._lock:
            return [(t, m) for t, m in self._received
                    if ftype is None or (isinstance(m, iolink.Frame) and m.type == ftype)]

    @property
    def barrier(self) -> Barrier:
        with self._lock:
            self._catch_up()
            return Barrier(self.fw.interlock.STATE_NAMES[self.interlock.state])

    def seen_inputs(self) -> frozenset[str]:
        """The inputs that are on as the firmware sees them now (sampled, debounced)."""
        with self._lock:
            self._catch_up()
            bits = self.interlock.inputs
            return frozenset(n for i, n in enumerate(iolink.INPUT_NAMES) if bits >> i & 1)

    def flags(self) -> frozenset[str]:
        with self._lock:
            self._catch_up()
            bits = self.interlock.flags()
            return frozenset(n for i, n in enumerate(iolink.FLAG_NAMES) if bits >> i & 1)

    # ---- the port ----
    def open_port(self, *, timeout: float | None = 0.05, url: str = "fake-ioboard") -> FakeIoPort:
        """Open the board's link like a serial device.

        Raises:
            DeviceError: unplugged, or the port is open already (ports are exclusive).
        """
        with self._lock:
            self._catch_up()
            ok = self.plugged and self._port is None
            self.open_attempts.append((self.clock(), ok))
            if not self.plugged:
                raise DeviceError(f"cannot open {url!r}: no such device (unplugged)")
            if self._port is not None:
                raise DeviceError(f"cannot open {url!r}: the port is busy")
            self._tx.clear()
            self._port = FakeIoPort(self, timeout)
            return self._port

    def _detach(self) -> None:
        if self._port is not None:
            self._port.alive = False
            self._port = None
        self._tx.clear()

    def _host_wrote(self, data: bytes) -> None:
        self._catch_up()
        t = self.clock()
        for frame in _frames(data):
            decoded = self._host_codec.receive_data(frame)
            is_command = any(isinstance(m, iolink.Frame) and m.type >= iolink.MsgType.OPEN
                             for m in decoded)  # fmt: skip
            if is_command and self._lose_commands:
                self._lose_commands -= 1
                continue
            self._received.extend((t, m) for m in decoded)
            self._rx += frame
        # main.py's loop wakes on link bytes: they are handled now, not at the next tick.
        self._loop_once(t)
        self._schedule(t)
        self._loop_count = 1

    def _wait_for_board(self, port: FakeIoPort, timeout: float | None) -> None:
        """Until the board has sent something, the timeout passed or the port died."""
        if self._advance is None and isinstance(self.clock, SteppableClock):
            return  # virtual time that only the test moves: nothing can arrive by waiting
        now = self.clock()
        deadline = math.inf if timeout is None else now + timeout
        while not self._tx and port.alive and now < deadline:
            step_to = min(deadline, self._next_loop())
            if self._advance is not None:
                self._advance(step_to - now)
            else:
                self._board_sent.wait(max(0.0, step_to - now))
            self._catch_up()
            now = self.clock()


def _frames(data: bytes) -> list[bytes]:
    """``data`` cut after each delimiter (a trailing partial frame stays one piece)."""
    parts = data.split(b"\x00")
    return [p + b"\x00" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


class FakeIoPort:
    """The subset of pyserial's ``Serial`` the drivers use, on a ``FakeIoBoard``."""

    def __init__(self, board: FakeIoBoard, timeout: float | None) -> None:
        self._board = board
        self.timeout = timeout
        self.alive = True  # False once unplugged or closed

    def _check(self) -> None:
        if not self.alive:
            raise SerialException("device reports readiness to read but returned no data "
                                  "(device disconnected or multiple access on port?)")  # fmt: skip

    @property
    def in_waiting(self) -> int:
        with self._board._lock:
            self._check()
            self._board._catch_up()
            return len(self._board._tx)

    def read(self, size: int = 1) -> bytes:
        board = self._board
        with board._lock:
            self._check()
            board._catch_up()
            if not board._tx and self.timeout != 0:
                board._wait_for_board(self, self.timeout)
                self._check()
            data = bytes(board._tx[:size])
            del board._tx[:size]
            return data

    def write(self, data: bytes) -> int:
        with self._board._lock:
            self._check()
            self._board._host_wrote(bytes(data))
            return len(data)

    def reset_input_buffer(self) -> None:
        with self._board._lock:
            self._check()
            self._board._catch_up()
            self._board._tx.clear()

    def close(self) -> None:
        with self._board._lock:
            if self.alive and self._board._port is self:
                self._board._detach()
            self.alive = False

    @property
    def is_open(self) -> bool:
        return self.alive


REGISTRY: FakeRegistry[FakeIoBoard] = FakeRegistry("fake-ioboard", lambda _name: FakeIoBoard())


def open_fake_port(
    url: str, settings: object = None, *, timeout: float | None = 0.05
) -> FakeIoPort:
    """Open ``fake-ioboard://NAME``: the board registered under NAME, or a fresh one.

    Raises:
        ConfigError: not a fake-ioboard URL.
        DeviceError: the board is unplugged or its port is open already.
    """
    return REGISTRY.lookup(url).open_port(timeout=timeout, url=url)
