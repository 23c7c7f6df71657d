"""``lanectl fw``: which firmware a lane runs; deploy a release and roll it back.

    lanectl fw info [--firmware-dir DIR] [--port URL] [--json]
    lanectl fw deploy --port URL [--firmware-dir DIR] [--json] [--timeout S]
    lanectl fw rollback --port URL [--json] [--timeout S]

``info`` without ``--port``: the release in DIR (default: the firmware/ folder shipped with
this tool), its version, files and manifest hash. With ``--port``: also the board's
HELLO_ACK (protocol, version, manifest, reset cause) and whether the manifests match. Asking
the board sends one HELLO: stop the edge agent first (it holds the port), and expect the
board to show red again one second later, when no heartbeat follows.

``deploy`` compiles every file with mpy-cross, puts the board in maintenance (only with the
barrier closed at rest), uploads with mpremote into a staging folder, verifies each file's
SHA-256 on the board, writes the release record last, swaps it in, resets, and checks that
the board comes back with the new manifest and a closed barrier; any failure puts the
previous release back (host_tools/fw_deploy.py has the steps). ``rollback`` swaps back to
the release before. Both work over a real port, socket:// and the simulator's pty; the
edge agent must be stopped. Exit 0 on success, 1 otherwise (the JSON says what runs now).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from edge_agent.drivers.serialport import LineSettings, open_port
from edge_agent.errors import DeviceError
from edge_agent.protocols import iolink

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"
BAUDRATE = 115200


def manifest_of(files: dict[str, str]) -> str:
    """The manifest hash (firmware/manifest.py) of files given as name -> SHA-256 hex."""
    h = hashlib.sha256()
    for name in sorted(n for n in files if n.endswith((".py", ".mpy"))):
        h.update(name.encode() + b"\x00" + bytes.fromhex(files[name]))
    return h.digest()[:8].hex()


def manifest(folder: Path) -> tuple[str, dict[str, str]]:
    """The manifest hash the board reports (firmware/manifest.py) and each file's SHA-256."""
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
    port = open_port(url, LineSettings(baudrate=BAUDRATE), timeout=0.05)
    try:
        codec = iolink.LinkCodec()
        boot = int.from_bytes(os.urandom(4), "big")
        deadline = time.monotonic() + timeout
        next_hello = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_hello:
                port.write(iolink.encode_hello(0, boot, int(time.monotonic() * 1000)))
                next_hello = time.monotonic() + 0.5
            for message in codec.receive_data(port.read(max(1, port.in_waiting))):
                if isinstance(message, iolink.HelloAck) and message.host_boot == boot:
                    return message
    except DeviceError:
        raise
    except Exception as exc:  # SerialException: unplugged while asking
        raise DeviceError(f"{url}: {exc}") from exc
    finally:
        port.close()
    raise DeviceError(f"no HELLO_ACK from {url} within {timeout} s")


def _info(args: argparse.Namespace) -> int:
    folder = Path(args.firmware_dir)
    if not (folder / "main.py").is_file():
        print(f"lanectl fw info: {folder} holds no firmware (main.py missing)", file=sys.stderr)
        return 2
    digest, files = manifest(folder)
    report: dict[str, Any] = {
        "release": {"dir": str(folder), "version": release_version(folder), "manifest": digest,
                    "files": files},
    }  # fmt: skip
    if args.port:
        try:
            hello = ask_board(args.port, args.timeout)
        except DeviceError as exc:
            print(f"lanectl fw info: {exc}", file=sys.stderr)
            return 2
        report["board"] = {"protocol": hello.protocol, "version": hello.firmware,
                           "manifest": hello.manifest, "reset_cause": hello.reset_cause,
                           "uptime_ms": hello.uptime_ms}  # fmt: skip
        report["match"] = hello.manifest == digest
    if args.json:
        print(json.dumps(report))
    else:
        rel = report["release"]
        print(f"release   {rel['version']}  manifest {rel['manifest']}  ({len(files)} files)")
        if "board" in report:
            b = report["board"]
            print(f"board     {b['version']}  manifest {b['manifest']}  protocol {b['protocol']}"
                  f"  reset {b['reset_cause']}  up {b['uptime_ms'] / 1000:.1f} s")  # fmt: skip
            print("match     " + ("yes" if report["match"] else "NO: the board runs other files"))
    return 0 if report.get("match", True) else 1


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _print_report(report: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        now = report.after or report.before or {}
        print(f"{report.action} {report.outcome}: the board runs {now.get('version')} "
              f"(manifest {now.get('manifest')})"
              + (f"; {report.error}" if report.error else ""))  # fmt: skip
    return 0 if report.ok else 1


def _deploy(args: argparse.Namespace) -> int:
    from host_tools import fw_deploy

    folder = Path(args.firmware_dir)
    if not (folder / "main.py").is_file():
        print(f"lanectl fw deploy: {folder} holds no firmware (main.py missing)", file=sys.stderr)
        return 2
    return _print_report(fw_deploy.deploy(args.port, folder, timeout=args.timeout,
                                          log=_progress), args.json)  # fmt: skip


def _rollback(args: argparse.Namespace) -> int:
    from host_tools import fw_deploy

    return _print_report(fw_deploy.rollback(args.port, timeout=args.timeout, log=_progress),
                         args.json)  # fmt: skip


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("fw", help="IO-board firmware: versions, deploy, rollback")
    commands = parser.add_subparsers(dest="fw_command", metavar="ACTION", required=True)
    info = commands.add_parser("info", help="release manifest, and the board's when --port")
    info.add_argument("--firmware-dir", default=str(FIRMWARE_DIR), help="release folder")
    info.add_argument("--port", help="pyserial URL of the IO board (sends one HELLO)")
    info.add_argument("--json", action="store_true", help="one JSON object")
    info.add_argument("--timeout", type=float, default=2.0, help="seconds to wait")
    info.set_defaults(func=_info)
    deploy = commands.add_parser("deploy", help="compile, upload, verify, swap, self-test")
    deploy.add_argument("--port", required=True, help="pyserial URL of the IO board")
    deploy.add_argument("--firmware-dir", default=str(FIRMWARE_DIR), help="release folder")
    deploy.add_argument("--json", action="store_true", help="one JSON object")
    deploy.add_argument("--timeout", type=float, default=15.0,
                        help="seconds for the board to answer and to come back after its reset")
    deploy.set_defaults(func=_deploy)
    back = commands.add_parser("rollback", help="return to the release before the last deploy")
    back.add_argument("--port", required=True, help="pyserial URL of the IO board")
    back.add_argument("--json", action="store_true", help="one JSON object")
    back.add_argument("--timeout", type=float, default=15.0,
                      help="seconds for the board to answer and to come back after its reset")
    back.set_defaults(func=_rollback)
