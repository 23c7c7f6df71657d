"""Serial ports as the technician meets them: opened exclusively, and a busy one explained.

Ports under /dev are opened with pyserial's ``exclusive=True`` (edge_agent/drivers/serialport.py),
so a second opener is refused instead of both reading half the bytes. When that happens (or a
port cannot be opened for another reason) the error names the processes that hold the device,
found by their open file descriptors in /proc, and what to do about it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import DeviceError

PROC = Path("/proc")


def holders(device: str, proc: Path = PROC) -> list[tuple[int, str]]:
    """(pid, command line) of every other process with ``device`` open, by its real path."""
    try:
        target = os.path.realpath(device)
    except OSError:
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's process we may not look into
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    found.append((int(entry.name), _command_line(entry)))
                    break
            except OSError:
                continue
    return sorted(found)


def _command_line(entry: Path) -> str:
    try:
        raw = (entry / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    return " ".join(words)[:120] or "?"


def busy_hint(url: str) -> str:
    """`` held by PID 123 (edge-agent run ...): stop it first ...``, or "" if nobody holds it."""
    if not url.startswith("/dev/"):
        return ""
    held = holders(url)
    if not held:
        return ""
    who = ", ".join(f"PID {pid} ({cmd})" for pid, cmd in held)
    agent = any("edge-agent" in cmd or "edge_agent" in cmd for _, cmd in held)
    what = ("stop the agent first: sudo systemctl stop gatelane-agent" if agent
            else "close that program first")  # fmt: skip
    return f"; {url} is held by {who}: {what}"


def explain(url: str, exc: Exception) -> Exception:
    """The error for a port that could not be used, naming who holds it when someone does
    (of the same class, so that callers can still tell a refused line setting apart)."""
    hint = busy_hint(url)
    if not hint:
        return exc
    kind = type(exc) if isinstance(exc, DeviceError) else DeviceError
    return kind(f"{exc}{hint}")


def open_tool_port(url: str, settings: LineSettings | None = None, *,
                   timeout: float = 0.05) -> Any:  # fmt: skip
    """``open_port``, with a busy port's holder named in the error.

    Raises:
        DeviceError: the port does not exist, is busy (the message says by whom), or the URL
            scheme is unknown.
    """
    try:
        return open_port(url, settings, timeout=timeout)
    except DeviceError as exc:
        better = explain(url, exc)
        if better is exc:
            raise
        raise better from exc
