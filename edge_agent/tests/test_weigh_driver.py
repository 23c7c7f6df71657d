"""The weighbridge driver over loop:// and over a pty that gets unplugged."""

from __future__ import annotations

import os
import time
import tty

import pytest

from edge_agent.drivers.weighbridge import IndicatorArrival, WeighbridgeReader
from edge_agent.errors import ConfigError
from edge_agent.protocols.indicators import FrameError, IndicatorReading, make_encoder
from simulators.weighbridge import WeighbridgeSim


def frame(kg: float) -> bytes:
    return make_encoder("yaohua-tf0").encode(IndicatorReading(kg, None))


def read_until(
    reader: WeighbridgeReader, want: int, seconds: float = 5.0
) -> list[IndicatorArrival]:
    got: list[IndicatorArrival] = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        got += reader.read(0.05)
    return got


def weights(arrivals: list[IndicatorArrival]) -> list[float | None]:
    return [a.item.kg for a in arrivals if isinstance(a.item, IndicatorReading)]


def test_loop_url_timestamps_come_from_the_injected_clock() -> None:
    ticks = iter(range(100, 200))
    reader = WeighbridgeReader("loop://", "yaohua-tf0", clock=lambda: float(next(ticks)))
    assert reader.send(frame(1560.0) + b"junk" + frame(20.0))
    got = read_until(reader, 3)
    reader.close()
    assert all(isinstance(a, IndicatorArrival) for a in got)
    kinds = [type(a.item).__name__ for a in got]
    assert kinds == ["IndicatorReading", "FrameError", "IndicatorReading"]
    stamps = [a.at for a in got]
    assert stamps == sorted(stamps) and all(at > 99.0 for at in stamps)
    assert weights(got) == [1560.0, 20.0]
    assert (reader.frames, reader.errors) == (2, 1)


def test_arrivals_are_frozen_events() -> None:
    arrival = IndicatorArrival(5.0, IndicatorReading(1560.0, None))
    with pytest.raises(AttributeError):
        arrival.at = 6.0  # type: ignore[misc]
    assert arrival == IndicatorArrival(5.0, IndicatorReading(1560.0, None))


def test_garbage_on_a_pty_never_raises() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    reader = WeighbridgeReader(os.ttyname(slave), "yaohua-tf0")
    try:
        assert reader.read(0.01) == []  # opens the port (opening flushes old input)
        os.write(master, bytes(range(256)) * 4 + frame(35480.0))
        got = read_until(reader, 2)
    finally:
        reader.close()
        os.close(master)
        os.close(slave)
    assert any(isinstance(a.item, FrameError) for a in got)
    assert weights(got) == [35480.0]


def test_unplug_and_replug_without_an_exception() -> None:
    sim = WeighbridgeSim("yaohua-tf0", rate_hz=25, load_fn=lambda now: 12000.0, seed=1)
    sim.start()
    reader = WeighbridgeReader(sim.port, "yaohua-tf0")
    try:
        assert read_until(reader, 3)
        sim.set_fault("unplug")
        deadline = time.monotonic() + 3
        while reader.connected and time.monotonic() < deadline:
            reader.read(0.05)
        assert not reader.connected
        assert reader.read(0.05) == []
        sim.set_fault("unplug", False)
        got = read_until(reader, 5)
        assert weights(got)
        assert reader.reconnects >= 1
    finally:
        reader.close()
        sim.stop()


def test_a_missing_port_is_retried_quietly() -> None:
    slept: list[float] = []
    reader = WeighbridgeReader("/dev/does-not-exist-weighbridge", "toledo", sleep=slept.append)
    assert reader.read(0.1) == []
    assert reader.read(0.1) == []
    assert not reader.connected
    assert slept and all(0 <= s <= 0.1 for s in slept)


def test_unknown_protocol_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError):
        WeighbridgeReader("loop://", "mettler")


def test_sma_is_polled() -> None:
    sim = WeighbridgeSim("sma", rate_hz=25, load_fn=lambda now: 8000.0, seed=2)
    sim.start()
    reader = WeighbridgeReader(sim.port, "sma")
    try:
        got = read_until(reader, 3)
    finally:
        reader.close()
        sim.stop()
    kgs = weights(got)
    assert len(kgs) >= 3 and all(kg is not None and abs(kg - 8000.0) <= 60 for kg in kgs)
