"""Seals and containers at the lane, through the whole LaneAgent on the fakes in virtual time:
the e-seal reader on ``fake-eseal://``, container numbers through the entry socket's lines."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from edge_agent.container_entry import ContainerEntry, parse_entry
from edge_agent.drivers.eseal_fake import ESEAL_READERS, FakeEsealReader
from edge_agent.lane.inputs import IdentitySeen, IdentitySourceChanged
from edge_agent.lane.machine import LaneState
from edge_agent.protocols import gp1
from edge_agent.protocols.iolink import MsgType
from edge_agent.tests.virtual_trucks import VALID, decision_of, held_plan
from simulators.scenarios import DEMO, TruckPlan
from simulators.virtual_lane import VirtualLane

SEAL = "ES-00471135"
CONTAINER = "MSCU1234566"


class IdentityLane(VirtualLane):
    """The virtual lane with a seal check on the fake e-seal reader and a container check;
    ``step`` pumps the agent's seal reader as its thread would."""

    def __init__(self, workdir: Path, *, unread: str = "hold") -> None:
        self.unread = unread
        self.containers_line: str | None = None  # typed at the entry as the pass is shown
        super().__init__(workdir, DEMO)

    def _write_config(self, workdir: Path) -> Path:
        self.eseal = ESEAL_READERS.register(self._name, FakeEsealReader(clock=self.clock))
        path = super()._write_config(workdir)
        path.write_text(path.read_text() + (
            f'\n[eseal]\nurl = "fake-eseal://{self._name}"\nwait_s = 2\n'
            f'unread = "{self.unread}"\n'
            f'\n[containers]\ncheck = true\nsocket = "{workdir}/containers.sock"\nwait_s = 2\n'))
        return path

    def step(self) -> None:
        super().step()
        seals = self.agent.seals
        assert seals is not None
        now = self.clock()
        for item in seals.pump(now, seals.reader.read(0.0), self.agent._open_transit()):
            self.agent.handle(item, now)

    def _on_show(self, showing: bool) -> None:
        super()._on_show(showing)
        if showing and self.containers_line is not None:
            assert self.enter_containers(self.containers_line).startswith("ok")

    def enter_containers(self, line: str) -> str:
        """A line typed at the container entry, as the socket hands it on."""
        entry = self.agent.containers
        assert entry is not None
        taken: list[Any] = []
        entry._put = taken.append
        reply = entry.take(line.encode())
        for item in taken:
            self.agent.handle(item, self.clock())
        return reply

    def close(self) -> None:
        super().close()
        ESEAL_READERS.unregister(self._name)


def sealed_pass(lane: VirtualLane, plan: TruckPlan, *, seals: tuple[str, ...] = (SEAL,),
                containers: tuple[str, ...] = ()) -> str:
    text: str = gp1.issue_pass(
        lane.issuer_key, release_no="RL-S1", enterprise="Demo Logistics Co.",
        plates=(plan.truck.plate,), containers=containers, seals=seals,
        declared_gross_kg=plan.declared, tolerance_kg=300, site=DEMO.site, gates=(DEMO.gate,),
        direction="exit", valid_from=int(lane.wall()) - 3600, valid_for_s=4 * 3600)
    return text


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[IdentityLane]:
    with closing(IdentityLane(tmp_path)) as virtual:
        yield virtual


def test_a_sealed_truck_heard_closed_opens_with_the_seal_confirmed(lane: IdentityLane) -> None:
    lane.eseal.show(SEAL, "closed")
    outcome = lane.run_truck(VALID, pass_text=sealed_pass(lane, VALID))
    assert outcome.ok, outcome.problems
    checks = {c["check"]: c for c in decision_of(lane, outcome)["identity"]}
    assert checks["seal"]["code"] is None and checks["seal"]["matched"] == [SEAL]
    assert checks["container"]["code"] is None  # a pass naming none, none read: empty truck


def test_a_tampered_seal_holds_with_vehicle_seal_tampered(lane: IdentityLane) -> None:
    lane.eseal.show(SEAL, "tampered")
    plan = held_plan("tampered", "vehicle.seal_tampered")
    outcome = lane.run_truck(plan, pass_text=sealed_pass(lane, plan))
    assert outcome.ok, outcome.problems
    [check] = [c for c in decision_of(lane, outcome)["identity"] if c["check"] == "seal"]
    assert check["tampered"] == [SEAL]
    assert not lane.board.received(MsgType.OPEN)


@pytest.mark.parametrize(("unread", "decision"), [("hold", "hold"), ("flag", "open")])
def test_a_seal_never_heard_is_held_or_flagged_by_the_site_policy(
    tmp_path: Path, unread: str, decision: str,
) -> None:
    lane = IdentityLane(tmp_path, unread=unread)
    try:
        plan = (held_plan("no-seal", "vehicle.seal_unread") if decision == "hold"
                else VALID)
        outcome = lane.run_truck(plan, pass_text=sealed_pass(lane, plan))
        assert outcome.ok, outcome.problems
        made = decision_of(lane, outcome)
        assert made["decision"] == decision
        if decision == "open":
            assert made["flags"] == ["vehicle.seal_unread"]
    finally:
        lane.close()


def test_a_seal_reader_that_goes_silent_is_lost_and_the_lane_carries_on(
    lane: IdentityLane,
) -> None:
    lane.run_for(1.0)
    assert lane.agent.status.document()["devices"]["eseal"]["ok"] is True
    lane.eseal.unplug()
    lane.run_for(5.0)
    status = lane.agent.status.document()["devices"]["eseal"]  # as health reports it
    assert status["ok"] is False and "silent" in status["error"]
    lost = [r["data"] for r in lane.records() if r["type"] == "abnormality"]
    assert lost[-1]["code"] == "lane.identity_source_lost" and "e-seal" in lost[-1]["detail"]
    plan = held_plan("reader-lost", "vehicle.seal_unread")
    outcome = lane.run_truck(plan, pass_text=sealed_pass(lane, plan))  # decided at once
    assert outcome.ok, outcome.problems
    assert lane.agent.machine.state is LaneState.IDLE
    lane.eseal.plug()
    lane.run_for(6.0)
    assert lane.agent.status.document()["devices"]["eseal"]["ok"] is True
    types = [(r["type"], r["data"].get("code")) for r in lane.records()]
    assert types.count(("abnormality", "lane.identity_source_lost")) == 1


def test_a_container_the_pass_does_not_name_holds_as_a_mismatch(lane: IdentityLane) -> None:
    lane.eseal.show(SEAL, "closed")
    plan = held_plan("other-container", "vehicle.container_mismatch")
    text = sealed_pass(lane, plan, containers=(CONTAINER,))
    lane.containers_line = "TGHU 987654 2"
    outcome = lane.run_truck(plan, pass_text=text)
    assert outcome.ok, outcome.problems
    [check] = [c for c in decision_of(lane, outcome)["identity"] if c["check"] == "container"]
    assert check["unexpected"] == ["TGHU9876542"] and check["missing"] == [CONTAINER]


def test_an_empty_truck_s_pass_and_a_container_read_hold_as_a_mismatch(
    lane: IdentityLane,
) -> None:
    lane.eseal.show(SEAL, "closed")
    plan = held_plan("undeclared-container", "vehicle.container_mismatch")
    lane.containers_line = CONTAINER
    outcome = lane.run_truck(plan, pass_text=sealed_pass(lane, plan, containers=()))
    assert outcome.ok, outcome.problems
    [check] = [c for c in decision_of(lane, outcome)["identity"] if c["check"] == "container"]
    assert check["expected"] == [] and check["unexpected"] == [CONTAINER]
    assert "pass names none" in check["detail"]


# -- the container entry socket -----------------------------------------------------------------


def test_entry_lines_are_numbers_separated_by_commas_and_bad_lines_are_refused() -> None:
    assert parse_entry(b"MSCU 123456 6, TGHU9876542") == (("MSCU 123456 6", "TGHU9876542"), None)
    assert parse_entry(b"  ,; ")[1] == "no container number on the line"
    assert parse_entry(b"\xff")[1] == "a line must be UTF-8 text"
    assert "at most" in (parse_entry(b"x" * 2000)[1] or "")


def test_the_entry_socket_hands_each_line_to_the_lane_and_answers_it() -> None:
    put: list[IdentitySeen | IdentitySourceChanged] = []
    with tempfile.TemporaryDirectory(prefix="ce") as folder:  # short: a socket path is short
        entry = ContainerEntry(Path(folder) / "c.sock", put.append, lambda: 5.0)
        entry.start()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(entry.path))
                client.sendall(b"MSCU1234566\n\n")
                answers = client.makefile("rb")
                replies = answers.readline(), answers.readline()
        finally:
            entry.close()
    assert replies[0] == b"ok 1\n" and replies[1].startswith(b"error: ")
    assert put == [IdentitySeen(5.0, "container", ("MSCU1234566",))]
    assert entry.status()["entries"] == 1 and entry.status()["refused"] == 1


def test_an_entry_socket_that_cannot_be_made_tells_the_lane_its_source_is_down(
    tmp_path: Path,
) -> None:
    (tmp_path / "taken").write_text("not a socket")
    put: list[IdentitySeen | IdentitySourceChanged] = []
    entry = ContainerEntry(tmp_path / "taken", put.append, lambda: 1.0)
    entry.start()
    [change] = put
    assert isinstance(change, IdentitySourceChanged) and change.kind == "container"
    assert not change.up and "not a socket" in change.reason
    assert entry.status()["ok"] is False
