"""Configuration, events and abnormality codes of the weight watcher."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.catalogue import Code
from edge_agent.errors import ConfigError

Evidence = tuple[tuple[float, float], ...]
"""(time s, kg) samples that support an event, oldest first."""

# Section-6 codes of the weighing (the catalogue holds them all).
UNSTABLE_TIMEOUT = Code.WEIGHT_UNSTABLE_TIMEOUT
NOT_ON_DECK = Code.WEIGHT_NOT_ON_DECK
ZERO_OUT_OF_BAND = Code.WEIGHT_ZERO_OUT_OF_BAND
ZERO_DRIFT = Code.WEIGHT_ZERO_DRIFT
STEP_WHILE_STATIONARY = Code.WEIGHT_STEP_WHILE_STATIONARY
FROZEN = Code.WEIGHT_FROZEN
OVERLOAD = Code.WEIGHT_OVERLOAD
NEGATIVE = Code.WEIGHT_NEGATIVE
COMM_LOSS = Code.WEIGHT_COMM_LOSS
CHECKSUM_ERRORS = Code.WEIGHT_CHECKSUM_ERRORS
IMPLAUSIBLE_JUMP = Code.WEIGHT_IMPLAUSIBLE_JUMP
DECLARED_MISMATCH = Code.WEIGHT_DECLARED_MISMATCH
NET_READING = Code.WEIGHT_NET_READING

WEIGHT_CODES = (
    UNSTABLE_TIMEOUT, NOT_ON_DECK, ZERO_OUT_OF_BAND, ZERO_DRIFT, STEP_WHILE_STATIONARY, FROZEN,
    OVERLOAD, NEGATIVE, COMM_LOSS, CHECKSUM_ERRORS, IMPLAUSIBLE_JUMP, DECLARED_MISMATCH,
    NET_READING,
)


@dataclass(frozen=True)
class ScaleConfig:
    """One weighbridge: its metrology and the watcher's limits.

    Attributes:
        max_kg: capacity (Max); above Max + 9 e is an overload (OIML R76).
        e_kg: verification scale interval e (display division).
        unstable_timeout_s: no trustworthy weight this long after the truck came to rest.
        comm_loss_s: no valid frame for this long.
        min_load_e: a deck reading this many e above zero means a vehicle is on it (Min = 20 e).
        zero_band_e: an empty deck reading further than this from 0 is out of band.
        zero_drift_e: the empty-deck zero (or a committed weight) moving this far is drift.
        step_e: a level change at least this big within about a second is a step.
        max_uncertainty_e: commit once the weight's uncertainty (about 2 sigma) is this small.
        frozen_s: bit-identical readings this long (and for at least 50 frames) on a scale
            seen to flicker on a steady deck is a freeze.
        not_on_deck_s: a settled load with a deck beam blocked this long is a truck off the deck.
        checksum_window_s / checksum_min_errors / checksum_max_fraction: frame-error alarm.
        respect_motion_flag: never commit while the indicator says "motion". Off by default:
            indicators raise the flag for the deck's own swing, which our model accounts for.
    """

    max_kg: float = 60000
    e_kg: float = 20
    unstable_timeout_s: float = 15
    comm_loss_s: float = 2.0
    min_load_e: float = 20
    zero_band_e: float = 1.0
    zero_drift_e: float = 2.0
    step_e: float = 2.5
    max_uncertainty_e: float = 0.6
    frozen_s: float = 6.0
    not_on_deck_s: float = 5.0
    checksum_window_s: float = 10.0
    checksum_min_errors: int = 5
    checksum_max_fraction: float = 0.05
    respect_motion_flag: bool = False

    def __post_init__(self) -> None:
        if self.max_kg <= 0 or self.e_kg <= 0 or self.max_kg < 20 * self.e_kg:
            raise ConfigError(
                f"scale: max_kg {self.max_kg} and e_kg {self.e_kg} must be positive, Max >= 20 e"
            )
        if self.comm_loss_s <= 0 or self.unstable_timeout_s <= 0:
            raise ConfigError("scale: comm_loss_s and unstable_timeout_s must be positive")

    @property
    def overload_kg(self) -> float:
        return self.max_kg + 9 * self.e_kg


@dataclass(frozen=True, slots=True)
class TruckOnDeck:
    """The deck became loaded."""

    at: float


@dataclass(frozen=True, slots=True)
class IndicatedFrame:
    """One indicator frame as it arrived: its displayed value, stable flag and raw bytes.

    ``stable`` is None when the indicator's format has no motion flag."""

    at: float
    kg: float
    stable: bool | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class Indication:
    """The indicator's own value at standstill (the primary indication): the displayed value
    of a run of identical frames inside the committed window, with the frames themselves.

    ``stable`` is the indicator's stable flag over the run (None: its format has none)."""

    kg: float
    stable: bool | None
    frames: tuple[IndicatedFrame, ...]


@dataclass(frozen=True, slots=True)
class WeightCommitted:
    """The truck's static weight, as soon as it could be trusted after the truck stopped.

    ``uncertainty_kg`` is about two standard errors; ``stopped_at`` is the start of the
    stretch of samples the estimate rests on (the truck was at rest from then on).
    """

    at: float
    kg: float
    uncertainty_kg: float
    stopped_at: float
    evidence: Evidence
    indication: Indication | None = None  # the indicator's value at standstill, once shown


@dataclass(frozen=True, slots=True)
class WeightAbnormality:
    """Something is wrong with the weighing; ``code`` is a stable section-6 code."""

    at: float
    code: str
    detail: str
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class DeckCleared:
    """The deck is empty and steady again; ``zero_kg`` is its reading (a net reading when
    ``net``: the display subtracts a tare, so it says nothing of the gross zero)."""

    at: float
    zero_kg: float
    net: bool = False


WeighEvent = TruckOnDeck | WeightCommitted | WeightAbnormality | DeckCleared
