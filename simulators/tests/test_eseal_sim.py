"""The e-seal reader simulator on a real pty, read by the agent's driver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge_agent.drivers.eseal import EsealReader, SealLog
from edge_agent.identity.seals import SEAL_TAMPERED, match_seals
from edge_agent.protocols.eseal import SealFrameError, SealRead
from simulators.errors import SimulatorSetupError
from simulators.eseal import EsealSim, run_eseal_cli
from simulators.polling import wait_until

ES1, ES2 = "ES-00471135", "KHH-778812"


@pytest.fixture
def sim() -> Iterator[EsealSim]:
    simulator = EsealSim(rate_hz=20, heartbeat_s=0.2)
    simulator.start()
    yield simulator
    simulator.stop()


def test_the_driver_reads_tags_through_the_pty(sim: EsealSim) -> None:
    sim.show(ES1, "closed", rssi_dbm=-58)
    sim.show(ES2, "tampered", rssi_dbm=-61)
    reader, log = EsealReader(sim.port), SealLog()

    def both_seen() -> bool:
        log.add(reader.read(0.1))
        return len(log.sightings(0.0)) == 2

    try:
        assert wait_until(both_seen, timeout=10)
    finally:
        reader.close()
    assert {(r.tag_id, r.status, r.rssi_dbm) for r in log.sightings(0.0)} == {
        (ES1, "closed", -58), (ES2, "tampered", -61)}
    assert log.alive_at is not None
    assert match_seals(log.texts(0.0), [ES1, ES2]).reason == SEAL_TAMPERED


def test_a_noisy_line_costs_sentences_not_the_reader(sim: EsealSim) -> None:
    sim.show(ES1)
    for fault in ("bad_checksum", "partial_lines", "noise"):
        sim.set_fault(fault)
    reader = EsealReader(sim.port)
    items: list[object] = []

    def reads_and_errors() -> bool:
        items.extend(a.item for a in reader.read(0.1))
        return (sum(isinstance(i, SealRead) for i in items) >= 5
                and any(isinstance(i, SealFrameError) for i in items))

    try:
        assert wait_until(reads_and_errors, timeout=10)
    finally:
        reader.close()
    assert {i.tag_id for i in items if isinstance(i, SealRead)} == {ES1}


def test_the_simulator_refuses_what_it_does_not_model() -> None:
    sim = EsealSim()
    try:
        with pytest.raises(SimulatorSetupError, match="tag id"):
            sim.show("ES 1")
        with pytest.raises(SimulatorSetupError, match="unknown fault"):
            sim.set_fault("fire")
    finally:
        sim.stop()


def test_cli_refuses_a_bad_seal_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_eseal_cli(["--seal", "ES-1:broken", "--duration", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simulators.eseal: ") and err.count("\n") == 1
