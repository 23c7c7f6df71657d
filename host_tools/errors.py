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

import sys

USAGE_EXIT = 2
"""Bad arguments, files or devices: nothing was done."""


class ToolError(Exception):
    """Root of every error the tools raise for the technician."""

    exit_code = USAGE_EXIT


class SiteError(ToolError):
    """The site material cannot be generated or changed as asked; the message says why."""


class DeployError(ToolError):
    """A deploy or rollback step failed; the message says what was seen."""

    exit_code = 1


class Refused(DeployError):
    """The board is not in a state where its firmware may be changed; nothing was done."""


def fail(where: str, message: str, code: int = USAGE_EXIT) -> int:
    """Print ``lanectl WHERE: message`` as one line on stderr; return ``code`` to exit with."""
    one_line = " ".join(message.splitlines())
    print(f"lanectl {where}: {one_line}", file=sys.stderr)
    return code
