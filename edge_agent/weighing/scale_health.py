"""Scale health between trucks: zero return, zero-drift trend, noise at rest, frame checks.

The watcher judges each empty-deck spell on its own (a zero out of band, a zero that moved
since the last spell or while the deck stayed empty, a net display) and holds the next truck
for it; those are not judged again here. What it cannot see is the scale's course over many
trucks: a zero creeping by a fraction of e per truck never trips the per-spell drift limit, a deck
that never shows a steady zero between two trucks was never proved empty, and a load cell
taking water shows first as noise at rest. This monitor keeps that course from the
watcher's own events and says, before the next truck is weighed, whether the scale is fit
to weigh it. Pure: times are parameters, nothing is read or written.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_agent.errors import ConfigError
from edge_agent.weighing.events import DeckCleared, TruckOnDeck, WeighEvent

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ScaleHealthLimits:
    """When the scale is not fit to weigh the next truck.

    Attributes:
        noise_e: the standard deviation of the readings at rest above this.
        drift_e_per_h: the zero's trend over the recent spells steeper than this.
        trend_spells: how many recent empty-deck spells the trend is fitted over.
        trend_min_span_s: a trend needs spells this far apart to mean anything.
        trend_min_drift_e: and it must have moved at least this far over its span, so
            that a few zeros a tenth of an e apart a minute apart are not an alarm.
    """

    # Quantised sensor noise on a good deck measures 0.5-0.8 e. The watcher takes a zero only
    # from readings within 1 e of their median, so 1 e is the most a zero's spread can be:
    # near it, the display sits on the two outer values, hardly ever on the middle one.
    noise_e: float = 0.9
    drift_e_per_h: float = 1.0
    trend_spells: int = 12
    trend_min_span_s: float = 600.0
    trend_min_drift_e: float = 0.75
    frame_error_share: float = 0.02  # of the indicator's frames since the last zero
    frame_error_min_frames: int = 50  # a share means nothing over a handful of frames

    def __post_init__(self) -> None:
        if min(self.noise_e, self.drift_e_per_h) <= 0:
            raise ConfigError("scale health: noise_e and drift_e_per_h must be > 0")
        if self.trend_spells < 3:
            raise ConfigError("scale health: trend_spells must be at least 3")


@dataclass(frozen=True)
class ScaleHealthReport:
    """The scale's health as the next truck would find it; ``reasons`` empty means healthy."""

    reasons: tuple[str, ...]
    zero_kg: float | None
    noise_e: float | None
    drift_e_per_h: float | None
    zeros_seen: int
    trucks_without_zero: int
    last_zero_at: float | None
    frames_since_zero: int = 0
    frame_errors_since_zero: int = 0
    overloads_since_zero: int = 0

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, object]:
        return {
            "healthy": self.healthy, "reasons": list(self.reasons), "zero_kg": self.zero_kg,
            "noise_e": self.noise_e, "drift_e_per_h": self.drift_e_per_h,
            "zeros_seen": self.zeros_seen, "trucks_without_zero": self.trucks_without_zero,
            "last_zero_at": self.last_zero_at, "frames_since_zero": self.frames_since_zero,
            "frame_errors_since_zero": self.frame_errors_since_zero,
            "overloads_since_zero": self.overloads_since_zero,
        }


@dataclass
class ScaleHealth:
    """Follows one scale through the watcher's events (``observe``) and judges it (``report``).

    ``noise_kg`` comes with each empty-deck spell from the watcher (the spread of the
    readings the zero was taken from).
    """

    e_kg: float
    limits: ScaleHealthLimits = field(default_factory=ScaleHealthLimits)
    _zeros: deque[tuple[float, float]] = field(init=False)
    _noise_kg: float | None = field(default=None, init=False)
    _trucks_since_zero: int = field(default=0, init=False)
    _zeros_seen: int = field(default=0, init=False)
    _frames: int = field(default=0, init=False)
    _frame_errors: int = field(default=0, init=False)
    _overloads: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.e_kg <= 0:
            raise ConfigError(f"scale health: e_kg {self.e_kg} must be positive")
        self._zeros = deque(maxlen=self.limits.trend_spells)

    def observe_frame(self, *, ok: bool, overload: bool = False) -> None:
        """One indicator frame: ``ok`` False when it failed its check; ``overload`` as the
        indicator flagged it (counted on the empty deck only). Counted from one steady zero
        to the next."""
        self._frames += 1
        self._frame_errors += not ok
        self._overloads += overload and not self._trucks_since_zero  # a truck's is its own

    def observe(self, event: WeighEvent, *, noise_kg: float | None = None) -> None:
        if isinstance(event, TruckOnDeck):
            self._trucks_since_zero += 1
        elif isinstance(event, DeckCleared):
            if not event.net:
                if self._zeros and abs(event.zero_kg - self._zeros[-1][1]) > self.e_kg:
                    # A step is the watcher's zero drift, reported by it; a creep starts
                    # again from the new zero (a re-zeroed scale is not drifting).
                    self._zeros.clear()
                self._zeros.append((event.at, event.zero_kg))
            self._zeros_seen += 1
            self._trucks_since_zero = 0
            self._frames = self._frame_errors = self._overloads = 0
            if noise_kg is not None:
                self._noise_kg = noise_kg

    def report(self) -> ScaleHealthReport:
        """Judge the scale for the truck that comes next (call before it is weighed)."""
        e, limits = self.e_kg, self.limits
        reasons: list[str] = []
        zero = self._zeros[-1][1] if self._zeros else None
        # The truck now on the deck counts as one; a second means one left without a zero.
        if self._trucks_since_zero > 1:
            reasons.append(f"no steady zero between the last {self._trucks_since_zero} trucks")
        noise_e = None if self._noise_kg is None else self._noise_kg / e
        if noise_e is not None and noise_e > limits.noise_e:
            reasons.append(f"noise at rest {noise_e:.2f} e above {limits.noise_e:g} e")
        if self._frames >= limits.frame_error_min_frames \
                and self._frame_errors > limits.frame_error_share * self._frames:
            reasons.append(f"{self._frame_errors} of {self._frames} indicator frames since the "
                           f"last zero failed their check")
        if self._overloads:
            reasons.append(f"the indicator flagged overload in {self._overloads} frames on the "
                           f"empty deck")
        trend = self._trend()
        drift = None if trend is None else trend[0]
        if trend is not None and abs(trend[0]) > limits.drift_e_per_h \
                and trend[1] >= limits.trend_min_drift_e:
            limit = limits.drift_e_per_h
            reasons.append(f"zero drifting {trend[0]:+.2f} e/h (limit {limit:g} e/h)")
        return ScaleHealthReport(
            reasons=tuple(reasons), zero_kg=zero, noise_e=noise_e, drift_e_per_h=drift,
            zeros_seen=self._zeros_seen, trucks_without_zero=max(0, self._trucks_since_zero),
            last_zero_at=self._zeros[-1][0] if self._zeros else None,
            frames_since_zero=self._frames, frame_errors_since_zero=self._frame_errors,
            overloads_since_zero=self._overloads,
        )

    def _trend(self) -> tuple[float, float] | None:
        """The zero's least-squares slope over the recent spells (e per hour) and how far
        that slope moved it over their span (e); None until the spells span long enough."""
        if len(self._zeros) < 3:
            return None
        t = np.array([at for at, _ in self._zeros])
        z = np.array([kg for _, kg in self._zeros]) / self.e_kg
        span = float(t[-1] - t[0])
        if span < self.limits.trend_min_span_s:
            return None
        slope = float(np.polyfit(t - t[0], z, 1)[0])
        # A fitted line can claim more movement than the zeros ever showed (a single step
        # of 2 e fits as 2.6 e over the span); the zero moved at most its own range.
        moved = min(abs(slope) * span, float(z.max() - z.min()))
        return slope * SECONDS_PER_HOUR, moved
