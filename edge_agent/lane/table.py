"""The words of the lane's transition table, and how a machine holds itself to it.

``machine.TRANSITIONS`` maps each (state, input type) to an ``On`` (the handler and the states
it may leave the machine in) or an ``Ignored`` (why that input means nothing there). A strict
machine raises on a pair the table does not list (``UnhandledInput``) and on a handler that
lands in a state its entry does not name (``UnexpectedTransition``); otherwise both are logged
and the input is dropped, so a lane keeps running on a gap found in the field.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.errors import EdgeAgentError

log = logging.getLogger("edge_agent.lane")

Handler = Callable[[Any, Any, float], list[Any]]
"""``handler(machine, input, now) -> actions``: an unbound method of the machine."""


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The time ``next_deadline()`` named has come. Not sent by the shell: ``handle_timer``
    feeds it through the table like any input."""

    at: float


class UnhandledInput(EdgeAgentError):
    """A strict machine got an input its table lists neither as handled nor as ignored."""


class UnexpectedTransition(EdgeAgentError):
    """A strict machine's handler left it in a state its table entry does not name."""


@dataclass(frozen=True, slots=True, init=False)
class On:
    """Handle the input with ``handler``; the machine is then in one of the states ``to``."""

    handler: Handler
    to: frozenset[enum.Enum]

    def __init__(self, handler: Handler, *to: enum.Enum) -> None:
        object.__setattr__(self, "handler", handler)
        object.__setattr__(self, "to", frozenset(to))


@dataclass(frozen=True, slots=True)
class Ignored:
    """The input means nothing in this state, for the reason ``why``."""

    why: str


Row = Mapping[type, On | Ignored]


def handler_for(row: Row, kind: type, state: enum.Enum, *, strict: bool) -> On | None:
    """The entry that handles ``kind`` in ``state``, or None when it is to be dropped."""
    entry = row.get(kind)
    if entry is None:
        problem = f"{kind.__name__} in state {state.value} is neither handled nor ignored"
        if strict:
            raise UnhandledInput(problem)
        log.error("lane table: %s; ignored", problem)
        return None
    return entry if isinstance(entry, On) else None


def check_landing(
    entry: On, kind: type, before: enum.Enum, after: enum.Enum, *, strict: bool
) -> None:
    """Hold a handler to the states its entry names."""
    if after in entry.to:
        return
    named = ", ".join(sorted(str(s.value) for s in entry.to))
    problem = (f"{kind.__name__} took {before.value} to {after.value}, "
               f"which its entry does not name ({named})")
    if strict:
        raise UnexpectedTransition(problem)
    log.error("lane table: %s", problem)
