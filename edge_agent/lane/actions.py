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
    """Ask the IO board to close as soon as its safety checks allow (truck backed off, or the
    technician asked in manual mode: then without a transit, ``None``)."""

    transit_id: str | None


@dataclass(frozen=True, slots=True)
class BoardMaintenance:
    """Ask the IO board to enter (``enter``) or leave its MAINTENANCE state."""

    enter: bool


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


@dataclass(frozen=True, slots=True)
class KeepCrop:
    """Keep the crop an identity reader took (``crop_ref``: a plate) as evidence named ``ref``,
    for a held truck."""

    transit_id: str
    kind: str
    crop_ref: str
    ref: str


@dataclass(frozen=True, slots=True)
class PersistMode:
    """Store the lane's mode document (``ModeBook.to_doc``) so that a restart keeps it."""

    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome of the request named ``ref`` (a mode change, a barrier request, a sign-in),
    for whoever asked; the shell hands it back, it does nothing itself."""

    ref: str
    accepted: bool
    detail: str


LaneAction = (
    OpenBarrier | CloseWhenClear | BoardMaintenance | Publish | MarkPassUsed | TakeSnapshot
    | KeepCrop | PersistMode | Answer
)
