"""A family of plausible weighbridge dynamics, drawn per truck, around ``weight_dynamics``.

``weight_dynamics`` is one model of a deck: one heave mode of 1-3 Hz that dies within a
couple of seconds, wheel hop averaged away by an integrating A/D. Real decks and indicators
differ, so this module draws, per truck, a deck from a wider family:

  * one or two heave modes (bounce and pitch), 0.8-4 Hz, damping ratio 0.03-0.4;
  * wheel hop 8-18 Hz read by an A/D that integrates only part of the output period, so at
    5 Hz it aliases into slow ghosts;
  * rolling vibration 1-20 Hz while the truck moves, engine idle while it stands;
  * load-cell creep after each load change (the reading approaches the load over seconds);
  * an indicator's own low-pass filter before the display;
  * 5-25 Hz output rate, noise 0.2-0.6 e, display rounded to e.

Timeline, faults, beams and ground truth are those of ``generate_truck_trace``: only the deck
that shows the load changes. Every figure here is an assumption spanning the research notes'
ranges, to be narrowed by recorded lane traces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from simulators.weight_dynamics import (
    HEAVE_FRACTION,
    DeckDynamics,
    TruckTrace,
    _Mode,
    generate_truck_trace,
)

INTERNAL_HZ = 200.0  # the indicator's internal conversion rate, before filter and output
STREAM = 0x5EED  # the family's draws come from a generator of their own: see family_params


@dataclass(frozen=True, slots=True)
class HeaveMode:
    freq_hz: float
    damping: float
    """Damping ratio (share of critical damping)."""
    share: float
    """Share of each excitation that goes into this mode."""


@dataclass(frozen=True, slots=True)
class DeckParams:
    """One truck on one deck behind one indicator."""

    modes: tuple[HeaveMode, ...]
    hop_hz: float
    hop_tau_s: float
    hop_fraction: float
    conversion: float
    """Share of the output period the A/D integrates (1: no aliasing, small: a point sample)."""
    filter_tau_s: float
    """Time constant of the indicator's first-order low-pass filter (0: none)."""
    rolling_fraction: tuple[float, float]
    rolling_hz: tuple[float, float]
    idle_e: float
    """Engine idle vibration amplitude while the truck stands, in e."""
    idle_hz: float
    creep_e: float
    """Creep lag right after a full-load change, in e; it decays over ``creep_tau_s``."""
    creep_tau_s: float
    rate_hz: float
    noise_e: float


@dataclass(frozen=True, slots=True)
class Corner:
    """Ranges one truck's parameters are drawn from (a corner of the family, or all of it)."""

    name: str
    modes: tuple[int, ...] = (1, 2)
    damping: tuple[float, float] = (0.03, 0.4)
    freq_hz: tuple[float, float] = (0.8, 4.0)
    rate_hz: tuple[float, float] = (5.0, 25.0)
    conversion: tuple[float, float] = (0.05, 1.0)
    filter_tau_s: tuple[float, float] = (0.0, 0.0)
    rolling_fraction: tuple[float, float] = (0.005, 0.015)
    rolling_hz: tuple[float, float] = (3.0, 20.0)
    idle_e: tuple[float, float] = (0.0, 0.0)
    creep_e: tuple[float, float] = (0.0, 0.0)
    creep_tau_s: tuple[float, float] = (3.0, 15.0)
    noise_e: tuple[float, float] = (0.2, 0.6)


FAMILY = Corner(
    "family", filter_tau_s=(0.0, 0.3), rolling_fraction=(0.005, 0.03), rolling_hz=(1.0, 20.0),
    idle_e=(0.0, 0.8), creep_e=(0.0, 0.8),
)
"""The whole family: every range at once."""


def corners() -> list[Corner]:
    """The bench's corners: damping x frequency x modes x rate, then one feature each."""
    out = []
    for modes in (1, 2):
        for rate in (5.0, 25.0):
            for damp_name, damping in (("low", (0.03, 0.06)), ("high", (0.25, 0.4))):
                for freq_name, freq in (("low", (0.8, 1.2)), ("high", (3.0, 4.0))):
                    out.append(Corner(
                        f"{modes}m {rate:g}Hz z-{damp_name} f-{freq_name}", modes=(modes,),
                        damping=damping, freq_hz=freq, rate_hz=(rate, rate)))
    mid = Corner("mid", damping=(0.08, 0.25), freq_hz=(1.2, 3.0))
    out += [
        replace(mid, name="creep", creep_e=(0.4, 0.8)),
        replace(mid, name="rolling vibration", rolling_fraction=(0.015, 0.03),
                rolling_hz=(1.0, 20.0), idle_e=(0.3, 0.8)),
        replace(mid, name="indicator filter", filter_tau_s=(0.1, 0.3)),
        FAMILY,
    ]
    return out


def _uniform(rng: np.random.Generator, span: tuple[float, float]) -> float:
    return float(rng.uniform(*span)) if span[1] > span[0] else float(span[0])


def draw_params(rng: np.random.Generator, corner: Corner = FAMILY) -> DeckParams:
    """One truck's deck, drawn from ``corner``'s ranges."""
    count = int(corner.modes[int(rng.integers(len(corner.modes)))])
    freqs = [_uniform(rng, corner.freq_hz)]
    if count == 2:
        # A second mode (pitch) well apart from the first: two close modes beat as one.
        low, high = corner.freq_hz
        other = _uniform(rng, (low, high))
        while abs(math.log(other / freqs[0])) < math.log(1.25) and high / low > 1.6:
            other = _uniform(rng, (low, high))
        if abs(math.log(other / freqs[0])) < math.log(1.25):
            other = freqs[0] * 1.3 if freqs[0] * 1.3 <= 4.5 else freqs[0] / 1.3
        freqs.append(other)
    shares = [1.0] if count == 1 else [share := _uniform(rng, (0.4, 0.7)), 1.0 - share]
    modes = tuple(
        HeaveMode(freq, _uniform(rng, corner.damping), s) for freq, s in zip(freqs, shares,
                                                                            strict=True))
    return DeckParams(
        modes=modes,
        hop_hz=_uniform(rng, (8.0, 18.0)),
        hop_tau_s=_uniform(rng, (0.15, 0.6)),
        hop_fraction=_uniform(rng, (0.001, 0.003)),
        conversion=_uniform(rng, corner.conversion),
        filter_tau_s=_uniform(rng, corner.filter_tau_s),
        rolling_fraction=corner.rolling_fraction,
        rolling_hz=corner.rolling_hz,
        idle_e=_uniform(rng, corner.idle_e),
        idle_hz=_uniform(rng, (10.0, 30.0)),
        creep_e=_uniform(rng, corner.creep_e),
        creep_tau_s=_uniform(rng, corner.creep_tau_s),
        rate_hz=_uniform(rng, corner.rate_hz),
        noise_e=_uniform(rng, corner.noise_e),
    )


class FamilyDeck(DeckDynamics):
    """``DeckDynamics`` with the family's modes, aliasing, vibration, creep and filter."""

    def __init__(self, e_kg: float, rng: np.random.Generator, params: DeckParams,
                 *, full_load_kg: float = 40000.0) -> None:
        super().__init__(e_kg, rng, noise_e=params.noise_e)
        self.params = params
        self._full = full_load_kg
        self._creep_lag = 0.0
        self._creep_static: float | None = None
        self._filtered: float | None = None
        self._internal_at: float | None = None
        self._idle_phase = float(rng.uniform(0, 2 * math.pi))

    def _ring(self, now: float, amplitude: float, *, hop: float = 0.0) -> None:
        for mode in self.params.modes:
            omega_n = 2 * math.pi * mode.freq_hz
            omega = omega_n * math.sqrt(1 - mode.damping**2)
            phase = self.rng.uniform(0, 2 * math.pi)
            self._modes.append(
                _Mode(now, amplitude * mode.share, omega, mode.damping * omega_n, phase))
        if hop > 0:
            phase = self.rng.uniform(0, 2 * math.pi)
            self._modes.append(_Mode(now, hop, 2 * math.pi * self.params.hop_hz,
                                     1.0 / self.params.hop_tau_s, phase))

    def _excite(self, now: float, load: float, change: float) -> None:
        scale = min(abs(load), 10.0 * abs(change))
        heave = scale * self.rng.uniform(*HEAVE_FRACTION)
        self._ring(now, heave, hop=scale * self.params.hop_fraction * self.rng.uniform(1, 1.5))

    def kick(self, now: float, static_kg: float, strength: float = 1.0) -> None:
        amplitude = strength * max(abs(static_kg) * self.rng.uniform(0.002, 0.008),
                                   self.rng.uniform(3.0, 6.0) * self.e_kg)
        self._ring(now, amplitude)

    def load(self, now: float, static_kg: float, *, rolling: bool = False) -> float:
        if rolling and not self._rolling:
            # The family's own rolling vibration; the base then keeps it (it only draws when
            # a roll begins).
            p = self.params
            self._rolling_modes = [
                (float(self.rng.uniform(*p.rolling_hz)), float(self.rng.uniform(0, 2 * math.pi)),
                 float(self.rng.uniform(*p.rolling_fraction))) for _ in range(3)]
            self._rolling = True
        value = super().load(now, static_kg, rolling=rolling)
        # Creep: each load change is shown with a lag that dies away over seconds.
        if self._creep_static is not None and self.params.creep_e > 0:
            change = static_kg - self._creep_static
            self._creep_lag += change * self.params.creep_e * self.e_kg / self._full
        self._creep_static = static_kg
        value -= self._creep_lag
        standing = not rolling and abs(static_kg) > 20 * self.e_kg
        if standing and self.params.idle_e > 0:
            value += self.params.idle_e * self.e_kg * math.sin(
                2 * math.pi * self.params.idle_hz * now + self._idle_phase)
        return value

    def _step_internal(self, now: float, static_kg: float, rolling: bool) -> float:
        """Advance the A/D and the indicator filter to ``now``; the filtered value."""
        dt = 1.0 / INTERNAL_HZ
        raw = self.load(now, static_kg, rolling=rolling)
        previous = self._internal_at
        self._internal_at = now
        tau = self.params.filter_tau_s
        if self._filtered is None or tau <= 0 or previous is None:
            self._filtered = raw
        else:
            gain = 1.0 - math.exp(-max(now - previous, dt) / tau)
            self._filtered += gain * (raw - self._filtered)
        if self.params.creep_e > 0:
            self._creep_lag *= math.exp(-max(now - (previous or now), 0.0)
                                        / self.params.creep_tau_s)
        return self._filtered

    def display(
        self, now: float, static_kg: float, *, rolling: bool = False, period_s: float = 0.0
    ) -> float:
        """The A/D runs at ``INTERNAL_HZ`` since the last output; the output is the mean of
        the filtered values over the integrated share of the period, plus noise, rounded."""
        dt = 1.0 / INTERNAL_HZ
        start = now - period_s if self._internal_at is None else self._internal_at
        steps = max(1, round((now - start) / dt))
        times = [now - dt * k for k in range(steps - 1, -1, -1)]
        window = self.params.conversion * period_s
        values = [(at, self._step_internal(at, static_kg, rolling)) for at in times]
        integrated = [v for at, v in values if at >= now - window - 1e-9] or [values[-1][1]]
        mean = sum(integrated) / len(integrated)
        noisy = mean + self.rng.normal(0, self.noise_e * self.e_kg)
        return round(noisy / self.e_kg) * self.e_kg


def family_params(seed: int, corner: Corner = FAMILY) -> DeckParams:
    """The deck a family trace of ``seed`` is shown on (its own generator: the timeline and
    faults draw as in ``generate_truck_trace``)."""
    return draw_params(np.random.default_rng((STREAM, seed)), corner)


def generate_family_trace(
    seed: int,
    *,
    corner: Corner = FAMILY,
    fault: str = "clean",
    e_kg: float = 20.0,
    max_kg: float = 60000.0,
    after_stop_s: float = 15.0,
) -> tuple[TruckTrace, DeckParams]:
    """A seeded truck of ``generate_truck_trace`` shown on a deck drawn from ``corner``."""
    params = family_params(seed, corner)

    def deck(e: float, rng: np.random.Generator) -> DeckDynamics:
        return FamilyDeck(e, rng, params)

    trace = generate_truck_trace(seed, fault=fault, rate_hz=params.rate_hz, e_kg=e_kg,
                                 max_kg=max_kg, after_stop_s=after_stop_s, deck=deck)
    return trace, params
