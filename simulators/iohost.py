"""Run the real IO-board firmware (firmware/main.py) in the MicroPython unix port.

The firmware's link is its stdin/stdout, attached to the master side of a raw pty; the agent
opens the slave path (``port``) with pyserial exactly like a USB CDC device. The fake
``machine`` module (firmware/hostsim/machine.py, first on MICROPYPATH) connects its pins to
this object over a loopback TCP side channel: input levels go in, every relay change comes
out at once with the board's own microsecond tick, which this class maps onto
``time.monotonic()`` (both are CLOCK_MONOTONIC on Linux; an offset is measured otherwise).
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from simulators.errors import IoHostError, SimulatorSetupError

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
DEFAULT_INPUTS = {
    "loop_a": False,
    "loop_b": False,
    "photo_eye": False,
    "limit_open": False,
    "limit_closed": True,
    "deck_front": True,
    "deck_rear": True,
    "tech_key": False,
}
_START_TIMEOUT_S = 15.0

OutputCallback = Callable[[float, str, bool], None]


def micropython_executable() -> Path:
    """The unix-port ``micropython`` installed next to this interpreter."""
    return Path(sys.executable).parent / "micropython"


PinMap = tuple[dict[str, tuple[int, bool]], dict[int, tuple[str, bool]]]


def read_pin_map(firmware_dir: Path) -> PinMap:
    """Inputs by name and outputs by GPIO from board.py's literal INPUTS/OUTPUTS tables."""
    tree = ast.parse((firmware_dir / "board.py").read_text(encoding="utf-8"))
    tables: dict[str, tuple[tuple[str, int, bool], ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("INPUTS", "OUTPUTS"):
                tables[target.id] = ast.literal_eval(node.value)
    inputs = {name: (gpio, low) for name, gpio, low in tables["INPUTS"]}
    outputs = {gpio: (name, low) for name, gpio, low in tables["OUTPUTS"]}
    return inputs, outputs


class IoBoardHost:
    def __init__(
        self,
        *,
        firmware_dir: Path | None = None,
        heapsize: str = "192K",
        env: dict[str, str] | None = None,
    ) -> None:
        self.firmware_dir = (firmware_dir or FIRMWARE_DIR).resolve()
        self.heapsize = heapsize
        self._extra_env = dict(env or {})
        self._input_pins, self._output_pins = read_pin_map(self.firmware_dir)
        self._inputs = dict(DEFAULT_INPUTS)
        self._outputs = {name: False for name, _ in self._output_pins.values()}
        self._changes: list[tuple[float, str, bool]] = []
        self._callbacks: list[OutputCallback] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._slave_fd: int | None = None
        self._master_fd: int | None = None
        self._port = ""
        self._reader: threading.Thread | None = None
        self._offset: float | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._stderr_path: Path | None = None
        self.watchdog_expired = False
        self.watchdog_resets = 0
        self._stopping = False

    # ---- lifecycle ----
    def __enter__(self) -> IoBoardHost:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        exe = micropython_executable()
        if not exe.exists():
            raise IoHostError(f"MicroPython unix port not found at {exe}")
        try:
            self._workdir = tempfile.TemporaryDirectory(prefix="iohost-")
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no CR/LF mangling, NUL and ^C pass through
            # We keep both ends open: the master survives a board restart (like a UART), the
            # slave keeps the master from reading EIO while no agent has the port open.
            self._master_fd, self._slave_fd = master, slave
            self._port = os.ttyname(slave)
            self._spawn(exe, "power_on")
        except BaseException:
            self.stop()
            raise

    def restart(self, reset_cause: str = "watchdog") -> None:
        """Kill the firmware and boot it again on the same port, e.g. a reset mid-motion.

        The relays drop (all outputs off) at the kill, as on a real board whose pins float
        to their pull-downs; inputs keep their values.
        """
        self._kill()
        with self._changed:
            at = time.monotonic()
            for name, value in self._outputs.items():
                if value:
                    self._outputs[name] = False
                    self._changes.append((at, name, False))
            self._offset = None
        self._spawn(micropython_executable(), reset_cause)

    def stall(self, seconds: float) -> None:
        """Freeze the firmware process (a hung loop); its watchdog then resets the board."""
        proc = self._proc
        if proc is None:
            raise IoHostError("the firmware is not running")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(proc.pid, signal.SIGCONT)

    def _spawn(self, exe: Path, reset_cause: str) -> None:
        assert self._workdir is not None and self._master_fd is not None
        work = Path(self._workdir.name)
        self._stderr_path = work / "stderr.log"
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(_START_TIMEOUT_S)
        env = dict(os.environ)
        env.update(
            MICROPYPATH=f"{self.firmware_dir / 'hostsim'}:.frozen",
            GATELANE_IOSIM=f"127.0.0.1:{listener.getsockname()[1]}",
            GATELANE_RESET_CAUSE=reset_cause,
        )
        env.update(self._extra_env)
        try:
            with open(self._stderr_path, "ab") as err:
                self._proc = subprocess.Popen(
                    [str(exe), "-X", f"heapsize={self.heapsize}",
                     str(self.firmware_dir / "main.py")],
                    stdin=self._master_fd,
                    stdout=self._master_fd,
                    stderr=err,
                    cwd=work,
                    env=env,
                    start_new_session=True,
                )  # fmt: skip
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                raise IoHostError(f"firmware did not connect its pins: {self.log()}") from None
        finally:
            listener.close()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conn = conn
            lines = [self._input_line(name, value) for name, value in self._inputs.items()]
            conn.sendall(("".join(lines) + "g\n").encode())
        self._reader = threading.Thread(
            target=self._read_side_channel, args=(conn,), name="iohost", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        with self._changed:
            while self._offset is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive:
                    raise IoHostError(f"firmware did not start: {self.log()}")
                self._changed.wait(min(left, 0.1))

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=2)

    def stop(self) -> None:
        """Kill the firmware process (and its group) and release every resource."""
        self._stopping = True
        self._kill()
        for attr in ("_slave_fd", "_master_fd"):
            fd = getattr(self, attr)
            setattr(self, attr, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        work, self._workdir = self._workdir, None
        if work is not None:
            work.cleanup()

    @property
    def port(self) -> str:
        return self._port

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """The firmware's stderr (tracebacks), for diagnostics."""
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")[-4000:]

    # ---- pins ----
    def set_inputs(self, **logical: bool) -> None:
        """Set inputs by logical meaning (see DEFAULT_INPUTS for names)."""
        unknown = sorted(set(logical) - set(self._input_pins))
        if unknown:
            known = sorted(self._input_pins)
            raise SimulatorSetupError(f"unknown input(s) {unknown}; known: {known}")
        with self._lock:
            text = ""
            for name, value in logical.items():
                self._inputs[name] = bool(value)
                text += self._input_line(name, bool(value))
            conn = self._conn
            if conn is not None and text:
                with contextlib.suppress(OSError):
                    conn.sendall(text.encode())

    def inputs(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._inputs)

    def outputs(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._outputs)

    def output_changes(self) -> list[tuple[float, str, bool]]:
        with self._lock:
            return list(self._changes)

    def on_output(self, callback: OutputCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def wait_for_output(self, name: str, value: bool, timeout: float) -> bool:
        """Block until output ``name`` has ``value`` (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._outputs.get(name) != value:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def _input_line(self, name: str, value: bool) -> str:
        gpio, active_low = self._input_pins[name]
        return f"i {gpio} {int(value != active_low)}\n"

    def _read_side_channel(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                self._handle(line.split())
        with self._changed:
            self._changed.notify_all()
            # A watchdog reset reboots the board, as on the real one.
            reboot = self.watchdog_expired and self._conn is conn and not self._stopping
        if reboot:
            threading.Thread(target=self._reboot_after_watchdog, daemon=True).start()

    def _reboot_after_watchdog(self) -> None:
        with contextlib.suppress(IoHostError):
            self.watchdog_resets += 1
            self.watchdog_expired = False
            self.restart("watchdog")

    def _handle(self, parts: list[bytes]) -> None:
        if not parts:
            return
        kind = parts[0]
        if kind == b"h":
            board_s = int(parts[1]) / 1e6
            offset = time.monotonic() - board_s
            with self._changed:
                # The unix port's ticks_us reads CLOCK_MONOTONIC, as time.monotonic() does: the
                # clocks are one, and what we measure here is only how late the hello came
                # (seconds on a loaded machine). Only a foreign clock differs by more.
                self._offset = 0.0 if abs(offset) < 30.0 else offset
                self._changed.notify_all()
        elif kind == b"o":
            gpio, level, tick = int(parts[1]), int(parts[2]), int(parts[3])
            if gpio not in self._output_pins:
                return
            name, active_low = self._output_pins[gpio]
            value = bool(level) != active_low
            at = tick / 1e6 + (self._offset or 0.0)
            with self._changed:
                self._outputs[name] = value
                self._changes.append((at, name, value))
                callbacks = list(self._callbacks)
                self._changed.notify_all()
            for callback in callbacks:
                callback(at, name, value)
        elif kind == b"w":
            self.watchdog_expired = True


class BarrierLoop:
    """Closes the loop between the board's relays and its limit switches through a
    ``BarrierMotor``, in a background thread (for tests and small benches)."""

    def __init__(self, host: IoBoardHost, *, travel_s: float = 0.6, period_s: float = 0.005):
        from simulators.barrier import BarrierMotor

        self.host = host
        self.motor = BarrierMotor(travel_s=travel_s)
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="barrier-loop", daemon=True)

    def __enter__(self) -> BarrierLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        last: dict[str, bool] = {}
        while not self._stop.is_set():
            out = self.host.outputs()
            p = self.motor.step(time.monotonic(), open_relay=out["barrier_open"],
                                close_relay=out["barrier_close"])
            limits = {"limit_open": p.limit_open, "limit_closed": p.limit_closed}
            if limits != last:
                self.host.set_inputs(**limits)
                last = limits
            self._stop.wait(self.period_s)
