"""Checks on the stretch between the truck coming to rest and its weight being committed.

The settler commits on the latest window the model of a resting truck explains. On a lightly
damped deck read at 5 Hz that window may come many seconds after the stop, and a load that
changed in between (a person stepping on, a pallet shifting) would then be committed as the
truck's weight. :class:`LevelTrack` keeps a rough level of every stretch since the gate opened
(a fit that need not reach noise level, only come close), so the commit can be held against
what the deck showed before its window began.
"""

from __future__ import annotations

import statistics
from collections import deque

import numpy as np

from edge_agent.weighing.fit import FloatArray, fit_decaying_oscillation

ROUGH_WINDOW_S = 2.5
ROUGH_EVERY_S = 0.4
ROUGH_MIN_SAMPLES = 12
# A rough fit within this many e rms pins the level to about an e on a deck that swings tens
# of e: enough to see a 3-5 e step, not to weigh.
ROUGH_RESIDUAL_E = 3.0
# Consecutive rough levels that must agree before they count (one may straddle the stop).
RUN = 3


class LevelTrack:
    """Rough levels of the stretch since the gate opened, newest last."""

    def __init__(self, e_kg: float) -> None:
        self._e = e_kg
        self._levels: deque[tuple[float, float]] = deque(maxlen=64)  # (window end, level)
        self._last_fit = -np.inf

    def reset(self) -> None:
        self._levels.clear()
        self._last_fit = -np.inf

    def add(self, now: float, t: FloatArray, x: FloatArray) -> None:
        """Fit the last ``ROUGH_WINDOW_S`` of the samples since the gate opened (``t``, ``x``)."""
        if now - self._last_fit < ROUGH_EVERY_S or len(t) == 0:
            return
        if t[-1] - t[0] < ROUGH_WINDOW_S:
            return
        self._last_fit = now
        lo = int(np.searchsorted(t, t[-1] - ROUGH_WINDOW_S))
        tt, xx = t[lo:], x[lo:]
        if len(tt) < ROUGH_MIN_SAMPLES:
            return
        for modes in (1, 2):
            fit = fit_decaying_oscillation(tt, xx, modes=modes)
            if fit is not None and fit.residual_rms <= ROUGH_RESIDUAL_E * self._e:
                self._levels.append((float(tt[-1]), fit.level))
                return

    def farthest_before(self, start: float, kg: float) -> float | None:
        """Of the runs of ``RUN`` consecutive rough levels from windows that ended by
        ``start``, the median farthest from ``kg`` (None when there is no such run)."""
        levels = [lv for end, lv in self._levels if end <= start]
        medians = [statistics.median(levels[i:i + RUN]) for i in range(len(levels) - RUN + 1)]
        return max(medians, key=lambda m: abs(m - kg), default=None)
