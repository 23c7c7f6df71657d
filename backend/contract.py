"""The typed message contract: a JSON Schema for the ``data`` of every event and the args of
every command (``backend/schemas/``, referenced from ``docs/asyncapi.yaml``).

Pure: a document in, the list of problems out (empty when valid), each naming the JSON path,
so the ingest worker can quarantine a message with its reason and the HIL suite can fail on
it. The envelope itself is checked by its codec (``edge_agent/telemetry/envelope.py``); an
event ``type`` without a schema is accepted with its envelope checked only, because the
backend must take new types from newer lanes.

    python -m backend.contract reason-codes   prints the reason-code table (docs/reason-codes.md)
    python -m backend.contract asyncapi       prints the generated tail of docs/asyncapi.yaml
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


GENERATED_MARK = "    # -- generated from backend/schemas by `python -m backend.contract asyncapi`"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _for_asyncapi(node: Any) -> Any:
    """A schema as AsyncAPI's components hold it: references inside the document."""
    if isinstance(node, dict):
        out = {k: _for_asyncapi(v) for k, v in node.items() if k not in ("$schema", "$id")}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("common.json#/$defs/"):
            out["$ref"] = "#/components/schemas/" + ref.removeprefix("common.json#/$defs/")
        return out
    if isinstance(node, list):
        return [_for_asyncapi(v) for v in node]
    return node


def asyncapi_block() -> str:
    """The generated tail of ``docs/asyncapi.yaml``: every event's data and command's args,
    and ``EventData``, which picks the data schema by the envelope's ``type``."""
    import yaml

    schemas: dict[str, Any] = {}
    common = _schema_files(".")["common"]["$defs"]
    for name in ("Trace", "Frame"):
        schemas[name] = _for_asyncapi(common[name])
    for name, schema in sorted(_schema_files("events").items()):
        schemas[f"{_camel(name)}EventData"] = _for_asyncapi(schema)
    for name, schema in sorted(_schema_files("commands").items()):
        schemas[f"{_camel(name)}CommandArgs"] = _for_asyncapi(schema)
    schemas["EventData"] = {
        "description": "The data of each event type (backend/schemas/events); a type not "
                       "listed is accepted with any object.",
        "allOf": [
            {"if": {"properties": {"type": {"const": name}}},
             "then": {"properties": {"data": {"$ref": f"#/components/schemas/{_camel(name)}"
                                                      "EventData"}}}}
            for name in event_types()
        ],
    }
    body = yaml.safe_dump(schemas, sort_keys=False, width=100, allow_unicode=True)
    lines = ["    " + line if line else line for line in body.splitlines()]
    return GENERATED_MARK + "; do not edit below.\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["reason-codes"]:
        sys.stdout.write(reason_code_table())
        return 0
    if args == ["asyncapi"]:
        sys.stdout.write(asyncapi_block())
        return 0
    print("usage: python -m backend.contract reason-codes | asyncapi", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
