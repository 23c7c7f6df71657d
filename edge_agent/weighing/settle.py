"""Settlers: decide from the samples since the truck came to rest whether its weight is known.

A settler sees the samples after the gate (both deck beams clear, the last axle ramp over)
and proposes an :class:`Estimate` or nothing yet. The watcher owns the gate, so every settler
obeys the same "never while moving" rules; :mod:`classical` holds the textbook baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge_agent.weighing.fit import FloatArray, OscillationFit, fit_decaying_oscillation

# Longest first: the longest stretch the model explains gives the tightest estimate.
WINDOWS_S = (4.0, 2.5, 1.6)
# "At rest" = free decay for at least this long. A rolling truck is pushed several times a
# second (deck joints, steering, brakes), so a swing left alone this long means it stopped.
MIN_SPAN_S = 1.5
MIN_SAMPLES = 8
# Least-squares errors ignore that (s, w) were searched and that samples are quantised.
STDERR_INFLATION = 1.5
# Share of the fitted swing the residual may keep (the heave is not a perfect sinusoid).
MODEL_SLACK = 0.03
RESIDUAL_FACTOR = 1.6
MIN_DECAY_PER_S = 0.3
PERSISTENT_E = 1.5
# A lightly damped deck (damping ratio 0.03: 0.15-0.8 /s) swings on for many seconds; its swing
# counts as free when the window shows it shrink by this much, not just hold (a driven one).
LIGHT_DECAY_PER_S = 0.1
SHRINK_E = 4.0
MODES = (1, 2)
HOPELESS_FACTOR = 6.0


@dataclass(frozen=True, slots=True)
class Estimate:
    kg: float
    uncertainty_kg: float
    start: float


class Settler(Protocol):
    def reset(self) -> None: ...

    def propose(
        self, t: FloatArray, x: FloatArray, *, noise_kg: float, flicker: bool
    ) -> Estimate | None: ...


class OscillationSettler:
    """Commit as soon as a decaying-oscillation model pins the level down.

    Accepts the longest recent window whose residual is at noise level (so no ramp, rolling
    or second load change is inside it), then commits when the level's uncertainty is below
    the limit and two consecutive windows agree.
    """

    def __init__(self, e_kg: float, max_uncertainty_kg: float) -> None:
        self._e = e_kg
        self._limit = max_uncertainty_kg
        self._previous: Estimate | None = None

    def reset(self) -> None:
        self._previous = None

    def _accepts(self, fit: OscillationFit, span_s: float, noise_kg: float) -> bool:
        floor = max(noise_kg, self._e / math.sqrt(12))
        swing = sum(m.amplitude for m in fit.modes)
        if fit.residual_rms > RESIDUAL_FACTOR * floor + MODEL_SLACK * swing:
            return False
        # A swing that does not die away is being driven: wheels turning, a truck inching.
        for mode in fit.modes:
            left = mode.left_after(span_s)
            shrank = mode.amplitude - left >= SHRINK_E * self._e
            dying = mode.decay_per_s >= MIN_DECAY_PER_S or (
                mode.decay_per_s >= LIGHT_DECAY_PER_S and shrank)
            if not dying and left > PERSISTENT_E * self._e:
                return False
        return True

    def explain(self, t: FloatArray, x: FloatArray, noise_kg: float) -> OscillationFit | None:
        """The fit of a resting truck's swing to the whole window, when one explains it."""
        if len(t) < MIN_SAMPLES or t[-1] - t[0] < MIN_SPAN_S:
            return None
        return self._fit(t, x, noise_kg)

    def _fit(self, t: FloatArray, x: FloatArray, noise_kg: float) -> OscillationFit | None:
        """The simplest model (one mode, else two) that explains a resting truck, or None."""
        span = float(t[-1] - t[0])
        for modes in MODES:
            fit = fit_decaying_oscillation(t, x, modes=modes)
            if fit is None:
                return None
            if self._accepts(fit, span, noise_kg):
                return fit
            if fit.residual_rms > HOPELESS_FACTOR * max(noise_kg, self._e):
                return None  # far off: a ramp or a rolling truck, no second mode explains it
        return None

    def propose(
        self, t: FloatArray, x: FloatArray, *, noise_kg: float, flicker: bool
    ) -> Estimate | None:
        if len(t) < MIN_SAMPLES or t[-1] - t[0] < MIN_SPAN_S:
            self._previous = None
            return None
        estimate = None
        starts = []
        for span in WINDOWS_S:
            start = int(np.searchsorted(t, t[-1] - span))
            if start in starts or len(t) - start < MIN_SAMPLES or t[-1] - t[start] < MIN_SPAN_S:
                continue
            starts.append(start)
        if starts and flicker and float(np.ptp(x[starts[-1]:])) == 0.0:
            starts = []  # a scale that flickers does not hold still: suspect a frozen output
        # The shortest window first: if the model fails on it, every longer one fails too.
        for start in [starts[-1], *starts[:-1]] if starts else []:
            fit = self._fit(t[start:], x[start:], noise_kg)
            if fit is None:
                if start == starts[-1]:
                    break
                continue
            candidate = Estimate(
                fit.level,
                max(2 * STDERR_INFLATION * fit.level_stderr, 0.05 * self._e),
                float(t[start]),
            )
            if estimate is None or candidate.uncertainty_kg < estimate.uncertainty_kg:
                estimate = candidate
            if start != starts[-1]:
                break  # the longest window the model explains
        previous, self._previous = self._previous, estimate
        if estimate is None or previous is None or estimate.uncertainty_kg > self._limit:
            return None
        if abs(estimate.kg - previous.kg) > max(estimate.uncertainty_kg, previous.uncertainty_kg):
            return None
        return estimate
