"""Small detectors used by the weight watcher; each is pure arithmetic on times and values."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from edge_agent.weighing.events import NEGATIVE, NET_READING, ZERO_OUT_OF_BAND, Evidence

if TYPE_CHECKING:
    from edge_agent.weighing.fit import FloatArray

# A jump this large relative to the load (plus 50 e) cannot be a physical load change
# between two frames, whatever the digits look like.
IMPOSSIBLE_JUMP_FRACTION = 0.25
SPIKE_MIN_E = 10.0
SPIKE_TYPICAL_FACTOR = 8.0
# The garbled frame carries the digits of the weight at its own instant, which the display
# noise may have put an e away from its neighbours.
DIGIT_NOISE_E = 1
RATE_CONFIDENCE_Z = 1.64  # one-sided 95 %


def same_digits(a: float, b: float) -> bool:
    """True when ``a`` and ``b`` differ but are written with the same digits.

    Order-blind checksums (the Yaohua XOR) pass such frames, so an isolated one among
    neighbours that agree is corruption, not weight.
    """
    if a == b:
        return False
    return sorted(f"{abs(a):.3f}") == sorted(f"{abs(b):.3f}")


def is_spike(
    before: float, middle: float, after: float, e_kg: float, *, typical_step: float = 0.0,
    digit_noise_e: int = 0,
) -> bool:
    """Is ``middle`` an isolated corrupt sample between two samples that agree?

    ``typical_step`` is the usual change between consecutive samples just before: a deck
    still swinging hard makes big jumps of its own, and they are not corruption.
    ``middle`` counts as garbled when it is written with the digits of a value within
    ``digit_noise_e`` e of a neighbour (see DIGIT_NOISE_E).
    """
    jump = min(abs(middle - before), abs(middle - after))
    if jump < max(SPIKE_MIN_E * e_kg, SPIKE_TYPICAL_FACTOR * typical_step):
        return False
    if abs(after - before) > max(2 * e_kg, 0.2 * jump):
        return False
    impossible = IMPOSSIBLE_JUMP_FRACTION * max(abs(before), abs(after)) + 50 * e_kg
    return jump > impossible or any(
        same_digits(middle, near + k * e_kg)
        for near in (before, after) for k in range(-digit_noise_e, digit_noise_e + 1)
    )


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


class FlickerWatch:
    """Does the display's last digit dance while the load holds still?

    Learnt from sample-to-sample steps of at most one e on a deck known to be steady (empty,
    or a truck at rest after its commit). A scale that flickers cannot show one value for
    long, so a long identical run on it is a stalled output; a scale that rounds a quiet
    signal to a steady display can, and tells nothing by its stillness. The evidence is kept
    over many empty-deck spells, not just the last second, because a slow indicator shows
    only a handful of frames per second.
    """

    def __init__(self, history: int, min_rate: float) -> None:
        self._steps: deque[bool] = deque(maxlen=history)
        self._changes = 0
        self._min_rate = min_rate

    def add(self, before: float, after: float, e_kg: float) -> None:
        """One step between consecutive readings on a steady deck (bigger ones are load)."""
        if abs(after - before) > e_kg:
            return
        if len(self._steps) == self._steps.maxlen:
            self._changes -= self._steps[0]
        changed = after != before
        self._steps.append(changed)
        self._changes += changed

    @property
    def flickers(self) -> bool:
        return self._changes > 0 and self._changes >= self._min_rate * len(self._steps)

    def implausible_run(self, chance: float, shortest: int, longest: int) -> int | None:
        """The shortest run of identical readings this scale shows by luck with less than
        ``chance``, clamped to ``shortest``..``longest``; None when it does not flicker.

        Judged on a low estimate of the change rate (a handful of empty-deck frames can
        make a scale look livelier than it is).
        """
        if not self.flickers:
            return None
        n = len(self._steps)
        rate = self._changes / n
        z2 = RATE_CONFIDENCE_Z**2
        spread = RATE_CONFIDENCE_Z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n))
        low = (rate + z2 / (2 * n) - spread) / (1 + z2 / n)  # Wilson score lower bound
        if low >= 1.0:
            return shortest
        if low <= 0.0:
            return longest
        run = 2 + math.floor(math.log(chance) / math.log(1.0 - low))
        return min(longest, max(shortest, run))


def as_evidence(t: FloatArray, x: FloatArray) -> Evidence:
    """The samples ``t``, ``x`` as an abnormality's evidence."""
    return tuple(zip(t.tolist(), x.tolist(), strict=True))


class ScaleCondition:
    """What the empty deck showed that the next truck's weight would rest on.

    A zero out of band (or negative) or a net display does not go away when a truck drives
    on: the truck is read on that same zero. Each finding is kept with the samples it rests
    on until a steady empty-deck zero in band is seen from gross readings. Findings are
    refreshed at every steady frame; their text and evidence are made only in ``carried``.
    """

    def __init__(self) -> None:
        # code -> (detail template, its arguments, sample times, sample values)
        self._found: dict[str, tuple[str, tuple[float, ...], FloatArray, FloatArray]] = {}

    def __contains__(self, code: str) -> bool:
        return code in self._found

    def zero_seen(
        self, at: float, zero: float, t: FloatArray, x: FloatArray, *,
        band_kg: float, negative_kg: float,
    ) -> None:
        """A steady empty-deck zero from gross readings; it replaces the zero seen before."""
        self._found.pop(ZERO_OUT_OF_BAND, None)
        self._found.pop(NEGATIVE, None)
        if abs(zero) <= band_kg:
            self._found.clear()  # gross and in band: the scale is fine again
            return
        seen = "empty-deck zero {:.0f} kg seen at {:.1f} s"
        self._found[ZERO_OUT_OF_BAND] = (seen + " outside +-{:g} kg", (zero, at, band_kg), t, x)
        if zero <= negative_kg:
            self._found[NEGATIVE] = (seen + " below {:g} kg", (zero, at, negative_kg), t, x)

    def net_seen(self, at: float, shown: float | None, t: FloatArray, x: FloatArray) -> None:
        """The indicator sent net (tare-subtracted) readings."""
        if shown is None:
            self._found[NET_READING] = ("net readings (no number) seen at {:.1f} s", (at,), t, x)
        else:
            template = "net readings ({:.0f} kg) seen at {:.1f} s"
            self._found[NET_READING] = (template, (shown, at), t, x)

    def carried(self) -> list[tuple[str, str, Evidence]]:
        """(code, detail, evidence) of every finding a truck arriving now would rest on."""
        return [
            (code, f"carried over: {template.format(*args)}; no steady gross zero in band since",
             as_evidence(t, x))
            for code, (template, args, t, x) in self._found.items()
        ]
