"""A scale fault seen on the empty deck holds the next truck; a net reading is never weighed.

Red-team cases: a truck of 32,480 kg gross declared at 31,480 kg (tolerance 300 kg) crosses
an indicator that subtracts a 1,000 kg preset tare (net flag set), or one whose zero is off
by -1,000 kg. Either way the deck shows about the declared weight; the lane must hold.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

from edge_agent.lane.actions import OpenBarrier, Publish
from edge_agent.lane.machine import LaneMachine, MachineConfig
from edge_agent.tests.lane_builders import PassSpec, shown
from edge_agent.weighing import (
    DeckCleared,
    ScaleConfig,
    TruckOnDeck,
    WeighEvent,
    WeightAbnormality,
    WeightCommitted,
    WeightWatcher,
    check_declared,
)
from simulators.weight_dynamics import DeckDynamics

E = 20.0
SCALE = ScaleConfig()
GROSS = 32_480.0
DECLARED = 31_480
TOLERANCE = 300
TARE = 1_000.0
NET = "weight.net_reading"
OUT_OF_BAND = "weight.zero_out_of_band"
NEGATIVE = "weight.negative"
NET_ALL_ALONG = (0.0, math.inf)

EMPTY_S = 4.0
VISIT_S = 26.0
AXLES = ((0.0, 0.4), (2.0, 0.6))  # (arrival after the first axle, share of the load)


@dataclass(frozen=True)
class Visit:
    """One empty spell and one truck, and what the indicator does meanwhile."""

    gross_kg: float = GROSS
    zero_kg: float = 0.0
    tare_kg: float = 0.0
    net_s: tuple[float, float] | None = None  # the indicator sends net (tare subtracted)


@dataclass(frozen=True)
class Frame:
    t: float
    kg: float
    front_clear: bool
    rear_clear: bool
    net: bool


def smooth(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3 - 2 * x)


def deck_trace(visits: list[Visit], *, seed: int = 1, rate_hz: float = 10.0) -> list[Frame]:
    """Each visit: 4 s of empty deck, a two-axle truck rolling on, standing 12 s and driving
    off; a last empty spell follows. Displayed through the simulator's deck dynamics."""
    dyn = DeckDynamics(E, np.random.default_rng(seed))
    frames: list[Frame] = []
    for number, visit in enumerate([*visits, None]):
        dyn.zero_kg = visit.zero_kg if visit else 0.0
        start = number * VISIT_S
        for i in range(int((VISIT_S if visit else 2 * EMPTY_S) * rate_hz)):
            tau = i / rate_hz
            on, stop, off = EMPTY_S, EMPTY_S + 4.5, EMPTY_S + 16.5
            static = 0.0
            if visit is not None:
                static = visit.gross_kg * sum(
                    share * (smooth((tau - on - at) / 0.6) - smooth((tau - off - at) / 0.6))
                    for at, share in AXLES)
            rolling = visit is not None and (on - 1.0 <= tau < stop or off - 0.2 <= tau)
            kg = dyn.display(start + tau, static, rolling=rolling, period_s=1.0 / rate_hz)
            net = visit is not None and visit.net_s is not None and (
                visit.net_s[0] <= tau < visit.net_s[1])
            if net and visit is not None:
                kg -= visit.tare_kg
            frames.append(Frame(
                t=start + tau, kg=kg, net=net,
                rear_clear=visit is None or not (on - 0.3 <= tau < stop - 0.5),
                front_clear=visit is None or not (off - 0.2 <= tau < off + 2.8),
            ))
    return frames


def feed(watcher: WeightWatcher, frames: list[Frame]) -> list[WeighEvent]:
    events: list[WeighEvent] = []
    beams = (True, True)
    for f in frames:
        if (f.front_clear, f.rear_clear) != beams:
            beams = (f.front_clear, f.rear_clear)
            events += watcher.set_deck_beams(f.t, *beams)
        events += watcher.tick(f.t)
        events += watcher.add_reading(f.t, f.kg, net=f.net)
    return events


def trucks(events: list[WeighEvent]) -> list[list[WeighEvent]]:
    """The events of each truck's transit: from its TruckOnDeck until the deck is clear."""
    spells: list[list[WeighEvent]] = []
    on_deck = False
    for event in events:
        if isinstance(event, TruckOnDeck):
            spells.append([])
            on_deck = True
        elif isinstance(event, DeckCleared):
            on_deck = False
        if on_deck:
            spells[-1].append(event)
    return spells


def codes(events: list[WeighEvent]) -> list[str]:
    return [e.code for e in events if isinstance(e, WeightAbnormality)]


def commits(events: list[WeighEvent]) -> list[WeightCommitted]:
    return [e for e in events if isinstance(e, WeightCommitted)]


def lane_holds(events: list[WeighEvent], pass_after_s: float = 1.0) -> list[set[str]]:
    """Drive the lane machine with the watcher's events, the declared pass shown
    ``pass_after_s`` after each truck came on; per transit, the reasons it was held for
    (empty: never held)."""
    counter = itertools.count(1)
    machine = LaneMachine(MachineConfig(), new_id=lambda: f"t{next(counter)}", strict=True)
    good = PassSpec(valid=True, reason=None, release_no="RL-1", plates=("SU-1",),
                    declared_gross_kg=DECLARED, tolerance_kg=TOLERANCE,
                    cti_hex="00" * 16, exp=2_000_000_000)
    out: list[object] = []
    pass_due = math.inf
    for event in events:
        if event.at >= pass_due:
            out += machine.handle(shown(pass_due, good), pass_due)
            pass_due = math.inf
        # The machine takes the watcher's events as they are.
        out += machine.handle(event, event.at)
        if isinstance(event, TruckOnDeck):
            pass_due = event.at + pass_after_s
    if pass_due < math.inf:
        out += machine.handle(shown(pass_due, good), pass_due)
    held: dict[str | None, set[str]] = {}
    for command in out:
        if not isinstance(command, Publish):
            continue
        if command.type == "truck_arrived":
            held[command.transit_id] = set()
        elif command.type == "decision" and command.data["decision"] == "hold":
            held[command.transit_id] |= set(command.data["reasons"])
    opened = {c.transit_id for c in out if isinstance(c, OpenBarrier)}
    assert not opened & {t for t, reasons in held.items() if reasons}
    return list(held.values())


@pytest.mark.parametrize("rate_hz", [5.0, 10.0, 25.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_net_mode_with_a_preset_tare_is_never_weighed_and_holds_the_truck(
    seed: int, rate_hz: float,
) -> None:
    frames = deck_trace([Visit(tare_kg=TARE, net_s=NET_ALL_ALONG)], seed=seed, rate_hz=rate_hz)
    assert all(f.net for f in frames if f.t < VISIT_S)
    events = feed(WeightWatcher(SCALE), frames)
    assert commits(events) == []
    before_truck = events[:events.index(next(e for e in events if isinstance(e, TruckOnDeck)))]
    assert NET in codes(before_truck)  # on the empty deck already
    truck = trucks(events)[0]
    held = truck[1]  # right after its TruckOnDeck
    assert isinstance(held, WeightAbnormality) and held.code == NET
    assert codes(truck) == [NET]
    assert held.evidence and all(t < truck[0].at for t, _ in held.evidence)
    assert all(abs(kg + TARE) <= 2 * E for _, kg in held.evidence)  # the net zero it rests on
    assert lane_holds(events) == [{NET}]


@pytest.mark.parametrize("rate_hz", [5.0, 10.0, 25.0])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_zero_off_by_minus_1000_kg_is_found_and_holds_the_truck_weighed_on_it(
    seed: int, rate_hz: float,
) -> None:
    frames = deck_trace([Visit(zero_kg=-TARE)], seed=seed, rate_hz=rate_hz)
    events = feed(WeightWatcher(SCALE), frames)
    cleared = next(e for e in events if isinstance(e, DeckCleared))
    assert cleared.zero_kg == pytest.approx(-TARE, abs=E)  # found, not ignored
    before_truck = events[:events.index(next(e for e in events if isinstance(e, TruckOnDeck)))]
    assert {OUT_OF_BAND, NEGATIVE} <= set(codes(before_truck))
    truck = trucks(events)[0]
    carried = [e for e in truck[1:3] if isinstance(e, WeightAbnormality)]
    assert {e.code for e in carried} == {OUT_OF_BAND, NEGATIVE}
    for abnormality in carried:
        shown = re.search(r"zero (-?\d+) kg seen at (\d+\.\d) s", abnormality.detail)
        assert shown is not None and abs(float(shown[1]) + TARE) <= E
        assert float(shown[2]) < truck[0].at
        assert abnormality.evidence
        assert all(t < truck[0].at and abs(kg + TARE) <= 2 * E
                   for t, kg in abnormality.evidence)
    assert sorted(codes(truck)) == sorted({OUT_OF_BAND, NEGATIVE})  # once each
    # The weight read on that zero matches the declaration: only the carried zero holds it.
    (committed,) = commits(truck)
    assert abs(committed.kg - (GROSS - TARE)) <= 2 * E
    assert check_declared(committed.kg, committed.uncertainty_kg, DECLARED, TOLERANCE,
                          E) is None
    assert lane_holds(events) == [{OUT_OF_BAND, NEGATIVE}]


def test_a_zero_off_shown_only_by_repeats_still_holds_the_truck() -> None:
    # At 5 Hz this display flickers once, then holds -1000 kg until the truck: on a scale seen
    # to flicker, repeats never prove the deck empty and steady, yet the zero they show counts.
    frames = deck_trace([Visit(zero_kg=-TARE)], seed=605, rate_hz=5.0)
    events = feed(WeightWatcher(SCALE), frames)
    arrived = next(e for e in events if isinstance(e, TruckOnDeck))
    assert {f.kg for f in frames if 0.4 <= f.t < arrived.at} == {-TARE}
    assert not any(isinstance(e, DeckCleared) and e.at < arrived.at for e in events)
    truck = trucks(events)[0]
    assert set(codes(truck[1:3])) == {OUT_OF_BAND, NEGATIVE}
    assert lane_holds(events) == [{OUT_OF_BAND, NEGATIVE}]


def test_every_truck_on_a_zero_still_off_is_held_each_code_once() -> None:
    events = feed(WeightWatcher(SCALE), deck_trace([Visit(zero_kg=-TARE)] * 2, seed=4))
    spells = trucks(events)
    assert len(spells) == 2
    for truck in spells:
        assert sorted(codes(truck)) == sorted({OUT_OF_BAND, NEGATIVE})
    assert lane_holds(events) == [{OUT_OF_BAND, NEGATIVE}] * 2


@pytest.mark.parametrize("fault", [Visit(zero_kg=-TARE), Visit(tare_kg=TARE, net_s=NET_ALL_ALONG)],
                         ids=["zero", "net"])
def test_a_zero_back_in_band_from_gross_readings_clears_the_condition(fault: Visit) -> None:
    honest = Visit(gross_kg=DECLARED)
    events = feed(WeightWatcher(SCALE), deck_trace([fault, honest], seed=5))
    first, second = trucks(events)
    assert codes(first)
    assert codes(second) == []
    (committed,) = commits(second)
    assert abs(committed.kg - DECLARED) <= E
    first_held, second_held = lane_holds(events)
    assert set(codes(first)) <= first_held and not second_held


def test_net_frames_after_a_gross_commit_turn_the_decision_to_hold() -> None:
    # The truck matches its declaration: only the net frames can hold it.
    visit = Visit(gross_kg=DECLARED, tare_kg=TARE, net_s=(EMPTY_S + 11.0, math.inf))
    frames = deck_trace([visit], seed=6)
    events = feed(WeightWatcher(SCALE), frames)
    truck = trucks(events)[0]
    (committed,) = commits(truck)
    net_from = next(f.t for f in frames if f.net)
    assert committed.at < net_from and abs(committed.kg - DECLARED) <= E
    assert codes(truck) == [NET]
    (net,) = [e for e in truck if isinstance(e, WeightAbnormality)]
    assert net.at == pytest.approx(net_from)
    assert f"{committed.kg:g} kg was committed" in net.detail
    assert net.evidence[0][0] < committed.at and net.evidence[-1][0] == net.at
    # The pass shown after the net frames: the decision is taken then, and it is a hold.
    assert lane_holds(events, pass_after_s=net.at + 1.0 - truck[0].at) == [{NET}]


def test_net_frames_on_the_empty_deck_hold_the_next_truck_even_when_it_reads_gross() -> None:
    # The indicator is put back to gross just before the truck rolls on: no gross zero seen.
    net_empty = Visit(gross_kg=DECLARED, tare_kg=TARE, net_s=(0.0, EMPTY_S - 0.5))
    honest = Visit(gross_kg=DECLARED)
    events = feed(WeightWatcher(SCALE), deck_trace([net_empty, honest], seed=7))
    first, second = trucks(events)
    assert codes(first) == [NET]
    assert commits(first)  # weighed on gross frames, and held all the same
    assert codes(second) == []
    assert lane_holds(events) == [{NET}, set()]
