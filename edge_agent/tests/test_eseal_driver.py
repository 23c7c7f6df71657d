"""The e-seal reader driver on the in-process fake: sightings, line faults, unplugging, the log."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge_agent.backoff import Backoff
from edge_agent.drivers.eseal import EsealReader, SealArrival, SealLog
from edge_agent.drivers.eseal_fake import ESEAL_READERS, FakeEsealReader
from edge_agent.drivers.fakes import VirtualClock
from edge_agent.errors import LocalProtocolError
from edge_agent.identity.seals import SEAL_TAMPERED, match_seals
from edge_agent.protocols.eseal import ReaderHeartbeat, SealFrameError, SealRead

ES1, ES2 = "ES-00471135", "KHH-778812"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def fake(clock: VirtualClock) -> Iterator[FakeEsealReader]:
    reader = ESEAL_READERS.register("lane-test", FakeEsealReader(clock=clock, rate_hz=4))
    yield reader
    ESEAL_READERS.unregister("lane-test")


@pytest.fixture
def driver(clock: VirtualClock, fake: FakeEsealReader) -> Iterator[EsealReader]:
    reader = EsealReader("fake-eseal://lane-test", clock=clock, sleep=clock.advance,
                         backoff=Backoff(0.2, 1.0, jitter=0.0))
    yield reader
    reader.close()


def run(driver: EsealReader, clock: VirtualClock, seconds: float) -> list[SealArrival]:
    out: list[SealArrival] = []
    end = clock() + seconds
    while clock() < end:
        out += driver.read(0.05)
        clock.advance(0.05)
    return out


def reads(arrivals: list[SealArrival]) -> list[SealRead]:
    return [a.item for a in arrivals if isinstance(a.item, SealRead)]


def test_tags_in_range_are_reported_again_and_again_with_heartbeats(
        driver: EsealReader, fake: FakeEsealReader, clock: VirtualClock) -> None:
    fake.show(ES1, "closed", rssi_dbm=-58)
    fake.show(ES2, "tampered", rssi_dbm=-62)
    got = run(driver, clock, 2.0)
    seen = {(r.tag_id, r.status, r.rssi_dbm) for r in reads(got)}
    assert seen == {(ES1, "closed", -58), (ES2, "tampered", -62)}
    assert len(reads(got)) >= 12  # 4 Hz per tag
    assert sum(isinstance(a.item, ReaderHeartbeat) for a in got) >= 2
    assert driver.connected and driver.errors == 0


def test_a_damaged_sentence_is_counted_and_the_rest_still_read(
        driver: EsealReader, fake: FakeEsealReader, clock: VirtualClock) -> None:
    fake.show(ES1)
    run(driver, clock, 0.5)
    fake.damage_next(2)
    fake.inject(b"\x17garbage\r\n")
    got = run(driver, clock, 1.0)
    errors = [a.item for a in got if isinstance(a.item, SealFrameError)]
    assert len(errors) == 3 and driver.errors == 3
    assert any("checksum" in e.reason for e in errors)
    assert reads(got)


def test_an_unplugged_reader_is_reopened_when_it_comes_back(
        driver: EsealReader, fake: FakeEsealReader, clock: VirtualClock) -> None:
    fake.show(ES1)
    assert reads(run(driver, clock, 0.5))
    fake.unplug()
    assert run(driver, clock, 1.0) == [] and not driver.connected
    fake.plug()
    assert reads(run(driver, clock, 2.0)) and driver.reconnects == 1


def test_the_fake_refuses_a_tag_the_protocol_cannot_carry(fake: FakeEsealReader) -> None:
    with pytest.raises(LocalProtocolError):
        fake.show("ES 1")


def arrival(at: float, item: SealRead | ReaderHeartbeat) -> SealArrival:
    return SealArrival(at, item)


def test_the_log_keeps_each_tag_worst_status_and_filters_faint_ones() -> None:
    log = SealLog(min_rssi_dbm=-70)
    log.add([arrival(1.0, SealRead(ES1, "closed", -60)),
             arrival(2.0, SealRead(ES1, "tampered", -60)),
             arrival(3.0, SealRead(ES1, "closed", -60)),
             arrival(3.0, SealRead(ES2, "closed", -85))])  # too faint: another lane
    assert [(r.tag_id, r.status) for r in log.sightings(since=0.0)] == [(ES1, "tampered")]
    assert log.texts(since=0.0) == (f"{ES1}#tampered",)
    assert log.sightings(since=3.5) == []
    log.forget_before(3.5)
    assert log.sightings(since=0.0) == []


def test_the_log_knows_whether_the_reader_is_alive() -> None:
    log = SealLog()
    assert not log.alive(now=10.0)
    log.add([arrival(10.0, ReaderHeartbeat())])
    assert log.alive(now=12.0) and not log.alive(now=14.0)


def test_reader_to_verdict(driver: EsealReader, fake: FakeEsealReader,
                           clock: VirtualClock) -> None:
    fake.show(ES1, "tampered")
    log = SealLog()
    start = clock()
    log.add(run(driver, clock, 1.0))
    verdict = match_seals(log.texts(since=start), [ES1])
    assert (verdict.reason, verdict.tampered) == (SEAL_TAMPERED, (ES1,))
