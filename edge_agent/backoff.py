"""Retry delays for every reconnect in the lane: one rule, so a fleet never stampedes.

The first delay is drawn from ``[first, first_max]`` (a window: lanes that lost their peer
together come back spread out), each next one doubles up to ``cap``, and every delay carries
``±jitter`` of itself. ``reset`` after a success starts over from a fresh first delay.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        first: float,
        cap: float,
        *,
        first_max: float | None = None,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < first <= cap or (first_max is not None and not first <= first_max):
            raise ValueError(f"back-off needs 0 < first <= cap (and first <= first_max): "
                             f"{first}, {cap}, {first_max}")
        self.first, self.cap, self.first_max = first, cap, first_max
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._delay: float | None = None  # the last delay handed out; None: start over

    def peek(self) -> float:
        """The nominal delay ``next`` is about to hand out (without jitter)."""
        return self.first if self._delay is None else min(self.cap, self._delay * 2)

    def next(self) -> float:
        if self._delay is None:
            high = self.first_max if self.first_max is not None else self.first
            self._delay = self._rng.uniform(self.first, high)
        else:
            self._delay = min(self.cap, self._delay * 2)
        spread = self._delay * self._jitter
        return max(0.0, self._delay + self._rng.uniform(-spread, spread))

    def reset(self) -> None:
        self._delay = None
