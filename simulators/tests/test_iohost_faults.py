"""The firmware in the loop behind a misbehaving cable: loss, corruption, unplug, reset."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from edge_agent.drivers.ioboard import BoardEvents, IoBoard
from edge_agent.protocols.iolink_session import (
    BoardHello,
    BoardSnapshot,
    CommandResult,
    IoEvent,
    LinkLost,
    LinkUp,
)
from simulators.iohost import BarrierLoop, IoBoardHost, micropython_executable
from simulators.linkfault import LinkFaults

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not micropython_executable().exists(), reason="MicroPython unix port not installed"
    ),
]


class Events:
    def __init__(self, board: IoBoard) -> None:
        self.board = board
        self.stream = BoardEvents(board)

    @property
    def seen(self) -> list[IoEvent]:
        return self.stream.seen

    def wait(self, predicate: Callable[[IoEvent], bool], timeout: float = 5.0) -> IoEvent:
        event = self.stream.next(predicate, timeout)
        if event is None:
            raise AssertionError(f"no matching event in {timeout} s: {self.seen[-6:]}")
        return event

    def pump(self, seconds: float) -> None:
        self.stream.pump(seconds)

    def result(self, seq: int, timeout: float = 5.0) -> str:
        event = self.wait(lambda e: isinstance(e, CommandResult) and e.seq == seq, timeout)
        assert isinstance(event, CommandResult)
        return event.result

    def barrier(self, state: str, timeout: float = 5.0) -> BoardSnapshot:
        event = self.wait(lambda e: isinstance(e, BoardSnapshot) and e.barrier == state, timeout)
        assert isinstance(event, BoardSnapshot)
        return event


@dataclass
class Bench:
    host: IoBoardHost
    cable: LinkFaults
    board: IoBoard
    ev: Events


@pytest.fixture
def bench() -> Iterator[Bench]:
    with IoBoardHost() as host, BarrierLoop(host, travel_s=0.6), LinkFaults(host.port) as cable:
        board = IoBoard(cable.port, t_clear_s=0.3)
        board.open(timeout=5.0)
        try:
            yield Bench(host, cable, board, Events(board))
        finally:
            board.close()
        assert host.alive and not host.watchdog_expired, host.log()


def test_lossy_noisy_link_still_converges(bench: Bench) -> None:
    host, lf, board, ev = bench.host, bench.cable, bench.board, bench.ev
    ev.barrier("closed")
    for plan in (lf.to_board, lf.to_agent):
        plan.drop, plan.corrupt, plan.duplicate, plan.reorder = 0.15, 0.15, 0.1, 0.1
    ev.pump(2.0)  # heartbeats and snapshots through the noise; the link must hold
    assert not [e for e in ev.seen if isinstance(e, LinkLost)]
    # Several cycles, so that some command or its answer is certainly lost on the way
    # (one cycle gets through untouched about half the time) and retransmission is exercised.
    for _ in range(4):
        assert ev.result(board.open_barrier(valid_for_s=3.0)) == "ok"
        ev.barrier("open")
        assert ev.result(board.close_when_clear(valid_for_s=3.0)) == "ok"
        ev.barrier("closed")
    assert host.wait_for_output("light_red", True, 1.0)
    for plan in (lf.to_board, lf.to_agent):
        assert {"drop", "corrupt", "duplicate", "reorder"} <= set(plan.counts), plan.counts
    stats = board.link_stats()
    assert stats["errors"] > 0 and stats["retransmits"] > 0


def test_delay_beyond_the_deadline_is_rejected_not_executed(bench: Bench) -> None:
    host, lf, board, ev = bench.host, bench.cable, bench.board, bench.ev
    ev.barrier("closed")
    ev.pump(0.3)
    lf.to_board.delay_s = 0.6  # every host frame, heartbeats included, arrives late
    seq = board.open_barrier(valid_for_s=0.3)
    assert ev.result(seq) in ("expired", "no_answer")
    ev.pump(0.8)
    assert not any(v for t, n, v in host.output_changes() if n == "barrier_open")


def test_unplug_holds_the_safe_state_then_reconnects(bench: Bench) -> None:
    """A truck passing while the cable is out is in edge_agent/tests/test_ioboard.py, on the
    same firmware core in virtual time (where the board's sampling can be seen)."""
    host, lf, board, ev = bench.host, bench.cable, bench.board, bench.ev
    ev.barrier("closed")
    assert ev.result(board.open_barrier()) == "ok"
    ev.barrier("open")
    assert host.wait_for_output("light_green", True, 1.0)
    unplugged = time.monotonic()
    lf.unplug()
    lost = ev.wait(lambda e: isinstance(e, LinkLost))
    assert isinstance(lost, LinkLost)
    assert host.wait_for_output("light_red", True, 2.0)  # S8: red once the host is silent
    lf.plug()
    ev.wait(lambda e: isinstance(e, LinkUp), timeout=6.0)
    snap = ev.barrier("open")
    # Nothing the board keeps would close it by itself: it must be asked.
    assert "handshake" in snap.flags and not {"passed", "close_pending"} & snap.flags
    asked = time.monotonic()
    # pending while the T_clear restarted by the new handshake's CONFIG has not held yet
    assert ev.result(board.close_when_clear()) in ("ok", "pending")
    ev.barrier("closed")
    close_on = [t for t, n, v in host.output_changes() if n == "barrier_close" and v]
    assert close_on and not [t for t in close_on if unplugged <= t < asked]
    assert close_on[0] > asked  # the relay timeline: the first close came when asked


def test_board_reset_mid_motion(bench: Bench) -> None:
    host, _lf, board, ev = bench.host, bench.cable, bench.board, bench.ev
    ev.barrier("closed")
    assert ev.result(board.open_barrier()) == "ok"
    assert host.wait_for_output("barrier_open", True, 2.0)
    time.sleep(0.2)  # half-way up
    restarted = time.monotonic()
    host.restart(reset_cause="watchdog")
    hello = ev.wait(lambda e: isinstance(e, BoardHello) and e.reset_cause == "watchdog", 8.0)
    assert isinstance(hello, BoardHello)
    snap = ev.barrier("stopped")
    assert not snap.outputs["barrier_open"] and snap.outputs["light_red"]
    asked = time.monotonic()
    assert ev.result(board.open_barrier()) == "ok"
    ev.barrier("open")
    # The relay timeline: from the reset until asked again, no direction relay came on.
    moved = [(t, n) for t, n, v in host.output_changes()
             if v and n in ("barrier_open", "barrier_close") and restarted <= t < asked]
    assert moved == []


def test_board_keeps_its_loop_when_the_host_stops_reading(bench: Bench) -> None:
    _host, lf, board, ev = bench.host, bench.cable, bench.board, bench.ev
    ev.barrier("closed")
    before = board.snapshot  # the board's uptime as the pause starts
    assert before is not None
    lf.pause_board_reading(True)
    ev.wait(lambda e: isinstance(e, LinkLost), timeout=3.0)
    ev.pump(1.0)  # HELLOs go on; what the board did meanwhile is read from its own clock below
    lf.pause_board_reading(False)
    up = ev.wait(lambda e: isinstance(e, LinkUp), timeout=5.0)
    snap = ev.barrier("closed")
    assert snap.loop_max_us < 200_000
    # The backlog: the board's answers to the HELLOs of the pause, stamped by its uptime (no
    # HELLO goes out once the link is up); the last ones may come in a later read.
    ev.wait(lambda e: isinstance(e, BoardHello) and e.uptime_ms > before.uptime_ms + 1500)
    answers = [e for e in ev.seen if isinstance(e, BoardHello) and e.at >= up.at]
    uptimes = [before.uptime_ms] + [a.uptime_ms for a in answers]
    assert len(answers) >= 3 and {a.reset_cause for a in answers} == {"power_on"}
    assert uptimes == sorted(uptimes) and uptimes[-1] - uptimes[0] > 1500  # > its 1 s watchdog
    gaps = [b - a for a, b in itertools.pairwise(uptimes[1:])]
    assert max(gaps) < 500, gaps  # each HELLO (every 250 ms) answered in its turn


def test_random_inputs_and_commands_keep_the_relay_rules() -> None:
    """A shorter random walk against the firmware in the loop, judged on the relay timeline."""
    rng = random.Random(11)
    with IoBoardHost() as host, BarrierLoop(host, travel_s=0.5) as loop:
        board = IoBoard(host.port, t_clear_s=0.2)
        board.open()
        ev = Events(board)
        presence: list[tuple[float, bool]] = []  # (time, any presence input set)
        inputs = {"loop_a": False, "loop_b": False, "photo_eye": False}
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            roll = rng.random()
            if roll < 0.3:
                name = rng.choice(list(inputs))
                inputs[name] = not inputs[name]
                host.set_inputs(**{name: inputs[name]})
                presence.append((time.monotonic(), any(inputs.values())))
            elif roll < 0.45:
                board.open_barrier()
            elif roll < 0.6:
                board.close_when_clear()
            ev.pump(rng.uniform(0.02, 0.25))
        board.close()
        assert loop.motor.conflicts == 0
    changes = host.output_changes()
    state = {"barrier_open": False, "barrier_close": False}
    for at, name, value in changes:
        if name in state:
            state[name] = value
            assert not (state["barrier_open"] and state["barrier_close"]), "S6"
        if name == "barrier_close" and value:
            # S2: no close starts while presence was set (30 ms grace for the side channel).
            before = [p for t, p in presence if t <= at - 0.03]
            assert not (before and before[-1]), f"close relay on at {at} with presence"
    assert any(name == "barrier_open" and v for _, name, v in changes)


def test_a_hung_loop_is_reset_by_the_watchdog(bench: Bench) -> None:
    host, board, ev = bench.host, bench.board, bench.ev
    ev.barrier("closed")
    host.stall(1.5)  # longer than the board's 1 s watchdog
    hello = ev.wait(lambda e: isinstance(e, BoardHello) and e.reset_cause == "watchdog", 30.0)
    assert isinstance(hello, BoardHello)
    assert host.watchdog_resets >= 1  # a loaded machine may starve the rebooting loop once more
    ev.barrier("closed")
    assert ev.result(board.open_barrier()) == "ok"
