"""``edge-agent``: the command line that runs a lane as a service.

Exit codes: 0 a clean stop; 1 the lane could not run (a device or store failed at start);
64 (EX_USAGE) a bad option; 70 (EX_SOFTWARE) an internal error (logged with its traceback, for
the developers; systemd restarts the agent); 78 (EX_CONFIG) a configuration problem — the unit's
``RestartPreventExitStatus=78`` keeps systemd from restarting into the same error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

from edge_agent import __version__
from edge_agent.errors import ConfigError, EdgeAgentError

log = logging.getLogger("edge_agent")

EX_OK, EX_FAILED, EX_USAGE, EX_SOFTWARE, EX_CONFIG = 0, 1, 64, 70, 78
UMASK = 0o027  # evidence, outbox and ledger: readable by the agent's group, never by others
COMMANDS = ("run", "check-config")

_EXAMPLES = """\
examples:
  edge-agent run --config /etc/gatelane/agent.toml
  edge-agent run --config lane.toml --log-level debug
  edge-agent check-config /etc/gatelane/agent.toml
  edge-agent --version

Signals: SIGTERM/SIGINT stop the lane cleanly (the backend is told it was planned); SIGHUP
re-reads the file and applies the log level and the remotely tunable settings.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and EX_USAGE instead of argparse's usage block and exit 2."""
        print(f"{self.prog}: {message} (see {self.prog.split()[0]} --help)", file=sys.stderr)
        sys.exit(EX_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edge-agent", description="Run one truck gate lane (or check its configuration).",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}",
                        help="print the agent's version and exit (e.g. edge-agent --version)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser(
        "run", help="run the lane until stopped (e.g. edge-agent run --config agent.toml)",
        description="Run the lane until SIGTERM or SIGINT.", epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", required=True, type=Path, metavar="FILE",
                     help="the lane's TOML file (e.g. --config /etc/gatelane/agent.toml)")
    run.add_argument("--log-level", metavar="LEVEL",
                     help="debug | info | warning | error; overrides [logging] level of the "
                          "file, also on reload (e.g. --log-level debug)")
    check = commands.add_parser(
        "check-config", help="report every problem of a config file (e.g. edge-agent "
                             "check-config agent.toml)",
        description="Check a configuration file without opening any device: every problem "
                    "on its own line, exit 78 if there is any.", epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("file", type=Path, metavar="FILE",
                       help="the TOML file to check (e.g. /etc/gatelane/agent.toml)")
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if not set(words) & set(COMMANDS) and any(w.split("=")[0] == "--config" for w in words):
        words.insert(0, "run")  # the older form: edge-agent --config FILE
    args = _parser().parse_args(words)
    if args.command == "check-config":
        return check_config_command(args.file)
    if args.command == "run":
        return run_command(args.config, args.log_level)
    _parser().print_help(sys.stderr)
    return EX_USAGE


# The lane's modules are imported where needed: --version and check-config (the unit's
# ExecStartPre) start without loading drivers.
def check_config_command(path: Path) -> int:
    from edge_agent.config import check_config

    problems = check_config(path)
    for problem in problems:
        print(f"edge-agent: {path}: {problem}", file=sys.stderr)
    if problems:
        return EX_CONFIG
    print(f"{path}: ok")
    return EX_OK


def run_command(path: Path, level_option: str | None) -> int:
    from edge_agent.logs import parse_level, setup

    override: int | None = None
    if level_option is not None:
        try:
            override = parse_level(level_option)
        except ValueError as exc:
            print(f"edge-agent: --log-level: {exc}", file=sys.stderr)
            return EX_USAGE
    os.umask(os.umask(UMASK) | UMASK)  # never looser than UMASK, whoever started us
    from edge_agent.config import load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"edge-agent: {line}", file=sys.stderr)
        return EX_CONFIG
    logs = setup(override if override is not None else parse_level(config.logging.level))
    logs.for_lane(config.lane.site, config.lane.lane)

    def set_level(level: str) -> None:
        if override is None:
            logs.set_level(parse_level(level))

    from edge_agent.app import LaneAgent
    from edge_agent.notify import Notifier, Service

    agent = LaneAgent(config, service=Service(Notifier(), set_log_level=set_level))

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        agent.stop(by=signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: agent.request_reload())
    try:
        agent.run()
    except ConfigError as exc:
        log.error("edge-agent stopped: configuration: %s", exc)
        return EX_CONFIG
    except EdgeAgentError as exc:
        log.error("edge-agent stopped: %s", exc)
        return EX_FAILED
    except Exception as exc:  # a bug: one journal entry with what the developers need
        log.critical("edge-agent stopped by an internal error: %r", exc, exc_info=exc)
        return EX_SOFTWARE
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
