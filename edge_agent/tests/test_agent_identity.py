"""The truck's identity at the lane, through the whole LaneAgent on the fakes in virtual time:
the pass's container numbers, and the plate read by the plate reader against the pass's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.lane.machine import LaneState
from edge_agent.protocols import gp1
from edge_agent.protocols.iolink import MsgType
from edge_agent.tests.virtual_trucks import VALID, decision_of, held_plan
from edge_agent.vision.plates_fake import ENGINES, ScriptedPlates
from simulators.scenarios import DEMO
from simulators.virtual_lane import VirtualLane

HELD_PLATE = "SU-K1001"  # a held truck's plate, not the valid demo truck's


# -- a container number that fails ISO 6346 -----------------------------------------------------


def test_a_pass_with_a_bad_container_number_holds_the_truck_with_that_code(
    lane: VirtualLane, monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = held_plan("bad-container", "pass.bad_container", plate=HELD_PLATE)
    with monkeypatch.context() as patched:  # an issuer that does not check its numbers
        patched.setattr(gp1, "validate_container", lambda number: None)
        text = gp1.issue_pass(
            lane.issuer_key, release_no="RL-C1", enterprise="Demo Logistics Co.",
            plates=(plan.truck.plate,), containers=("MSCU1234565",),
            declared_gross_kg=plan.declared, tolerance_kg=300, site=DEMO.site,
            gates=(DEMO.gate,), direction="exit", valid_from=int(lane.wall()) - 3600,
            valid_for_s=4 * 3600)
    outcome = lane.run_truck(plan, pass_text=text)
    assert outcome.ok, outcome.problems
    assert outcome.reasons == ["pass.bad_container"] and "open" not in outcome.barrier
    reads = [r["data"] for r in lane.transit_records(outcome.transit_id or "")
             if r["type"] == "pass_read"]
    assert reads and reads[0]["valid"] is False and reads[0]["reason"] == "pass.bad_container"
    assert lane.devices.ledger.count() == 0  # a refused pass is never marked used


# -- the plate ------------------------------------------------------------------------------------


class PlateLane(VirtualLane):
    """The virtual lane with a plate check on a region of the pass camera's frames, read by
    the agent's plate reader on the scripted engine, as its reader thread would."""

    def __init__(self, workdir: Path, *, unread: str = "hold",
                 engine: ScriptedPlates | None = None) -> None:
        self.unread = unread
        self._engine_given = engine
        super().__init__(workdir, DEMO)
        plates = self.agent.plates
        assert plates is not None
        change = plates.open(self.clock())
        if change is not None:
            self.agent.handle(change, self.clock())

    def _write_config(self, workdir: Path) -> Path:
        self.engine = ENGINES.register(self._name, self._engine_given or ScriptedPlates())
        path = super()._write_config(workdir)
        path.write_text(path.read_text() + (
            f'\n[plates]\nregion = [0, 360, 1280, 360]\nengine = "fake-plates://{self._name}"\n'
            f'wait_s = 2\nunread = "{self.unread}"\n'))
        return path

    def step(self) -> None:
        super().step()
        plates, shown = self.agent.plates, self.devices.evidence.latest()
        if plates is not None and shown is not None:
            for item in plates.read(shown[0], shown[1]):
                self.agent.handle(item, self.clock())

    def close(self) -> None:
        super().close()
        ENGINES.unregister(self._name)


@pytest.fixture
def plate_lane(tmp_path: Path) -> Iterator[PlateLane]:
    with closing(PlateLane(tmp_path)) as virtual:
        yield virtual


def test_the_truck_whose_plate_the_pass_names_opens_and_the_decision_says_so(
    plate_lane: PlateLane,
) -> None:
    plate_lane.engine.show("SU A1001")  # read without its dash
    outcome = plate_lane.run_truck(VALID)
    assert outcome.ok, outcome.problems
    decision = decision_of(plate_lane, outcome)
    [check] = decision["identity"]
    assert (check["check"], check["code"], check["matched"]) == ("plate", None, "SU-A1001")
    assert decision["flags"] == []


def test_another_truck_s_plate_holds_with_the_crop_and_the_pass_plates_as_evidence(
    plate_lane: PlateLane,
) -> None:
    plate_lane.engine.show("SU-Z9999")
    plan = held_plan("wrong-plate", "vehicle.plate_mismatch", plate=HELD_PLATE)
    outcome = plate_lane.run_truck(plan)
    assert outcome.ok, outcome.problems
    decision = decision_of(plate_lane, outcome)
    [check] = decision["identity"]
    assert check["expected"] == [plan.truck.plate] and check["reads"] == ["SU-Z9999"]
    refs = {r["data"]["ref"] for r in plate_lane.transit_records(outcome.transit_id or "")
            if r["type"] == "evidence"}
    assert f"{outcome.transit_id}-vehicle.plate_mismatch-crop" in refs  # the plate's crop
    assert decision["snapshot"] in refs  # and the scene


def test_no_plate_read_holds_the_truck_once_the_wait_is_over(plate_lane: PlateLane) -> None:
    outcome = plate_lane.run_truck(held_plan("no-plate", "vehicle.plate_unread",
                                             plate=HELD_PLATE))
    assert outcome.ok, outcome.problems
    assert decision_of(plate_lane, outcome)["identity"][0]["reads"] == []


def test_under_the_flag_policy_an_unread_plate_opens_with_the_flag(tmp_path: Path) -> None:
    lane = PlateLane(tmp_path, unread="flag")
    try:
        outcome = lane.run_truck(VALID)
        assert outcome.ok, outcome.problems
        assert decision_of(lane, outcome)["flags"] == ["vehicle.plate_unread"]
    finally:
        lane.close()


def test_a_missing_plate_engine_is_a_health_problem_and_trucks_are_decided_at_once(
    tmp_path: Path,
) -> None:
    lane = PlateLane(tmp_path, engine=ScriptedPlates(missing="model file missing"))
    try:
        status = lane.agent.status.document()["devices"]["plates"]  # as health reports it
        assert status["ok"] is False and "model file missing" in status["error"]
        lost = [r["data"] for r in lane.records() if r["type"] == "abnormality"]
        assert lost[-1]["code"] == "lane.identity_source_lost"
        assert "model file missing" in lost[-1]["detail"]
        outcome = lane.run_truck(held_plan("engine-missing", "vehicle.plate_unread",
                                           plate=HELD_PLATE))
        assert outcome.ok, outcome.problems
        assert lane.agent.machine.state is LaneState.IDLE
        assert not lane.board.received(MsgType.OPEN)
    finally:
        lane.close()
