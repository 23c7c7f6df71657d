"""A private Mosquitto 2 broker on a free loopback port, for tests, the demo and benchmarks.

Each instance writes its own config into a work directory, runs ``mosquitto -c`` as a child
process, and waits until the port accepts connections. ``stop()`` is a clean SIGTERM,
``kill()`` a crash (SIGKILL), ``restart()`` comes back on the same port. On Linux the child
gets SIGTERM if this process dies, so no broker outlives its test run.

``config_file`` runs a real deployment config instead of the anonymous plain listener (the
site config from ``lanectl site init``: mutual TLS, ACL, CRL); its ``listener`` line is
rewritten to this broker's loopback port, and ``url`` becomes ``mqtts://`` when it has TLS.

``FaultProxy`` sits between a client and the broker to break the network on purpose.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from simulators.errors import BrokerError, SimulatorSetupError

START_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1
_LISTENER = re.compile(r"^\s*listener\s+\S+.*$", re.MULTILINE)
_TLS_OPTION = re.compile(r"^\s*certfile\s+\S", re.MULTILINE)


def find_mosquitto() -> str:
    """Path of the mosquitto binary (PATH first, then the Debian location)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(
        "mosquitto not found: run `make test` (it installs it when run as root) "
        "or `sudo apt-get install mosquitto` (Debian package)"
    )


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller retries on a collision)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGTERM when we die.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class MosquittoBroker:
    """One private Mosquitto process; usable as a context manager."""

    def __init__(
        self,
        *,
        port: int = 0,
        workdir: Path | None = None,
        extra_config: str = "",
        persistence: bool = False,
        config_file: Path | None = None,
    ) -> None:
        self._binary = find_mosquitto()
        self._fixed_port = port != 0
        self.port = port or free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="mosquitto-")) if workdir is None else workdir
        self.extra_config = extra_config
        self.persistence = persistence
        self.config_file = config_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def tls(self) -> bool:
        """True when the listener speaks TLS (a ``config_file`` with a ``certfile``)."""
        return self.config_file is not None and bool(_TLS_OPTION.search(self._deployment()))

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its ACL file (and config) without dropping clients."""
        if self._process is None or self._process.poll() is not None:
            raise BrokerError("broker is not running")
        self._process.send_signal(signal.SIGHUP)

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running():
            raise BrokerError(f"broker already running on port {self.port}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            try:
                self._spawn()
                return
            except _PortTaken:
                if self._fixed_port:
                    raise BrokerError(f"port {self.port} is already in use") from None
                self.port = free_port()
        raise BrokerError("no free loopback port found for mosquitto")

    def stop(self) -> None:
        """Clean shutdown (SIGTERM; SIGKILL if it hangs)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)

    def kill(self) -> None:
        """Crash the broker (SIGKILL): whatever it had not saved is gone."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(5.0)

    def restart(self) -> None:
        """Stop if running, then start again on the same port."""
        self.stop()
        self._fixed_port = True
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        if not self.running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _deployment(self) -> str:
        assert self.config_file is not None
        try:
            return self.config_file.read_text()
        except OSError as exc:
            raise BrokerError(f"cannot read broker config {self.config_file}: {exc}") from exc

    def _listener_config(self) -> list[str]:
        if self.config_file is None:
            return [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        text = self._deployment()
        if len(_LISTENER.findall(text)) != 1:
            raise BrokerError(f"{self.config_file}: expected exactly one `listener` line")
        return [_LISTENER.sub(f"listener {self.port} 127.0.0.1", text)]

    def _config_text(self) -> str:
        lines = [
            *self._listener_config(),
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot write here
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def _spawn(self) -> None:
        self.config_path.write_text(self._config_text())
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        try:
            self._process = subprocess.Popen(
                [self._binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self._log_since(offset)
            if self._process.poll() is not None:
                self._process = None
                if "Address already in use" in text:
                    raise _PortTaken
                raise BrokerError(f"mosquitto exited at start; log:\n{text[-2000:]}")
            # "running" is logged once every listener is open; connecting alone could
            # reach another process that already holds the port.
            if " running" in text:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not accept connections on port {self.port}")


    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


class FaultProxy:
    """A loopback TCP proxy in front of a broker, for network fault tests.

    Modes: ``forward``; ``blackhole`` (both directions silently eaten, sockets stay open, as
    when a cable is cut behind a switch); ``drop_down`` (broker-to-client bytes eaten, so
    PUBACKs are lost). ``cut()`` closes every connection. Leaving a lossy mode cuts too,
    since a stream that lost bytes cannot be resumed.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "forward"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        if mode not in ("forward", "blackhole", "drop_down"):
            raise SimulatorSetupError(f"unknown proxy mode {mode!r}")
        if self.mode != "forward" and mode == "forward":
            self.cut()  # streams that lost bytes cannot be resumed
        self.mode = mode

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "blackhole" or (self.mode == "drop_down" and sock is upstream):
                        continue
                    peer[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (client, upstream):
                sock.close()


class _PortTaken(Exception):
    pass
