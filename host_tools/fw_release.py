"""A firmware release as the host sees it: its manifest, its version, and what a board runs.

The manifest rule is the firmware's own (firmware/manifest.py, loaded from the firmware folder
shipped with these tools), so the host and the board cannot disagree on it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import cast

from edge_agent.config import IoBoardSection, setting_default
from edge_agent.drivers.serialport import LineSettings
from edge_agent.errors import DeviceError
from edge_agent.protocols import iolink
from host_tools.ports import open_tool_port

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
BAUDRATE: int = setting_default(IoBoardSection, "baudrate")
HELLO_EVERY_S = 0.5

Digests = Callable[[Mapping[str, bytes]], bytes]


@cache
def _manifest_of_digests() -> Digests:
    """firmware/manifest.py's ``manifest_of_digests`` (MicroPython code, loaded by path)."""
    spec = importlib.util.spec_from_file_location(
        "gatelane_firmware_manifest", FIRMWARE_DIR / "manifest.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {FIRMWARE_DIR / 'manifest.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast(Digests, module.manifest_of_digests)


def manifest_of(files: Mapping[str, str]) -> str:
    """The manifest hash (hex) of files given as name -> SHA-256 hex (as a board reports them)."""
    digests = {name: bytes.fromhex(digest) for name, digest in files.items()}
    return _manifest_of_digests()(digests).hex()


def manifest(folder: Path) -> tuple[str, dict[str, str]]:
    """The manifest hash the board would report for ``folder``, and each file's SHA-256 hex."""
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".py", ".mpy"))
    files = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}
    return manifest_of(files), files


def release_version(folder: Path) -> str | None:
    """FW_VERSION from main.py, read without running it."""
    try:
        tree = ast.parse((folder / "main.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "FW_VERSION" for t in node.targets
        ):
            return ".".join(str(part) for part in ast.literal_eval(node.value))
    return None


def ask_board(url: str, timeout: float) -> iolink.HelloAck:
    """Send one HELLO and wait for the HELLO_ACK.

    Raises:
        DeviceError: the port cannot be used or the board did not answer.
    """
    port = open_tool_port(url, LineSettings(baudrate=BAUDRATE), timeout=0.05)
    try:
        codec = iolink.LinkCodec()
        boot = int.from_bytes(os.urandom(4), "big")
        deadline = time.monotonic() + timeout
        next_hello = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_hello:
                port.write(iolink.encode_hello(0, boot, int(time.monotonic() * 1000)))
                next_hello = time.monotonic() + HELLO_EVERY_S
            for message in codec.receive_data(port.read(max(1, port.in_waiting))):
                if isinstance(message, iolink.HelloAck) and message.host_boot == boot:
                    return message
    except DeviceError:
        raise
    except Exception as exc:  # SerialException: unplugged while asking
        raise DeviceError(f"{url}: {exc}") from exc
    finally:
        port.close()
    raise DeviceError(f"no HELLO_ACK from {url} within {timeout:g} s: is the board plugged in "
                      "and running the gatelane firmware? (a blank board: lanectl fw install)")
