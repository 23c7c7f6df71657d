"""The weighbridge simulator and the truck-trace generator."""

from __future__ import annotations

import os
import select
import time

import numpy as np
import pytest

from edge_agent.protocols.indicators import (
    PROTOCOLS,
    WITHOUT_NET_FLAG,
    FrameError,
    IndicatorReading,
    make_decoder,
)
from simulators.weighbridge import FAULTS as SIM_FAULTS
from simulators.weighbridge import PROFILES, WeighbridgeSim, run_weighbridge_cli
from simulators.weight_dynamics import (
    EXPECTED_CODES,
    FAULTS,
    DeckDynamics,
    generate_truck_trace,
)


def capture(sim: WeighbridgeSim, seconds: float, request: bytes = b"") -> bytes:
    fd = os.open(sim.port, os.O_RDWR | os.O_NOCTTY)
    data = b""
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if request:
                os.write(fd, request)
            if select.select([fd], [], [], 0.05)[0]:
                data += os.read(fd, 4096)
    finally:
        os.close(fd)
    return data


def decoded(protocol: str, data: bytes) -> list[IndicatorReading]:
    return [e for e in make_decoder(protocol).receive_data(data)
            if isinstance(e, IndicatorReading)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sim_speaks_every_format_with_the_static_load(protocol: str):
    sim = WeighbridgeSim(protocol, rate_hz=40, load_fn=lambda now: 24000.0, seed=3)
    sim.start()
    try:
        data = capture(sim, 0.6, request=b"\nW\r" if protocol == "sma" else b"")
    finally:
        sim.stop()
    readings = decoded(protocol, data)
    assert len(readings) >= 3
    assert all(abs(r.kg - 24000.0) <= 3 * 20 for r in readings if r.kg is not None)
    assert all(r.kg % 20 == 0 for r in readings if r.kg is not None)


def test_frozen_fault_repeats_one_frame():
    start = time.monotonic()
    sim = WeighbridgeSim("yaohua-tf0", rate_hz=40, seed=1,
                         load_fn=lambda now: 5000.0 + 500 * (now - start))
    sim.start()
    try:
        sim.set_fault("frozen")
        time.sleep(0.1)
        data = capture(sim, 0.5)
    finally:
        sim.stop()
    frames = decoded("yaohua-tf0", data)[-10:]  # the pty may still hold frames from before
    assert len(frames) == 10 and len({r.raw for r in frames}) == 1


def test_swapped_digits_pass_the_xor_and_line_faults_make_errors():
    sim = WeighbridgeSim("yaohua-tf0", rate_hz=100, load_fn=lambda now: 35480.0, seed=1)
    sim.start()
    try:
        sim.set_fault("swapped_digits")
        sim.set_fault("partial_frames")
        data = capture(sim, 1.2)
    finally:
        sim.stop()
    events = make_decoder("yaohua-tf0").receive_data(data)
    kgs = [e.kg for e in events if isinstance(e, IndicatorReading)]
    assert any(abs(kg - 35480.0) > 100 for kg in kgs)
    assert any(isinstance(e, FrameError) for e in events)


def test_sma_stays_silent_until_polled():
    sim = WeighbridgeSim("sma", rate_hz=40, load_fn=lambda now: 1000.0)
    sim.start()
    try:
        assert capture(sim, 0.3) == b""
    finally:
        sim.stop()


def test_faults_and_profiles_are_checked():
    sim = WeighbridgeSim(load_fn=lambda now: 0.0)
    with pytest.raises(ValueError):
        sim.set_fault("gremlins")
    sim.set_fault("noisy-line")
    assert sim.faults == {"dropped_bytes", "flipped_bits"}
    assert set(PROFILES["noisy-line"]) <= set(SIM_FAULTS)
    with pytest.raises(ValueError):
        WeighbridgeSim("mettler", load_fn=lambda now: 0.0)


def test_cli_runs_for_a_bounded_time(capsys):
    assert run_weighbridge_cli(["--duration", "0.3", "--load-kg", "1000"]) == 0
    assert "weighbridge (yaohua-tf0" in capsys.readouterr().out


def test_dynamics_ring_after_a_load_change_and_settle():
    dyn = DeckDynamics(20.0, np.random.default_rng(0), noise_e=0.0)
    values = [dyn.load(i * 0.01, 0.0 if i < 10 else 30000.0) for i in range(800)]
    swing = np.ptp(values[50:150])
    assert swing > 100  # the truck bounces after arriving
    assert np.ptp(values[-100:]) < 20  # and comes to rest


def test_generator_is_deterministic_and_has_truth():
    a, b = generate_truck_trace(7), generate_truck_trace(7)
    assert np.array_equal(a.kg, b.kg) and a.truth_kg == b.truth_kg
    after = a.kg[a.t > a.stop_at + 8]
    assert abs(np.median(after) - a.truth_kg) <= 20
    assert not a.rear_clear[(a.t > 4) & (a.t < a.stop_at - 3)].all()
    assert a.rear_clear[a.t >= a.stop_at].all()


@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_generates(fault: str):
    trace = generate_truck_trace(1, fault=fault, rate_hz=5)
    assert trace.expected == EXPECTED_CODES[fault]
    assert len(trace.t) == len(trace.kg) > 20
    assert np.all(np.diff(trace.t) > 0)


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError):
        generate_truck_trace(1, fault="gremlins")


def test_frozen_traces_stall_long_enough_anywhere_and_may_come_back():
    after_stop, before_truck, resumed = [], 0, 0
    for seed in range(16):
        trace = generate_truck_trace(seed, fault="frozen", rate_hz=10)
        assert trace.frozen is not None
        begin, end = trace.frozen
        assert end - begin >= 11.0  # 6 s and 50 frames at 5 Hz fit in every stall
        stalled = trace.kg[(trace.t >= begin) & (trace.t < end)]
        assert len(stalled) >= 100 and len(set(stalled.tolist())) == 1
        assert len(set(trace.kg[trace.t < begin].tolist())) > 1  # seen flickering first
        after = trace.kg[trace.t >= end]
        resumed += len(set(after.tolist())) > 1
        after_stop.append(begin - trace.stop_at)
        before_truck += begin < trace.t[~trace.rear_clear][0]
    assert min(after_stop) < -5 and max(after_stop) > 2  # from the ramp to long after
    assert before_truck >= 2 and resumed >= 8


def test_other_faults_carry_no_stall():
    assert generate_truck_trace(1, fault="clean").frozen is None


def sim_readings(protocol: str, fault: str | None, seconds: float = 3.0
                 ) -> list[IndicatorReading]:
    """Decode what the simulator would send over ``seconds`` of a 24 t truck at 10 Hz."""
    sim = WeighbridgeSim(protocol, load_fn=lambda now: 24000.0, seed=5)
    try:
        if fault is not None:
            sim.set_fault(fault)
        frames = (sim.frame_at(i / 10) for i in range(int(seconds * 10)))
        data = b"".join(f for f in frames if f is not None)
        # A following start byte completes the last frame of the formats without a terminator.
        return decoded(protocol, data + (b"=" if protocol.startswith("yaohua-eq") else b"\x02"))
    finally:
        sim.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", ["net_mode", "zero_offset_1000"])
def test_tare_and_zero_faults_show_load_minus_1000(protocol: str, fault: str):
    clean, faulty = sim_readings(protocol, None), sim_readings(protocol, fault)
    assert len(faulty) == len(clean) >= 25
    # Same seed, same deck: every frame reads exactly 1000 kg less.
    assert [r.kg for r in faulty] == [r.kg - 1000.0 for r in clean if r.kg is not None]
    has_flag = fault == "net_mode" and protocol not in WITHOUT_NET_FLAG
    assert all(r.net == has_flag for r in faulty)
    assert not any(r.net for r in clean)


def test_net_mode_toledo_sends_the_preset_tare():
    (reading, *_) = sim_readings("toledo", "net_mode", seconds=0.5)
    assert reading.net and reading.raw[10:16] == b"001000"
