"""What every ``lanectl`` command shares: how a command is declared (help and examples), the
``--json`` switch, and how a result reaches the screen (human text, or one JSON object).

A command's errors are raised as ``ToolError`` (host_tools/errors.py); ``lanectl.main`` prints
them, as JSON too when ``--json`` was given.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

Render = Callable[[Any], str]


def command(
    subparsers: Any, name: str, help: str, *examples: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A sub-command with its one-line help and an "example:" epilog (shown by --help)."""
    epilog = "example:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=help, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs,
    )  # fmt: skip
    return parser


def add_json(parser: argparse.ArgumentParser, what: str = "one JSON object") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} instead of text")


def emit(args: argparse.Namespace, doc: Any, human: Render | None = None) -> None:
    """Print ``doc`` as JSON with ``--json``, else as ``human(doc)`` (or generic text)."""
    if getattr(args, "json", False):
        print(json.dumps(doc, ensure_ascii=False, default=str), flush=True)
    else:
        print((human or text)(doc), flush=True)


def text(doc: Any) -> str:
    """Generic human text for a JSON-like document: ``key  value`` lines, nested indented."""
    return "\n".join(_lines(doc, 0)) if isinstance(doc, Mapping | list) else str(doc)


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, Mapping):  # an empty mapping (nested ones are not)
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(not isinstance(v, Mapping | list) for v in value):
        return ", ".join(_scalar(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _nested(value: Any) -> bool:
    return (isinstance(value, Mapping) and bool(value)) or (
        isinstance(value, list) and any(isinstance(v, Mapping | list) for v in value))


def _lines(doc: Any, depth: int) -> list[str]:
    pad = "  " * depth
    out: list[str] = []
    if isinstance(doc, Mapping):
        width = max((len(str(k)) for k, v in doc.items() if not _nested(v)), default=0)
        for key, value in doc.items():
            if _nested(value):
                out.append(f"{pad}{key}")
                out.extend(_lines(value, depth + 1))
            else:
                out.append(f"{pad}{key!s:<{width}}  {_scalar(value)}")
    elif isinstance(doc, list):
        for item in doc:
            if isinstance(item, Mapping | list):
                out.append(f"{pad}-")
                out.extend(_lines(item, depth + 1))
            else:
                out.append(f"{pad}- {_scalar(item)}")
    else:
        out.append(pad + _scalar(doc))
    return out
