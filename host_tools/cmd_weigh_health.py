"""``lanectl weigh health``: is the scale fit to weigh the next truck?

From the running agent (its status document), or from a recorded trace replayed through the
weight watcher. Exit 0 healthy, 2 unhealthy (the reasons are printed), 1 when it cannot tell.
"""

from __future__ import annotations

import argparse
import urllib.error
from pathlib import Path
from typing import Any

from edge_agent.errors import EdgeAgentError
from edge_agent.weighing import ScaleConfig
from edge_agent.weighing.analyze import TraceError, analyze, read_trace
from edge_agent.weighing.scale_health import ScaleHealth
from host_tools.cli import add_json, command, emit
from host_tools.cmd_status import _read, _request, _status_url, _unreachable
from host_tools.errors import fail

UNHEALTHY = 2


def register(subparsers: Any, add_scale: Any) -> None:
    p = command(subparsers, "health", "is the scale fit for the next truck (zero, trend, noise)",
                "lanectl weigh health", "lanectl weigh health --config /etc/gatelane/agent.toml",
                "lanectl weigh health --trace shift.csv --e-kg 20")  # fmt: skip
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", help="the agent's status URL (default from its [status] listen)")
    where.add_argument("--config", type=Path, help="the agent's TOML file")
    where.add_argument("--trace", help="judge a recorded trace CSV instead of the running lane")
    add_scale(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.trace:
        report = _from_trace(args)
        if report is None:
            return 1
    else:
        url = _status_url(args)
        try:
            doc = _read(_request(args, url))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return fail("weigh health", _unreachable(url, exc), 1)
        report = ((doc.get("devices") or {}).get("weighbridge") or {}).get("scale")
        if not isinstance(report, dict):
            return fail("weigh health", f"{url} reports no scale health (an older agent?)", 1)
    emit(args, report, _text)
    return 0 if report.get("healthy") else UNHEALTHY


def _from_trace(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        scale = ScaleConfig(max_kg=args.max_kg, e_kg=args.e_kg)
        with Path(args.trace).open(encoding="utf-8", newline="") as handle:
            rows = read_trace(handle)
    except OSError as exc:
        fail("weigh health", f"cannot read {args.trace}: {exc.strerror or exc}")
        return None
    except (TraceError, EdgeAgentError) as exc:
        fail("weigh health", f"{args.trace}: {exc}")
        return None
    health = ScaleHealth(scale.e_kg)
    for _at, event in analyze(rows, scale).events:
        health.observe(event)
    return health.report().as_dict()


def _text(report: dict[str, Any]) -> str:
    def shown(value: Any, unit: str) -> str:
        return "-" if value is None else f"{value:.2f} {unit}" if isinstance(value, float) \
            else f"{value} {unit}"  # fmt: skip

    lines = [
        f"scale     {'healthy' if report.get('healthy') else 'NOT FIT for the next truck'}",
        f"zero      {shown(report.get('zero_kg'), 'kg')} "
        f"({report.get('zeros_seen', 0)} empty-deck zeros seen)",
        f"noise     {shown(report.get('noise_e'), 'e')} at rest",
        f"drift     {shown(report.get('drift_e_per_h'), 'e/h')}",
    ]
    lines += [f"reason    {reason}" for reason in report.get("reasons") or []]
    return "\n".join(lines)
