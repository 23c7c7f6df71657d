"""``lanectl agent``: update the lane's agent, list its installed versions, roll back.

    lanectl agent update PACKAGE [--sha256 HEX] [--release-key FILE] [--allow-downgrade]
                         [--timeout S] [--restart-command CMD] [--config FILE] [--json]
    lanectl agent versions [--json]
    lanectl agent rollback [--to VERSION] [--timeout S] [--restart-command CMD] [--json]
    lanectl agent sign PACKAGE --key PEM

``update`` checks the package first (its SHA-256 and/or release signature, that it is the
gatelane package for this machine's architecture, that it is newer), then installs it beside
the running version (dpkg -i; the previous version's venv stays), restarts the agent and
waits for the new version to answer ready on its status port. If it does not, it switches
back to the version that ran before, restarts it, checks it is ready, and exits 1 saying what
failed. The restart is ``systemctl restart gatelane-agent`` when systemd runs, else the
``--restart-command`` given; without either nothing is changed. Every update and rollback is
recorded in /var/lib/gatelane/agent-update.json. Exit 0 on success, 1 when the update failed
(and was rolled back), 2 when the package or the request was refused and nothing changed.

``rollback`` goes to the newest installed version older than the current one; a second
rollback goes one further back, never forward, and says so when nothing older is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig, load_config
from host_tools import agent_update
from host_tools.agent_package import (
    ReleaseKey,
    load_private_key,
    load_release_key,
    sign_package,
    site_release_keys,
)
from host_tools.agent_system import SYSTEMD_RUNNING, DebianSystem, HttpProbe, restart_argv
from host_tools.agent_update import Layout, Report
from host_tools.cli import add_json, command
from host_tools.errors import ToolError

DEFAULT_CONFIG = Path("/etc/gatelane/agent.toml")
DEFAULT_TIMEOUT_S = 60.0

def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _lane(args: argparse.Namespace) -> tuple[HttpProbe, AgentConfig]:
    """The lane's status server (with its token when it has one), from its configuration."""
    config = load_config(args.config)
    token_file = config.status.token_file
    token = token_file.read_text(encoding="utf-8").strip() if token_file else None
    return HttpProbe(config.status.listen, token=token), config


def _release_keys(args: argparse.Namespace, config: AgentConfig) -> list[ReleaseKey]:
    """``--release-key`` files and the root keys of the lane's command_keys."""
    from edge_agent.assembly import load_command_keys

    keys = [load_release_key(path) for path in args.release_key or ()]
    if config.mqtt.command_keys is not None:
        keys += site_release_keys(load_command_keys(config.mqtt.command_keys))
    return keys


def _system(args: argparse.Namespace) -> DebianSystem:
    return DebianSystem(restart_argv(args.restart_command,
                                     systemd_running=SYSTEMD_RUNNING.is_dir()))  # fmt: skip


def _update(args: argparse.Namespace) -> int:
    system = _system(args)  # refused here, before anything, when nothing can restart the agent
    probe, config = _lane(args)
    keys = _release_keys(args, config)
    candidate = agent_update.check_package(
        Path(args.package), layout=Layout(), system=system, expected_sha256=args.sha256,
        keys=keys, allow_downgrade=args.allow_downgrade,
    )  # fmt: skip
    _need_root("update")
    report = agent_update.install(candidate, layout=Layout(), system=system, probe=probe,
                                  timeout=args.timeout, log=_progress)  # fmt: skip
    return _print_report(report, args.json, extra={"sha256": candidate.proof.sha256,
                                                   "signed_by": candidate.proof.signed_by})


def _rollback(args: argparse.Namespace) -> int:
    system = _system(args)
    probe, _config = _lane(args)
    _need_root("rollback")
    report = agent_update.rollback(layout=Layout(), system=system, probe=probe,
                                   timeout=args.timeout, to=args.to, log=_progress)  # fmt: skip
    return _print_report(report, args.json)


def _need_root(action: str) -> None:
    if os.geteuid() != 0:
        raise ToolError(f"dpkg and the service need root: run sudo lanectl agent {action} ...; "
                        f"nothing was changed")  # fmt: skip


def _print_report(report: Report, as_json: bool, extra: dict[str, Any] | None = None) -> int:
    if as_json:
        print(json.dumps({**report.as_json(), **(extra or {})}))
    else:
        print(describe(report))
    return 0 if report.ok else 1


def describe(report: Report) -> str:
    """One line for the technician: what happened and what runs now."""
    running, target, before = report.running, report.target, report.previous
    match report.outcome:
        case "updated":
            return f"updated: {target} runs now (was {before})"
        case "switched":
            return f"rolled back: {target} runs now (was {before})"
        case "rolled-back":
            return f"update to {target} failed and was rolled back: {before} runs again. " \
                   f"What failed: {report.error}"
        case "reverted":
            return f"rollback to {target} failed: {before} runs again. What failed: {report.error}"
        case "install-failed":
            return f"install of {target} failed; {running} is selected. {report.error}"
        case _:
            return f"{report.action} to {target} FAILED and {before} did not come back ready " \
                   f"either ({running} is selected): {report.error}"


def _versions(args: argparse.Namespace) -> int:
    layout = Layout()
    doc = agent_update.versions(layout, DebianSystem(restart=()))
    print(json.dumps(doc) if args.json else render_versions(doc, layout))
    return 0 if doc["versions"] else 1


def render_versions(doc: dict[str, Any], layout: Layout) -> str:
    if not doc["versions"]:
        return f"no version is installed under {layout.versions_dir}"
    lines = []
    for row in doc["versions"]:
        notes = [note for note, flag in (("current", row["current"]),
                                         ("incomplete: not runnable", not row["runnable"]),
                                         ("its last update failed", row["failed_update"]))
                 if flag]  # fmt: skip
        lines.append(f"{'*' if row['current'] else ' '} {row['version']:<12} "
                     f"{', '.join(notes)}".rstrip())  # fmt: skip
    if doc["current"] is None:
        lines.append(f"no version is selected: {layout.current_link} is missing")
    last = doc["last"]
    if last:
        lines.append(f"last {last.get('action')}: {last.get('from')} -> {last.get('to')} "
                     f"{last.get('outcome')} at {last.get('finished_at')}"
                     + (f": {last['error']}" if last.get("error") else ""))  # fmt: skip
    return "\n".join(lines)


def _sign(args: argparse.Namespace) -> int:
    package = Path(args.package)
    if not package.is_file():
        raise ToolError(f"{package}: no such file")
    sig, sha = sign_package(package, Path(args.key))
    public = load_private_key(Path(args.key)).public_key().public_bytes_raw()
    doc = {"signature": str(sig), "sha256_file": str(sha), "public_key": public.hex()}
    print(json.dumps(doc) if args.json else f"wrote {sig} and {sha}")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds, more than 0 and at most 3600")
    return value


def _lane_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"the agent's TOML file: status port, command keys "
                             f"(default {DEFAULT_CONFIG})")  # fmt: skip
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S,
                        help="seconds for a version to become ready after its restart "
                             f"(default {DEFAULT_TIMEOUT_S:g})")  # fmt: skip
    parser.add_argument("--restart-command", metavar="CMD",
                        help="how to restart the agent where systemd does not run")
    add_json(parser)


def register(subparsers: Any) -> None:
    parser = command(subparsers, "agent", "update the agent, list its versions, roll back",
                     "sudo lanectl agent update gatelane_0.2.0_arm64.deb",
                     "lanectl agent versions")  # fmt: skip
    commands = parser.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    update = command(
        commands, "update", "verify and install a package, restart, roll back if not ready",
        "lanectl agent update gatelane_0.2.0_arm64.deb   # .sig or .sha256 beside it",
        "lanectl agent update gatelane_0.2.0_arm64.deb --sha256 9f86d081884c7d65...",
        "lanectl agent update gatelane_0.2.0_arm64.deb --restart-command 'supervisorctl "
        "restart gatelane-agent'",
    )  # fmt: skip
    update.add_argument("package", metavar="PACKAGE", help="the gatelane .deb")
    update.add_argument("--sha256", metavar="HEX", help="the package's expected SHA-256")
    update.add_argument("--release-key", metavar="FILE", action="append", type=Path,
                        help="a release public key (PEM or base64url), besides the site's "
                             "root keys from [mqtt] command_keys; may be repeated")  # fmt: skip
    update.add_argument("--allow-downgrade", action="store_true",
                        help="install a version older than the one that runs")
    _lane_options(update)
    update.set_defaults(func=_update)
    listing = command(commands, "versions", "installed versions and which one runs",
                      "lanectl agent versions --json")
    add_json(listing)
    listing.set_defaults(func=_versions)
    back = command(commands, "rollback", "switch to the installed version before this one",
                   "lanectl agent rollback", "lanectl agent rollback --to 0.1.0")
    back.add_argument("--to", metavar="VERSION", help="switch to this installed version instead")
    _lane_options(back)
    back.set_defaults(func=_rollback)
    sign = command(commands, "sign", "write PACKAGE.sig and PACKAGE.sha256 (site machine)",
                   "lanectl agent sign gatelane_0.2.0_arm64.deb --key bz01/keys/root.key.pem")
    sign.add_argument("package", metavar="PACKAGE", help="the gatelane .deb")
    sign.add_argument("--key", required=True, help="the site's root key (Ed25519, PEM)")
    add_json(sign)
    sign.set_defaults(func=_sign)
