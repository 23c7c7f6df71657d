"""Identical indication: the weight on record is the indicator's own value at standstill.

The watcher's estimate commits as soon as the samples prove a truck at rest; it is the
decision aid that makes the lane fast. The weight a record and a decision state must be the
primary indication (OIML R76 / GB/T 7723): a value the indicator itself displayed, a
multiple of e, with the frames that carried it. ``IndicationGate`` sits behind the watcher
and hands its ``WeightCommitted`` on with that indication attached:

  * An indication is the median displayed value of the longest latest stretch of gross
    frames (at most 3 s, at least ``min_frames`` over ``min_run_s``; a swing's crest is
    shorter) of which at least 70 % lie within 1 e of that median (a flickering last
    digit), none flagged motion (when the format has the flag), all inside the committed
    window (from the estimate's ``stopped_at``).
  * If the indicator already showed one when the estimate commits, the commit goes on at once.
    If not, the commit waits for one at most ``wait_s``; when none comes the estimate goes on
    alone, after ``weight.indication_missing`` (the truck is held: nothing on record
    would equal the indication).
  * A difference of more than 1 e between estimate and indication is
    ``weight.indication_mismatch``, with both values and the indication's frames as evidence.

Pure and sans-I/O: time is a parameter, frames come in decoded.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque

from edge_agent.catalogue import Code
from edge_agent.protocols.indicators.base import IndicatorReading
from edge_agent.weighing.events import (
    DeckCleared,
    IndicatedFrame,
    Indication,
    TruckOnDeck,
    WeighEvent,
    WeightAbnormality,
    WeightCommitted,
)

INDICATION_MISMATCH = Code.WEIGHT_INDICATION_MISMATCH
INDICATION_MISSING = Code.WEIGHT_INDICATION_MISSING

DEFAULT_WAIT_S = 5.0  # after the estimate: the indicator settles about a second after rest
DEFAULT_MIN_FRAMES = 3
DEFAULT_MIN_RUN_S = 1.0  # a deck swinging at 0.8-4 Hz cannot show one value this long
MAX_FRAMES = 600  # about a minute of frames at 10 Hz: more than any committed window
MISMATCH_E = 1.0
RECENT_S = 3.0  # the standstill is judged on the latest frames, not the settling swing
# Indicator noise of about 1 e puts ~87 % of frames within 1 e of the median; a deck
# swinging by a few e puts far fewer there.
STILL_SHARE = 0.7


def find_indication(
    frames: list[IndicatedFrame], since: float, e_kg: float, *,
    min_frames: int = DEFAULT_MIN_FRAMES, min_run_s: float = DEFAULT_MIN_RUN_S,
) -> Indication | None:
    """The indicator's value at standstill, or None while it shows none.

    The frames considered are the latest ``RECENT_S`` of those at or after ``since``, after
    the last frame flagged motion (or net, or unreadable). They show a standstill when they
    are at least ``min_frames``, span at least ``min_run_s`` and at least ``STILL_SHARE`` of
    them lie within 1 e of their median: a display flickering one or two e about its value
    passes, a deck still swinging (its crests several e apart) does not. The value is that
    median, taken as one of the frames, so it is a value the indicator displayed, a
    multiple of d, never an average; with an even count the lower of the middle two.
    """
    run: list[IndicatedFrame] = []
    for frame in frames:
        if frame.at < since:
            continue
        if frame.stable is False or math.isnan(frame.kg):
            run = []
            continue
        run.append(frame)
    if not run:
        return None
    recent = [f for f in run if f.at >= run[-1].at - RECENT_S]
    # The longest latest stretch that shows a standstill: long for a steady median, short
    # enough to leave a settling swing behind.
    for first in range(len(recent)):
        stretch = recent[first:]
        if len(stretch) < min_frames or stretch[-1].at - stretch[0].at < min_run_s:
            return None
        shown = _standstill_value(stretch, e_kg)
        if shown is not None:
            break
    else:
        return None
    recent = stretch
    flags = {frame.stable for frame in recent}
    stable = None if flags == {None} else True
    return Indication(kg=shown, stable=stable, frames=tuple(recent))


def _standstill_value(frames: list[IndicatedFrame], e_kg: float) -> float | None:
    ordered = sorted(f.kg for f in frames)
    shown = ordered[(len(ordered) - 1) // 2]
    near = sum(1 for kg in ordered if abs(kg - shown) <= MISMATCH_E * e_kg + 1e-6)
    return shown if near >= STILL_SHARE * len(ordered) else None


def mismatch_detail(estimate_kg: float, indication_kg: float, e_kg: float) -> str | None:
    """Detail for ``weight.indication_mismatch``, or None when the two agree within 1 e."""
    difference = estimate_kg - indication_kg
    if abs(difference) <= MISMATCH_E * e_kg:
        return None
    return (f"estimate {estimate_kg:g} kg, indicator {indication_kg:g} kg "
            f"({difference:+g} kg, more than {MISMATCH_E:g} e = {e_kg:g} kg)")


def frames_data(indication: Indication) -> list[dict[str, object]]:
    """The indication's frames as published: time, value, flag and raw bytes in hex."""
    return [{"t": round(f.at, 3), "kg": f.kg, "stable": f.stable, "raw": f.raw.hex()}
            for f in indication.frames]


class IndicationGate:
    """Hands the watcher's events on, each ``WeightCommitted`` with its indication attached."""

    def __init__(
        self, e_kg: float, *, wait_s: float = DEFAULT_WAIT_S,
        min_frames: int = DEFAULT_MIN_FRAMES, min_run_s: float = DEFAULT_MIN_RUN_S,
    ) -> None:
        self._e = e_kg
        self._wait_s = wait_s
        self._min_frames = min_frames
        self._min_run_s = min_run_s
        self._frames: deque[IndicatedFrame] = deque(maxlen=MAX_FRAMES)
        self._pending: WeightCommitted | None = None

    def add_frame(self, now: float, reading: IndicatorReading) -> None:
        """A decoded indicator frame; call it before handing the watcher's events in."""
        if reading.kg is None or reading.net or reading.overload:
            self._frames.append(IndicatedFrame(now, float("nan"), False, reading.raw))
            return  # breaks a run: a net or out-of-range frame is never an indication
        stable = None if reading.motion is None else not reading.motion
        self._frames.append(IndicatedFrame(now, reading.kg, stable, reading.raw))

    def pass_on(self, now: float, events: list[WeighEvent]) -> list[WeighEvent]:
        """The watcher's events at ``now`` (from a frame or a tick), gated."""
        out: list[WeighEvent] = []
        for event in events:
            if isinstance(event, WeightCommitted):
                self._pending = event
            elif isinstance(event, TruckOnDeck | DeckCleared):
                self._pending = None  # the truck left: an unfinished wait is void
                out.append(event)
            else:
                out.append(event)
        return self._release(now) + out if self._pending is not None else out

    def tick(self, now: float) -> list[WeighEvent]:
        return self._release(now) if self._pending is not None else []

    def next_deadline(self) -> float | None:
        return None if self._pending is None else self._pending.at + self._wait_s

    def _release(self, now: float) -> list[WeighEvent]:
        pending = self._pending
        assert pending is not None
        found = find_indication(list(self._frames), pending.stopped_at, self._e,
                                min_frames=self._min_frames, min_run_s=self._min_run_s)
        waiting = now < pending.at + self._wait_s
        detail = None if found is None else mismatch_detail(pending.kg, found.kg, self._e)
        if found is not None and detail is not None and waiting \
                and found.frames[-1].at - found.frames[0].at < RECENT_S - 0.5:
            # A short stretch's median can sit one value off; a difference counts once it
            # holds over the full stretch, or at the end of the wait.
            return []
        if found is not None:
            self._pending = None
            committed = dataclasses.replace(pending, indication=found)
            if detail is None:
                return [committed]
            evidence = tuple((f.at, f.kg) for f in found.frames)
            # The abnormality first: the lane decides the moment the weight arrives (L4).
            return [WeightAbnormality(now, INDICATION_MISMATCH, detail, evidence), committed]
        if waiting:
            return []
        self._pending = None
        detail = (f"no stable indication within {self._wait_s:g} s of the estimate "
                  f"{pending.kg:g} kg")
        return [WeightAbnormality(now, INDICATION_MISSING, detail, pending.evidence), pending]
