"""``lanectl``: the field technician's tool for one lane.

Each command family lives in its own module with a ``register(subparsers)`` function; every
handler returns an exit code and prints JSON where asked. A ``ToolError`` or ``EdgeAgentError``
that escapes a handler becomes one line on stderr and an exit code (host_tools/errors.py): bad
input never shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edge_agent.errors import EdgeAgentError
from host_tools.errors import ToolError, fail

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
    except ToolError as exc:
        return fail(args.command, str(exc), exc.exit_code)
    except EdgeAgentError as exc:
        return fail(args.command, str(exc))
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
