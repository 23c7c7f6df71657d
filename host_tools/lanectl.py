"""``lanectl``: the field technician's tool for one lane.

Each command family lives in its own module with a ``register(subparsers)`` function; every
handler returns an exit code, prints JSON where asked, and never shows a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "host_tools.cmd_status",
    "host_tools.cmd_pass",
    "host_tools.cmd_qr",
    "host_tools.cmd_weigh",
    "host_tools.cmd_io",
    "host_tools.cmd_fw",
    "host_tools.cmd_site",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lanectl", description="Diagnose, calibrate and update a gatelane lane."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code: int = handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
