"""The log's two faces: journald detection, levels, and the fields each lane record carries."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.logs import (
    TextFormatter,
    event_fields,
    parse_level,
    record_fields,
    under_journald,
)
from simulators.scenarios import DEMO
from simulators.virtual_lane import VirtualLane


def test_levels_by_name_and_a_clear_refusal() -> None:
    assert [parse_level(n) for n in ("debug", "INFO", " warning ", "error")] == [
        logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]
    with pytest.raises(ValueError, match="'loud' is not one of debug, info, warning, error"):
        parse_level("loud")


@pytest.fixture
def stream() -> Iterator[socket.socket]:
    one, other = socket.socketpair()
    yield one
    one.close()
    other.close()


def test_journald_is_recognised_by_the_stream_systemd_names(stream: socket.socket) -> None:
    info = os.fstat(stream.fileno())
    here = f"{info.st_dev}:{info.st_ino}"
    with os.fdopen(os.dup(stream.fileno()), "w") as stderr:
        assert under_journald({"JOURNAL_STREAM": here}, stderr)
        assert not under_journald({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"},
                                  stderr)  # stderr was redirected elsewhere: a file, a pipe
        assert under_journald({"INVOCATION_ID": "5d1f"}, stderr)  # a unit, not a terminal
        assert not under_journald({}, stderr)


def test_a_terminal_is_never_taken_for_journald() -> None:
    primary, secondary = os.openpty()
    try:
        with os.fdopen(secondary, "w") as tty:
            assert not under_journald({"INVOCATION_ID": "5d1f"}, tty)
    finally:
        os.close(primary)


def test_the_terminal_line_shows_the_fields_it_carries() -> None:
    record = logging.LogRecord("edge_agent", logging.INFO, __file__, 1, "event %s", ("decision",),
                               None)
    record.__dict__.update(event_fields("decision", "t-9", {"reasons": ["pass.expired"]}, 12))
    line = TextFormatter().format(record)
    assert line.endswith("INFO edge_agent: event decision "
                         "[transit_id=t-9 code=pass.expired event_type=decision]")
    assert record_fields(record) == {"transit_id": "t-9", "code": "pass.expired",
                                     "event_type": "decision", "seq": "12"}


def test_the_lanes_event_lines_carry_transit_and_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lane = VirtualLane(tmp_path, DEMO)
    try:
        with caplog.at_level(logging.INFO, logger="edge_agent"):
            outcomes = [lane.run_truck(plan) for plan in DEMO.trucks[:3]]
    finally:
        lane.close()
    events = [record_fields(r) | {"message": r.getMessage()} for r in caplog.records
              if getattr(r, "event_type", None)]
    transits = {o.transit_id for o in outcomes}
    decisions = [e for e in events if e["event_type"] == "decision"]
    assert len(decisions) >= 3 and {e["transit_id"] for e in decisions} == transits
    assert all("seq" in e for e in events)
    held = [e for e in decisions if "code" in e]  # a hold names its first reason
    assert held and all(e["code"] in e["message"] for e in held)
