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
import json
import sys
from pathlib import Path
from typing import Any

from edge_agent.errors import DeviceError
from host_tools import fw_deploy
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
        print(f"{report.action} {report.outcome}: the board runs {now.get('version')} "
              f"(manifest {now.get('manifest')})"
              + (f"; {report.error}" if report.error else ""))  # fmt: skip
    return 0 if report.ok else 1


def _deploy(args: argparse.Namespace) -> int:
    folder = Path(args.firmware_dir)
    if not (folder / "main.py").is_file():
        return fail("fw deploy", f"{folder} holds no firmware (main.py missing)")
    report = fw_deploy.deploy(args.port, folder, timeout=args.timeout, log=_progress)
    return _print_report(report, as_json=args.json)


def _rollback(args: argparse.Namespace) -> int:
    report = fw_deploy.rollback(args.port, timeout=args.timeout, log=_progress)
    return _print_report(report, as_json=args.json)


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
