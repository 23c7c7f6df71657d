"""The classical stability rule, kept as the baseline our estimator is measured against.

"Stable" = every sample of the last second lies within +-1 e of the window's median (the
motion band of a typical indicator); the committed weight is that second's mean.
"""

from __future__ import annotations

import numpy as np

from edge_agent.weighing.fit import FloatArray
from edge_agent.weighing.settle import Estimate

WINDOW_S = 1.0
BAND_E = 1.0
MIN_SAMPLES = 4


class ClassicalSettler:
    """All samples within +-1 e for 1 s, then average."""

    def __init__(self, e_kg: float, max_uncertainty_kg: float = 0.0) -> None:
        self._e = e_kg

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def propose(
        self, t: FloatArray, x: FloatArray, *, noise_kg: float, flicker: bool
    ) -> Estimate | None:
        if len(t) < MIN_SAMPLES or t[-1] - t[0] < WINDOW_S:
            return None
        start = int(np.searchsorted(t, t[-1] - WINDOW_S, side="right")) - 1
        window = x[max(start, 0):]
        if len(window) < MIN_SAMPLES:
            return None
        if float(np.max(np.abs(window - np.median(window)))) > BAND_E * self._e:
            return None
        spread = float(np.std(window)) / np.sqrt(len(window))
        return Estimate(float(np.mean(window)), max(2 * spread, 0.5 * self._e), float(t[start]))
