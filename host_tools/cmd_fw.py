"""``lanectl fw``: which firmware a lane runs; deploy a release and roll it back.

    lanectl fw info [--firmware-dir DIR] [--port URL] [--json]
    lanectl fw deploy --port URL [--firmware-dir DIR] [--json] [--timeout S]
    lanectl fw rollback --port URL [--json] [--timeout S]
    lanectl fw install --port URL [--firmware-dir DIR] [--force] [--json] [--timeout S]

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
the release before; a second rollback keeps it (nothing older). ``install`` puts the firmware
on a fresh board that runs plain MicroPython (host_tools/fw_install.py). All work over a real
port, socket:// and the simulator's pty; the edge agent must be stopped. Exit 0 on success,
1 otherwise (the JSON says what runs now).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge_agent.errors import DeviceError
from host_tools import fw_deploy, fw_install
from host_tools.cli import add_json, command
from host_tools.errors import fail
from host_tools.fw_release import FIRMWARE_DIR, ask_board, manifest, release_version


def _info(args: argparse.Namespace) -> int:
    folder = Path(args.firmware_dir)
    if not (folder / "main.py").is_file():
        return fail("fw info", f"{folder} holds no firmware (main.py missing)")
    digest, files = manifest(folder)
    report: dict[str, Any] = {
        "release": {"dir": str(folder), "version": release_version(folder), "manifest": digest,
                    "files": files},
    }  # fmt: skip
    if args.port:
        try:
            hello = ask_board(args.port, args.timeout)
        except DeviceError as exc:
            return fail("fw info", str(exc))
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


def _print_report(report: fw_deploy.Report, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        now = report.after or report.before or {}
        runs = (f"the board runs {now.get('version')} (manifest {now.get('manifest')})"
                if "version" in now else "the board was not changed")  # fmt: skip
        print(f"{report.action} {report.outcome}: {runs}"
              + (f"; {report.error}" if report.error else ""))  # fmt: skip
    return 0 if report.ok else 1


def _deploy(args: argparse.Namespace) -> int:
    folder = Path(args.firmware_dir)
    if not (folder / "main.py").is_file():
        return fail("fw deploy", f"{folder} holds no firmware (main.py missing)")
    report = fw_deploy.deploy(args.port, folder, timeout=args.timeout, log=_progress)
    return _print_report(report, as_json=args.json)


def _install(args: argparse.Namespace) -> int:
    folder = Path(args.firmware_dir)
    if not (folder / "main.py").is_file():
        return fail("fw install", f"{folder} holds no firmware (main.py missing)")
    report = fw_install.install(args.port, folder, timeout=args.timeout, force=args.force,
                                log=_progress)  # fmt: skip
    return _print_report(report, as_json=args.json)


def _rollback(args: argparse.Namespace) -> int:
    report = fw_deploy.rollback(args.port, timeout=args.timeout, log=_progress)
    return _print_report(report, as_json=args.json)


def register(subparsers: Any) -> None:
    parser = command(subparsers, "fw", "IO-board firmware: versions, install, deploy, rollback",
                     "lanectl fw info --port /dev/gatelane-io",
                     "lanectl fw deploy --port /dev/gatelane-io")
    commands = parser.add_subparsers(dest="fw_command", metavar="ACTION", required=True)
    info = command(commands, "info", "release manifest, and the board's when --port",
                   "lanectl fw info", "lanectl fw info --port /dev/gatelane-io --json")
    _release_dir(info)
    info.add_argument("--port", metavar="URL", help="the IO board (sends one HELLO)")
    add_json(info)
    info.add_argument("--timeout", type=float, default=2.0,
                      help="seconds to wait for the board (default 2)")
    info.set_defaults(func=_info)
    deploy = command(commands, "deploy", "compile, upload, verify, swap, self-test (stop the "
                     "agent first)", "lanectl fw deploy --port /dev/gatelane-io",
                     "lanectl fw deploy --port /dev/gatelane-io --firmware-dir release-0.2/")
    _port(deploy)
    _release_dir(deploy)
    add_json(deploy)
    _reset_timeout(deploy)
    deploy.set_defaults(func=_deploy)
    back = command(commands, "rollback", "return to the release before the last deploy",
                   "lanectl fw rollback --port /dev/gatelane-io")
    _port(back)
    add_json(back)
    _reset_timeout(back)
    back.set_defaults(func=_rollback)
    first = command(commands, "install", "put the firmware on a fresh board that runs plain "
                    "MicroPython", "lanectl fw install --port /dev/ttyACM0")
    _port(first)
    _release_dir(first)
    first.add_argument("--force", action="store_true",
                       help="replace a main.py already on the board")
    add_json(first)
    _reset_timeout(first)
    first.set_defaults(func=_install)


def _port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, metavar="URL",
                        help="the IO board: /dev/serial/by-id/..., /dev/ttyACM0, "
                        "socket://host:port")  # fmt: skip


def _release_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--firmware-dir", default=str(FIRMWARE_DIR), metavar="DIR",
                        help="release folder (default: the firmware shipped with lanectl)")


def _reset_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=15.0,
                        help="seconds for the board to answer and to come back after its reset "
                        "(default 15)")  # fmt: skip
