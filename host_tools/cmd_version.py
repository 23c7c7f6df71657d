"""``lanectl version``: the version, and the software identification of the modules that decide
and record weights (a SHA-256 over their sources), as the transaction log and tickets name it.

``lanectl --version`` stays the one line ``lanectl VERSION``; this command adds the id.
"""

from __future__ import annotations

import argparse
from typing import Any

from edge_agent import __version__
from edge_agent.records.software import PACKAGES, software_id
from host_tools.cli import add_json, command, emit


def register(subparsers: Any) -> None:
    parser = command(subparsers, "version", "the version and the software id (SHA-256 of the "
                     "modules that decide and record weights)", "lanectl version",
                     "lanectl version --json")  # fmt: skip
    add_json(parser)
    parser.set_defaults(func=_version)


def version_doc() -> dict[str, Any]:
    ident = software_id()
    return {"lanectl": __version__, "software_id": ident,
            "modules": [f"edge_agent/{package}" for package in PACKAGES]}  # fmt: skip


def _text(doc: dict[str, Any]) -> str:
    ident = doc["software_id"]
    return (f"lanectl {doc['lanectl']}\n"
            f"software id  {ident['version']} sha256 {ident['sha256']}\n"
            f"             over {', '.join(doc['modules'])}")


def _version(args: argparse.Namespace) -> int:
    emit(args, version_doc(), _text)
    return 0
