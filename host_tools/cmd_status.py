"""``lanectl status``: what the running agent is doing now; ``--watch S`` refreshes it every
S seconds until Ctrl-C (an agent that stops answering is shown, and watched on)."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.config import StatusSection, load_config, setting_default
from host_tools.cli import command
from host_tools.errors import ToolError, fail

DEFAULT_LISTEN: str = setting_default(StatusSection, "listen")
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: a watch redraws in place


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s: give 0.1..3600 seconds")
    return value


def register(subparsers: Any) -> None:
    parser = command(subparsers, "status", "show the running agent's live status",
                     "lanectl status", "lanectl status --watch 2",
                     "lanectl status --config /etc/gatelane/agent.toml --json")  # fmt: skip
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"status URL (default http://{DEFAULT_LISTEN}/status)")
    where.add_argument("--config", type=Path, help="the agent's TOML file (reads [status] listen)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON document "
                        "(with --watch: one line per refresh)")  # fmt: skip
    parser.add_argument("--watch", type=_positive_seconds, metavar="S",
                        help="refresh every S seconds until Ctrl-C")
    parser.set_defaults(func=run)


def _status_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    listen = DEFAULT_LISTEN
    if args.config:
        listen = load_config(args.config).status.listen
    return f"http://{listen}/status"


def _request(args: argparse.Namespace, url: str) -> urllib.request.Request:
    """The status request; with ``--config`` naming a ``token_file``, its bearer token."""
    headers = {"Accept": "application/json"}
    token_file = getattr(load_config(args.config).status, "token_file", None) if args.config \
        else None  # fmt: skip
    if token_file:
        try:
            headers["Authorization"] = "Bearer " + Path(token_file).read_text("utf-8").strip()
        except OSError as exc:
            raise ToolError(f"cannot read the status token {token_file}: "
                            f"{exc.strerror or exc}") from None  # fmt: skip
    return urllib.request.Request(url, headers=headers)


def _read(request: urllib.request.Request) -> Any:
    with urllib.request.urlopen(request, timeout=3) as response:
        return json.loads(response.read())


def _unreachable(url: str, exc: Exception) -> str:
    return (f"cannot read the agent's status from {url}: {getattr(exc, 'reason', exc)} "
            "(is edge-agent running? `systemctl status gatelane-agent`)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    url = _status_url(args)
    request = _request(args, url)
    if args.watch:
        return _watch(args, request)
    try:
        doc = _read(request)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return fail("status", _unreachable(url, exc), 1)
    print(json.dumps(doc, indent=2) if args.json else _render(doc))
    return 0


def _watch(args: argparse.Namespace, request: urllib.request.Request) -> int:
    """Redraw until Ctrl-C; an unreachable agent is shown and watched on, not an exit."""
    try:
        while True:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                doc: Any = _read(request)
                error = None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                doc, error = None, _unreachable(request.full_url, exc)
            if args.json:
                print(json.dumps({"at": now, "status": doc, "error": error}), flush=True)
            else:
                body = error if doc is None else _render(doc)
                print(f"{CLEAR}{now}  every {args.watch:g} s, Ctrl-C to stop\n{body}", flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def _render(doc: dict[str, Any]) -> str:
    lines = [
        f"lane      {doc.get('site')}/{doc.get('lane')}  agent {doc.get('agent_version')}"
        f"  up {doc.get('uptime_s')} s",
        f"state     {doc.get('state')}",
    ]
    transit = doc.get("transit")
    if transit:
        lines.append(
            f"transit   {transit.get('id')} pass={transit.get('pass')} "
            f"valid={transit.get('pass_valid')} weight={transit.get('weight_kg')} "
            f"hold={','.join(transit.get('hold_reasons') or []) or '-'}"
        )
    for name, info in (doc.get("devices") or {}).items():
        lines.append(f"{name:<9} {json.dumps(info, default=str)}")
    for event in doc.get("recent_events", [])[-5:]:
        seq, kind, when = event.get("seq"), event.get("type"), event.get("occurred_at")
        lines.append(f"event     #{seq} {kind} {when}")
    return "\n".join(lines)
