"""Driving a strict LaneMachine as the shell would, for the lane tests: numbered transits, each
input at its own time, due timers handled at theirs, and what was decided read back."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.lane.actions import LaneAction, OpenBarrier, Publish
from edge_agent.lane.fakes import answer_ledger, step
from edge_agent.lane.inputs import IdentitySeen, LaneInput
from edge_agent.lane.machine import LaneMachine, LaneState, MachineConfig
from edge_agent.lane.transit import Transit


def strict_machine(config: MachineConfig | None = None) -> LaneMachine:
    """A strict machine (it raises on any input or landing its table does not allow) whose
    transits are ``id1``, ``id2``, ... in order."""
    counter = itertools.count(1)
    return LaneMachine(config if config is not None else MachineConfig(),
                       new_id=lambda: f"id{next(counter)}", strict=True)


def run(m: LaneMachine, *events: LaneInput) -> list[LaneAction]:
    """Each of ``events`` handled at its own time, the ledger answering."""
    out: list[LaneAction] = []
    for event in events:
        out += step(m, event, event.at)
    return out


def decisions(out: list[LaneAction]) -> list[dict[str, Any]]:
    return [a.data for a in out if isinstance(a, Publish) and a.type == "decision"]


def opened(out: list[LaneAction]) -> bool:
    return any(isinstance(a, OpenBarrier) for a in out)


def timers(m: LaneMachine, upto: float) -> list[LaneAction]:
    """What the shell does: each deadline handled at its own time, up to ``upto``."""
    out: list[LaneAction] = []
    while (deadline := m.next_deadline()) is not None and deadline <= upto:
        out += answer_ledger(m, m.handle_timer(deadline), deadline)
    return out


@dataclass(frozen=True, slots=True)
class Played:
    """One step of a played timeline: a due timer or the next input."""

    out: list[LaneAction]
    now: float
    waited_since: float | None  # when the identity wait began, if it was on as the step began
    reads: Mapping[str, list[str]]  # transit id -> identity reads it was shown while open


def _waited_since(m: LaneMachine) -> float | None:
    transit = m.transit
    if transit is None or transit.identity_deadline is None:
        return None
    return transit.identity_since


def play(m: LaneMachine, timeline: list[tuple[float, Any]]) -> Iterator[Played]:
    """Feed ``timeline`` (gap, input) as the shell would: due timers first, at their time; each
    step is yielded before the next is taken, so the machine can be looked at in between."""
    now = 0.0
    reads: dict[str, list[str]] = {}
    for gap, event in timeline:
        now += gap
        while (deadline := m.next_deadline()) is not None and deadline <= now:
            since = _waited_since(m)
            yield Played(answer_ledger(m, m.handle_timer(deadline), deadline), deadline, since,
                         reads)
        before, since = m.transit, _waited_since(m)
        event = dataclasses.replace(event, at=now)
        if isinstance(event, IdentitySeen) and before is not None and m.state in (
            LaneState.LOADING, LaneState.HOLD
        ):
            reads.setdefault(before.transit_id, []).extend(event.reads)
        yield Played(step(m, event, now), now, since, reads)


def policy_opens(
    m: LaneMachine, timeline: list[tuple[float, Any]],
) -> Iterator[tuple[dict[str, Any], Transit, Mapping[str, list[str]]]]:
    """Each ``open`` decision the policy made while ``timeline`` played, with the transit it
    opened and the identity reads so far."""
    for played in play(m, timeline):
        for made in decisions(played.out):
            if made["decision"] != "open" or made.get("by") != "policy":
                continue
            transit = m.transit
            assert transit is not None, "an open decision with no transit"
            yield made, transit, played.reads
