"""``lanectl lane``: the lane's mode, the barrier by hand, and who the technician is.

These talk to the running agent over its control socket (``[control] socket``, made 0660 for
the agent's group): a member of group ``gatelane`` may use them, and the agent records the
caller's user with every change (``--by NAME`` names a person when the account is shared).
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
from pathlib import Path
from typing import Any

from edge_agent.config import ControlSection, load_config, setting_default
from edge_agent.control import ANSWER_TIMEOUT_S, MAX_LINE
from edge_agent.lane.modes import MODE_NAMES
from host_tools.cli import add_json, command, emit
from host_tools.errors import ToolError

DEFAULT_SOCKET = Path(setting_default(ControlSection, "socket"))
AGENT_EXIT = 1  # the agent refused, or could not be reached


def register(subparsers: Any) -> None:
    parser = command(subparsers, "lane", "the lane's mode, the barrier by hand, the technician",
                     "lanectl lane mode", "lanectl lane mode out_of_service --reason 'deck repair'",
                     "lanectl lane barrier open", "lanectl lane sign-in 'A. Technician'")
    actions = parser.add_subparsers(dest="lane_command", metavar="ACTION", required=True)

    mode = command(actions, "mode", "show the lane's mode, or set it (with --reason)",
                   "lanectl lane mode",
                   "lanectl lane mode out_of_service --reason 'deck repair' --by 'J. Doe'",
                   "lanectl lane mode in_service --reason 'repair done'")  # fmt: skip
    mode.add_argument("mode", nargs="?", choices=MODE_NAMES, metavar="MODE",
                      help=f"one of {', '.join(MODE_NAMES)}; none: show the mode")
    mode.add_argument("--reason", metavar="TEXT", help="why (required to change the mode)")
    _common(mode)
    mode.set_defaults(func=_mode)

    barrier = command(actions, "barrier", "open or close the barrier by hand (manual mode only); "
                      "the IO board's interlocks still apply", "lanectl lane barrier open",
                      "lanectl lane barrier close --by 'J. Doe'")  # fmt: skip
    barrier.add_argument("action", choices=("open", "close"), metavar="open|close",
                         help="open: OPEN through the IO board; close: CLOSE_WHEN_CLEAR")
    _common(barrier)
    barrier.set_defaults(func=_barrier)

    sign_in = command(actions, "sign-in", "name the technician at the lane: technician "
                      "releases are recorded as them", "lanectl lane sign-in 'J. Doe'")
    sign_in.add_argument("name", metavar="NAME", help="your name, as the records will show it")
    _common(sign_in, by=False)
    sign_in.set_defaults(func=_sign_in)


def _common(parser: argparse.ArgumentParser, *, by: bool = True) -> None:
    if by:
        parser.add_argument("--by", metavar="NAME",
                            help="who asks (default: your user name)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, metavar="PATH",
                       help=f"the agent's control socket (default {DEFAULT_SOCKET})")
    where.add_argument("--config", type=Path, metavar="FILE",
                       help="the agent's TOML file (reads [control] socket)")
    add_json(parser)


# -- the commands ------------------------------------------------------------------------------
def _mode(args: argparse.Namespace) -> int:
    if args.mode is None:
        if args.reason is not None:
            raise ToolError("--reason goes with a MODE to set (lanectl lane mode MODE --reason "
                            "TEXT)")
        return _show(args, _ask(args, {"op": "show"}))
    if not args.reason or not args.reason.strip():
        raise ToolError(f"give --reason TEXT: every mode change says why (lanectl lane mode "
                        f"{args.mode} --reason 'deck repair')")
    request = {"op": "mode", "mode": args.mode, "reason": args.reason}
    return _show(args, _ask(args, request | _by(args)))


def _barrier(args: argparse.Namespace) -> int:
    return _show(args, _ask(args, {"op": "barrier", "action": args.action} | _by(args)))


def _sign_in(args: argparse.Namespace) -> int:
    return _show(args, _ask(args, {"op": "sign_in", "name": args.name}))


def _by(args: argparse.Namespace) -> dict[str, str]:
    return {"by": args.by} if args.by else {}


def _show(args: argparse.Namespace, reply: dict[str, Any]) -> int:
    emit(args, reply, _render)
    return 0 if reply.get("ok") else AGENT_EXIT


def _render(reply: dict[str, Any]) -> str:
    mode = reply.get("mode") or {}
    verdict = "" if reply.get("ok") else "refused: "
    lines = [f"{verdict}{reply.get('detail', '')}"]
    who = mode.get("by") or "-"
    if mode.get("uid") is not None:
        who += f" (uid {mode['uid']})"
    lines += [
        f"mode        {mode.get('mode')}" + (f"  (was {mode['previous']})"
                                              if mode.get("previous") else ""),
        f"set by      {who}, via {mode.get('via')}",
        f"reason      {mode.get('reason') or '-'}",
        f"since       {mode.get('since') or '-'}",
        f"technician  {mode.get('technician') or '-'}",
        f"lane state  {reply.get('state')}",
    ]
    return "\n".join(lines)


# -- the socket --------------------------------------------------------------------------------
def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    if args.config is not None:
        return load_config(args.config).control.socket
    return DEFAULT_SOCKET


def _ask(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    """One request to the agent and its answer.

    Raises:
        ToolError: the agent cannot be reached or its answer cannot be read.
    """
    path = _socket_path(args)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(ANSWER_TIMEOUT_S + 2.0)
    try:
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ToolError(f"is the agent running? no agent answers on socket {path}",
                            AGENT_EXIT) from None
        except PermissionError:
            raise ToolError(f"permission denied on socket {path}: join group gatelane "
                            "(sudo usermod -aG gatelane $USER, then log in again)",
                            AGENT_EXIT) from None
        except OSError as exc:
            if exc.errno == errno.ENOTSOCK or exc.errno == errno.ECONNREFUSED:
                raise ToolError(f"is the agent running? {path} is not its socket",
                                AGENT_EXIT) from None
            raise ToolError(f"cannot reach the agent on socket {path}: {exc.strerror or exc}",
                            AGENT_EXIT) from None
        client.sendall(json.dumps(request).encode() + b"\n")
        reply = client.makefile("rb").readline(MAX_LINE * 16)
    except TimeoutError:
        raise ToolError(f"the agent did not answer on socket {path}", AGENT_EXIT) from None
    except OSError as exc:
        raise ToolError(f"the agent closed socket {path}: {exc.strerror or exc}",
                        AGENT_EXIT) from None
    finally:
        client.close()
    try:
        doc = json.loads(reply)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ToolError(f"the agent's answer on socket {path} is unreadable", AGENT_EXIT)
    return doc
