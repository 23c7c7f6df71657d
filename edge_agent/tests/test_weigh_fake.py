"""The fake indicator through the real reader, in virtual time: every protocol's real encoder
writes what its real decoder reads, faults included, and an unplugged port is retried on the
back-off's timeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import serial

from edge_agent.backoff import Backoff
from edge_agent.drivers.weighbridge import IndicatorArrival, WeighbridgeReader
from edge_agent.drivers.weighbridge_fake import (
    INDICATORS,
    MAX_BACKLOG_FRAMES,
    FakeIndicator,
)
from edge_agent.errors import DeviceError, LocalProtocolError
from edge_agent.protocols.indicators import (
    POLLED,
    PROTOCOLS,
    WITHOUT_MOTION_FLAG,
    FrameError,
    IndicatorReading,
)

STEP_S = 1 / 64  # a binary fraction: a clock stepped by it lands exactly on the back-off's times
URL = "fake-indicator://test-bridge"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Bench:
    """A fake indicator registered under ``URL`` and the real reader on it, one clock."""

    def __init__(self, protocol: str, clock: Clock, **options: object) -> None:
        self.clock = clock
        self.indicator = INDICATORS.register(
            "test-bridge", FakeIndicator(protocol, clock=clock, encoder_options=options)
        )
        self.slept: list[float] = []
        self.reader = WeighbridgeReader(
            URL, protocol, clock=clock, sleep=self.slept.append,
            backoff=Backoff(0.25, 4.0, jitter=0.0),
        )

    def run(self, seconds: float) -> list[IndicatorArrival]:
        """Read every ``STEP_S`` of virtual time for ``seconds``."""
        got: list[IndicatorArrival] = []
        for _ in range(round(seconds / STEP_S)):
            got += self.reader.read(STEP_S)
            self.clock.advance(STEP_S)
        return got


MakeBench = Callable[..., Bench]


@pytest.fixture
def bench(clock: Clock) -> Iterator[MakeBench]:
    made: list[Bench] = []

    def make(protocol: str, **options: object) -> Bench:
        made.append(Bench(protocol, clock, **options))
        return made[-1]

    yield make
    for b in made:
        b.reader.close()
    INDICATORS.unregister("test-bridge")


def readings(arrivals: list[IndicatorArrival]) -> list[IndicatorReading]:
    return [a.item for a in arrivals if isinstance(a.item, IndicatorReading)]


def errors(arrivals: list[IndicatorArrival]) -> list[FrameError]:
    return [a.item for a in arrivals if isinstance(a.item, FrameError)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_protocol_decodes_what_its_encoder_sent(bench: MakeBench, protocol: str) -> None:
    b = bench(protocol)
    b.reader.read(0)  # open the port
    b.indicator.set_weight(35_480.0, motion=True)
    got = b.run(1.0)
    assert not errors(got)
    assert len(readings(got)) in (9, 10, 11)  # 10 Hz; the first tick may fall before the open
    motion = None if protocol in WITHOUT_MOTION_FLAG else True
    assert {(r.kg, r.motion) for r in readings(got)} == {(35_480.0, motion)}
    stamps = [a.at for a in got]
    assert stamps == sorted(stamps) and b.clock() - 1.0 <= stamps[0]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_damaged_frame_costs_only_itself(bench: MakeBench, protocol: str) -> None:
    b = bench(protocol)
    opening = b.reader.read(0)
    b.indicator.set_weight(12_000.0)
    before = b.run(0.5)
    b.indicator.damage_next()
    after = b.run(0.5)
    assert not errors(before) and len(errors(after)) == 1
    assert {r.kg for r in readings(before + after)} == {12_000.0}
    assert len(readings(after)) >= 3
    assert (b.reader.frames, b.reader.errors) == (len(readings(opening + before + after)), 1)


@pytest.mark.parametrize("options", [{"with_checksum": False}, {"short": True}, {"parity": True}])
def test_toledo_variants_through_the_reader(bench: MakeBench, options: dict[str, object]) -> None:
    b = bench("toledo", **options)
    b.reader.read(0)
    b.indicator.set_weight(480.0)
    b.run(0.5)
    b.indicator.damage_next()
    got = b.run(0.5)
    assert len(errors(got)) == 1 and {r.kg for r in readings(got)} == {480.0}


def test_frames_follow_a_trace_on_the_fake_clock(bench: MakeBench) -> None:
    b = bench("ad-ascii")
    b.reader.read(0)
    played_at = b.clock()
    b.indicator.play([(0.0, 0.0), (0.5, 6_000.0), (1.0, 12_000.0)])
    got = b.run(3.0)
    shown = [(round(a.at - played_at, 1), a.item.kg, a.item.motion)
             for a in got if isinstance(a.item, IndicatorReading)]
    assert shown[0][1:] == (0.0, False)
    assert (0.5, 6_000.0, True) in shown and (1.0, 12_000.0, True) in shown
    assert shown[-1][1:] == (12_000.0, False)  # a second after the last change: stable
    first_stable = next(t for t, kg, motion in shown if kg == 12_000.0 and not motion)
    assert first_stable == 2.0  # the indicator's rule: no change within the last second


def test_silence_garbage_and_recovery(bench: MakeBench) -> None:
    b = bench("yaohua-tf0")
    b.reader.read(0)
    b.indicator.set_weight(20_000.0)
    assert readings(b.run(0.5))
    silenced_at = b.clock()
    b.indicator.set_silent()
    quiet = b.run(2.0)
    assert len(quiet) <= 1 and all(a.at <= silenced_at for a in quiet)  # sent before the cut
    b.indicator.set_silent(False)
    b.indicator.inject(b"\x02\x02garbage\xff")
    got = b.run(0.5)
    assert errors(got) and {r.kg for r in readings(got)} == {20_000.0}
    assert b.reader.connected  # silence is the watcher's business: the port stays open


def test_a_virtual_clock_never_blocks_and_a_late_reader_gets_the_newest_frames(
    bench: MakeBench,
) -> None:
    b = bench("yaohua-tf0")
    b.reader.read(0)
    start = b.clock()
    b.reader.read(60.0)  # returns what is due now, at once: nothing moves the clock
    assert b.clock() == start
    b.indicator.set_weight(100.0)
    b.clock.advance(1_000.0)
    got = b.reader.read(0)
    assert len(got) == MAX_BACKLOG_FRAMES and {r.kg for r in readings(got)} == {100.0}


def test_polled_indicator_answers_each_request(bench: MakeBench) -> None:
    assert {"sma"} == POLLED
    b = bench("sma")
    b.indicator.set_weight(8_000.0, motion=True)
    got = b.run(1.0)
    requests = b.indicator.commands
    assert requests and set(requests) == {"W"}
    assert len(readings(got)) == len(requests) == 10  # one poll per 0.1 s, one reply each
    assert {(r.kg, r.motion) for r in readings(got)} == {(8_000.0, True)}


def test_polled_indicator_streams_after_R_and_refuses_unknown_commands(bench: MakeBench) -> None:
    b = bench("sma")
    b.reader.read(0)
    assert b.reader.send(b"\nQ\r")
    got = b.reader.read(0)
    assert [e.reason for e in errors(got)] == ["indicator did not understand the command"]
    assert b.reader.send(b"\nR\r")
    assert len(readings(b.run(1.0))) > 10  # its own 10 Hz stream on top of the polls


def test_an_unplugged_indicator_is_reopened_on_the_back_off_timeline(bench: MakeBench) -> None:
    b = bench("toledo")
    b.indicator.set_weight(5_000.0)
    assert readings(b.run(0.5))
    b.indicator.unplug()
    lost_at = b.clock()
    assert b.run(12.0) == []
    attempts = [round(t - lost_at, 6) for t in b.indicator.open_attempts[1:]]
    # The failed read starts the back-off: 0.25 s, doubling to the 4 s cap; no busy reopening.
    assert attempts == [0.25, 0.75, 1.75, 3.75, 7.75, 11.75]
    assert not b.reader.connected and all(0 <= s <= STEP_S for s in b.slept)
    b.indicator.plug()
    got = b.run(5.0)
    assert b.reader.connected and b.reader.reconnects == 1
    assert b.indicator.open_attempts[-1] == pytest.approx(lost_at + 15.75)
    assert {r.kg for r in readings(got)} == {5_000.0}
    # A success starts the back-off over.
    b.indicator.unplug()
    lost_again = b.clock()
    b.run(1.0)
    again = [round(t - lost_again, 6) for t in b.indicator.open_attempts[8:]]
    assert again == [0.25, 0.75]


def test_an_unplugged_fake_refuses_to_open_and_a_port_is_exclusive(clock: Clock) -> None:
    indicator = FakeIndicator("yaohua-tf0", clock=clock)
    port = indicator.open()
    with pytest.raises(DeviceError, match="busy"):
        indicator.open()
    indicator.unplug()
    with pytest.raises(serial.SerialException, match="disconnected"):
        port.read(1)
    port.close()
    with pytest.raises(DeviceError, match="unplugged"):
        indicator.open()


def test_the_fake_refuses_what_its_format_cannot_carry(clock: Clock) -> None:
    with pytest.raises(LocalProtocolError):
        FakeIndicator("yaohua-tf0", clock=clock).set_weight(None, overload=True)
    with pytest.raises(ValueError, match="time order"):
        FakeIndicator("sma", clock=clock).play([(1.0, 0.0), (0.5, 10.0)])


def test_on_the_wall_clock_a_read_waits_for_the_next_frame() -> None:
    INDICATORS.register("wall-bridge", FakeIndicator("yaohua-eq", rate_hz=50))
    reader = WeighbridgeReader("fake-indicator://wall-bridge", "yaohua-eq")
    try:
        got: list[IndicatorArrival] = []
        for _ in range(50):
            got += reader.read(0.1)
            if got:
                break
    finally:
        reader.close()
        INDICATORS.unregister("wall-bridge")
    assert [r.kg for r in readings(got)][:1] == [0.0]
