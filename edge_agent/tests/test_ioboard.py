"""The IoBoard driver on the in-package fake board (the real firmware core) in virtual time.

Nothing here sleeps or starts a process: the fake's port moves the virtual clock while the
driver waits on it, so seconds of lane time take milliseconds. What must not happen is
checked on the timelines both ends record (the board's relay changes, the driver's events).
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from edge_agent.drivers.fakes import VirtualClock
from edge_agent.drivers.ioboard import BoardEvents, IoBoard
from edge_agent.drivers.ioboard_fake import (
    REGISTRY,
    FakeIoBoard,
    load_firmware,
    open_fake_port,
)
from edge_agent.errors import ConfigError, DeviceError, DeviceTimeout, LocalProtocolError
from edge_agent.protocols import iolink
from edge_agent.protocols.iolink import Barrier, MsgType
from edge_agent.protocols.iolink_session import (
    BoardHello,
    BoardSnapshot,
    CommandResult,
    IoEvent,
    LinkLost,
    LinkUp,
)

T_CLEAR_S = 0.4
TRAVEL_S = 0.6  # of the fake arm


@dataclass
class Lane:
    driver: IoBoard
    board: FakeIoBoard
    clock: VirtualClock
    events: BoardEvents

    def wait(self, predicate: Callable[[IoEvent], bool], timeout: float = 5.0) -> IoEvent:
        event = self.events.next(predicate, timeout)
        if event is None:
            raise AssertionError(f"nothing matching in {timeout} s: {self.events.seen[-5:]}")
        return event

    def result(self, seq: int, timeout: float = 3.0) -> CommandResult:
        event = self.wait(lambda e: isinstance(e, CommandResult) and e.seq == seq, timeout)
        assert isinstance(event, CommandResult)
        return event

    def snapshot(self, predicate: Callable[[BoardSnapshot], bool], timeout: float = 5.0
                 ) -> BoardSnapshot:  # fmt: skip
        event = self.wait(lambda e: isinstance(e, BoardSnapshot) and predicate(e), timeout)
        assert isinstance(event, BoardSnapshot)
        return event

    def barrier(self, state: Barrier, timeout: float = 5.0) -> BoardSnapshot:
        return self.snapshot(lambda s: s.barrier == state, timeout)

    def during(self, seconds: float) -> list[IoEvent]:
        """Run the link for ``seconds`` of virtual time; the events it gave meanwhile."""
        mark = len(self.events.seen)
        self.events.pump(seconds)
        return self.events.seen[mark:]

    def relay_on(self, name: str, start: float, end: float) -> list[float]:
        """When output ``name`` went on within [start, end], by the board's own timeline."""
        changes = self.board.output_changes()
        return [t for t, n, v in changes if n == name and v and start <= t <= end]

    def sent(self, ftype: int) -> list[iolink.Frame]:
        """The host frames of one type that reached the board."""
        return [f for _, f in self.board.received(ftype) if isinstance(f, iolink.Frame)]

    def opened(self) -> BoardSnapshot:
        assert self.result(self.driver.open_barrier()).result == "ok"
        return self.barrier(Barrier.OPEN)


def make_lane(name: str, clock: VirtualClock, board: FakeIoBoard) -> Lane:
    REGISTRY.register(name, board)
    # Opened by URL, exactly as a serial port is (serialport.open_port picks the fake).
    driver = IoBoard(f"fake-ioboard://{name}", clock=clock, t_clear_s=T_CLEAR_S,
                     sleep=clock.advance)  # fmt: skip
    return Lane(driver, board, clock, BoardEvents(driver))


@pytest.fixture
def lane() -> Iterator[Lane]:
    clock = VirtualClock()
    lane = make_lane("lane", clock, FakeIoBoard(clock, travel_s=TRAVEL_S))
    lane.driver.open()
    lane.barrier(Barrier.CLOSED)
    yield lane
    lane.driver.close()
    REGISTRY.unregister("lane")
    assert lane.board.relay_conflicts == 0  # S6 on the arm: never both direction relays


# ---- handshake and link upkeep ----
def test_open_handshakes_and_configures_the_board(lane: Lane) -> None:
    hello = next(e for e in lane.events.seen if isinstance(e, BoardHello))
    assert (hello.firmware, hello.reset_cause) == ("0.1.0", "power_on")
    assert hello.manifest == load_firmware().manifest.hex()
    assert any(isinstance(e, LinkUp) for e in lane.events.seen) and lane.driver.link_up
    [config] = lane.sent(MsgType.CONFIG)
    assert config.payload == bytes.fromhex("01900fa000c8")
    assert lane.board.interlock.t_clear_ms == 400  # the firmware took it
    assert lane.driver.hello == hello and lane.driver.snapshot is not None


def test_open_times_out_on_a_silent_board_measured_on_the_injected_clock() -> None:
    clock = VirtualClock()
    board = FakeIoBoard(clock)
    board.set_silent(True)
    lane = make_lane("silent-board", clock, board)
    start = clock()
    with pytest.raises(DeviceTimeout, match="HELLO"):
        lane.driver.open(timeout=0.5)
    assert 0.5 <= clock() - start < 0.52
    assert board.open_port(timeout=0).is_open  # the driver let go of the port
    REGISTRY.unregister("silent-board")


def test_open_fails_while_unplugged() -> None:
    clock = VirtualClock()
    board = FakeIoBoard(clock)
    board.unplug()
    with pytest.raises(DeviceError, match="no such device"):
        make_lane("unplugged-board", clock, board).driver.open()
    REGISTRY.unregister("unplugged-board")


def test_heartbeats_every_200ms_keep_the_board_linked(lane: Lane) -> None:
    start = lane.clock()
    events = lane.during(5.0)
    beats = [t for t, _ in lane.board.received(MsgType.HEARTBEAT) if t >= start]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert len(beats) >= 24 and all(0.2 <= g < 0.21 for g in gaps), gaps
    assert "link" in lane.board.flags()
    assert not [e for e in events if isinstance(e, LinkLost)]


def test_snapshots_come_only_when_the_picture_changes(lane: Lane) -> None:
    lane.snapshot(lambda s: "path_clear" in s.flags)  # T_clear after the CONFIG
    quiet = lane.during(3.0)
    assert [e for e in quiet if isinstance(e, BoardSnapshot)] == []  # 15 periodic frames, no news
    lane.board.set_input("photo_eye", True)
    [snap] = [e for e in lane.during(0.1) if isinstance(e, BoardSnapshot)]
    assert snap.input("photo_eye") and not snap.periodic


# ---- the barrier, by the firmware's rules ----
def test_open_pass_and_the_board_closes_by_itself(lane: Lane) -> None:
    seq = lane.driver.open_barrier(valid_for_s=1.5)
    [frame] = lane.sent(MsgType.OPEN)
    assert frame.seq == seq
    assert lane.result(seq).result == "ok"
    snap = lane.barrier(Barrier.OPEN)
    assert snap.outputs["light_green"] and snap.input("limit_open")  # S7: green at the limit
    lane.board.set_input("loop_b", True)
    assert "passed" in lane.snapshot(lambda s: s.input("loop_b")).flags
    lane.during(1.0)
    lane.board.set_input("loop_b", False)
    cleared = lane.clock()
    lane.barrier(Barrier.CLOSING)
    closed = lane.barrier(Barrier.CLOSED)
    [close_on] = lane.relay_on("barrier_close", cleared - 5, closed.at)
    assert close_on - cleared >= T_CLEAR_S  # S4: clear held T_clear first


def test_close_waits_as_long_as_the_loop_is_occupied(lane: Lane) -> None:
    lane.opened()
    lane.board.set_input("loop_a", True)
    lane.snapshot(lambda s: s.input("loop_a"))
    pending = lane.result(lane.driver.close_when_clear())
    assert pending.result == "pending"
    events = lane.during(10.0)
    lane.board.set_input("loop_a", False)
    cleared = lane.clock()
    assert cleared - pending.at >= 10.0
    assert lane.relay_on("barrier_close", pending.at, cleared) == []
    assert [e for e in events if isinstance(e, BoardSnapshot)] == []  # open all along
    assert "close_pending" in lane.board.flags()
    closed = lane.barrier(Barrier.CLOSED)
    assert min(lane.relay_on("barrier_close", cleared, closed.at)) - cleared >= T_CLEAR_S


def test_obstruction_while_closing_reopens_after_the_dead_time(lane: Lane) -> None:
    lane.opened()
    assert lane.result(lane.driver.close_when_clear()).result == "ok"
    lane.snapshot(lambda s: s.barrier == Barrier.CLOSING and not s.input("limit_open"))
    lane.board.set_input("photo_eye", True)
    lane.barrier(Barrier.OPENING)
    lane.snapshot(lambda s: s.outputs["barrier_open"])
    changes = lane.board.output_changes()
    close_off = max(t for t, n, v in changes if n == "barrier_close" and not v)
    reopen = max(t for t, n, v in changes if n == "barrier_open" and v)
    assert reopen - close_off >= 0.2  # S6 dead time on reversal
    lane.board.set_input("photo_eye", False)
    lane.barrier(Barrier.CLOSED)  # the interrupted close resumes once clear held T_clear


def test_a_jammed_arm_faults_and_clear_fault_recovers(lane: Lane) -> None:
    lane.board.arm_jammed = True
    assert lane.result(lane.driver.open_barrier()).result == "ok"
    fault = lane.barrier(Barrier.FAULT, timeout=6.0)
    assert "open_timeout" in fault.faults and fault.outputs["light_red"]
    assert lane.result(lane.driver.open_barrier()).result == "fault"
    lane.board.arm_jammed = False
    assert lane.result(lane.driver.clear_fault()).result == "ok"
    assert lane.barrier(Barrier.CLOSED).faults == frozenset()


def test_maintenance_enter_and_leave(lane: Lane) -> None:
    assert lane.result(lane.driver.maintenance(True)).result == "ok"
    lane.barrier(Barrier.MAINTENANCE)
    assert lane.result(lane.driver.open_barrier()).result == "not_ready"
    assert lane.result(lane.driver.maintenance(False)).result == "ok"
    lane.barrier(Barrier.CLOSED)
    [enter, leave] = lane.sent(MsgType.MAINTENANCE)
    assert (enter.payload[-1], leave.payload[-1]) == (1, 0)


# ---- commands on a bad line ----
def test_a_lost_command_is_resent_with_the_same_seq(lane: Lane) -> None:
    lane.board.lose_commands(2)
    seq = lane.driver.close_when_clear()
    assert lane.result(seq).result == "ok"
    assert [f.seq for f in lane.sent(MsgType.CLOSE_WHEN_CLEAR)] == [seq]
    assert lane.driver.link_stats()["retransmits"] == 2


def test_a_command_while_the_board_boots_is_retried_until_ready() -> None:
    clock = VirtualClock()
    lane = make_lane("booting-board", clock, FakeIoBoard(clock))
    lane.driver.open()  # at once: the board is still in its 100 ms self-check
    seq = lane.driver.open_barrier(valid_for_s=1.0)
    assert lane.result(seq).result == "ok"
    assert len(lane.board.received(MsgType.OPEN)) >= 2  # not_ready first, then retried
    lane.driver.close()
    REGISTRY.unregister("booting-board")


def test_no_answer_from_a_silent_board_then_link_lost_then_back(lane: Lane) -> None:
    lane.board.set_silent(True)
    seq = lane.driver.open_barrier(valid_for_s=0.3)
    sent = lane.clock()
    result = lane.result(seq)
    assert result.result == "no_answer" and 0.6 <= result.at - sent < 0.62
    lost = lane.wait(lambda e: isinstance(e, LinkLost))
    assert isinstance(lost, LinkLost) and "silent" in lost.reason
    lane.board.set_silent(False)
    lane.wait(lambda e: isinstance(e, LinkUp), timeout=1.0)


def test_a_board_reset_mid_motion_is_link_lost_then_a_new_handshake(lane: Lane) -> None:
    assert lane.result(lane.driver.open_barrier()).result == "ok"
    lane.snapshot(lambda s: s.outputs["barrier_open"])
    lane.during(0.3)  # half-way up
    lane.board.reset()
    lost = lane.wait(lambda e: isinstance(e, LinkLost))
    assert isinstance(lost, LinkLost) and "restarted" in lost.reason
    hello = lane.wait(lambda e: isinstance(e, BoardHello))
    assert isinstance(hello, BoardHello) and hello.reset_cause == "watchdog"
    lane.wait(lambda e: isinstance(e, LinkUp))
    stopped = lane.barrier(Barrier.STOPPED)
    assert not stopped.outputs["barrier_open"] and stopped.outputs["light_red"]
    lane.during(5.0)
    asked = lane.clock()
    assert lane.relay_on("barrier_open", lost.at, asked) == []  # nothing moves until asked
    assert lane.relay_on("barrier_close", lost.at, asked) == []
    lane.opened()


def test_unplug_then_reconnect_with_backoff(lane: Lane) -> None:
    lane.board.lose_commands(100)  # the answer never comes before the unplug
    seq = lane.driver.open_barrier(valid_for_s=8.0)
    lane.during(0.1)
    lane.board.unplug()
    lost = lane.wait(lambda e: isinstance(e, LinkLost))
    lane.board.lose_commands(0)
    lane.during(4.0)
    lane.board.replug()
    up = lane.wait(lambda e: isinstance(e, LinkUp), timeout=3.0)
    attempts = [t for t, _ in lane.board.open_attempts if t >= lost.at]
    gaps = [b - a for a, b in zip([lost.at, *attempts], attempts, strict=False)]
    nominal = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]  # doubling to the cap, ±20 % jitter
    assert all(n * 0.8 <= g <= n * 1.2 + 0.01 for g, n in zip(gaps, nominal, strict=False)), gaps
    assert up.at - attempts[-1] < 0.01 and lane.board.open_attempts[-1][1]
    assert lane.driver.link_stats()["reconnects"] == len(attempts)
    # The waiting command went out again after the new handshake, before the CONFIG.
    host = [f for t, f in lane.board.received() if t >= up.at and isinstance(f, iolink.Frame)
            and f.type not in (MsgType.HELLO, MsgType.HEARTBEAT)]  # fmt: skip
    assert [(f.type, f.seq) for f in host[:2]] == [(MsgType.OPEN, seq), (MsgType.CONFIG, seq + 1)]
    assert lane.result(seq).result == "ok"


def test_commands_while_the_port_is_gone_wait_for_the_link(lane: Lane) -> None:
    lane.board.unplug()
    lane.wait(lambda e: isinstance(e, LinkLost))
    seq = lane.driver.open_barrier(valid_for_s=5.0)
    lane.during(1.0)
    assert lane.sent(MsgType.OPEN) == []
    lane.board.replug()
    assert lane.result(seq).result == "ok"
    lane.barrier(Barrier.OPEN)


def test_a_truck_passing_while_unplugged_does_not_close_the_barrier(lane: Lane) -> None:
    lane.opened()
    lane.board.unplug()
    lost = lane.wait(lambda e: isinstance(e, LinkLost))
    lane.during(1.5)  # the board's own host timeout (1 s): red, the passage is off
    assert lane.board.outputs()["light_red"] and "link" not in lane.board.flags()
    lane.board.set_input("loop_b", True)
    lane.during(0.3)
    assert "loop_b" in lane.board.seen_inputs()
    lane.board.set_input("loop_b", False)
    lane.during(5.0)
    lane.board.replug()
    lane.wait(lambda e: isinstance(e, LinkUp))
    back = lane.barrier(Barrier.OPEN)
    assert "passed" not in back.flags and "close_pending" not in back.flags
    lane.during(3.0)  # linked again: still no close without a request
    asked = lane.clock()
    assert asked - lost.at > 9.0
    assert lane.relay_on("barrier_close", lost.at, asked) == []
    assert lane.result(lane.driver.close_when_clear()).result == "ok"
    lane.barrier(Barrier.CLOSED)


# ---- what the driver refuses before sending ----
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"t_clear_s": 0.0}, "t_clear_s"), ({"dead_time_s": 0.001}, "dead_time_s"),
     ({"travel_timeout_s": 100.0}, "travel_timeout_s")],
)  # fmt: skip
def test_settings_the_board_would_refuse_are_a_config_error(
    kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        IoBoard("/dev/ttyACM0", **kwargs)


def test_pulse_output_sounds_the_buzzer_for_the_asked_time(lane: Lane) -> None:
    seq = lane.driver.pulse_output("buzzer", 0.25, valid_for_s=2.0)
    [(sent, frame)] = lane.board.received(MsgType.OUTPUT_PULSE)
    deadline_ms = int((sent + 2.0) * 1000)
    buzzer = iolink.OUTPUT_NAMES.index("buzzer")
    assert isinstance(frame, iolink.Frame)
    assert frame.payload == deadline_ms.to_bytes(4, "big") + bytes((buzzer, 0, 250))
    assert lane.result(seq).result == "ok"
    off = lane.snapshot(lambda s: not s.outputs["buzzer"])
    buzz = [(t, v) for t, n, v in lane.board.output_changes() if n == "buzzer"]
    assert [v for _, v in buzz] == [True, False] and 0.25 <= buzz[1][0] - buzz[0][0] < 0.26
    assert off.barrier == Barrier.CLOSED


@pytest.mark.parametrize(
    ("output", "seconds", "match"),
    [("light_green", 0.5, "'light_green' cannot be pulsed"),
     ("barrier_open", 0.5, "'barrier_open' cannot be pulsed"),
     ("siren", 0.5, "'siren' cannot be pulsed"),
     ("buzzer", 0.004, "pulse of 4 ms is outside"),
     ("light_red", 10.5, "pulse of 10500 ms is outside"),
     ("buzzer", math.nan, "not a duration"),
     ("buzzer", math.inf, "not a duration")],
)  # fmt: skip
def test_pulse_output_refuses_what_the_board_would_refuse_before_sending(
    lane: Lane, output: str, seconds: float, match: str
) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        lane.driver.pulse_output(output, seconds)
    events = lane.during(1.5)  # past any deadline: nothing was queued
    assert lane.board.received(MsgType.OUTPUT_PULSE) == []
    assert [e for e in events if isinstance(e, CommandResult)] == []


def test_pulse_output_limits_are_inclusive(lane: Lane) -> None:
    seqs = [lane.driver.pulse_output("light_red", 0.01), lane.driver.pulse_output("buzzer", 10.0)]
    assert [lane.result(seq).result for seq in seqs] == ["ok", "ok"]
    sent = lane.sent(MsgType.OUTPUT_PULSE)
    assert [int.from_bytes(f.payload[5:], "big") for f in sent] == [10, 10000]


# ---- the fake itself ----
def test_the_firmware_core_is_loaded_without_touching_sys_modules() -> None:
    before = set(sys.modules)
    load_firmware.cache_clear()
    core = load_firmware()
    assert set(sys.modules) - before == set()
    assert core.interlock.STATE_NAMES == iolink.BARRIER_STATES
    assert core.controller.il is core.interlock  # the core's own imports resolve privately


def test_a_url_nobody_registered_opens_a_fresh_board_on_the_wall_clock() -> None:
    driver = IoBoard("fake-ioboard://nobody-registered-this")
    try:
        driver.open(timeout=2.0)
        assert driver.link_up
        with pytest.raises(DeviceError, match="busy"):
            open_fake_port("fake-ioboard://nobody-registered-this")
    finally:
        driver.close()
        REGISTRY.unregister("nobody-registered-this")


def test_limit_switches_follow_the_arm_not_the_test() -> None:
    board = FakeIoBoard(VirtualClock())
    with pytest.raises(ValueError, match="limit_open"):
        board.set_input("limit_open", True)
    assert board.inputs()["limit_closed"] and not board.inputs()["limit_open"]
