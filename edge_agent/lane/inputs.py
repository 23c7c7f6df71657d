"""Inputs to the lane state machine: what the lane's devices, the shell and the backend tell it.

The machine takes the devices' own events as they are: the weight watcher's (``TruckOnDeck``,
``WeightCommitted``, ``WeightAbnormality``, ``DeckCleared``) and the IO link session's
(``BoardSnapshot``, ``LinkUp``, ``LinkLost``). This module holds the rest. Every input is a
frozen dataclass carrying ``at``, the monotonic time it happened (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.catalogue import Code
from edge_agent.lane.modes import LaneMode, Via
from edge_agent.protocols import gp1
from edge_agent.protocols.iolink_session import BoardSnapshot, LinkLost, LinkUp
from edge_agent.weighing.events import DeckCleared, TruckOnDeck, WeightAbnormality, WeightCommitted


@dataclass(frozen=True, slots=True)
class PassPresented:
    """A confirmed QR read with the verifier's verdict on it (trust list, revocations, time).

    ``refusal`` is what the shell found in the pass ledger for a pass that verified:
    ``pass.already_used``, or ``lane.storage_fault`` when the ledger could not be read.
    """

    at: float
    verdict: gp1.Verdict
    refusal: str | None = None
    snapshot_ref: str | None = None

    @property
    def claims(self) -> gp1.PassClaims | None:
        """What the pass says; present once its signature verified, even if it is refused."""
        return self.verdict.claims

    @property
    def valid(self) -> bool:
        return self.verdict.valid and self.verdict.claims is not None and self.refusal is None

    @property
    def reason(self) -> str | None:
        """The section-6 code the pass is refused for; None when it is valid."""
        if self.valid:
            return None
        if self.verdict.valid:
            return self.refusal or Code.PASS_BAD_FORMAT
        return self.verdict.reason or Code.PASS_BAD_FORMAT


@dataclass(frozen=True, slots=True)
class CameraChanged:
    """The camera source was lost (``up`` False) or came back."""

    at: float
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class IdentitySeen:
    """What an identity reader read in one frame: ``kind`` names the check (``plate``; later
    ``container``, ``seal``), ``reads`` its texts, ``crop_ref`` the evidence crop kept of it."""

    at: float
    kind: str
    reads: tuple[str, ...]
    crop_ref: str | None = None


@dataclass(frozen=True, slots=True)
class IdentitySourceChanged:
    """An identity reader's source (camera, engine) went down (``up`` False) or came back."""

    at: float
    kind: str
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RemoteRelease:
    """A verified, signed remote verdict on a held truck from an officer: ``release`` opens
    the barrier; ``refuse`` and ``reweigh`` keep it closed and tell the driver to back off
    (a re-weigh: and drive on again with the same pass, which stays unused)."""

    at: float
    cmd_id: str
    challenge: str
    officer: str = ""
    verdict: str = "release"  # release | refuse | reweigh
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PassUseRecorded:
    """The shell's answer to MarkPassUsed: the use is durable (``ok``), or why it is not.

    ``code`` is ``pass.already_used`` (the ledger already held it: another truck or lane was
    first) or ``lane.storage_fault`` (the ledger could not be written).
    """

    at: float
    ok: bool
    code: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StorageChanged:
    """The lane's records (outbox, pass ledger) became unwritable (``ok`` False) or came back."""

    at: float
    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ModeRequested:
    """Put the lane in ``mode`` (from lanectl, or a verified remote ``lane_mode``).

    ``ref`` names the request in the machine's ``Answer``; ``wall`` is the wall time (UTC
    seconds) the change is recorded at; ``uid`` is the local peer's user id."""

    at: float
    mode: LaneMode
    by: str
    reason: str
    via: Via
    ref: str
    wall: float | None = None
    uid: int | None = None


@dataclass(frozen=True, slots=True)
class BarrierRequested:
    """The technician asks the barrier to open (``open``) or close, in manual mode."""

    at: float
    open: bool
    by: str
    ref: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A technician names themself at the lane: technician releases are recorded as them."""

    at: float
    name: str
    ref: str
    wall: float | None = None


LaneInput = (
    TruckOnDeck
    | PassPresented
    | WeightCommitted
    | WeightAbnormality
    | DeckCleared
    | BoardSnapshot
    | LinkUp
    | LinkLost
    | CameraChanged
    | IdentitySeen
    | IdentitySourceChanged
    | RemoteRelease
    | PassUseRecorded
    | StorageChanged
    | ModeRequested
    | BarrierRequested
    | SignedIn
)
