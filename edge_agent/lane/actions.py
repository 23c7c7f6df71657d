"""Outputs of the lane state machine: what the shell must do, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.catalogue import EventType


@dataclass(frozen=True, slots=True)
class OpenBarrier:
    """Ask the IO board to open; the board closes by itself once the truck has passed."""

    transit_id: str


@dataclass(frozen=True, slots=True)
class CloseWhenClear:
    """Ask the IO board to close as soon as its safety checks allow (truck backed off)."""

    transit_id: str


@dataclass(frozen=True, slots=True)
class Publish:
    """Put an event into the durable outbox (section 4.4 ``evt/{type}``)."""

    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    transit_id: str | None = None


@dataclass(frozen=True, slots=True)
class MarkPassUsed:
    """Record the pass in the single-use ledger: it opened the barrier once.

    The shell answers with ``PassUseRecorded`` in the same step, before anything else.
    """

    cti_hex: str
    exp: int
    transit_id: str


@dataclass(frozen=True, slots=True)
class TakeSnapshot:
    """Keep the camera frame of this moment as evidence for a held truck, named ``ref``."""

    transit_id: str
    reason: str
    ref: str


LaneAction = OpenBarrier | CloseWhenClear | Publish | MarkPassUsed | TakeSnapshot
