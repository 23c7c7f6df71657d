"""The lane table has no gaps, a strict machine keeps to it, and its picture is current."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, get_args

import pytest

from edge_agent.lane import machine as lane_machine
from edge_agent.lane.diagram import render
from edge_agent.lane.inputs import LaneInput
from edge_agent.lane.machine import TRANSITIONS, LaneMachine, LaneState, MachineConfig
from edge_agent.lane.table import DeadlinePassed, Ignored, On, UnexpectedTransition, UnhandledInput
from edge_agent.tests.lane_builders import truck_on

PAGE = Path(__file__).resolve().parents[2] / "docs" / "lane-states.md"
INPUT_TYPES = (*get_args(LaneInput), DeadlinePassed)


def strict() -> LaneMachine:
    counter = itertools.count(1)
    return LaneMachine(MachineConfig(), new_id=lambda: f"id{next(counter)}", strict=True)


@pytest.mark.parametrize("state", list(LaneState))
def test_every_input_is_either_handled_or_ignored_with_a_reason_in_every_state(
    state: LaneState,
) -> None:
    row = TRANSITIONS[state]
    assert set(row) == set(INPUT_TYPES), f"{state.value}: gaps {set(INPUT_TYPES) - set(row)}"
    for kind, entry in row.items():
        assert isinstance(entry, On | Ignored), (state, kind)
        if isinstance(entry, Ignored):
            assert entry.why.strip(), f"{state.value}/{kind.__name__} ignored without a reason"
        else:
            assert entry.to, f"{state.value}/{kind.__name__} names no next state"


def test_a_strict_machine_refuses_an_input_its_table_does_not_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = {k: v for k, v in TRANSITIONS[LaneState.IDLE].items() if k is not type(truck_on(0))}
    monkeypatch.setitem(lane_machine.TRANSITIONS, LaneState.IDLE, row)
    with pytest.raises(UnhandledInput, match="TruckOnDeck in state idle"):
        strict().handle(truck_on(1.0), 1.0)


def test_a_strict_machine_refuses_a_handler_that_lands_where_its_entry_does_not_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry: Any = TRANSITIONS[LaneState.IDLE][type(truck_on(0))]
    wrong = On(entry.handler, LaneState.IDLE)  # the handler starts a transit: LOADING
    row = {**TRANSITIONS[LaneState.IDLE], type(truck_on(0)): wrong}
    monkeypatch.setitem(lane_machine.TRANSITIONS, LaneState.IDLE, row)
    with pytest.raises(UnexpectedTransition, match="idle to loading"):
        strict().handle(truck_on(1.0), 1.0)


def test_the_state_diagram_page_is_the_table_s_current_picture() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/lane-states.md is out of date: run "
        "`python -m edge_agent.lane.diagram > docs/lane-states.md`")
