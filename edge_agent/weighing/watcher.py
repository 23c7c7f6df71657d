"""The weight watcher: readings in, truck weight and abnormalities out (time is a parameter).

Invariants:
  * A weight is committed only while both deck beams are clear, after the last axle ramp
    ended, and only when the samples since then are explained by a resting truck (a constant
    plus a decaying swing, residual at noise level). A rolling truck does not fit that model,
    so nothing is committed while it moves.
  * A stalled output is never weighed. A scale whose display has been seen to flicker on a
    steady deck cannot repeat one value for long, so on such a scale a weight, zero or level
    is judged only at a frame that differs from the one before (proof that the output is
    live), and the repeats of a run too long for the scale are left out of every estimate.
    The first frames of a stall look like a quiet display; they never decide anything.
    On a scale never seen to flicker a stall cannot be told from stillness.
  * A net (tare-subtracted) reading is never weighed: no weight, zero or level is judged on
    net frames or across a net/gross switch. Net frames still tell a loaded deck from an
    empty one, and are an abnormality of their own.
  * After the commit the watcher keeps watching; a step, drift, freeze, overload, net frame,
    frame-error burst or silence still raises an abnormality, and the lane turns its decision
    to hold.
  * A scale fault seen on the empty deck is the next truck's too: while the last empty-deck
    zero is out of band (or negative), or net frames came with no gross zero in band since,
    a truck gets that abnormality right after its TruckOnDeck. Only a steady empty-deck zero
    in band from live gross frames clears it; one out of band counts even on repeats.
  * Every abnormality carries the samples it rests on. Each code is raised once per truck
    (per empty-deck spell for zero and net checks, per outage for communication loss).

States: EMPTY -> LOADING (TruckOnDeck) -> COMMITTED (WeightCommitted) -> LEAVING -> EMPTY
(DeckCleared). A truck backing off before the commit goes LOADING -> EMPTY.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import deque
from collections.abc import Callable
from enum import Enum

import numpy as np

from edge_agent.weighing import events as ev
from edge_agent.weighing.detectors import (
    DIGIT_NOISE_E,
    CommWatch,
    FlickerWatch,
    FrameErrorRate,
    ScaleCondition,
    as_evidence,
    is_spike,
)
from edge_agent.weighing.events import (
    DeckCleared,
    Evidence,
    ScaleConfig,
    TruckOnDeck,
    WeighEvent,
    WeightAbnormality,
    WeightCommitted,
)
from edge_agent.weighing.fit import FloatArray
from edge_agent.weighing.rest_checks import LevelTrack
from edge_agent.weighing.settle import OscillationSettler, Settler

HISTORY_S = 60.0
EVIDENCE_S = 5.0
ZERO_WINDOW_S = 1.2
ZERO_MIN_SAMPLES = 5
RAMP_LOOKBACK_S = 0.5
RAMP_FRACTION = 0.08
RAMP_MIN_E = 25.0
STEP_WINDOW_S = 1.0
LEAVING_FRACTION = 0.9
FLAT_NOISE_FACTOR = 2.0
FLAT_MIN_E = 0.6
FLAT_HISTORY = 200
FLICKER_HISTORY = 600
FLICKER_MIN_RATE = 0.1
UNDERLOAD_E = 20.0
SPIKE_CONTEXT = 10
OFF_DECK_GAP_S = 2.0  # at 5 Hz a fit over a dozen frames now and then takes noise for a swing
OFF_DECK_PROBE_S = 0.2
STUCK_SAMPLES = 8
STUCK_CHANCE = 1e-3
FROZEN_MIN_SAMPLES = 50
# A deck still swinging after the commit is judged on the level its swing model gives.
SWING_LEVEL_S = 2.5
SWING_LEVEL_EVERY_S = 0.5
# Both beams clear, a truck may still roll the rest of the deck's length (up to about 3 s at a
# crawl). Behind an indicator filter its pushes can stay under the noise, so a window that shows
# no swing of its own proves no rest before then; a visible free swing does.
QUIET_REST_S = 3.0
SWING_EVIDENCE_E = 4.0


class DeckState(Enum):
    EMPTY = "empty"
    LOADING = "loading"
    COMMITTED = "committed"
    LEAVING = "leaving"


SettlerFactory = Callable[[ScaleConfig], Settler]


def oscillation_settler(scale: ScaleConfig) -> Settler:
    return OscillationSettler(scale.e_kg, scale.max_uncertainty_e * scale.e_kg)


class WeightWatcher:
    """Turns timestamped indicator readings and deck-beam states into weighing events."""

    def __init__(self, scale: ScaleConfig, *, settler: SettlerFactory | None = None) -> None:
        self._scale = scale
        self._e = scale.e_kg
        factory = settler or oscillation_settler
        self._settler = factory(scale)
        self._probe = factory(scale)  # same rule, ignoring the beams: "settled but off deck"
        self._t: deque[float] = deque()
        self._x: deque[float] = deque()
        self.state = DeckState.EMPTY
        self._state_since = -math.inf
        self._zero_ref: float | None = None
        self._episode_zero: float | None = None
        self._noise_kg: float | None = None
        self._front_clear = True
        self._rear_clear = True
        self._beams_clear_since = -math.inf
        self._on_deck_at = -math.inf
        self._ramp_end = -math.inf
        self._ref_level = 0.0
        self._flat_levels: deque[tuple[float, float]] = deque(maxlen=FLAT_HISTORY)
        self._committed: WeightCommitted | None = None
        self._blocked_settled_since: float | None = None
        self._blocked_settled_last = -math.inf
        self._last_probe = -math.inf
        self._raised: set[str] = set()
        self._overloaded = False
        self._last_motion: bool | None = None
        self._run_start = -math.inf
        self._stalls: deque[tuple[float, float]] = deque(maxlen=FLAT_HISTORY)
        self._flicker_watch = FlickerWatch(FLICKER_HISTORY, FLICKER_MIN_RATE)
        # How long a run of identical readings may grow before it is suspect, as the scale's
        # flicker before the current run began says (None = it did not flicker).
        self._run_suspect_at: int | None = None
        self._comm = CommWatch(scale.comm_loss_s)
        self._frames = FrameErrorRate(
            scale.checksum_window_s, scale.checksum_min_errors, scale.checksum_max_fraction
        )
        self._net = False  # the readings since _mode_since are net (tare subtracted)
        self._mode_since = -math.inf
        self._condition = ScaleCondition()
        self._swing = OscillationSettler(self._e, scale.max_uncertainty_e * self._e)
        self._last_swing_fit = -math.inf
        self._levels = LevelTrack(self._e)

    @property
    def scale(self) -> ScaleConfig:
        return self._scale

    def set_time_limits(
        self, *, unstable_timeout_s: float, not_on_deck_s: float, frozen_s: float
    ) -> None:
        """Change the watcher's time limits (a remote setting); they count from now on.

        Only the limits change: the scale's metrology, its learned zero, noise and flicker stay.
        """
        self._scale = dataclasses.replace(
            self._scale,
            unstable_timeout_s=unstable_timeout_s,
            not_on_deck_s=not_on_deck_s,
            frozen_s=frozen_s,
        )

    # ----------------------------------------------------------------- inputs
    def add_reading(
        self, now: float, kg: float | None, *, motion: bool | None = None,
        overload: bool = False, net: bool = False,
    ) -> list[WeighEvent]:
        """One decoded indicator frame that arrived at ``now`` (``net``: a tare subtracted)."""
        if self._t and now < self._t[-1]:
            now = self._t[-1]  # never let a clock step reorder the samples
        self._comm.start(now)
        self._comm.heard(now)
        self._frames.add(now, error=False)
        self._last_motion = motion
        out: list[WeighEvent] = []
        if kg is not None:
            if net != self._net:
                self._switch_mode(now, kg, net)
            if not self._x or kg != self._x[-1] or now - self._t[-1] > self._scale.comm_loss_s:
                if self._stuck():
                    # A run too long for this scale ended: its repeats (all but the first
                    # frame) may be a stalled output and are never weighed.
                    self._stalls.append((self._run_start, self._t[-1]))
                # Judge a run of identical readings by what the scale did before it began:
                # the run itself must not be able to talk the watcher out of suspecting it.
                self._run_start = now
                self._run_suspect_at = self._flicker_watch.implausible_run(
                    STUCK_CHANCE, STUCK_SAMPLES, FROZEN_MIN_SAMPLES)
            self._append(now, kg)
            self._check_spike(out, now)
            handler = {
                DeckState.EMPTY: self._on_empty,
                DeckState.LOADING: self._on_loading,
                DeckState.COMMITTED: self._on_committed,
                DeckState.LEAVING: self._on_leaving,
            }[self.state]
            handler(out, now, kg)
            self._check_frozen(out, now)
            if not net and kg <= -UNDERLOAD_E * self._e:
                self._raise(out, now, ev.NEGATIVE, f"reading {kg:g} kg below -20 e")
        if net:
            self._check_net(out, now, kg)
        # A value over capacity counts once it repeats: a lone one may be a corrupt frame.
        over = len(self._x) >= 2 and min(self._x[-1], self._x[-2]) > self._scale.overload_kg
        if overload or (kg is not None and over and self._x[-1] == kg):
            self._overloaded = True
            shown = "no number" if kg is None else f"{kg:g} kg"
            self._raise(out, now, ev.OVERLOAD, f"reading {shown} beyond Max + 9 e "
                        f"({self._scale.overload_kg:g} kg) or flagged out of range")
        return out

    def add_frame_error(self, now: float, reason: str) -> list[WeighEvent]:
        """A frame that failed its checks arrived at ``now``."""
        self._comm.start(now)
        out: list[WeighEvent] = []
        if self._frames.add(now, error=True):
            self._raise(out, now, ev.CHECKSUM_ERRORS,
                        f"{self._frames.summary()}; last: {reason}", once=False)
        return out

    def set_deck_beams(self, now: float, front_clear: bool, rear_clear: bool) -> list[WeighEvent]:
        """The deck position beams changed (True = nothing in the beam)."""
        self._comm.start(now)
        was_clear = self._front_clear and self._rear_clear
        self._front_clear, self._rear_clear = front_clear, rear_clear
        if front_clear and rear_clear and not was_clear:
            self._beams_clear_since = now
        elif not (front_clear and rear_clear):
            self._beams_clear_since = math.inf
            if self.state is DeckState.COMMITTED:
                self._enter(DeckState.LEAVING, now)
        return []

    def tick(self, now: float) -> list[WeighEvent]:
        """Run the timers: communication loss and the unstable timeout."""
        self._comm.start(now)
        out: list[WeighEvent] = []
        silence = self._comm.expired(now)
        if silence is not None:
            self._raise(out, now, ev.COMM_LOSS, f"no valid frame for {silence:.1f} s", once=False)
        deadline = self._unstable_deadline()
        if deadline is not None and now >= deadline:
            self._raise(out, now, ev.UNSTABLE_TIMEOUT,
                        f"no stable weight {self._scale.unstable_timeout_s:g} s after the "
                        "truck came to rest")
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None = nothing pending)."""
        times = [t for t in (self._comm.deadline(), self._unstable_deadline()) if t is not None]
        return min(times) if times else None

    # ------------------------------------------------------------- properties
    @property
    def committed(self) -> WeightCommitted | None:
        """The current truck's committed weight, if any."""
        return self._committed

    @property
    def zero_kg(self) -> float | None:
        """The empty-deck zero last found steady from gross readings."""
        return self._zero_ref

    @property
    def noise_kg(self) -> float | None:
        """The spread (standard deviation) of the readings the last steady zero came from."""
        return self._noise_kg

    # ---------------------------------------------------------------- states
    def _enter(self, state: DeckState, now: float) -> None:
        self.state = state
        self._state_since = now

    def _on_empty(self, out: list[WeighEvent], now: float, kg: float) -> None:
        if kg >= self._loaded_kg():
            self._enter(DeckState.LOADING, now)
            self._raised.clear()
            self._on_deck_at = self._ramp_end = now
            self._committed = None
            self._blocked_settled_since = None
            self._settler.reset()
            self._probe.reset()
            self._levels.reset()
            out.append(TruckOnDeck(now))
            for code, detail, evidence in self._condition.carried():
                self._raise(out, now, code, detail, evidence=evidence)
            return
        if len(self._x) >= 2 and self._t[-2] >= self._state_since:
            self._flicker_watch.add(self._x[-2], kg, self._e)
        t, x = self._window(max(now - ZERO_WINDOW_S, self._state_since, self._mode_since))
        if len(x) < ZERO_MIN_SAMPLES or t[-1] - t[0] < 0.8 * ZERO_WINDOW_S:
            return
        if float(np.max(np.abs(x - np.median(x)))) > self._e:
            return
        zero = float(np.mean(x))
        band, negative = self._scale.zero_band_e * self._e, -UNDERLOAD_E * self._e
        live = not self._unproven()
        # A repeat may be a stall and proves nothing is fine; but what the run's first, live
        # frame showed still counts against the next truck.
        if self._net:
            self._condition.net_seen(now, zero, t, x)
        elif live or abs(zero) > band:
            self._condition.zero_seen(now, zero, t, x, band_kg=band, negative_kg=negative)
        if not live:
            return
        self._noise_kg = float(np.std(x))
        episode = self._episode_zero
        if episode is None:
            self._episode_zero = zero
            # A net display already reported is the same fault going on, not a new one.
            self._raised &= {ev.NET_READING} if self._net else set()
            out.append(DeckCleared(now, round(zero, 1), self._net))  # net or not, it is empty
        if self._net:
            return  # a net display hides the zero: the gross zero stays what it was
        if episode is None:
            if self._zero_ref is not None and abs(zero - self._zero_ref) > self._drift_kg():
                self._raise(out, now, ev.ZERO_DRIFT,
                            f"empty-deck zero {zero:.0f} kg, was {self._zero_ref:.0f} kg")
            self._zero_ref = zero
        elif abs(zero - episode) > self._drift_kg():
            self._raise(out, now, ev.ZERO_DRIFT,
                        f"empty-deck zero moved from {episode:.0f} to {zero:.0f} kg")
            self._zero_ref = zero  # reported once: the next spell is judged against this one
        if abs(zero) > band:
            self._raise(out, now, ev.ZERO_OUT_OF_BAND,
                        f"empty-deck zero {zero:.0f} kg outside +-{self._scale.zero_band_e:g} e")

    def _on_loading(self, out: list[WeighEvent], now: float, kg: float) -> None:
        if kg < self._unloaded_kg():
            self._back_to_empty(now)
            return
        # A ramp = the half-second mean moved a lot (a swing averages out, an axle does not).
        _, recent = self._window(now - RAMP_LOOKBACK_S)
        _, before = self._window(now - 2 * RAMP_LOOKBACK_S, now - RAMP_LOOKBACK_S)
        moved = abs(float(np.mean(recent)) - float(np.mean(before))) if len(before) else 0.0
        if moved > max(RAMP_FRACTION * abs(kg), RAMP_MIN_E * self._e):
            self._ramp_end = now
            self._blocked_settled_since = None
            self._settler.reset()
            self._probe.reset()
            self._levels.reset()
        motion_veto = self._scale.respect_motion_flag and self._last_motion is True
        if self._overloaded or motion_veto or kg > self._scale.overload_kg or self._stuck():
            return
        beams_clear = self._front_clear and self._rear_clear
        if not beams_clear:
            self._check_off_deck(out, now)
            return
        self._blocked_settled_since = None
        if self._unproven() or self._net:
            return
        t, x = self._live_window(max(self._ramp_end, self._beams_clear_since, self._mode_since))
        self._levels.add(now, t, x)
        estimate = self._settler.propose(t, x, noise_kg=self._noise(), flicker=self._flicker())
        if estimate is None:
            return
        used_t, used_x = self._live_window(estimate.start)
        # The swing seen past the window's first half second (not an axle ramp's tail).
        late = used_x[used_t >= estimate.start + RAMP_LOOKBACK_S]
        swing_seen = len(late) > 0 and (
            float(np.max(np.abs(late - estimate.kg))) >= SWING_EVIDENCE_E * self._e)
        if not swing_seen and now - self._beams_clear_since < QUIET_REST_S:
            return  # a quiet window this soon may be a truck still rolling: wait
        level_before = self._levels.farthest_before(estimate.start, estimate.kg)
        self._committed = WeightCommitted(
            at=now,
            kg=round(estimate.kg, 1),
            uncertainty_kg=round(estimate.uncertainty_kg, 1),
            stopped_at=estimate.start,
            evidence=as_evidence(used_t, used_x),
        )
        self._rebase(estimate.kg)
        self._flat_levels.append((now, estimate.kg))
        self._enter(DeckState.COMMITTED, now)
        out.append(self._committed)
        if (level_before is not None
                and abs(estimate.kg - level_before) >= self._scale.step_e * self._e):
            # The load changed after the truck came to rest and before the window weighed.
            self._raise(out, now, ev.STEP_WHILE_STATIONARY,
                        f"level stepped from {level_before:.0f} to {estimate.kg:.0f} kg "
                        "with the truck at rest, before the commit")

    def _check_off_deck(self, out: list[WeighEvent], now: float) -> None:
        if now - self._last_probe < OFF_DECK_PROBE_S:
            return  # a seconds-long timer: no need to fit at every frame
        self._last_probe = now
        t, x = self._live_window(max(self._ramp_end, self._mode_since))
        settled = self._probe.propose(t, x, noise_kg=self._noise(), flicker=self._flicker())
        if settled is None:
            if now - self._blocked_settled_last > OFF_DECK_GAP_S:
                self._blocked_settled_since = None
            return
        self._blocked_settled_last = now
        if self._blocked_settled_since is None:
            # The load has been at rest since the window the probe explained began.
            self._blocked_settled_since = min(now, settled.start)
        elif now - self._blocked_settled_since >= self._scale.not_on_deck_s:
            blocked = [name for name, clear in (("front", self._front_clear),
                                                ("rear", self._rear_clear)) if not clear]
            self._raise(out, now, ev.NOT_ON_DECK,
                        f"load steady at {settled.kg:.0f} kg with the {' and '.join(blocked)} "
                        "deck beam blocked")

    def _on_committed(self, out: list[WeighEvent], now: float, kg: float) -> None:
        if kg < LEAVING_FRACTION * self._ref_level:
            self._enter(DeckState.LEAVING, now)
            return
        # Judge only stretches where the deck holds still: a swing that is still dying
        # away would otherwise look like a step.
        t, x = self._live_window(max(now - STEP_WINDOW_S, self._state_since, self._mode_since))
        if len(x) < 4 or t[-1] - t[0] < 0.8 * STEP_WINDOW_S:
            return
        if float(np.std(x)) > max(FLAT_NOISE_FACTOR * self._noise(), FLAT_MIN_E * self._e):
            level = self._swing_level(now)
            if level is None:
                return
        else:
            self._flicker_watch.add(float(x[-2]), float(x[-1]), self._e)
            if self._unproven():
                return
            level = float(np.mean(x))
        earlier = [lv for at, lv in self._flat_levels if at <= now - STEP_WINDOW_S]
        self._flat_levels.append((now, level))
        jump = abs(level - earlier[-1]) if earlier else 0.0
        if jump >= self._scale.step_e * self._e:
            self._raise(out, now, ev.STEP_WHILE_STATIONARY,
                        f"level stepped from {earlier[-1]:.0f} to {level:.0f} kg "
                        "with the truck at rest")
            self._rebase(level)
        elif jump >= 0.5 * self._scale.step_e * self._e:
            return  # a window straddling a step: the next one tells step from drift
        elif abs(level - self._ref_level) >= self._drift_kg():
            self._raise(out, now, ev.ZERO_DRIFT,
                        f"level drifted from {self._ref_level:.0f} to {level:.0f} kg "
                        "with the truck at rest")
            self._rebase(level)

    def _swing_level(self, now: float) -> float | None:
        """The level under a swing that has not died down (a lightly damped deck), when the
        model of a resting truck explains the last seconds; None when it does not."""
        if now - self._last_swing_fit < SWING_LEVEL_EVERY_S or self._unproven():
            return None
        self._last_swing_fit = now
        t, x = self._live_window(max(now - SWING_LEVEL_S, self._state_since, self._mode_since))
        fit = self._swing.explain(t, x, self._noise())
        if fit is None or 2 * fit.level_stderr > self._scale.max_uncertainty_e * self._e:
            return None
        return fit.level

    def _rebase(self, level: float) -> None:
        self._ref_level = level
        self._flat_levels.clear()

    def _on_leaving(self, out: list[WeighEvent], now: float, kg: float) -> None:
        if kg < self._unloaded_kg():
            self._back_to_empty(now)
            return
        _, x = self._window(now - STEP_WINDOW_S)
        if (self._front_clear and self._rear_clear and len(x) >= 3
                and float(np.max(np.abs(x - self._ref_level))) < self._scale.step_e * self._e):
            self._enter(DeckState.COMMITTED, now)  # the truck only crept, it is still on

    def _switch_mode(self, now: float, kg: float, net: bool) -> None:
        # Net and gross differ by the tare: nothing learnt in one mode carries to the other.
        self._net, self._mode_since = net, now
        self._settler.reset()
        self._probe.reset()
        self._levels.reset()
        if self.state is DeckState.EMPTY:
            self._episode_zero = None  # the zero is looked for afresh
        else:
            self._rebase(kg)

    def _back_to_empty(self, now: float) -> None:
        self._enter(DeckState.EMPTY, now)
        self._episode_zero = None
        self._overloaded = False

    # ------------------------------------------------------------- detectors
    def _check_spike(self, out: list[WeighEvent], now: float) -> None:
        if len(self._x) < 3:
            return
        before, middle, after = self._x[-3], self._x[-2], self._x[-1]
        # While axles roll on, the weight of the garbled frame's own instant is anyone's
        # guess: only its neighbours' exact digits are then taken as proof of garbling.
        ramping = self.state is DeckState.LOADING and now - self._ramp_end < STEP_WINDOW_S
        near = 0 if ramping else DIGIT_NOISE_E
        if not is_spike(before, middle, after, self._e, digit_noise_e=near):
            return  # cheap test first; the context below only sharpens a positive
        first = max(0, len(self._x) - SPIKE_CONTEXT - 3)
        recent = [self._x[i] for i in range(first, len(self._x) - 2)]
        steps = sorted(abs(b - a) for a, b in itertools.pairwise(recent))
        typical = steps[len(steps) // 2] if steps else 0.0
        if not is_spike(before, middle, after, self._e, typical_step=typical,
                        digit_noise_e=near):
            return
        evidence = ((self._t[-3], before), (self._t[-2], middle), (self._t[-1], after))
        del self._t[-2], self._x[-2]  # corrupt: keep it out of every estimate
        self._raise(out, now, ev.IMPLAUSIBLE_JUMP,
                    f"{middle:g} kg between {before:g} and {after:g} kg (discarded)",
                    evidence=evidence)

    def _check_net(self, out: list[WeighEvent], now: float, kg: float | None) -> None:
        if ev.NET_READING not in self._condition:
            self._condition.net_seen(now, kg, *self._window(now - EVIDENCE_S))
        if ev.NET_READING in self._raised:
            return  # raised once: no need to word it again at every net frame
        shown = "no number" if kg is None else f"{kg:g} kg"
        if self._committed is not None and self.state is not DeckState.EMPTY:
            shown += f" after the gross weight {self._committed.kg:g} kg was committed"
        self._raise(out, now, ev.NET_READING,
                    f"net-flagged reading {shown}: a net value is never weighed")

    def _check_frozen(self, out: list[WeighEvent], now: float) -> None:
        if not self._flicker() or now - self._run_start < self._scale.frozen_s:
            return
        # Enough frames too: at a slow rate a few seconds of a steady display can be luck.
        if self._run_length() >= FROZEN_MIN_SAMPLES:
            self._raise(out, now, ev.FROZEN,
                        f"reading stuck at {self._x[-1]:g} kg for {now - self._run_start:.1f} s "
                        "on a scale that normally flickers")

    def _run_length(self, limit: int = FROZEN_MIN_SAMPLES) -> int:
        """How many of the latest readings equal the last one (counting up to ``limit``)."""
        run = 0
        for value in reversed(self._x):
            if value != self._x[-1] or run >= limit:
                break
            run += 1
        return run

    def _stuck(self) -> bool:
        """A run of identical readings too long for a scale that flickers: do not weigh it."""
        limit = self._run_suspect_at
        return limit is not None and self._run_length(limit) >= limit

    def _unstable_deadline(self) -> float | None:
        if self.state is not DeckState.LOADING or self._overloaded:
            return None
        if self._raised & {ev.UNSTABLE_TIMEOUT, ev.NOT_ON_DECK, ev.FROZEN, ev.NET_READING}:
            return None  # the truck is held for what these name already
        if self._stuck():
            return None  # the output looks stalled: a truck that moves would show it
        return max(self._on_deck_at, self._ramp_end) + self._scale.unstable_timeout_s

    # --------------------------------------------------------------- helpers
    def _raise(
        self, out: list[WeighEvent], now: float, code: str, detail: str, *,
        evidence: Evidence | None = None, once: bool = True,
    ) -> None:
        if once and code in self._raised:
            return
        self._raised.add(code)
        if evidence is None:
            evidence = as_evidence(*self._window(now - EVIDENCE_S))
        out.append(WeightAbnormality(now, code, detail, evidence))

    def _append(self, now: float, kg: float) -> None:
        self._t.append(now)
        self._x.append(kg)
        while self._t and self._t[0] < now - HISTORY_S:
            self._t.popleft()
            self._x.popleft()

    def _window(
        self, since: float, until: float = math.inf
    ) -> tuple[FloatArray, FloatArray]:
        t = np.fromiter(self._t, dtype=np.float64, count=len(self._t))
        x = np.fromiter(self._x, dtype=np.float64, count=len(self._x))
        lo = int(np.searchsorted(t, since))
        hi = int(np.searchsorted(t, until, side="right"))
        return t[lo:hi], x[lo:hi]

    def _unproven(self) -> bool:
        """The newest frame repeats the one before on a scale that flickers: it may be the
        first of a stall. Weights, zeros and levels are judged only on a frame that proves
        the output live, so no repeat is taken on trust."""
        return self._flicker() and len(self._x) >= 2 and self._x[-1] == self._x[-2]

    def _live_window(self, since: float) -> tuple[FloatArray, FloatArray]:
        """The samples since ``since`` without the repeats of runs judged stuck."""
        t, x = self._window(since)
        stalls = [(first, last) for first, last in self._stalls if last >= since]
        if not stalls:
            return t, x
        keep = np.ones(len(t), dtype=bool)
        for first, last in stalls:
            keep &= (t <= first) | (t > last)
        return t[keep], x[keep]

    def _noise(self) -> float:
        return self._noise_kg if self._noise_kg is not None else 0.5 * self._e

    def _flicker(self) -> bool:
        return self._run_suspect_at is not None

    def _loaded_kg(self) -> float:
        # A zero below 0 does not lower the bar: its return to 0 on the empty deck is no truck.
        return max(self._zero_ref or 0.0, 0.0) + self._scale.min_load_e * self._e

    def _unloaded_kg(self) -> float:
        return max(self._zero_ref or 0.0, 0.0) + 0.5 * self._scale.min_load_e * self._e

    def _drift_kg(self) -> float:
        return self._scale.zero_drift_e * self._e
