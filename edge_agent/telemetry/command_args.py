"""What each signed command carries: checked before anything is recorded, stored or applied.

    remote_release  {challenge, reason_ref?, transit_id?}
    remote_refuse   {challenge, reason, transit_id?}        the held truck backs off
    remote_reweigh  {challenge, reason?, transit_id?}       backs off and drives on again
    trust_update    {version, pass_keys?, command_keys?}   at least one list
    revocations     {version, pass_hashes?, command_kids?} at least one list
    config          {version, settings}
    site_uses       {version, pass_hashes}                  passes used at other lanes
    lane_mode       {mode, reason}                          in_service or out_of_service

A list that is present replaces the one applied before (the backend always sends the whole
list of that kind); a list that is absent leaves the applied one as it is. ``pass_keys`` are
GP1 trust-list entries (docs/gp1-pass-format.md), ``pass_hashes`` the hex revocation hashes
of passes, ``command_keys`` command-tier Ed25519 keys ``{kid, public_key}``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from edge_agent.errors import ConfigError
from edge_agent.lane.modes import MAX_REASON, MODE_NAMES, REMOTE_MODES, text_problems
from edge_agent.protocols import gp1

ArgsCheck = Callable[[Mapping[str, Any]], list[str]]
"""A lane-side check of one command's arguments: the problems found, empty when acceptable."""

ALLOWED_ARGS = {
    "remote_release": frozenset({"challenge", "reason_ref", "transit_id"}),
    "remote_refuse": frozenset({"challenge", "reason", "transit_id"}),
    "remote_reweigh": frozenset({"challenge", "reason", "transit_id"}),
    "trust_update": frozenset({"version", "pass_keys", "command_keys"}),
    "revocations": frozenset({"version", "pass_hashes", "command_kids"}),
    "config": frozenset({"version", "settings"}),
    "site_uses": frozenset({"version", "pass_hashes"}),
    "lane_mode": frozenset({"mode", "reason"}),
}
LISTS = {
    "trust_update": ("pass_keys", "command_keys"),
    "revocations": ("pass_hashes", "command_kids"),
    "site_uses": ("pass_hashes",),
}
VERDICTS = {"remote_release": "release", "remote_refuse": "refuse", "remote_reweigh": "reweigh"}
VERSIONED = frozenset({"trust_update", "revocations", "config", "site_uses"})
MAX_LIST_ITEMS = 5000
MAX_INTEGER = (1 << 53) - 1  # times and versions: exact in JSON everywhere, and fit SQLite


def structure_problems(name: str, args: Mapping[str, Any]) -> list[str]:
    """Problems with the shape of ``args`` for command ``name`` (empty when well formed)."""
    unknown = sorted(set(args) - ALLOWED_ARGS.get(name, frozenset()))
    problems = [f"unknown argument {key!r}" for key in unknown]
    if name in VERDICTS:
        challenge = args.get("challenge")
        if not isinstance(challenge, str) or not challenge:
            problems.append(f"{name} must echo the hold's challenge")
        for key in ("reason_ref", "transit_id"):
            if not isinstance(args.get(key, ""), str):
                problems.append(f"{key} must be a string")
        if name == "remote_refuse" or "reason" in args:
            problems.extend(text_problems("reason", args.get("reason"), MAX_REASON))
    if name in VERSIONED:
        version = args.get("version")
        if (not isinstance(version, int) or isinstance(version, bool)
                or not 1 <= version <= MAX_INTEGER):
            problems.append(f"{name} needs an integer version in 1..{MAX_INTEGER}")
    if name in LISTS:
        present = [key for key in LISTS[name] if key in args]
        if not present:
            problems.append(f"{name} needs {' or '.join(LISTS[name])}")
        for key in present:
            problems.extend(_LIST_CHECKS[key](args[key]))
    if name == "config" and not isinstance(args.get("settings"), dict):
        problems.append("config needs a settings object")
    if name == "lane_mode":
        problems.extend(_lane_mode(args))
    return problems


def _lane_mode(args: Mapping[str, Any]) -> list[str]:
    mode = args.get("mode")
    remote = sorted(str(m) for m in REMOTE_MODES)
    problems = text_problems("reason", args.get("reason"), MAX_REASON)
    if mode not in MODE_NAMES:
        problems.append(f"mode must be one of {', '.join(remote)}, not {str(mode)[:32]!r}")
    elif mode not in remote:
        problems.append(f"mode {mode} is set at the lane; remotely: {', '.join(remote)}")
    return problems


def _pass_keys(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        return ["pass_keys must be a non-empty list: an empty trust list refuses every pass"]
    if len(value) > MAX_LIST_ITEMS:
        return [f"pass_keys holds more than {MAX_LIST_ITEMS} entries"]
    problems = []
    for index, entry in enumerate(value):
        try:
            gp1.TrustEntry.from_json(entry)
        except (ConfigError, AttributeError, TypeError, ValueError) as exc:
            problems.append(f"pass_keys[{index}]: {exc}")
    return problems


def _command_keys(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        return ["command_keys must be a non-empty list"]
    problems = []
    for index, entry in enumerate(value):
        kid = entry.get("kid") if isinstance(entry, dict) else None
        raw = entry.get("public_key") if isinstance(entry, dict) else None
        if not isinstance(kid, str) or not kid or not isinstance(raw, str):
            problems.append(f"command_keys[{index}] needs kid and public_key strings")
        elif len(b64url_decode(raw) or b"") != 32:
            problems.append(f"command_keys[{index}] ({kid}): not a base64url Ed25519 key")
    return problems


def _pass_hashes(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["pass_hashes must be a list"]
    if len(value) > MAX_LIST_ITEMS:
        return [f"pass_hashes holds more than {MAX_LIST_ITEMS} entries"]
    problems = []
    for index, text in enumerate(value):
        try:
            gp1.parse_revocation_hash(text)
        except ValueError as exc:
            problems.append(f"pass_hashes[{index}]: {exc}")
    return problems


def _command_kids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        return ["command_kids must be a list of key ids"]
    return []


_LIST_CHECKS: dict[str, Callable[[Any], list[str]]] = {
    "pass_keys": _pass_keys,
    "command_keys": _command_keys,
    "pass_hashes": _pass_hashes,
    "command_kids": _command_kids,
}


def b64url_decode(text: str) -> bytes | None:
    """base64url without padding, or None when ``text`` is not that."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (ValueError, TypeError):
        return None
