"""The virtual lane's faults between and under trucks: the camera goes away and comes back, the
indicator goes quiet; and its camera's frames become the evidence of a hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.scenarios import DEMO, TruckPlan
from simulators.virtual_lane import VirtualLane
from simulators.world import TruckSpec

VALID = DEMO.trucks[0]
EXPIRED = next(p for p in DEMO.trucks if p.name == "expired-pass")


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[VirtualLane]:
    virtual = VirtualLane(tmp_path, DEMO)
    try:
        virtual.run_for(1.0)  # the camera's first frame: it counts as up
        yield virtual
    finally:
        virtual.close()


def kinds(lane: VirtualLane) -> list[tuple[str, str | None]]:
    return [(r["type"], r["data"].get("code")) for r in lane.records()]


def test_a_lost_camera_is_reported_once_and_its_return_once(lane: VirtualLane) -> None:
    lane.forget_records()
    lane.lose_camera("cable pulled")
    lane.run_for(30.0)  # read every half second: lost each time, reported once
    lane.restore_camera()
    lane.run_for(2.0)
    assert kinds(lane) == [("abnormality", "lane.camera_lost"), ("camera_restored", None)]
    assert "cable pulled" in lane.records()[0]["data"]["detail"]
    assert lane.run_truck(VALID).ok


def test_a_pass_held_up_while_the_camera_is_away_is_read_once_it_is_back(
    lane: VirtualLane,
) -> None:
    lane.lose_camera()
    lane._current_pass = lane.issue_pass(VALID)
    lane.world.send(VALID.truck)
    lane.run_for(8.0)  # the truck stands on the deck, its pass up; nothing reads it
    assert "pass_read" not in [t for t, _ in kinds(lane)]
    lane.restore_camera()
    assert lane.run_until(lambda: "pass_read" in [t for t, _ in kinds(lane)], timeout_s=5.0)


def test_an_indicator_that_goes_quiet_between_trucks_is_reported(lane: VirtualLane) -> None:
    lane.forget_records()
    lane.silence_indicator(True)
    lane.run_for(20.0)
    lane.silence_indicator(False)
    lane.run_for(5.0)
    assert kinds(lane) == [("abnormality", "weight.comm_loss")]
    assert lane.run_truck(VALID).ok


def test_an_indicator_that_goes_quiet_under_a_truck_holds_it(lane: VirtualLane) -> None:
    plan = TruckPlan("quiet", TruckSpec(plate="SU-Q0001", gross_kg=29_000, back_off_after_s=25),
                     faults=("indicator_drop",), expect_decision="hold",
                     expect_reason="weight.comm_loss")
    outcome = lane.run_truck(plan)
    assert outcome.ok, outcome.problems
    assert outcome.reasons[0] == "weight.comm_loss"
    assert lane.run_truck(VALID).ok  # the indicator sends again once the truck has gone


def test_a_hold_keeps_the_camera_frame_as_evidence(lane: VirtualLane) -> None:
    outcome = lane.run_truck(EXPIRED)
    assert outcome.ok, outcome.problems
    assert "evidence" in outcome.events
    files = lane.devices.evidence.files()
    assert len(files) == 1 and files[0].suffix == ".jpg"
    assert lane.devices.evidence.total_bytes() > 10_000  # a camera's frame, not a blank
