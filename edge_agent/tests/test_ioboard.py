"""The IoBoard driver against a scripted board behind a fake port (no threads, fake clock), and
its OUTPUT_PULSE against the real firmware in the MicroPython unix port."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge_agent.drivers import ioboard
from edge_agent.drivers.ioboard import (
    BoardEvents,
    BoardHello,
    BoardSnapshot,
    CommandResult,
    InputChanged,
    IoBoard,
    IoEvent,
    LinkLost,
    LinkUp,
)
from edge_agent.errors import ConfigError, DeviceError, DeviceTimeout, LocalProtocolError
from edge_agent.protocols import iolink
from simulators.iohost import IoBoardHost, micropython_executable

STEP_S = 0.01  # fake time that passes per port read
# proto 1, power-on, host_boot 0, firmware 1.0.0, manifest 1122334455667788, uptime 10 ms
HELLO_ACK_PAYLOAD = "01" "01" "00000000" "010000" "1122334455667788" "0000000a"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedBoard:
    """Answers like the firmware: HELLO_ACK, results, a snapshot every 200 ms."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.codec = iolink.LinkCodec()
        self.out = bytearray()
        self.received: list[iolink.Message] = []
        self.results: dict[int, str] = {}  # seq -> result to give (default ok)
        self.drop_commands = 0  # ignore the next N commands (lost on the line)
        self.silent = False
        self.handshake = False
        self.seq = 0
        self.inputs = dict.fromkeys(iolink.INPUT_NAMES, False) | {"limit_closed": True}
        self.barrier = "closed"
        self.last_snapshot = clock.now

    def host_wrote(self, data: bytes) -> None:
        for message in self.codec.receive_data(data):
            self.received.append(message)
            if self.silent or not isinstance(message, iolink.Frame):
                continue
            if message.type == iolink.MsgType.HELLO:
                self.handshake = True
                ack = bytes.fromhex(HELLO_ACK_PAYLOAD)
                self.send(iolink.encode_frame(iolink.MsgType.HELLO_ACK, self.seq, message.seq, ack))
            elif message.type not in (iolink.MsgType.HEARTBEAT,):
                if self.drop_commands:
                    self.drop_commands -= 1
                    continue
                result = self.results.get(message.seq, "ok")
                self.send(iolink.encode_result(self.seq, message.seq, result, self.barrier))

    def send(self, frame: bytes) -> None:
        self.out += frame
        self.seq = (self.seq + 1) & 0xFF

    def tick(self) -> None:
        if not self.silent and self.clock.now - self.last_snapshot >= 0.2:
            self.last_snapshot = self.clock.now
            self.send(self.state_frame(periodic=True))

    def state_frame(self, periodic: bool) -> bytes:
        flags = frozenset({"link", "handshake"}) if self.handshake else frozenset()
        state = iolink.BoardState(
            self.seq, 0, periodic, self.inputs, {"light_red": True}, self.barrier,
            frozenset(), flags, 1000, 900, 0,
        )  # fmt: skip
        return iolink.encode_state(state)

    def commands(self, ftype: int) -> list[iolink.Frame]:
        return [m for m in self.received if isinstance(m, iolink.Frame) and m.type == ftype]


class FakePort:
    def __init__(self, board: ScriptedBoard) -> None:
        self.board = board
        self.closed = False
        self.unplugged = False

    @property
    def in_waiting(self) -> int:
        return len(self.board.out)

    def read(self, size: int) -> bytes:
        if self.unplugged:
            raise OSError("device reports readiness to read but returned no data")
        self.board.clock.now += STEP_S
        self.board.tick()
        data = bytes(self.board.out[:size])
        del self.board.out[:size]
        return data

    def write(self, data: bytes) -> int:
        if self.unplugged:
            raise OSError("write failed: device gone")
        self.board.host_wrote(data)
        return len(data)

    def reset_input_buffer(self) -> None:
        self.board.out.clear()

    def close(self) -> None:
        self.closed = True


class Opener:
    def __init__(self, board: ScriptedBoard) -> None:
        self.board = board
        self.ports: list[FakePort] = []
        self.fail = 0  # the next N opens fail
        self.down = False  # every open fails

    def __call__(self, url: str, settings: Any, *, timeout: float) -> FakePort:
        if self.fail or self.down:
            self.fail = max(0, self.fail - 1)
            self.board.clock.now += 0.05
            raise DeviceError(f"cannot open {url!r}: no such device")
        port = FakePort(self.board)
        self.ports.append(port)
        return port


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[IoBoard, ScriptedBoard, Opener, Clock]]:
    clock = Clock()
    # While the port is gone the driver sleeps between attempts: let fake time pass instead.
    monkeypatch.setattr(ioboard.time, "sleep", lambda s: setattr(clock, "now", clock.now + s))
    board = ScriptedBoard(clock)
    opener = Opener(board)
    driver = IoBoard("/dev/ttyACM0", clock=clock, t_clear_s=0.4, opener=opener)
    driver.open()
    yield driver, board, opener, clock
    driver.close()


def collect(driver: IoBoard, clock: Clock, seconds: float) -> list[IoEvent]:
    end = clock.now + seconds
    events: list[IoEvent] = []
    while clock.now < end:
        events += driver.read_events(0)  # one service pass: fake time advances per read
    return events


def test_open_handshakes_and_sends_config(rig: Any) -> None:
    driver, board, _, clock = rig
    events = collect(driver, clock, 0.1)
    assert any(isinstance(e, BoardHello) and e.manifest == "1122334455667788" for e in events)
    assert any(isinstance(e, LinkUp) for e in events)
    [config] = board.commands(iolink.MsgType.CONFIG)
    assert config.payload == bytes.fromhex("01900fa000c8")  # 400 ms, 4000 ms, 200 ms
    assert driver.link_up


def test_open_times_out_without_a_board() -> None:
    clock = Clock()
    board = ScriptedBoard(clock)
    board.silent = True
    driver = IoBoard("/dev/ttyACM0", clock=clock, opener=Opener(board))
    with pytest.raises(DeviceTimeout, match="HELLO"):
        driver.open(timeout=0.05)


def test_heartbeats_every_200ms_with_host_time(rig: Any) -> None:
    driver, board, _, clock = rig
    collect(driver, clock, 1.0)
    beats = board.commands(iolink.MsgType.HEARTBEAT)
    assert 5 <= len(beats) <= 7
    times = [int.from_bytes(b.payload, "big") for b in beats]
    assert times == sorted(times)


def test_open_barrier_result_and_deadline(rig: Any) -> None:
    driver, board, _, clock = rig
    seq = driver.open_barrier(valid_for_s=1.5)
    [frame] = board.commands(iolink.MsgType.OPEN)
    assert frame.seq == seq
    assert int.from_bytes(frame.payload, "big") == int((clock.now + 1.5) * 1000)
    events = collect(driver, clock, 0.05)
    assert [e.result for e in events if isinstance(e, CommandResult) and e.seq == seq] == ["ok"]


def test_lost_command_is_retransmitted_with_the_same_seq(rig: Any) -> None:
    driver, board, _, clock = rig
    board.drop_commands = 2
    seq = driver.close_when_clear()
    events = collect(driver, clock, 0.5)
    sent = board.commands(iolink.MsgType.CLOSE_WHEN_CLEAR)
    assert [f.seq for f in sent] == [seq, seq, seq]
    assert [e.result for e in events if isinstance(e, CommandResult)] == ["ok"]
    assert driver.stats.retransmits == 2


def test_no_answer_before_the_deadline(rig: Any) -> None:
    driver, board, _, clock = rig
    board.drop_commands = 100
    seq = driver.open_barrier(valid_for_s=0.3)
    events = collect(driver, clock, 1.0)
    results = [e for e in events if isinstance(e, CommandResult)]
    assert [(r.seq, r.result) for r in results] == [(seq, "no_answer")]


def test_not_ready_is_retried_until_the_deadline(rig: Any) -> None:
    driver, board, _, clock = rig
    seq = driver._seq % 255 + 1
    board.results[seq] = "not_ready"
    driver.open_barrier(valid_for_s=0.3)
    events = collect(driver, clock, 1.0)
    assert len(board.commands(iolink.MsgType.OPEN)) >= 3
    assert [e.result for e in events if isinstance(e, CommandResult)] == ["not_ready"]


def test_input_changes_are_derived_from_state_frames(rig: Any) -> None:
    driver, board, _, clock = rig
    collect(driver, clock, 0.3)
    board.inputs["loop_b"] = True
    board.send(board.state_frame(periodic=False))
    events = collect(driver, clock, 0.05)
    changes = [e for e in events if isinstance(e, InputChanged)]
    assert [(c.name, c.value) for c in changes] == [("loop_b", True)]
    snap = next(e for e in events if isinstance(e, BoardSnapshot))
    assert snap.inputs["loop_b"] and not snap.periodic and snap.barrier == "closed"


def test_silent_board_is_link_lost_then_rehandshake(rig: Any) -> None:
    driver, board, _, clock = rig
    board.silent = True
    events = collect(driver, clock, 1.5)
    lost = [e for e in events if isinstance(e, LinkLost)]
    assert len(lost) == 1 and "silent" in lost[0].reason
    hellos = len(board.commands(iolink.MsgType.HELLO))
    board.silent = False
    events = collect(driver, clock, 0.6)
    assert any(isinstance(e, LinkUp) for e in events)
    assert len(board.commands(iolink.MsgType.HELLO)) > hellos


def test_board_restart_is_noticed_from_its_flags(rig: Any) -> None:
    driver, board, _, clock = rig
    collect(driver, clock, 0.3)
    board.handshake = False
    board.send(board.state_frame(periodic=False))
    events = collect(driver, clock, 0.5)
    assert any(isinstance(e, LinkLost) and "restarted" in e.reason for e in events)
    assert any(isinstance(e, LinkUp) for e in events)


def test_unplug_then_reconnect_with_backoff(rig: Any) -> None:
    driver, board, opener, clock = rig
    board.drop_commands = 100  # the answer never comes before the unplug
    seq = driver.open_barrier(valid_for_s=5.0)
    collect(driver, clock, 0.1)
    opener.ports[-1].unplugged = True
    opener.fail = 3
    board.drop_commands = 0
    events = collect(driver, clock, 3.0)
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("LinkLost") == 1
    assert "LinkUp" in kinds and kinds.index("LinkLost") < kinds.index("LinkUp")
    assert len(opener.ports) == 2 and opener.ports[0].closed
    # The waiting command went out again after the new handshake, ahead of the board's window.
    hello = board.commands(iolink.MsgType.HELLO)[-1]
    assert (seq - hello.seq) % 256 == 1
    assert [e.result for e in events if isinstance(e, CommandResult) and e.seq == seq] == ["ok"]


def test_commands_from_another_thread_while_link_down_wait_for_link(rig: Any) -> None:
    driver, board, opener, clock = rig
    driver.read_events(0)  # what open() queued
    opener.ports[-1].unplugged = True
    opener.down = True
    events = collect(driver, clock, 0.3)
    assert [type(e) for e in events] == [LinkLost]
    seq = driver.open_barrier(valid_for_s=3.0)
    collect(driver, clock, 0.3)
    assert not [f for f in board.commands(iolink.MsgType.OPEN) if f.seq == seq]
    opener.down = False
    events = collect(driver, clock, 3.0)
    assert [e.result for e in events if isinstance(e, CommandResult)] == ["ok"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"t_clear_s": 0.0}, "t_clear_s"), ({"dead_time_s": 0.001}, "dead_time_s"),
     ({"travel_timeout_s": 100.0}, "travel_timeout_s")],
)  # fmt: skip
def test_settings_the_board_would_refuse_are_a_config_error(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        IoBoard("/dev/ttyACM0", **kwargs)


def test_clear_fault_and_maintenance_commands(rig: Any) -> None:
    driver, board, _, clock = rig
    seqs = [driver.clear_fault(), driver.maintenance(True), driver.maintenance(False)]
    events = collect(driver, clock, 0.1)
    assert [e.seq for e in events if isinstance(e, CommandResult)] == seqs
    [enter, leave] = board.commands(iolink.MsgType.MAINTENANCE)
    assert (enter.payload[-1], leave.payload[-1]) == (1, 0)
    assert len(board.commands(iolink.MsgType.CLEAR_FAULT)) == 1


def test_pulse_output_sends_output_pulse_and_reports_the_result(rig: Any) -> None:
    driver, board, _, clock = rig
    seq = driver.pulse_output("buzzer", 0.25, valid_for_s=2.0)
    [frame] = board.commands(iolink.MsgType.OUTPUT_PULSE)
    assert frame.seq == seq
    deadline_ms = int((clock.now + 2.0) * 1000)
    buzzer = iolink.OUTPUT_NAMES.index("buzzer")
    assert frame.payload == deadline_ms.to_bytes(4, "big") + bytes((buzzer, 0, 250))
    events = collect(driver, clock, 0.05)
    assert [e.result for e in events if isinstance(e, CommandResult) and e.seq == seq] == ["ok"]


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
    rig: Any, output: str, seconds: float, match: str
) -> None:
    driver, board, _, clock = rig
    with pytest.raises(LocalProtocolError, match=match):
        driver.pulse_output(output, seconds)
    events = collect(driver, clock, 1.5)  # past any deadline: nothing was queued
    assert board.commands(iolink.MsgType.OUTPUT_PULSE) == []
    assert [e for e in events if isinstance(e, CommandResult)] == []


def test_pulse_output_limits_are_inclusive(rig: Any) -> None:
    driver, board, _, clock = rig
    seqs = [driver.pulse_output("light_red", 0.01), driver.pulse_output("buzzer", 10.0)]
    events = collect(driver, clock, 0.05)
    assert [e.seq for e in events if isinstance(e, CommandResult)] == seqs
    sent = board.commands(iolink.MsgType.OUTPUT_PULSE)
    assert [int.from_bytes(f.payload[5:], "big") for f in sent] == [10, 10000]


# ---- against the firmware in the MicroPython unix port ----
class EventPump:
    """Keeps the driver running (heartbeats) and hands out its events in order."""

    def __init__(self, driver: IoBoard) -> None:
        self.stream = BoardEvents(driver)

    def next(self, predicate: Callable[[IoEvent], bool], timeout: float) -> IoEvent:
        """The next not yet consumed event matching ``predicate``; fails after ``timeout``."""
        event = self.stream.next(predicate, timeout)
        if event is None:
            raise AssertionError(f"no matching event in {timeout} s: {self.stream.seen[-5:]}")
        return event


def _buzzer(on: bool) -> Callable[[IoEvent], bool]:
    return lambda e: isinstance(e, BoardSnapshot) and e.outputs["buzzer"] == on


@pytest.mark.skipif(
    not micropython_executable().exists(), reason="MicroPython unix port not installed"
)
def test_pulse_output_sounds_the_firmware_buzzer_for_about_the_asked_time() -> None:
    with IoBoardHost() as host:
        driver = IoBoard(host.port)
        pump = EventPump(driver)
        try:
            driver.open(timeout=5.0)
            pump.next(lambda e: isinstance(e, BoardSnapshot) and e.barrier == "closed"
                      and "handshake" in e.flags, 5.0)  # fmt: skip
            mark = len(host.output_changes())
            seq = driver.pulse_output("buzzer", 0.4)
            result = pump.next(lambda e: isinstance(e, CommandResult) and e.seq == seq, 3.0)
            assert isinstance(result, CommandResult) and result.result == "ok"
            on = pump.next(_buzzer(True), 3.0)
            off = pump.next(_buzzer(False), 3.0)
            assert isinstance(on, BoardSnapshot) and isinstance(off, BoardSnapshot)
            assert on.barrier == off.barrier == "closed"
            assert host.wait_for_output("buzzer", False, 2.0)
        finally:
            driver.close()
        assert host.alive, host.log()
        changes = host.output_changes()[mark:]
    # The pin itself: on once, off once, nothing else switched (red was on all along).
    assert [(name, value) for _at, name, value in changes] == [("buzzer", True), ("buzzer", False)]
    on_for = changes[1][0] - changes[0][0]
    assert 0.3 <= on_for <= 1.0, on_for  # generous: the board ends it at 400 ms by its own tick


def test_after_a_new_handshake_the_waiting_command_goes_out_before_the_config(rig: Any) -> None:
    """The CONFIG sent at every handshake takes the next seq: were it to reach the board first,
    the board's window would move past the waiting command, which would then be ``stale``."""
    driver, board, opener, clock = rig
    board.drop_commands = 100
    seq = driver.open_barrier(valid_for_s=5.0)
    collect(driver, clock, 0.1)
    opener.ports[-1].unplugged = True
    opener.fail = 1
    board.drop_commands = 0
    collect(driver, clock, 3.0)
    frames = [m for m in board.received if isinstance(m, iolink.Frame)]
    last_hello = max(i for i, f in enumerate(frames) if f.type == iolink.MsgType.HELLO)
    after = [f for f in frames[last_hello + 1 :] if f.type != iolink.MsgType.HEARTBEAT]
    assert (after[0].type, after[0].seq) == (iolink.MsgType.OPEN, seq), after[:3]
    assert any(f.type == iolink.MsgType.CONFIG for f in after[1:])
