"""A simulated serial device's line: a raw pty behind a stable symlink, the thread that writes
to it, and a CLI's run loop.

``path`` is the symlink the agent opens, like a ``/dev/serial/by-id`` link. ``unplug`` takes
the device away (the agent's reads fail, the link dangles) and ``plug`` brings a new pty back
under the same name, as a re-plugged USB adapter does.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import tty
from collections.abc import Callable


class PtyLine:
    """A raw pty, reached through ``path``; ``master`` is the device's end (None unplugged)."""

    def __init__(self, prefix: str, name: str, *, nonblocking: bool = False) -> None:
        self._dir = tempfile.mkdtemp(prefix=prefix)
        self.path = os.path.join(self._dir, name)
        self._nonblocking = nonblocking
        self.master: int | None = None
        self._slave: int | None = None

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        if self._nonblocking:
            os.set_blocking(master, False)  # a full line drops output, it never stalls the sim
        self.master, self._slave = master, slave
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.symlink(os.ttyname(slave), self.path)

    def unplug(self) -> None:
        master, slave, self.master, self._slave = self.master, self._slave, None, None
        for fd in (slave, master):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def remove(self) -> None:
        """Unplug for good: the pty, its link and their folder are gone."""
        self.unplug()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


class PtySimulator:
    """A device on a ``PtyLine`` that writes from its own thread (``_run``) until stopped."""

    def __init__(self, name: str, link: str, *, nonblocking: bool = False) -> None:
        self._name = name
        self._pty = PtyLine(f"{name}-", link, nonblocking=nonblocking)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> str:
        """Path the agent opens (a symlink to the current pty)."""
        return self._pty.path

    def start(self) -> None:
        """Open the pty and start writing."""
        self._pty.plug()
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop writing and remove the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._pty.remove()

    def _run(self) -> None:
        raise NotImplementedError


def run_for(duration_s: float, stop: Callable[[], None]) -> None:
    """Keep a started simulator running ``duration_s`` seconds (0: until ^C), then stop it."""
    started = time.monotonic()
    try:
        while duration_s <= 0 or time.monotonic() - started < duration_s:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
