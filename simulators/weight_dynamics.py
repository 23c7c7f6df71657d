"""What a weighbridge shows while a truck drives on and stops: a pure, seeded generator.

Sourced shape (research/weighing.md section 3): body heave 1-3 Hz decaying over a few
seconds, wheel hop 10-15 Hz, dynamic axle load while rolling, indicator noise about 1 e,
display rounded to e. Amplitudes, ramps, damping and fault rates are assumptions to be
replaced by recorded lane traces.

``DeckDynamics`` turns a static load (and whether the truck rolls) into displayed values one
sample at a time, for the live simulator. ``generate_truck_trace`` builds a whole truck with
ground truth and one named fault, for tests and the bench.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulators.errors import SimulatorSetupError

HEAVE_HZ = (1.0, 3.0)
HEAVE_FRACTION = (0.005, 0.03)
HEAVE_TAU_S = (0.7, 1.7)
HOP_HZ = (10.0, 15.0)
HOP_FRACTION = 0.002
HOP_TAU_S = (0.15, 0.4)
ROLLING_FRACTION = (0.005, 0.015)
NOISE_E = 0.4
SETTLE_S = 0.15
CHANGE_LEVERAGE = 10.0
ADC_SUBSAMPLES = 4
KICK_INTERVAL_S = 0.25
KICK_FRACTION = (0.002, 0.008)
KICK_MIN_E = (3.0, 6.0)
ROCKING_INTERVAL_S = 0.15
ROCKING_STRENGTH = 2.5
# A stalled indicator output (research: 5-30 s). The stalls generated here last long enough
# to be due for a report by a watcher that waits 6 s and 50 frames (10 s at 5 Hz); shorter
# ones are a still display, not a detectable freeze. They begin anywhere from the empty deck
# to long after the stop and may end before the trace does (the output comes back live).
FREEZE_PHASES = ("empty", "ramp", "settling", "standing")
FREEZE_S = (11.0, 25.0)
# A stall is only recognisable on a scale seen flickering before it, so the lane idles with a
# live indicator for a while before these trucks (a lane's watcher runs for days; a generated
# trace otherwise starts a few seconds, at 5 Hz a dozen frames, before the truck).
FREEZE_LEAD_S = 6.0

FAULTS = (
    "clean", "person", "step", "drift", "frozen", "zero_offset", "negative", "not_on_deck",
    "unstable", "overload", "comm_loss", "checksum", "swapped", "declared",
)
EXPECTED_CODES: dict[str, frozenset[str]] = {
    "clean": frozenset(),
    "person": frozenset({"weight.step_while_stationary"}),
    "step": frozenset({"weight.step_while_stationary"}),
    "drift": frozenset({"weight.zero_drift"}),
    "frozen": frozenset({"weight.frozen"}),
    "zero_offset": frozenset({"weight.zero_out_of_band"}),
    "negative": frozenset({"weight.negative"}),
    "not_on_deck": frozenset({"weight.not_on_deck"}),
    "unstable": frozenset({"weight.unstable_timeout"}),
    "overload": frozenset({"weight.overload"}),
    "comm_loss": frozenset({"weight.comm_loss"}),
    "checksum": frozenset({"weight.checksum_errors"}),
    "swapped": frozenset({"weight.implausible_jump"}),
    "declared": frozenset({"weight.declared_mismatch"}),
}
# Codes a fault may bring along legitimately (a zero far off is also out of band, etc.).
ALSO_ALLOWED: dict[str, frozenset[str]] = {
    "negative": frozenset({"weight.zero_out_of_band", "weight.declared_mismatch"}),
    "zero_offset": frozenset({"weight.declared_mismatch"}),
    "frozen": frozenset({"weight.step_while_stationary", "weight.declared_mismatch"}),
    "unstable": frozenset({"weight.not_on_deck"}),
    "person": frozenset({"weight.zero_drift"}),
    "step": frozenset({"weight.zero_drift"}),
    "drift": frozenset({"weight.step_while_stationary"}),
}


@dataclass
class _Mode:
    start: float
    amplitude: float
    omega: float
    decay: float
    phase: float


@dataclass
class DeckDynamics:
    """Static load in, displayed load out, one sample at a time (state: the ringing modes).

    A truck's body has its own heave frequency and damping: every excitation while it is on
    the deck rings that same mode (drawn afresh when the deck is empty again).
    """

    e_kg: float
    rng: np.random.Generator
    noise_e: float = NOISE_E
    zero_kg: float = 0.0
    _modes: list[_Mode] = field(default_factory=list)
    _last_static: float | None = None
    _changed_at: float | None = None
    _change_from: float = 0.0
    _rolling: bool = False
    _rolling_modes: list[tuple[float, float, float]] = field(default_factory=list)

    _body: tuple[float, float, float, float] | None = None

    def _new_body(self) -> tuple[float, float, float, float]:
        """(heave rad/s, heave decay 1/s, hop rad/s, hop decay 1/s) of the truck on the deck."""
        return (
            2 * math.pi * self.rng.uniform(*HEAVE_HZ),
            1.0 / self.rng.uniform(*HEAVE_TAU_S),
            2 * math.pi * self.rng.uniform(*HOP_HZ),
            1.0 / self.rng.uniform(*HOP_TAU_S),
        )

    def _excite(self, now: float, load: float, change: float) -> None:
        """Ring the body: a fraction of the load, less for a change much smaller than the
        load (a person stepping on does not bounce a 40 t truck)."""
        if self._body is None:
            self._body = self._new_body()
        heave, heave_decay, hop, hop_decay = self._body
        phase = self.rng.uniform(0, 2 * math.pi)
        scale = min(abs(load), CHANGE_LEVERAGE * abs(change))
        self._modes.append(
            _Mode(now, scale * self.rng.uniform(*HEAVE_FRACTION), heave, heave_decay, phase)
        )
        hop_amplitude = scale * HOP_FRACTION * self.rng.uniform(1.0, 1.5)
        self._modes.append(_Mode(now, hop_amplitude, hop, hop_decay, phase))

    def load(self, now: float, static_kg: float, *, rolling: bool = False) -> float:
        """The deck's true (unrounded, noise-free) load at ``now``."""
        last = self._last_static
        if last is not None and abs(static_kg - last) > 0.01 * self.e_kg:
            if self._changed_at is None:
                self._change_from = last
            self._changed_at = now
        if self._changed_at is not None and now - self._changed_at >= SETTLE_S:
            self._changed_at = None
            # each load change sets the truck swinging
            self._excite(now, static_kg, static_kg - self._change_from)
        if self._rolling and not rolling:
            self._excite(now, static_kg, static_kg)  # braking to a stop pitches the body
        if rolling and not self._rolling:
            self._rolling_modes = [
                (self.rng.uniform(3, 20), self.rng.uniform(0, 2 * math.pi),
                 self.rng.uniform(*ROLLING_FRACTION)) for _ in range(3)
            ]
        self._rolling = rolling
        self._last_static = static_kg
        if abs(static_kg) < 5 * self.e_kg:
            # No wheel on the deck: the departed truck's swinging body no longer loads it,
            # and the next truck swings its own way.
            self._modes.clear()
            self._body = None
        value = static_kg + self.zero_kg
        alive = []
        for mode in self._modes:
            age = now - mode.start
            envelope = mode.amplitude * math.exp(-mode.decay * age)
            if envelope > 0.01 * self.e_kg:
                alive.append(mode)
                value += envelope * math.cos(mode.omega * age + mode.phase)
        self._modes = alive
        if rolling:
            for hz, phase, fraction in self._rolling_modes:
                value += static_kg * fraction * math.sin(2 * math.pi * hz * now + phase) / 1.7
        return value

    def kick(self, now: float, static_kg: float, strength: float = 1.0) -> None:
        """Give the body a push: a deck joint under a rolling wheel, a rocking cab."""
        if self._body is None:
            self._body = self._new_body()
        heave, heave_decay, _, _ = self._body
        amplitude = strength * max(abs(static_kg) * self.rng.uniform(*KICK_FRACTION),
                                   self.rng.uniform(*KICK_MIN_E) * self.e_kg)
        phase = self.rng.uniform(0, 2 * math.pi)
        self._modes.append(_Mode(now, amplitude, heave, heave_decay, phase))

    def display(
        self, now: float, static_kg: float, *, rolling: bool = False, period_s: float = 0.0
    ) -> float:
        """What the indicator shows: the load averaged over its conversion period (the A/D
        integrates, which also keeps fast wheel hop from aliasing), plus noise, rounded to e."""
        steps = ADC_SUBSAMPLES if period_s > 0 else 1
        mean = sum(
            self.load(now - period_s * k / steps, static_kg, rolling=rolling)
            for k in range(steps - 1, -1, -1)
        ) / steps
        noisy = mean + self.rng.normal(0, self.noise_e * self.e_kg)
        return round(noisy / self.e_kg) * self.e_kg


@dataclass(frozen=True)
class TruckTrace:
    """One truck on the deck, with ground truth."""

    t: np.ndarray
    kg: np.ndarray
    front_clear: np.ndarray
    rear_clear: np.ndarray
    truth_kg: float
    stop_at: float
    fault: str
    expected: frozenset[str]
    frame_errors: tuple[float, ...] = ()
    declared_kg: float | None = None
    frozen: tuple[float, float] | None = None
    """The output repeats one frame from the first time to (not including) the second."""
    rate_hz: float = 10.0
    e_kg: float = 20.0

    def rows(self) -> list[tuple[float, float, int, int]]:
        return [
            (float(t), float(k), int(f), int(r))
            for t, k, f, r in zip(self.t, self.kg, self.front_clear, self.rear_clear, strict=True)
        ]


def _ramp(x: np.ndarray) -> np.ndarray:
    """Smooth 0..1 ramp (a tyre rolling over the deck edge)."""
    x = np.clip(x, 0.0, 1.0)
    ramp: np.ndarray = x * x * (3 - 2 * x)
    return ramp


def _swap_digits(value: float, rng: np.random.Generator, min_jump: float) -> float | None:
    """``value`` with two of its digits swapped, changed by at least ``min_jump``."""
    digits = list(f"{round(abs(value)):06d}")
    options = []
    for i in range(6):
        for j in range(i + 1, 6):
            swapped = digits.copy()
            swapped[i], swapped[j] = swapped[j], swapped[i]
            candidate = float("".join(swapped))
            if abs(candidate - abs(value)) >= min_jump:
                options.append(math.copysign(candidate, value))
    return options[int(rng.integers(len(options)))] if options else None


@dataclass(frozen=True)
class _Timeline:
    """When the truck's axles roll on, when it stops, when the trace ends (and stalls)."""

    gross: float
    shares: np.ndarray
    arrivals: np.ndarray
    ramps: np.ndarray
    rear_clear_at: float
    stop_at: float
    end: float
    frozen: tuple[float, float] | None


def _timeline(
    rng: np.random.Generator, fault: str, *, e_kg: float, max_kg: float, after_stop_s: float
) -> _Timeline:
    gross = rng.uniform(8000, 0.92 * max_kg)
    if fault == "overload":
        gross = rng.uniform(max_kg + 20 * e_kg, max_kg * 1.15)
    axles = int(rng.integers(2, 6))
    shares = rng.uniform(0.6, 1.4, axles)
    shares[0] *= 0.6
    shares /= shares.sum()
    empty_s = rng.uniform(2.0, 4.0)
    freeze_phase = ""
    if fault == "frozen":
        freeze_phase = FREEZE_PHASES[int(rng.integers(len(FREEZE_PHASES)))]
        empty_s += FREEZE_LEAD_S
    arrivals = empty_s + np.concatenate([[0.0], np.cumsum(rng.uniform(1.0, 3.5, axles - 1))])
    ramps = rng.uniform(0.3, 1.0, axles)
    last_on = float(arrivals[-1] + ramps[-1])
    rear_clear_at = last_on + rng.uniform(0.3, 1.0)
    stop_at = max(last_on + rng.uniform(0.8, 3.0), rear_clear_at + 0.2)
    end = stop_at + (after_stop_s + 8 if fault == "unstable" else after_stop_s)
    frozen: tuple[float, float] | None = None
    if fault == "frozen":
        onset = {
            "empty": (empty_s - 2.0, empty_s - 0.2),
            "ramp": (float(arrivals[0]), last_on),
            "settling": (stop_at - 1.0, stop_at + 2.0),
            "standing": (stop_at + 2.0, stop_at + 6.0),
        }[freeze_phase]
        frozen_at = float(rng.uniform(*onset))
        frozen = (frozen_at, frozen_at + float(rng.uniform(*FREEZE_S)))
        end = max(end, frozen[1] + 2.0)
    return _Timeline(gross, shares, arrivals, ramps, rear_clear_at, stop_at, end, frozen)


def _load_fault(
    rng: np.random.Generator,
    fault: str,
    dyn: DeckDynamics,
    static: np.ndarray,
    t: np.ndarray,
    stop_at: float,
) -> None:
    """What ``fault`` does to the deck's load itself (``static`` changes in place)."""
    e_kg = dyn.e_kg
    after = rng.uniform(3.0, 8.0)
    if fault == "zero_offset":
        dyn.zero_kg = float(rng.choice([-1, 1]) * rng.uniform(2.0, 8.0) * e_kg)
    elif fault == "negative":
        dyn.zero_kg = -rng.uniform(25.0, 60.0) * e_kg
    elif fault == "person":
        static += rng.uniform(60, 100) * _ramp((t - stop_at - after) / 0.4)
    elif fault == "step":
        static += rng.choice([-1, 1]) * rng.uniform(10, 50) * e_kg * (t >= stop_at + after)
    elif fault == "drift":
        start = stop_at + rng.uniform(1.0, 3.0)
        static += rng.uniform(2.5, 5.0) * e_kg / 10.0 * np.clip(t - start, 0, None)


def _kicks(
    rng: np.random.Generator, fault: str, first_axle: float, stop_at: float, end: float
) -> list[tuple[float, float]]:
    """(time, strength) of each push on the truck's body.

    A rolling truck keeps getting pushed (deck joints, steering, brakes); so does one whose
    driver keeps inching ("unstable"). Only a stopped truck swings freely down to rest.
    """
    kicks = [(k, 1.0) for k in first_axle - 1.0 + np.cumsum(rng.exponential(KICK_INTERVAL_S, 400))
             if k < stop_at]  # fmt: skip
    if fault == "unstable":  # someone keeps the truck rocking hard: it never settles
        rocking = stop_at + 0.5 + np.cumsum(rng.exponential(ROCKING_INTERVAL_S, 400))
        kicks += [(k, ROCKING_STRENGTH) for k in rocking if k < end]
    return kicks


def _display(
    dyn: DeckDynamics,
    t: np.ndarray,
    static: np.ndarray,
    rolling: np.ndarray,
    kicks: list[tuple[float, float]],
    rate_hz: float,
) -> np.ndarray:
    """The indicator's reading at each sample time."""
    kg = np.empty(len(t))
    for i, (ti, si, ri) in enumerate(zip(t, static, rolling, strict=True)):
        while kicks and kicks[0][0] <= ti:
            at, strength = kicks.pop(0)
            if si > 20 * dyn.e_kg:  # only a truck standing on the deck can swing it
                dyn.kick(float(at), float(si), strength)
        kg[i] = dyn.display(float(ti), float(si), rolling=bool(ri), period_s=1.0 / rate_hz)
    return kg


def _output_fault(
    rng: np.random.Generator,
    fault: str,
    kg: np.ndarray,
    t: np.ndarray,
    line: _Timeline,
    *,
    rate_hz: float,
    e_kg: float,
) -> tuple[tuple[float, ...], np.ndarray]:
    """What ``fault`` does to the indicator's output (``kg`` changes in place): the times of
    frames that fail their check, and which samples arrive at all."""
    n, stop_at = len(t), line.stop_at
    frame_errors: tuple[float, ...] = ()
    keep = np.ones(n, dtype=bool)
    if line.frozen is not None:
        stalled = (t >= line.frozen[0]) & (t < line.frozen[1])
        kg[stalled] = kg[int(np.argmax(stalled))]
    elif fault == "comm_loss":
        gap_start = stop_at + rng.uniform(2.0, 6.0)
        keep &= ~((t >= gap_start) & (t < gap_start + rng.uniform(3.0, 8.0)))
    elif fault == "checksum":
        bad = (t >= stop_at + rng.uniform(-2.0, 4.0)) & (rng.random(n) < rng.uniform(0.1, 0.3))
        frame_errors = tuple(float(x) for x in t[bad])
        keep &= ~bad
    elif fault == "swapped":
        for _ in range(int(rng.integers(1, 3))):
            i = int((stop_at + rng.uniform(2.0, 8.0)) * rate_hz)
            swapped = _swap_digits(float(kg[i]), rng, 25 * e_kg)
            if swapped is not None:
                kg[i] = swapped
    return frame_errors, keep


DeckFactory = Callable[[float, np.random.Generator], DeckDynamics]
"""(e_kg, the trace's generator) -> the deck a trace is shown on."""


def generate_truck_trace(
    seed: int,
    *,
    fault: str = "clean",
    rate_hz: float = 10.0,
    e_kg: float = 20.0,
    max_kg: float = 60000.0,
    after_stop_s: float = 15.0,
    deck: DeckFactory | None = None,
) -> TruckTrace:
    """A seeded trace of one truck driving on, stopping and standing, with ``fault``.

    Every step draws from one generator in a fixed order: a seed always gives the same trace.
    ``deck`` swaps in other deck dynamics (simulators.dynamics_family); the default is ours.
    """
    if fault not in FAULTS:
        known = ", ".join(FAULTS)
        raise SimulatorSetupError(f"unknown fault {fault!r}; known: {known}")
    rng = np.random.default_rng(seed)
    line = _timeline(rng, fault, e_kg=e_kg, max_kg=max_kg, after_stop_s=after_stop_s)
    n = int(line.end * rate_hz)
    t = np.arange(n) / rate_hz + rng.uniform(0, 0.002, n)
    final = line.shares.copy()
    rear_clear_at = line.rear_clear_at
    if fault == "not_on_deck":
        final[-1] *= rng.uniform(0.3, 0.7)  # the rear axle stays on the approach
        rear_clear_at = math.inf
    static = np.zeros(n)
    for share, arrive, ramp in zip(final, line.arrivals, line.ramps, strict=True):
        static += line.gross * share * _ramp((t - arrive) / ramp)
    truth = line.gross * float(final.sum())
    dyn = DeckDynamics(e_kg, rng) if deck is None else deck(e_kg, rng)
    _load_fault(rng, fault, dyn, static, t, line.stop_at)
    first_axle = float(line.arrivals[0])
    rolling = (t >= first_axle - 1.0) & (t < line.stop_at)
    kicks = _kicks(rng, fault, first_axle, line.stop_at, line.end)
    kg = _display(dyn, t, static, rolling, kicks, rate_hz)
    frame_errors, keep = _output_fault(rng, fault, kg, t, line, rate_hz=rate_hz, e_kg=e_kg)
    front = np.ones(n, dtype=bool)
    rear = ~((t >= first_axle - 0.3) & (t < rear_clear_at))
    declared = truth
    if fault == "declared":
        declared = truth * (1 + rng.choice([-1, 1]) * rng.uniform(0.03, 0.08))
    return TruckTrace(
        t=t[keep], kg=kg[keep], front_clear=front[keep], rear_clear=rear[keep],
        truth_kg=truth, stop_at=float(line.stop_at), fault=fault, expected=EXPECTED_CODES[fault],
        frame_errors=frame_errors, declared_kg=round(declared), frozen=line.frozen,
        rate_hz=rate_hz, e_kg=e_kg,
    )
