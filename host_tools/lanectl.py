"""``lanectl``: the field technician's tool for one lane.

Each command family lives in its own module with a ``register(subparsers)`` function; every
handler returns an exit code and prints text, or JSON with ``--json``. An error that escapes a
handler becomes one line on stderr (with ``--json``: a JSON object with ``error`` on stdout)
and an exit code (host_tools/errors.py): a person never sees a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from edge_agent import __version__
from edge_agent.errors import EdgeAgentError
from host_tools import errors
from host_tools.errors import ToolError, fail

COMMAND_MODULES = (
    "host_tools.cmd_status",
    "host_tools.cmd_pass",
    "host_tools.cmd_qr",
    "host_tools.cmd_plate",
    "host_tools.cmd_weigh",
    "host_tools.cmd_io",
    "host_tools.cmd_fw",
    "host_tools.cmd_site",
    "host_tools.cmd_agent",
    "host_tools.cmd_lane",
    "host_tools.cmd_record",
    "host_tools.cmd_version",
)
LOG_LEVELS = ("debug", "info", "warning", "error")
INTERNAL_EXIT = 70  # EX_SOFTWARE: a bug in the tool, not the technician's input


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (a JSON object with ``--json``) and exit 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog.removeprefix("lanectl").strip(),
             f"{message} (see {self.prog} --help)")  # fmt: skip
        sys.exit(errors.USAGE_EXIT)


def _log_level(text: str) -> int:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"bad log level {text!r}: use one of {', '.join(LOG_LEVELS)}"
        )
    return int(getattr(logging, text.upper()))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lanectl",
        description="Diagnose, calibrate and update a gatelane lane.",
        epilog="example:\n  lanectl status\n  lanectl io status --port /dev/gatelane-io\n"
        "  lanectl COMMAND --help      every command's options and an example",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lanectl {__version__}",
                        help="print the version and exit")  # fmt: skip
    parser.add_argument("--log-level", type=_log_level, default=logging.WARNING,
                        metavar="LEVEL", help=f"{' | '.join(LOG_LEVELS)} (default warning)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _where(args: argparse.Namespace) -> str:
    command = str(getattr(args, "command", "") or "lanectl")
    action = getattr(args, f"{command}_command", None)
    return f"{command} {action}" if action else command


def _honour_ctrl_c() -> None:
    """Watches and monitors end by Ctrl-C: make sure it arrives even when whatever started
    lanectl ignores or blocks SIGINT (a background job, a supervisor), which it inherits."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    errors.json_errors("--json" in argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", logging.WARNING),
                        format="lanectl: %(levelname)s %(name)s: %(message)s", force=True)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return errors.USAGE_EXIT
    where = _where(args)
    _honour_ctrl_c()
    try:
        code: int = handler(args)
    except ToolError as exc:
        return fail(where, str(exc), exc.exit_code)
    except EdgeAgentError as exc:
        return fail(where, str(exc))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a file or device the technician named
        what = f"{exc.filename}: " if exc.filename else ""
        return fail(where, f"{what}{exc.strerror or exc}: check the path and its permissions")
    except Exception as exc:  # a bug: say so in one line, the traceback goes to the debug log
        logging.getLogger("lanectl").debug("unexpected error", exc_info=True)
        return fail(where, f"unexpected {type(exc).__name__}: {exc} (a bug in lanectl; run "
                    "with --log-level debug to see where)", INTERNAL_EXIT)  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
