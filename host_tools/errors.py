"""The one error root of the technician's tools, and the one way an error reaches the screen.

    ToolError                  the technician can act on it; the message says what and where
    ├── SiteError              site material cannot be made or changed as asked
    └── DeployError            a firmware deploy or rollback step failed
        └── Refused            the board is not in a state where its firmware may change

``lanectl`` turns a ``ToolError`` (and an ``EdgeAgentError`` from the agent's own modules) that
reaches it into one ``lanectl COMMAND: message`` line on stderr and the error's exit code: never
a traceback.
"""

from __future__ import annotations

import json
import sys

USAGE_EXIT = 2
"""Bad arguments, files or devices: nothing was done."""

_json_errors = False


def json_errors(on: bool) -> None:
    """With ``--json`` an error is a JSON object on stdout, so a script reads it like a result."""
    global _json_errors
    _json_errors = on


class ToolError(Exception):
    """Root of every error the tools raise for the technician."""

    exit_code = USAGE_EXIT

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class SiteError(ToolError):
    """The site material cannot be generated or changed as asked; the message says why."""


class DeployError(ToolError):
    """A deploy or rollback step failed; the message says what was seen."""

    exit_code = 1


class Refused(DeployError):
    """The board is not in a state where its firmware may be changed; nothing was done."""


def fail(where: str, message: str, code: int = USAGE_EXIT) -> int:
    """Print ``lanectl WHERE: message`` as one line on stderr (with ``--json``: an object with
    ``error`` on stdout); return ``code`` to exit with."""
    one_line = " ".join(message.splitlines())
    if _json_errors:
        doc = {"ok": False, "error": one_line, "command": where, "exit_code": code}
        print(json.dumps(doc, ensure_ascii=False), flush=True)
    else:
        print(f"{' '.join(('lanectl', where)).rstrip()}: {one_line}", file=sys.stderr, flush=True)
    return code
