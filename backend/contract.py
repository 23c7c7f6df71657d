"""The typed message contract: a JSON Schema for the ``data`` of every event and the args of
every command (``backend/schemas/``, referenced from ``docs/asyncapi.yaml``).

Pure: a document in, the list of problems out (empty when valid), each naming the JSON path,
so the ingest worker can quarantine a message with its reason and the HIL suite can fail on
it. The envelope itself is checked by its codec (``edge_agent/telemetry/envelope.py``); an
event ``type`` without a schema is accepted with its envelope checked only, because the
backend must take new types from newer lanes.

    python -m backend.contract reason-codes   prints the reason-code table (docs/reason-codes.md)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from edge_agent.catalogue import Code

MAX_PROBLEMS = 10


def _schema_files(folder: str) -> dict[str, dict[str, Any]]:
    root = resources.files("backend") / "schemas" / folder
    return {
        entry.name.removesuffix(".json"): json.loads(entry.read_text(encoding="utf-8"))
        for entry in root.iterdir()
        if entry.name.endswith(".json")
    }


@cache
def _registry() -> Registry[Any]:
    """Every schema by its file name, so ``$ref: "../common.json#/$defs/..."`` resolves."""
    common = json.loads(
        (resources.files("backend") / "schemas" / "common.json").read_text(encoding="utf-8")
    )
    common["$defs"]["ReasonCode"] = {"enum": [str(code) for code in Code]}
    registry: Registry[Any] = Registry().with_resource(
        "common.json", Resource.from_contents(common)
    )
    return registry


@cache
def _validators(folder: str) -> dict[str, Draft202012Validator]:
    return {
        name: Draft202012Validator(schema, registry=_registry())
        for name, schema in _schema_files(folder).items()
    }


def event_types() -> list[str]:
    """The event types with a schema of their ``data``."""
    return sorted(_validators("events"))


def command_names() -> list[str]:
    return sorted(_validators("commands"))


def _problems(validator: Draft202012Validator, doc: Any, root: str) -> list[str]:
    found = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [
        f"{'.'.join([root, *map(str, error.absolute_path)])}: {error.message[:200]}"
        for error in found[:MAX_PROBLEMS]
    ]


def event_problems(envelope: Mapping[str, Any]) -> list[str]:
    """What is wrong with a decoded lane event's ``data`` for its ``type`` (empty: valid)."""
    validator = _validators("events").get(str(envelope.get("type")))
    if validator is None:
        return []
    return _problems(validator, envelope.get("data"), "data")


def command_problems(name: str, args: Mapping[str, Any]) -> list[str]:
    """What is wrong with a command's ``args`` (empty: valid); an unknown name is a problem."""
    validator = _validators("commands").get(name)
    if validator is None:
        return [f"name: unknown command {name!r}; known: {', '.join(command_names())}"]
    return _problems(validator, dict(args), "args")


_FAMILIES = {
    "weight": ("a weighing abnormality", "the truck is held (`decision` hold, `abnormality`)"),
    "pass": ("a refused pass", "the truck is held until a valid pass or a release"),
    "vehicle": ("the truck is not the one its pass names", "held (or flagged, per site)"),
    "lane": ("a condition of the lane itself", "every truck is held while it lasts"),
    "cmd": ("a refused remote command", "nothing changes; `cmd_result` says why"),
}


def reason_code_table() -> str:
    """The reason-code table in Markdown, from the lane's own catalogue, in its order."""
    lines = [
        "# Reason codes",
        "",
        "Generated from the lane's catalogue (`edge_agent/catalogue.py`, `Code`) by",
        "`python -m backend.contract reason-codes`; a test keeps this file equal to what it",
        "prints. The schemas' `ReasonCode` enum (`backend/schemas/common.json`) is the same list.",
        "",
        "| code | family | what the lane does |",
        "|---|---|---|",
    ]
    for code in Code:
        family, does = _FAMILIES[str(code).split(".", 1)[0]]
        lines.append(f"| `{code}` | {family} | {does} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["reason-codes"]:
        sys.stdout.write(reason_code_table())
        return 0
    print("usage: python -m backend.contract reason-codes", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
