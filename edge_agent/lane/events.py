"""Inputs to the lane state machine: what the lane's devices and the backend tell it.

The shell (``app.py``) turns driver output into these; the machine never sees a driver type.
Every event is a frozen dataclass carrying ``at``, the monotonic time it happened (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PassInfo:
    """What the lane needs of a verified (or rejected) release pass."""

    valid: bool
    reason: str | None
    release_no: str = ""
    enterprise: str = ""
    plates: tuple[str, ...] = ()
    declared_gross_kg: int | None = None
    tolerance_kg: int | None = None
    cti_hex: str = ""
    exp: int = 0
    use_hash: str = ""  # hex revocation hash of cti: names the pass's use to the backend


@dataclass(frozen=True, slots=True)
class TruckArrived:
    """The weighing side saw a load come onto the deck."""

    at: float


@dataclass(frozen=True, slots=True)
class PassPresented:
    """A confirmed QR read, already verified against trust list, revocations and ledger."""

    at: float
    info: PassInfo
    snapshot_ref: str | None = None


@dataclass(frozen=True, slots=True)
class WeightCommitted:
    """The estimator committed the truck's static weight."""

    at: float
    kg: float
    uncertainty_kg: float
    evidence: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class WeightAbnormal:
    """A weighing abnormality (section-6 ``weight.*`` code) with its evidence."""

    at: float
    code: str
    detail: str
    evidence: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class DeckCleared:
    """The deck is empty again; ``zero_kg`` is the empty reading seen."""

    at: float
    zero_kg: float


@dataclass(frozen=True, slots=True)
class BoardStatus:
    """The IO board's view: barrier state, the exit loop and fault bits."""

    at: float
    barrier: str
    loop_b: bool
    tech_key: bool = False
    faults: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class IoLinkChanged:
    """The link to the IO board went down (``up`` False) or came back."""

    at: float
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CameraChanged:
    """The camera source was lost (``up`` False) or came back."""

    at: float
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RemoteRelease:
    """A verified, signed remote release from an officer."""

    at: float
    cmd_id: str
    challenge: str
    officer: str = ""


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


LaneEvent = (
    TruckArrived
    | PassPresented
    | WeightCommitted
    | WeightAbnormal
    | DeckCleared
    | BoardStatus
    | IoLinkChanged
    | CameraChanged
    | RemoteRelease
    | PassUseRecorded
    | StorageChanged
)
