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
        if fit.residual_rms > RESIDUAL_FACTOR * floor + MODEL_SLACK * fit.amplitude:
            return False
        # A swing that does not die away is being driven: wheels turning, a truck inching.
        left = fit.amplitude * math.exp(-fit.decay_per_s * span_s)
        return fit.decay_per_s >= MIN_DECAY_PER_S or left <= PERSISTENT_E * self._e

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
            fit = fit_decaying_oscillation(t[start:], x[start:])
            if fit is None or not self._accepts(fit, float(t[-1] - t[start]), noise_kg):
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
