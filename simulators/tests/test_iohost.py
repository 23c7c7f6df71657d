"""The real firmware in the MicroPython unix port + the agent's IoBoard driver + the arm model.

The same firmware core runs in-process on the fake board in edge_agent/tests/test_ioboard.py,
in virtual time; these tests keep what needs the real process: its loop, pins and pty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from edge_agent.drivers.ioboard import BoardEvents, IoBoard
from edge_agent.protocols.iolink_session import (
    BoardHello,
    BoardSnapshot,
    CommandResult,
    IoEvent,
    LinkUp,
)
from simulators.iohost import BarrierLoop, IoBoardHost, micropython_executable

pytestmark = pytest.mark.skipif(
    not micropython_executable().exists(), reason="MicroPython unix port not installed"
)


class Lane:
    """Board + driver + arm; the barrier loop feeds the limit switches back."""

    def __init__(self, host: IoBoardHost, board: IoBoard) -> None:
        self.host = host
        self.board = board
        self.loop = BarrierLoop(host, travel_s=0.6)
        self.loop.start()
        self.stream = BoardEvents(board)

    def stop(self) -> None:
        self.loop.stop()

    def wait(self, predicate: Callable[[IoEvent], bool], timeout: float = 5.0) -> IoEvent:
        """The next not yet consumed event matching ``predicate``."""
        event = self.stream.next(predicate, timeout)
        if event is None:
            raise AssertionError(f"no matching event in {timeout} s; last: {self.stream.seen[-5:]}")
        return event

    def snapshot(self, predicate: Callable[[BoardSnapshot], bool], timeout: float = 5.0
                 ) -> BoardSnapshot:  # fmt: skip
        event = self.wait(lambda e: isinstance(e, BoardSnapshot) and predicate(e), timeout)
        assert isinstance(event, BoardSnapshot)
        return event

    def barrier(self, state: str, timeout: float = 5.0) -> BoardSnapshot:
        return self.snapshot(lambda s: s.barrier == state, timeout)

    def hold(self, board_ms: int, timeout: float = 5.0) -> list[IoEvent]:
        """Run the link until the board's own uptime has advanced ``board_ms`` (its periodic
        frames say so); the events that came meanwhile."""
        latest = self.board.snapshot
        assert latest is not None
        mark, until = len(self.stream.seen), latest.uptime_ms + board_ms
        deadline = time.monotonic() + timeout
        while (snap := self.board.snapshot) is not None and snap.uptime_ms < until:
            assert time.monotonic() < deadline, f"board uptime stuck at {snap.uptime_ms} ms"
            self.stream.pump(0.05)
        return self.stream.seen[mark:]


@pytest.fixture
def lane() -> Iterator[Lane]:
    with IoBoardHost() as host:
        board = IoBoard(host.port, t_clear_s=0.3)
        board.open()
        lane = Lane(host, board)
        try:
            yield lane
        finally:
            lane.stop()
            board.close()
            assert host.alive, host.log()  # the firmware never crashed during the test


def result_of(lane: Lane, seq: int) -> str:
    event = lane.wait(lambda e: isinstance(e, CommandResult) and e.seq == seq)
    assert isinstance(event, CommandResult)
    return event.result


def test_handshake_reports_firmware_and_closed_barrier(lane: Lane) -> None:
    hello = lane.wait(lambda e: isinstance(e, BoardHello))
    assert isinstance(hello, BoardHello)
    assert hello.protocol == 1 and hello.reset_cause == "power_on" and len(hello.manifest) == 16
    lane.wait(lambda e: isinstance(e, LinkUp))
    snap = lane.barrier("closed")
    assert snap.outputs["light_red"] and not snap.outputs["light_green"]
    assert snap.inputs["limit_closed"] and "handshake" in snap.flags


def test_open_pass_and_auto_close(lane: Lane) -> None:
    lane.barrier("closed")
    seq = lane.board.open_barrier(valid_for_s=1.0)
    assert result_of(lane, seq) == "ok"
    assert lane.host.wait_for_output("barrier_open", True, 2.0)
    snap = lane.barrier("open")
    assert lane.host.wait_for_output("light_green", True, 1.0)  # S7: only at the open limit
    assert lane.host.wait_for_output("barrier_open", False, 1.0)
    lane.host.set_inputs(loop_b=True)
    lane.snapshot(lambda s: s.input("loop_b"))
    assert lane.host.wait_for_output("light_red", True, 1.0)
    cleared = time.monotonic()
    lane.host.set_inputs(loop_b=False)
    lane.barrier("closing")
    # Relay changes reach us over the side channel, possibly after the board's STATE frame.
    assert lane.host.wait_for_output("barrier_close", True, 1.0)
    close_on = [t for t, name, v in lane.host.output_changes() if name == "barrier_close" and v]
    assert close_on and close_on[-1] - cleared >= 0.3 - 0.02  # S4: clear held T_clear
    lane.barrier("closed")
    assert snap.loop_max_us > 0


def test_close_refused_while_loop_occupied(lane: Lane) -> None:
    lane.barrier("closed")
    assert result_of(lane, lane.board.open_barrier()) == "ok"
    lane.barrier("open")
    lane.host.set_inputs(loop_a=True)
    lane.snapshot(lambda s: s.input("loop_a"))
    seq = lane.board.close_when_clear()
    pending = lane.wait(lambda e: isinstance(e, CommandResult) and e.seq == seq)
    assert isinstance(pending, CommandResult) and pending.result == "pending"
    lane.snapshot(lambda s: "close_pending" in s.flags)
    # 0.8 s by the board's own clock with the loop occupied: its picture never changed.
    held = lane.hold(800)
    assert [e for e in held if isinstance(e, BoardSnapshot)] == []
    latest = lane.board.snapshot
    assert latest is not None and latest.barrier == "open" and latest.input("loop_a")
    assert "close_pending" in latest.flags
    cleared = time.monotonic()
    lane.host.set_inputs(loop_a=False)
    lane.barrier("closed")
    close_on = [t for t, n, v in lane.host.output_changes() if n == "barrier_close" and v]
    assert close_on and pending.at < cleared < close_on[0]  # the relay timeline: not before
    assert close_on[0] - cleared >= 0.3 - 0.02  # S4: clear held T_clear


def test_obstruction_while_closing_reopens(lane: Lane) -> None:
    lane.barrier("closed")
    assert result_of(lane, lane.board.open_barrier()) == "ok"
    lane.barrier("open")
    assert result_of(lane, lane.board.close_when_clear()) == "ok"
    lane.barrier("closing")
    assert lane.host.wait_for_output("barrier_close", True, 1.0)
    lane.snapshot(lambda s: not s.input("limit_open"))
    lane.host.set_inputs(photo_eye=True)
    lane.barrier("opening", timeout=2.0)
    assert lane.host.wait_for_output("barrier_close", False, 1.0)
    changes = lane.host.output_changes()
    blocked_at = max(t for t, n, v in changes if n == "barrier_close" and not v)
    assert lane.host.wait_for_output("barrier_open", True, 1.0)  # after the dead time
    reopen = [t for t, n, v in lane.host.output_changes() if n == "barrier_open" and v][-1]
    assert reopen - blocked_at >= 0.2 - 0.01  # S6 dead time on reversal
    lane.host.set_inputs(photo_eye=False)
    lane.barrier("open")
    lane.barrier("closed")  # the interrupted close resumes once clear held T_clear


def _buzzer(on: bool) -> Callable[[IoEvent], bool]:
    return lambda e: isinstance(e, BoardSnapshot) and e.outputs["buzzer"] == on


def test_pulse_output_sounds_the_firmware_buzzer_for_about_the_asked_time() -> None:
    with IoBoardHost() as host:
        driver = IoBoard(host.port)
        lane = Lane(host, driver)
        try:
            driver.open(timeout=5.0)
            lane.snapshot(lambda s: s.barrier == "closed" and "handshake" in s.flags)
            mark = len(host.output_changes())
            seq = driver.pulse_output("buzzer", 0.4)
            assert result_of(lane, seq) == "ok"
            on, off = lane.wait(_buzzer(True), 3.0), lane.wait(_buzzer(False), 3.0)
            assert isinstance(on, BoardSnapshot) and isinstance(off, BoardSnapshot)
            assert on.barrier == off.barrier == "closed"
            assert host.wait_for_output("buzzer", False, 2.0)
        finally:
            lane.stop()
            driver.close()
        assert host.alive, host.log()
        changes = host.output_changes()[mark:]
    # The pin itself: on once, off once, nothing else switched (red was on all along).
    assert [(name, value) for _at, name, value in changes] == [("buzzer", True), ("buzzer", False)]
    on_for = changes[1][0] - changes[0][0]
    assert 0.3 <= on_for <= 1.0, on_for  # generous: the board ends it at 400 ms by its own tick
