"""``lanectl status``: what the running agent is doing now."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edge_agent.config import StatusSection, load_config, setting_default
from host_tools.errors import fail

DEFAULT_LISTEN: str = setting_default(StatusSection, "listen")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="show the running agent's live status")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"status URL (default http://{DEFAULT_LISTEN}/status)")
    where.add_argument("--config", type=Path, help="the agent's TOML file (reads [status] listen)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON document")
    parser.set_defaults(func=run)


def _status_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    listen = DEFAULT_LISTEN
    if args.config:
        listen = load_config(args.config).status.listen
    return f"http://{listen}/status"


def run(args: argparse.Namespace) -> int:
    try:
        url = _status_url(args)
        with urllib.request.urlopen(url, timeout=3) as response:
            doc = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return fail("status", f"cannot read the agent's status: {exc}", 1)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(_render(doc))
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
