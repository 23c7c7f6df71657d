"""The Pi side of the IO link as a pure session, in virtual time: every rule and fault case.

A ``Line`` drives the session only by its own ``next_deadline()``: a deadline reported late
or never would show up as a late or missing frame in the timeline these tests check.
"""

from __future__ import annotations

import math

import pytest

from edge_agent.errors import ConfigError, LocalProtocolError
from edge_agent.protocols import iolink
from edge_agent.protocols.iolink import Barrier, MsgType
from edge_agent.protocols.iolink_session import (
    BoardHello,
    BoardSnapshot,
    ClearFault,
    CloseWhenClear,
    CommandResult,
    IoEvent,
    IoLinkSession,
    LinkLost,
    LinkUp,
    Maintenance,
    OpenBarrier,
    PulseOutput,
)

START = 100.0
# proto 1, power-on, host_boot 0, firmware 1.0.0, manifest 1122334455667788, uptime 10 ms
HELLO_ACK_PAYLOAD = bytes.fromhex("01" "01" "00000000" "010000" "1122334455667788" "0000000a")
CLOSED_INPUTS = dict.fromkeys(iolink.INPUT_NAMES, False) | {"limit_closed": True}


def hello_ack(ack: int) -> bytes:
    return iolink.encode_frame(MsgType.HELLO_ACK, 0, ack, HELLO_ACK_PAYLOAD)


def state(*, periodic: bool = True, handshake: bool = True, uptime_ms: int = 1000,
          barrier: Barrier = Barrier.CLOSED, **inputs: bool) -> bytes:  # fmt: skip
    flags = frozenset({"link", "handshake"}) if handshake else frozenset()
    return iolink.encode_state(iolink.BoardState(
        0, 0, periodic, CLOSED_INPUTS | inputs, {"light_red": True}, barrier, frozenset(),
        flags, uptime_ms, 900, 0,
    ))  # fmt: skip


def result(seq: int, code: str = "ok") -> bytes:
    return iolink.encode_result(0, seq, code, "closed")


class Line:
    """The session, the host frames it sent with their times, and the events it gave."""

    def __init__(self, session: IoLinkSession | None = None) -> None:
        self.session = session or IoLinkSession(t_clear_s=0.4)
        self.now = START
        self.codec = iolink.LinkCodec()
        self.sent: list[tuple[float, iolink.Frame]] = []
        self.events: list[IoEvent] = []
        self.heard: list[float] = []  # when board bytes arrived

    def step(self, now: float) -> None:
        self.now = now
        self.events += self.session.timers(now)
        for message in self.codec.receive_data(self.session.data_to_send(now)):
            assert isinstance(message, iolink.Frame)
            self.sent.append((now, message))

    def run(self, seconds: float, *, beat: bool = False) -> None:
        """Let ``seconds`` pass; with ``beat`` the board sends its snapshot every 200 ms."""
        end = self.now + seconds
        next_beat = self.now + 0.2 if beat else math.inf
        for _ in range(100_000):
            due = self.session.next_deadline()
            at = min(due if due is not None else math.inf, next_beat)
            if at > end:
                self.now = end
                return
            self.step(max(at, self.now))
            if beat and self.now >= next_beat:
                next_beat += 0.2
                self.board(state())
        raise AssertionError("next_deadline() does not move on")

    def board(self, data: bytes) -> list[IoEvent]:
        """The board's bytes arrive now; the session answers at once."""
        events = self.session.receive(data, self.now)
        self.heard.append(self.now)
        self.events += events
        self.step(self.now)
        return events

    def frames(self, ftype: int) -> list[tuple[float, iolink.Frame]]:
        return [(t, f) for t, f in self.sent if f.type == ftype]

    def of(self, kind: type) -> list[IoEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    def results(self) -> list[CommandResult]:
        return [e for e in self.events if isinstance(e, CommandResult)]

    def handshake(self) -> None:
        """Connect and answer the HELLO; the board acknowledges the CONFIG."""
        self.session.connection_made(self.now)
        self.step(self.now)
        self.answer_hello()

    def answer_hello(self) -> None:
        _, hello = self.frames(MsgType.HELLO)[-1]
        self.board(hello_ack(hello.seq))
        _, config = self.frames(MsgType.CONFIG)[-1]
        self.board(result(config.seq))


def test_connection_sends_hello_and_retries_it_until_answered() -> None:
    line = Line(IoLinkSession(host_boot=0x1234))
    line.session.connection_made(START)
    line.run(1.0)
    hellos = line.frames(MsgType.HELLO)
    assert [round(t - START, 3) for t, _ in hellos] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert {f.seq for _, f in hellos} == {0}  # no command sent yet: HELLO carries seq 0
    assert hellos[0][1].payload == bytes((1,)) + (0x1234).to_bytes(4, "big") + (
        int(START * 1000).to_bytes(4, "big"))
    assert line.events == [] and not line.session.link_up


def test_an_answer_to_another_hello_is_reported_but_brings_no_link() -> None:
    line = Line()
    line.session.connection_made(START)
    line.step(START)
    assert [type(e) for e in line.board(hello_ack(ack=77))] == [BoardHello]
    assert not line.session.link_up
    events = line.board(hello_ack(ack=0))
    assert [type(e) for e in events] == [BoardHello, LinkUp]
    hello = events[0]
    assert isinstance(hello, BoardHello)
    assert (hello.firmware, hello.manifest, hello.reset_cause) == ("1.0.0", "1122334455667788",
                                                                  "power_on")  # fmt: skip


def test_handshake_is_followed_by_the_config_and_its_result_is_no_event() -> None:
    line = Line(IoLinkSession(t_clear_s=0.4, travel_timeout_s=4.0, dead_time_s=0.2))
    line.handshake()
    [(_, config)] = line.frames(MsgType.CONFIG)
    assert config.payload == bytes.fromhex("01900fa000c8")  # 400 ms, 4000 ms, 200 ms
    assert line.results() == []


def test_heartbeat_every_200ms_with_the_host_time() -> None:
    line = Line()
    line.handshake()
    line.run(2.1, beat=True)
    beats = line.frames(MsgType.HEARTBEAT)
    times = [round(t - START, 3) for t, _ in beats]
    assert times == [round(0.2 * i, 3) for i in range(11)]
    assert [int.from_bytes(f.payload, "big") for _, f in beats] == [
        int(t * 1000) for t, _ in beats]  # fmt: skip
    assert all(f.seq == 0 for _, f in beats)


def test_command_goes_out_at_once_with_its_deadline_and_its_result_is_reported() -> None:
    line = Line()
    line.handshake()
    seq = line.session.command(OpenBarrier(), line.now, valid_for_s=1.5)
    line.step(line.now)
    [(at, frame)] = line.frames(MsgType.OPEN)
    assert (at, frame.seq) == (line.now, seq)
    assert int.from_bytes(frame.payload, "big") == int((line.now + 1.5) * 1000)
    line.board(result(seq, "ok"))
    assert [(e.seq, e.result) for e in line.results()] == [(seq, "ok")]


def test_unanswered_command_is_resent_with_the_same_seq_every_100ms() -> None:
    line = Line()
    line.handshake()
    seq = line.session.command(CloseWhenClear(), line.now, valid_for_s=1.0)
    line.run(0.35, beat=True)
    sent = line.frames(MsgType.CLOSE_WHEN_CLEAR)
    assert [f.seq for _, f in sent] == [seq] * 4
    assert [round(t - sent[0][0], 3) for t, _ in sent] == [0.0, 0.1, 0.2, 0.3]
    line.board(result(seq, "pending"))
    line.run(2.0, beat=True)
    assert len(line.frames(MsgType.CLOSE_WHEN_CLEAR)) == 4  # answered: no more resends
    assert [e.result for e in line.results()] == ["pending"]
    assert line.session.link_stats()["retransmits"] == 3


@pytest.mark.parametrize("code", ["stale", "expired", "fault", "bad_request", "unknown_type"])
def test_board_refusals_are_reported_as_they_are(code: str) -> None:
    line = Line()
    line.handshake()
    seq = line.session.command(OpenBarrier(), line.now)
    line.board(result(seq, code))
    line.run(2.0, beat=True)
    assert [(e.seq, e.result) for e in line.results()] == [(seq, code)]
    assert len(line.frames(MsgType.OPEN)) == 1


def test_not_ready_is_retried_until_the_deadline_then_reported() -> None:
    line = Line()
    line.handshake()
    seq = line.session.command(OpenBarrier(), line.now, valid_for_s=0.3)
    sent_at = line.now
    for _ in range(3):
        line.board(result(seq, "not_ready"))
        line.run(0.1, beat=True)
    line.run(1.0, beat=True)
    opens = [round(t - sent_at, 3) for t, _ in line.frames(MsgType.OPEN)]
    assert opens == [0.0, 0.1, 0.2, 0.3]  # never after the deadline
    [reported] = line.results()
    assert isinstance(reported, CommandResult)
    assert reported.result == "not_ready" and round(reported.at - sent_at, 3) == 0.6


def test_no_answer_is_reported_at_the_deadline_plus_grace_and_not_before() -> None:
    line = Line()
    line.handshake()
    seq = line.session.command(OpenBarrier(), line.now, valid_for_s=0.5)
    sent_at = line.now
    line.run(0.799, beat=True)
    assert line.results() == []
    line.run(0.5, beat=True)
    [reported] = line.results()
    assert isinstance(reported, CommandResult)
    assert (reported.seq, reported.result) == (seq, "no_answer")
    assert round(reported.at - sent_at, 3) == 0.8


def test_an_answer_within_the_grace_counts_one_after_it_is_ignored() -> None:
    line = Line()
    line.handshake()
    late = line.session.command(OpenBarrier(), line.now, valid_for_s=0.2)
    lost = line.session.command(ClearFault(), line.now, valid_for_s=0.2)
    line.run(0.4, beat=True)  # past both deadlines, within the grace
    line.board(result(late, "ok"))
    line.run(0.5, beat=True)
    line.board(result(lost, "ok"))  # after the grace: already ended as no_answer
    line.run(0.5, beat=True)
    assert [(e.seq, e.result) for e in line.results()] == [
        (late, "ok"), (lost, "no_answer")]  # fmt: skip


def test_a_silent_board_loses_the_link_after_1s_then_hello_again() -> None:
    line = Line()
    line.handshake()
    line.run(1.0, beat=True)
    line.run(2.0)  # the board says nothing from here
    last_frame = line.heard[-1]
    [lost] = line.of(LinkLost)
    assert isinstance(lost, LinkLost) and "silent" in lost.reason
    assert round(lost.at - last_frame, 3) == 1.0
    after = [round(t - lost.at, 3) for t, _ in line.frames(MsgType.HELLO) if t >= lost.at]
    assert after[:3] == [0.0, 0.25, 0.5]
    line.answer_hello()
    assert isinstance(line.events[-1], LinkUp) and line.session.link_up


def test_board_restart_is_noticed_from_its_flags_and_the_link_comes_back() -> None:
    line = Line()
    line.handshake()
    line.board(state())
    events = line.board(state(handshake=False, periodic=False, uptime_ms=5))
    assert [type(e) for e in events] == [LinkLost, BoardSnapshot]
    assert isinstance(events[0], LinkLost) and "restarted" in events[0].reason
    line.answer_hello()
    assert line.session.link_up
    events = line.board(state())  # the same picture as before the restart
    assert [type(e) for e in events] == [BoardSnapshot]  # the first after a handshake


def test_commands_waiting_through_a_link_loss_go_out_before_the_config() -> None:
    """The CONFIG sent at every handshake takes the next seq: were it to reach the board first,
    the board's window would move past the waiting commands, which would come back stale."""
    line = Line()
    line.handshake()
    line.session.connection_lost(line.now, "unplugged")
    first = line.session.command(OpenBarrier(), line.now, valid_for_s=5.0)
    second = line.session.command(Maintenance(False), line.now, valid_for_s=5.0)
    line.run(1.0)
    assert line.frames(MsgType.OPEN) == []  # nothing goes out without a connection
    line.session.connection_made(line.now)
    line.step(line.now)
    _, hello = line.frames(MsgType.HELLO)[-1]
    assert hello.seq == (first - 2) % 255 + 1  # the seq just before the oldest waiting
    line.board(hello_ack(hello.seq))
    after = [f for t, f in line.sent if f.type != MsgType.HEARTBEAT][-3:]
    assert [(f.type, f.seq) for f in after] == [
        (MsgType.OPEN, first), (MsgType.MAINTENANCE, second), (MsgType.CONFIG, second + 1)]


def test_connection_lost_reports_link_lost_once_and_sends_nothing() -> None:
    line = Line()
    line.handshake()
    assert [type(e) for e in line.session.connection_lost(line.now, "read failed")] == [LinkLost]
    assert line.session.connection_lost(line.now, "again") == []
    assert line.session.data_to_send(line.now + 5) == b""


def test_seq_runs_1_to_255_and_wraps_past_0() -> None:
    session = IoLinkSession()
    seqs = [session.command(OpenBarrier(), START, valid_for_s=0.1) for _ in range(257)]
    assert seqs[:2] == [1, 2] and seqs[254:] == [255, 1, 2]
    assert 0 not in seqs


def test_garbage_on_the_line_is_counted_and_the_next_frame_still_decodes() -> None:
    line = Line()
    line.handshake()
    frame = state(loop_b=True, periodic=False)
    bad_crc = iolink.cobs_encode(bytes((1, MsgType.STATE, 0, 0)) + b"\x00" * 18) + b"\x00"
    noise = b"\x05\x01\x02\x00" + b"\xff" * 300 + b"\x00" + bad_crc
    events: list[IoEvent] = []
    for byte in noise + frame:  # byte by byte, as a slow port would hand them over
        events += line.session.receive(bytes((byte,)), line.now)
    assert [type(e) for e in events] == [BoardSnapshot]
    assert isinstance(events[0], BoardSnapshot) and events[0].input("loop_b")
    stats = line.session.link_stats()
    assert stats["errors"] == 3 and stats["error_kinds"] == {"cobs": 1, "size": 1, "crc": 1}


def test_one_snapshot_per_change_and_none_for_repeats() -> None:
    line = Line()
    line.handshake()
    pictures = [state(uptime_ms=1000), state(uptime_ms=1200), state(uptime_ms=1400),
                state(loop_a=True, periodic=False), state(loop_a=True),
                state(loop_a=True, barrier=Barrier.OPENING, periodic=False),
                state(loop_a=True, barrier=Barrier.OPENING)]
    snapshots = [e for p in pictures for e in line.board(p)]
    assert [(s.input("loop_a"), s.barrier) for s in snapshots if isinstance(s, BoardSnapshot)] == [
        (False, Barrier.CLOSED), (True, Barrier.CLOSED), (True, Barrier.OPENING)]
    assert line.session.snapshot is not None and line.session.snapshot.periodic  # the latest


def test_next_deadline_is_none_when_nothing_waits_on_time() -> None:
    session = IoLinkSession()
    assert session.next_deadline() is None
    session.command(OpenBarrier(), START, valid_for_s=1.0)
    assert session.next_deadline() == pytest.approx(START + 1.3)  # its no_answer


def test_pulse_output_is_checked_before_anything_is_queued() -> None:
    session = IoLinkSession()
    for output, seconds in (("light_green", 0.5), ("buzzer", 0.004), ("buzzer", math.nan)):
        with pytest.raises(LocalProtocolError):
            session.command(PulseOutput(output, seconds), START)
    assert session.next_deadline() is None
    assert session.command(PulseOutput("buzzer", 0.25), START) == 1


def test_settings_the_board_would_refuse_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="t_clear_s"):
        IoLinkSession(t_clear_s=0.05)
    with pytest.raises(ConfigError, match="dead_time_s"):
        IoLinkSession(dead_time_s=6.0)
