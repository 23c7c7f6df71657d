"""The machine under an agent update: dpkg, the service manager, the clock, the agent's health.

``DebianSystem`` runs dpkg-deb, dpkg and the restart command; ``HttpProbe`` asks the agent's
status server (``/readyz`` for readiness, ``/status`` for the version that answers).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from host_tools.agent_package import PackageError
from host_tools.agent_update import Health, Refused, UpdateError

SERVICE = "gatelane-agent"
SYSTEMD_RUNNING = Path("/run/systemd/system")  # sd_booted(3): systemd is PID 1
INSTALL_TIMEOUT_S = 900.0  # the postinst builds a venv from the wheelhouse: minutes on a Pi
RESTART_TIMEOUT_S = 120.0
OUTPUT_CHARS = 600  # of a failed command's output, in the error


def restart_argv(restart_command: str | None, *, systemd_running: bool) -> list[str]:
    """How the agent is restarted: the technician's command, else systemd's; else refused."""
    if restart_command is not None:
        try:
            argv = shlex.split(restart_command)
        except ValueError as exc:
            raise Refused(f"--restart-command {restart_command!r}: {exc}") from None
        if not argv:
            raise Refused("--restart-command is empty")
        return argv
    if systemd_running:
        return ["systemctl", "restart", SERVICE]
    raise Refused("systemd does not run here, so the agent cannot be restarted after the "
                  "install: give --restart-command CMD (e.g. 'supervisorctl restart "
                  "gatelane-agent'); nothing was changed")  # fmt: skip


class DebianSystem:
    """dpkg and the service manager of this machine."""

    def __init__(self, restart: Sequence[str]) -> None:
        self._restart = list(restart)

    def architecture(self) -> str:
        return _run(["dpkg", "--print-architecture"], timeout=30).strip()

    def package_fields(self, package: Path) -> dict[str, str]:
        names = ("Package", "Version", "Architecture")
        try:
            out = _run(["dpkg-deb", "-f", str(package), *names], timeout=60)
        except UpdateError as exc:
            raise PackageError(f"{package} is not a Debian package: {exc}") from None
        fields = {}
        for line in out.splitlines():
            name, sep, value = line.partition(":")
            if sep and name in names:
                fields[name] = value.strip()
        return fields

    def compare(self, a: str, b: str) -> int:
        for op, sign in (("lt", -1), ("gt", 1)):
            done = subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False,
                                  capture_output=True, timeout=30)  # fmt: skip
            if done.returncode == 0:
                return sign
        return 0

    def install(self, package: Path) -> None:
        _run(["dpkg", "-i", str(package)], timeout=INSTALL_TIMEOUT_S)

    def restart(self) -> None:
        if self._restart[:1] == ["systemctl"]:
            # A version that crashed in a loop may have hit the unit's start limit: the
            # restart of the version before must not be refused for that.
            subprocess.run(["systemctl", "reset-failed", SERVICE], check=False,
                           capture_output=True, timeout=30)  # fmt: skip
        _run(self._restart, timeout=RESTART_TIMEOUT_S)

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _run(argv: Sequence[str], *, timeout: float) -> str:
    """Run ``argv``; its output, or UpdateError with the end of it.

    The output goes through a file, not a pipe: a restart command that leaves the agent
    running in the background must not keep this waiting for the pipe to close.
    """
    with tempfile.TemporaryFile() as out:
        try:
            done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except FileNotFoundError:
            raise UpdateError(f"{argv[0]}: command not found") from None
        except subprocess.TimeoutExpired:
            raise UpdateError(f"{shlex.join(argv)} did not finish within {timeout:g} s") from None
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if done.returncode != 0:
        tail = " ".join(text.split())[-OUTPUT_CHARS:]
        raise UpdateError(f"{shlex.join(argv)} exited {done.returncode}: {tail or 'no output'}")
    return text


class HttpProbe:
    """One look at the agent through its status server on ``listen`` (host:port)."""

    def __init__(self, listen: str, *, token: str | None = None, timeout: float = 2.0) -> None:
        self.base = f"http://{_connectable(listen)}"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    def __call__(self) -> Health:
        try:
            code, body = self._get("/readyz")
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc
            return Health(False, None, (f"the agent does not answer on {self.base}: {reason}",))
        if code != 200:
            return Health(False, None, _reasons(code, body))
        try:
            code, body = self._get("/status")
            version = json.loads(body).get("agent_version") if code == 200 else None
        except (OSError, ValueError, AttributeError):
            version = None
        if not isinstance(version, str):
            return Health(True, None, (f"{self.base}/status gives no agent_version",))
        return Health(True, version)

    def _get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()


def _reasons(code: int, body: bytes) -> tuple[str, ...]:
    """What /readyz said was wrong: one reason a line."""
    lines = [" ".join(line.split()) for line in body.decode("utf-8", "replace").splitlines()]
    reasons = tuple(line[:200] for line in lines if line)[:10]
    return reasons or (f"/readyz answered {code}",)


def _connectable(listen: str) -> str:
    """``listen`` as a host:port to connect to: wildcard addresses become loopback."""
    if listen.startswith("["):
        host, _, port = listen[1:].partition("]:")
    else:
        host, _, port = listen.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
