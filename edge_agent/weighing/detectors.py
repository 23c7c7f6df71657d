"""Small detectors used by the weight watcher; each is pure arithmetic on times and values."""

from __future__ import annotations

from collections import deque

# A jump this large relative to the load (plus 50 e) cannot be a physical load change
# between two frames, whatever the digits look like.
IMPOSSIBLE_JUMP_FRACTION = 0.25
SPIKE_MIN_E = 10.0
SPIKE_TYPICAL_FACTOR = 8.0


def same_digits(a: float, b: float) -> bool:
    """True when ``a`` and ``b`` differ but are written with the same digits.

    Order-blind checksums (the Yaohua XOR) pass such frames, so an isolated one among
    neighbours that agree is corruption, not weight.
    """
    if a == b:
        return False
    return sorted(f"{abs(a):.3f}") == sorted(f"{abs(b):.3f}")


def is_spike(
    before: float, middle: float, after: float, e_kg: float, *, typical_step: float = 0.0
) -> bool:
    """Is ``middle`` an isolated corrupt sample between two samples that agree?

    ``typical_step`` is the usual change between consecutive samples just before: a deck
    still swinging hard makes big jumps of its own, and they are not corruption.
    """
    jump = min(abs(middle - before), abs(middle - after))
    if jump < max(SPIKE_MIN_E * e_kg, SPIKE_TYPICAL_FACTOR * typical_step):
        return False
    if abs(after - before) > max(2 * e_kg, 0.2 * jump):
        return False
    impossible = IMPOSSIBLE_JUMP_FRACTION * max(abs(before), abs(after)) + 50 * e_kg
    return same_digits(middle, before) or same_digits(middle, after) or jump > impossible


class FrameErrorRate:
    """Frame errors within a sliding window, against the frames that arrived intact."""

    def __init__(self, window_s: float, min_errors: int, max_fraction: float) -> None:
        self._window = window_s
        self._min_errors = min_errors
        self._max_fraction = max_fraction
        self._errors: deque[float] = deque()
        self._good: deque[float] = deque()
        self.alarmed = False

    def _trim(self, now: float) -> None:
        for times in (self._errors, self._good):
            while times and times[0] < now - self._window:
                times.popleft()

    def add(self, now: float, *, error: bool) -> bool:
        """Record one frame; True when the error rate has just crossed the alarm line."""
        (self._errors if error else self._good).append(now)
        self._trim(now)
        errors, total = len(self._errors), len(self._errors) + len(self._good)
        high = errors >= self._min_errors and errors > self._max_fraction * total
        if high and not self.alarmed:
            self.alarmed = True
            return True
        if self.alarmed and errors <= self._max_fraction * total / 2:
            self.alarmed = False
        return False

    def summary(self) -> str:
        total = len(self._errors) + len(self._good)
        return f"{len(self._errors)} of {total} frames bad in the last {self._window:g} s"


class CommWatch:
    """No valid reading for ``limit_s`` is a communication loss (reported once per outage)."""

    def __init__(self, limit_s: float) -> None:
        self._limit = limit_s
        self._last: float | None = None
        self.lost = False

    def heard(self, now: float) -> None:
        self._last = now
        self.lost = False

    def start(self, now: float) -> None:
        if self._last is None:
            self._last = now

    def deadline(self) -> float | None:
        if self._last is None or self.lost:
            return None
        return self._last + self._limit

    def expired(self, now: float) -> float | None:
        """Silence in seconds when the loss has just begun, else None."""
        deadline = self.deadline()
        if deadline is None or self._last is None or now < deadline:
            return None
        self.lost = True
        return now - self._last
