"""A misbehaving cable between the agent and the IO board, for fault tests.

Sits between the board's pty (``IoBoardHost.port``) and a pty of its own that the agent
opens through a stable symlink (``port``), like ``/dev/serial/by-id/...`` on a lane. Frames
(split at 0x00, not decoded) can be dropped, corrupted, duplicated, reordered or delayed per
direction; the relay can stop reading the board (its TX backs up), and the agent side can be
unplugged and plugged back in (new pty, same symlink).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import random
import select
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from simulators.errors import SimulatorError


@dataclass
class FaultPlan:
    """Per-frame fault probabilities and a fixed extra delay for one direction."""

    drop: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class _Direction:
    def __init__(self, plan: FaultPlan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng
        self.partial = bytearray()
        self.held: bytes | None = None  # a frame kept back to be sent after the next one

    def frames(self, data: bytes) -> list[bytes]:
        """Complete frames (delimiter included) after the faults of the plan."""
        self.partial += data
        out: list[bytes] = []
        while True:
            end = self.partial.find(0)
            if end < 0:
                return out
            frame = bytes(self.partial[: end + 1])
            del self.partial[: end + 1]
            out += self._apply(frame)

    def _apply(self, frame: bytes) -> list[bytes]:
        plan, rng = self.plan, self.rng
        if len(frame) > 1 and rng.random() < plan.drop:
            plan.count("drop")
            return []
        if len(frame) > 1 and rng.random() < plan.corrupt:
            plan.count("corrupt")
            damaged = bytearray(frame)
            damaged[rng.randrange(len(frame) - 1)] ^= 1 << rng.randrange(8)
            frame = bytes(damaged)
        result = [frame]
        if rng.random() < plan.duplicate:
            plan.count("duplicate")
            result.append(frame)
        if self.held is not None:
            result.append(self.held)
            self.held = None
        elif len(frame) > 1 and rng.random() < plan.reorder:
            plan.count("reorder")
            self.held = frame
            return []
        return result


class LinkFaults:
    def __init__(self, board_port: str, *, seed: int = 0) -> None:
        self.board_port = board_port
        self.to_board = FaultPlan()
        self.to_agent = FaultPlan()
        self._rng = random.Random(seed)
        self._dir = tempfile.TemporaryDirectory(prefix="linkfault-")
        self.port = str(Path(self._dir.name) / "ttyIOBOARD")
        self._lock = threading.Lock()
        self._board_fd: int | None = None
        self._agent_master: int | None = None
        self._agent_slave: int | None = None
        self._reading_board = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._due: list[tuple[float, int, str, bytes]] = []  # (when, order, "board"|"agent", bytes)
        self._order = 0
        self._actions: list[tuple[Callable[[], None], threading.Event]] = []

    def __enter__(self) -> LinkFaults:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        fd = os.open(self.board_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        self._board_fd = fd
        self.plug()
        self._thread = threading.Thread(target=self._run, name="linkfault", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.unplug()
        fd, self._board_fd = self._board_fd, None
        if fd is not None:
            os.close(fd)
        for pipe_fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(pipe_fd)
        self._dir.cleanup()

    # ---- faults that are not per frame ----
    def unplug(self) -> None:
        """Pull the cable: the agent's port errors out and the device path disappears."""
        self._in_relay(self._unplug)

    def plug(self) -> None:
        """Plug the cable (back) in: a fresh pty behind the same path."""
        self._in_relay(self._plug)

    def _unplug(self) -> None:
        master, slave = self._agent_master, self._agent_slave
        self._agent_master = self._agent_slave = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port)
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        tmp = self.port + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)
        self._agent_master, self._agent_slave = master, slave

    def _in_relay(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the relay thread (it owns the fds), or here when it is not running."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            action()
            return
        done = threading.Event()
        with self._lock:
            self._actions.append((action, done))
        self._wake()
        if not done.wait(5.0):
            raise SimulatorError("link fault relay did not respond")

    def pause_board_reading(self, paused: bool) -> None:
        """Stop (or resume) reading what the board sends: its TX path backs up."""
        self._reading_board = not paused
        self._wake()

    # ---- the relay ----
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        up = _Direction(self.to_board, self._rng)
        down = _Direction(self.to_agent, self._rng)
        while not self._stop.is_set():
            with self._lock:
                actions, self._actions = self._actions, []
            for action, done in actions:
                action()
                done.set()
            board, agent = self._board_fd, self._agent_master
            readers = [self._wake_r]
            if agent is not None:
                readers.append(agent)
            if board is not None and self._reading_board:
                readers.append(board)
            timeout = max(0.0, self._due[0][0] - time.monotonic()) if self._due else 0.5
            ready, _, _ = select.select(readers, [], [], timeout)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if agent is not None and agent in ready:
                data = self._read(agent)
                if data is None:
                    pass  # the agent closed its side; the pty stays for its reopen
                else:
                    self._schedule("board", up.frames(data), self.to_board.delay_s)
            if board is not None and board in ready:
                data = self._read(board)
                if data:
                    self._schedule("agent", down.frames(data), self.to_agent.delay_s)
            self._flush_due()

    @staticmethod
    def _read(fd: int) -> bytes | None:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return None
            raise

    def _schedule(self, to: str, frames: list[bytes], delay: float) -> None:
        when = time.monotonic() + delay
        for frame in frames:
            self._order += 1
            heapq.heappush(self._due, (when, self._order, to, frame))

    def _flush_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, to, frame = heapq.heappop(self._due)
            fd = self._board_fd if to == "board" else self._agent_master
            if fd is None:
                continue  # cable unplugged: the bytes are lost
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(fd, frame)  # a full buffer loses the frame, like a real overrun
