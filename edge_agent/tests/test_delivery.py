"""The MQTT delivery machine in virtual time: every fault case, no broker, no wall time.

``Wire`` plays paho and the broker for the machine, as the publisher's sender thread does:
it performs the actions (each publish gets the next message id and is answered at once),
records them on a virtual timeline, runs ``tick`` at every deadline the machine names, and
delivers what a broker would say (CONNACK, SUBACK, PUBACK, the retained ack). The outbox is
the real SQLite one. Negative claims ("not before", "never again") are read off the timeline.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import ConfigError
from edge_agent.telemetry.delivery import ACK_GRACE_S, JSON, Delivery, LinkState
from edge_agent.telemetry.delivery_events import (
    Action,
    Connected,
    ConnectFailed,
    ConnectRefused,
    Cut,
    DeliverCommand,
    Disconnected,
    Event,
    MessageReceived,
    PubAck,
    Publish,
    Rebuild,
    SendTransient,
    SubAck,
    Subscribe,
    Subscription,
)
from edge_agent.telemetry.envelope import ack_message, encode
from edge_agent.telemetry.mqtt import BrokerAddress, ReconnectJitter
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import MAX_PENDING_COMMANDS, CommandGate
from edge_agent.telemetry.topics import LaneTopics

SITE, LANE = "site-1", "lane-01"
TOPICS = LaneTopics(SITE, LANE)
KEEPALIVE_S = 10
RESEND_S = 30.0
WALL_S = 1_714_564_800.0
FOREIGN_EPOCH = "0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Sent:
    at: float
    mid: int
    publish: Publish

    @property
    def seq(self) -> int | None:
        """The event seq of an outbox row, else None (birth, health, transient)."""
        if self.publish.token is None or self.publish.topic == TOPICS.health:
            return None
        return int(json.loads(self.publish.payload)["seq"])


class Wire:
    """The glue and the broker around one ``Delivery``, on a virtual clock."""

    def __init__(self, outbox: Outbox, *, tls: bool = False, **settings: Any) -> None:
        self.outbox = outbox
        self.now = 100.0
        self.wall = WALL_S
        address = BrokerAddress("broker.test", 8883 if tls else 1883, tls)
        settings = {"keepalive_s": KEEPALIVE_S, "resend_after_s": RESEND_S, **settings}
        self.machine = Delivery(outbox, TOPICS, address=address, wall_clock=lambda: self.wall,
                                **settings)
        self.sent: list[Sent] = []
        self.done: list[tuple[float, Action]] = []  # every other action performed
        self.refusing: str | None = None  # paho refuses publishes with this error meanwhile
        self.last_mid = 0
        self.sub_mid = 0
        self._unanswered: list[int] = []  # mids of tracked publishes without a PUBACK yet

    # -- driving ---------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Action]:
        """One event, then a tick, as the sender does after a batch."""
        actions = self.machine.handle(event, self.now)
        self._perform(actions)
        self.tick()
        return actions

    def tick(self) -> None:
        self._perform(self.machine.tick(self.now))

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, ticking at every deadline on the way."""
        end = self.now + seconds
        for _ in range(100_000):
            deadline = self.machine.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.tick()
        else:
            raise AssertionError("the machine keeps asking for a tick without progress")
        self.now = end
        self.tick()

    def until_sent(self, limit: float = 600.0) -> None:
        """Tick from deadline to deadline until something is published."""
        before, end = len(self.sent), self.now + limit
        while len(self.sent) == before:
            deadline = self.machine.next_deadline()
            assert deadline is not None and deadline <= end, "nothing more will be sent"
            self.now = max(self.now, deadline)
            self.tick()

    def ready(self) -> None:
        """CONNACK, SUBACK and the grace after it: the link is READY."""
        self.feed(Connected())
        self.feed(SubAck(self.sub_mid, (1, 1)))
        self.advance(ACK_GRACE_S)
        assert self.state() is LinkState.READY

    def puback(self, mid: int, code: int = 0) -> None:
        self._unanswered.remove(mid)
        self.feed(PubAck(mid, code))

    def puback_all(self, code: int = 0) -> None:
        for mid in list(self._unanswered):
            self.puback(mid, code)

    def ack(self, upto: int, epoch: str | None = None) -> None:
        message = ack_message(upto, 1, epoch or self.outbox.epoch)
        self.feed(MessageReceived(TOPICS.ack, encode(message), retained=True))

    # -- reading the timeline --------------------------------------------------------------

    def state(self) -> LinkState:
        return self.machine.state

    def seqs(self, since: float = 0.0) -> list[int]:
        return [s.seq for s in self.sent if s.seq is not None and s.at >= since]

    def sends_of(self, seq: int) -> list[Sent]:
        return [s for s in self.sent if s.seq == seq]

    def mid_of(self, seq: int) -> int:
        return self.sends_of(seq)[-1].mid

    def performed(self, kind: type[Action]) -> list[float]:
        return [at for at, action in self.done if isinstance(action, kind)]

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            self.last_mid += 1
            if isinstance(action, Publish):
                if action.token is not None and self.refusing is not None:
                    self.machine.not_published(action.token, self.refusing, self.now)
                    continue
                self.sent.append(Sent(self.now, self.last_mid, action))
                if action.token is not None:
                    self._unanswered.append(self.last_mid)
                    self.machine.published(action.token, self.last_mid)
            else:
                self.done.append((self.now, action))
                if isinstance(action, Subscribe):
                    self.sub_mid = self.last_mid
                    self.machine.subscribed(self.last_mid)
                if isinstance(action, Rebuild):
                    self._unanswered.clear()  # the new client never heard of them


def produce(outbox: Outbox, count: int, type: str = "vehicle_passed") -> list[int]:
    seqs = []
    for n in range(count):
        envelope = outbox.add_event(type, {"n": n}, transit_id=None, mono_ms=n,
                                    wall_ms=int(WALL_S * 1000), clock_synced=True)
        assert envelope is not None
        seqs.append(int(envelope["seq"]))
    return seqs


def gaps(times: list[float]) -> list[float]:
    return [round(later - earlier, 3) for earlier, later in itertools.pairwise(times)]


def add_health(outbox: Outbox, wall_s: float) -> int:
    envelope = outbox.add_health({"cpu": 1}, mono_ms=0, wall_ms=int(wall_s * 1000),
                                 clock_synced=True)
    assert envelope is not None
    return int(envelope["seq"])


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db", site=SITE, lane=LANE, agent_version="9.9.9")


@pytest.fixture
def wire(outbox: Outbox) -> Wire:
    return Wire(outbox)


# -- connecting ------------------------------------------------------------------------------


def test_connect_subscribes_then_publishes_the_birth_and_sends_rows_only_once_ready(
    wire: Wire, outbox: Outbox
) -> None:
    produce(outbox, 3)
    subscribe, birth = wire.feed(Connected())
    assert subscribe == Subscribe((Subscription(TOPICS.ack, send_retained=True),
                                   Subscription(TOPICS.commands, send_retained=False)))
    assert isinstance(birth, Publish) and birth.topic == TOPICS.state and birth.retain
    assert json.loads(birth.payload) == {"online": True, "boot_id": 1, "version": "9.9.9"}
    assert wire.state() is LinkState.SUBSCRIBING and wire.machine.connected
    wire.advance(5.0)  # no SUBACK yet: nothing goes out
    suback_at = wire.now
    wire.feed(SubAck(wire.sub_mid, (1, 1)))
    assert wire.state() is LinkState.SETTLING
    wire.advance(ACK_GRACE_S / 2)
    assert wire.seqs() == []
    wire.advance(ACK_GRACE_S)
    assert wire.seqs() == [1, 2, 3]
    assert [s.at for s in wire.sent if s.seq] == pytest.approx([suback_at + ACK_GRACE_S] * 3)
    assert wire.state() is LinkState.READY


def test_a_suback_for_another_subscribe_is_ignored_and_a_refusal_is_reported(
    wire: Wire,
) -> None:
    wire.feed(Connected())
    wire.feed(SubAck(wire.sub_mid + 100, (1, 1)))
    assert wire.state() is LinkState.SUBSCRIBING
    wire.feed(SubAck(wire.sub_mid, (0x87, 1)))
    assert wire.machine.last_error == "subscription refused: [135, 1]"
    assert wire.state() is LinkState.SETTLING  # the ack may still be readable
    wire.machine.not_subscribed("MQTTErrorCode.MQTT_ERR_NO_CONN")
    assert wire.machine.last_error == "subscribe failed: MQTTErrorCode.MQTT_ERR_NO_CONN"


def test_the_retained_ack_arriving_in_the_grace_spares_the_rows_it_covers(
    wire: Wire, outbox: Outbox
) -> None:
    # The lane crashed after the backend stored 1..3 but before their ack arrived.
    produce(outbox, 5)
    wire.feed(Connected())
    wire.feed(SubAck(wire.sub_mid, (1, 1)))
    wire.ack(3)
    wire.advance(ACK_GRACE_S)
    assert wire.seqs() == [4, 5]


def test_a_disconnect_before_connack_is_a_refused_tls_certificate(outbox: Outbox) -> None:
    wire = Wire(outbox, tls=True)
    wire.feed(Disconnected("Unspecified error"))
    assert wire.machine.counters.connect_failures == 1
    assert wire.machine.last_error == (
        "connection closed before CONNACK (Unspecified error): the broker may refuse this "
        "lane's TLS certificate (wrong CA, expired or revoked)")
    wire.feed(ConnectFailed())
    assert wire.machine.last_error == (
        "cannot connect to broker.test:8883 (unreachable, or the TLS handshake failed)")
    wire.feed(ConnectRefused("Not authorized"))
    assert wire.machine.last_error == "connect refused: Not authorized"
    assert wire.machine.counters.connect_failures == 3
    wire.feed(Connected())
    wire.feed(Disconnected("Keep alive timeout"))
    assert wire.machine.last_error == "disconnected: Keep alive timeout"
    assert wire.machine.counters.connect_failures == 3  # it had connected
    assert wire.state() is LinkState.DISCONNECTED and not wire.machine.connected


def test_without_tls_the_messages_do_not_blame_certificates(wire: Wire) -> None:
    wire.feed(Disconnected("Unspecified error"))
    assert wire.machine.last_error == "connection closed before CONNACK (Unspecified error)"
    wire.feed(ConnectFailed())
    assert wire.machine.last_error == "cannot connect to broker.test:1883"


def test_the_will_is_the_retained_offline_state(wire: Wire) -> None:
    will = wire.machine.will
    assert (will.topic, will.retain, json.loads(will.payload)) == (
        TOPICS.state, True, {"online": False, "boot_id": 1, "reason": "lost"})


def test_the_farewell_of_a_planned_stop_says_who_and_why(wire: Wire) -> None:
    farewell = wire.machine.farewell("stopped", "SIGTERM", "systemctl stop")
    assert (farewell.topic, farewell.retain, json.loads(farewell.payload)) == (
        TOPICS.state, True,
        {"online": False, "boot_id": 1, "reason": "stopped", "by": "SIGTERM",
         "detail": "systemctl stop"})


# -- resends, refusals, dead letters ---------------------------------------------------------


def test_a_row_not_watermarked_in_time_is_resent_and_the_ack_ends_it(
    wire: Wire, outbox: Outbox
) -> None:
    produce(outbox, 3)
    wire.ready()
    first = wire.now
    wire.puback_all()  # the broker has them; the backend never stores them
    wire.advance(RESEND_S - 0.01)
    assert wire.seqs(since=first + 0.001) == []
    wire.advance(0.01)
    assert wire.seqs(since=first + 0.001) == [1, 2, 3]
    assert wire.sends_of(1)[-1].at == pytest.approx(first + RESEND_S)
    assert (wire.machine.counters.published, wire.machine.counters.resent) == (6, 3)
    wire.puback_all()
    wire.ack(3)
    assert wire.machine.unacked == 0 and outbox.stats()["events"] == 0
    wire.advance(10 * RESEND_S)
    assert len(wire.seqs()) == 6  # never again


def test_the_resend_timer_counts_only_while_connected(wire: Wire, outbox: Outbox) -> None:
    produce(outbox, 2)
    wire.ready()
    wire.puback_all()
    wire.advance(10.0)
    wire.feed(Disconnected("Keep alive timeout"))
    wire.advance(10 * RESEND_S)  # down far longer than the resend timer
    assert wire.seqs() == [1, 2]
    wire.ready()
    back = wire.now
    wire.advance(RESEND_S - 0.2)
    assert wire.seqs() == [1, 2]  # paho resends its own queue: ours waits a full timer
    wire.advance(0.2)
    assert wire.seqs() == [1, 2, 1, 2]
    assert wire.sends_of(1)[-1].at == pytest.approx(back - ACK_GRACE_S + RESEND_S)


def test_no_matching_subscribers_retries_soon_with_a_back_off_up_to_the_resend_timer(
    wire: Wire, outbox: Outbox
) -> None:
    produce(outbox, 1)
    wire.ready()
    for _ in range(8):
        wire.puback(wire.mid_of(1), 16)  # backend ingest is not subscribed
        wire.until_sent()
    times = [s.at for s in wire.sends_of(1)]
    assert gaps(times) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert wire.machine.counters.unrouted == 8


def test_a_transient_refusal_backs_off_and_is_reported(wire: Wire, outbox: Outbox) -> None:
    produce(outbox, 1)
    wire.ready()
    for _ in range(5):
        wire.puback(wire.mid_of(1), 151)  # quota exceeded
        wire.until_sent()
    times = [s.at for s in wire.sends_of(1)]
    assert gaps(times) == [
        2.0, 4.0, 8.0, 16.0, 30.0]
    assert wire.machine.counters.refused == 5
    assert wire.machine.last_error == "publish of seq 1 refused with reason 151"
    assert outbox.dead_letters() == []


def test_a_permanent_refusal_is_dead_lettered_with_an_event_and_never_chained(
    wire: Wire, outbox: Outbox
) -> None:
    produce(outbox, 2)
    wire.ready()
    wire.puback(wire.mid_of(2))
    wire.puback(wire.mid_of(1), 135)  # not authorized
    [dead] = outbox.dead_letters()
    assert (dead["seq"], dead["reason_code"], dead["reason"]) == (1, 135, "not authorized")
    [tombstone] = [s for s in wire.sent if s.seq == 3]  # urgent, sent on the same step
    assert tombstone.publish.topic == TOPICS.event("dead_letter")
    assert json.loads(tombstone.publish.payload)["data"] == {
        "seq": 1, "topic": TOPICS.event("vehicle_passed"), "reason_code": 135,
        "reason": "not authorized"}
    wire.puback(tombstone.mid, 135)  # the tombstone refused too: moved aside, no new one
    assert [d["seq"] for d in outbox.dead_letters()] == [1, 3]
    assert outbox.stats()["next_seq"] == 4
    assert wire.machine.counters.dead_letters == 2
    assert wire.machine.last_error == "seq 3 dead-lettered: not authorized"
    wire.advance(10 * RESEND_S)
    assert [s.seq for s in wire.sent if s.seq in (1, 3)] == [1, 3]  # neither resent


def test_a_stale_puback_of_a_superseded_send_changes_nothing(outbox: Outbox) -> None:
    wire = Wire(outbox, keepalive_s=600)  # no watchdog cut in this story
    produce(outbox, 1)
    wire.ready()
    old = wire.mid_of(1)
    wire.advance(RESEND_S)  # never PUBACKed: resent, the new send replaces the old one
    new = wire.mid_of(1)
    assert new != old and wire.machine.in_flight == 1
    wire.feed(PubAck(old, 16))
    assert wire.machine.counters.unrouted == 0 and wire.machine.in_flight == 1
    wire.feed(PubAck(new, 0))
    assert wire.machine.in_flight == 0


def test_a_publish_paho_refuses_is_tried_again(wire: Wire, outbox: Outbox) -> None:
    produce(outbox, 2)
    wire.refusing = "MQTTErrorCode.MQTT_ERR_PAYLOAD_SIZE"
    wire.ready()
    assert wire.seqs() == []
    assert wire.machine.last_error == "publish failed: MQTTErrorCode.MQTT_ERR_PAYLOAD_SIZE"
    assert (wire.machine.in_flight, wire.machine.unacked, wire.machine.counters.published) == (
        0, 0, 0)
    wire.advance(2 * KEEPALIVE_S)
    assert wire.performed(Cut) == []  # nothing awaits a PUBACK
    wire.refusing = None
    wire.tick()
    assert wire.seqs() == [1, 2]
    wire.puback_all()
    wire.refusing = "MQTTErrorCode.MQTT_ERR_NO_CONN?"
    wire.advance(RESEND_S)  # the resend is refused: retried a second later
    wire.refusing = None
    wire.advance(1.0)
    assert wire.seqs() == [1, 2, 1, 2]


def test_paho_reusing_a_lost_sends_mid_forgets_that_send(wire: Wire, outbox: Outbox) -> None:
    produce(outbox, 1)
    wire.ready()
    wire.last_mid = wire.mid_of(1) - 1  # paho's ids wrapped round
    produce(outbox, 1)
    wire.tick()
    assert wire.mid_of(2) == wire.mid_of(1) and wire.machine.in_flight == 1
    wire.feed(PubAck(wire.mid_of(2), 0))
    assert wire.machine.in_flight == 0


# -- flow control and order ------------------------------------------------------------------


def test_at_most_window_publishes_await_a_puback_and_the_refill_comes_in_batches(
    outbox: Outbox,
) -> None:
    wire = Wire(outbox, window=8)
    produce(outbox, 50)
    wire.ready()
    assert wire.seqs() == list(range(1, 9)) and wire.machine.in_flight == 8
    wire.puback(wire.mid_of(1))
    assert len(wire.seqs()) == 8  # one free slot is below a quarter window: no query
    wire.puback(wire.mid_of(2))
    assert wire.seqs()[8:] == [9, 10]
    wire.puback_all()
    assert wire.seqs()[10:] == list(range(11, 19))
    assert wire.machine.in_flight == 8


def test_at_most_max_unacked_rows_await_the_watermark(outbox: Outbox) -> None:
    wire = Wire(outbox, window=8, max_unacked=20)
    produce(outbox, 50)
    wire.ready()
    for _ in range(10):
        wire.puback_all()
    assert wire.seqs() == list(range(1, 21)) and wire.machine.unacked == 20
    wire.advance(RESEND_S / 2)
    assert len(wire.seqs()) == 20
    wire.ack(12)
    assert wire.seqs()[20:] == list(range(21, 29))  # one window's worth, room for 12


def test_urgent_rows_go_first_then_normal_and_health_only_when_no_event_waits(
    outbox: Outbox,
) -> None:
    wire = Wire(outbox, window=4)
    add_health(outbox, WALL_S)
    produce(outbox, 2)  # 1, 2
    produce(outbox, 1, "abnormality")  # 3
    produce(outbox, 1, "cmd_result")  # 4
    produce(outbox, 2)  # 5, 6
    wire.ready()
    assert wire.seqs() == [3, 4, 1, 2]  # the window is full: 5, 6 and health wait
    wire.puback_all()
    wire.puback_all()
    assert [s.publish.topic for s in wire.sent[1:]] == [
        TOPICS.event("abnormality"), TOPICS.cmd_result, *[TOPICS.event("vehicle_passed")] * 4,
        TOPICS.health]
    assert wire.seqs() == [3, 4, 1, 2, 5, 6]
    health = wire.sent[-1].publish
    assert (health.content_type, health.utf8, health.expiry_s) == (JSON, False, 300)
    event = wire.sends_of(1)[0].publish
    assert (event.content_type, event.utf8, event.expiry_s, event.qos) == (JSON, True, None, 1)


def test_health_past_its_expiry_is_dropped_and_sent_health_is_done_at_its_puback(
    wire: Wire, outbox: Outbox
) -> None:
    add_health(outbox, WALL_S - 301)  # expired
    add_health(outbox, WALL_S - 100)  # 200 s to live
    wire.ready()
    [sent] = [s for s in wire.sent if s.publish.topic == TOPICS.health]
    assert json.loads(sent.publish.payload)["seq"] == 2 and sent.publish.expiry_s == 200
    assert outbox.stats()["health"] == 1
    wire.puback(sent.mid, 135)  # health is done once the broker answered, even refused
    assert outbox.stats()["health"] == 0 and wire.machine.unacked == 0


def test_a_transient_message_goes_out_once_and_only_while_connected(wire: Wire) -> None:
    alarm = SendTransient(TOPICS.health, b'{"disk":"full"}', 300)
    assert wire.feed(alarm) == []
    wire.ready()
    assert wire.feed(alarm) == [Publish(TOPICS.health, b'{"disk":"full"}', expiry_s=300,
                                        content_type=JSON)]
    assert wire.machine.in_flight == 0  # untracked


def test_a_restarted_lane_sends_every_row_not_yet_watermarked_at_once(
    tmp_path: Path, outbox: Outbox
) -> None:
    first = Wire(outbox)
    produce(outbox, 30)
    first.ready()
    for _ in range(4):
        first.puback_all()
    first.ack(10)
    outbox.close()  # the agent stops (or is killed); the outbox file stays
    reopened = Outbox(tmp_path / "outbox.db", site=SITE, lane=LANE, agent_version="9.9.9")
    assert reopened.boot_id == 2
    second = Wire(reopened)
    produce(reopened, 5)  # seq runs on
    second.ready()
    for _ in range(4):
        second.puback_all()
    assert second.seqs() == list(range(11, 36))
    second.ack(35)
    assert reopened.stats()["events"] == 0


def test_a_stepped_wall_clock_moves_no_resend_timer(wire: Wire, outbox: Outbox) -> None:
    produce(outbox, 2)
    wire.ready()
    first = wire.now
    wire.puback_all()
    wire.wall += 86_400  # a day ahead
    wire.advance(RESEND_S / 2)
    wire.wall -= 86_400 + 3_600  # and an hour behind where it started
    wire.advance(RESEND_S / 2)
    assert [s.at - first for s in wire.sent if s.seq] == pytest.approx([0, 0, RESEND_S, RESEND_S])
    assert wire.seqs() == [1, 2, 1, 2]


# -- liveness --------------------------------------------------------------------------------


def test_publishes_waiting_a_keepalive_without_any_puback_cut_the_link(
    wire: Wire, outbox: Outbox
) -> None:
    produce(outbox, 5)
    wire.ready()
    sent_at = wire.now
    wire.advance(6.0)
    wire.puback(wire.mid_of(1))  # one PUBACK restarts the watchdog
    wire.advance(KEEPALIVE_S - 0.01)
    assert wire.performed(Cut) == []
    wire.advance(0.01)
    assert wire.performed(Cut) == [pytest.approx(sent_at + 6.0 + KEEPALIVE_S)]
    assert wire.state() is LinkState.CUT and not wire.machine.connected
    assert wire.machine.counters.cuts == 1
    assert wire.machine.last_error == "no PUBACK for 10.0 s: reconnecting"


def test_an_idle_link_is_never_cut_and_asks_for_no_tick(wire: Wire) -> None:
    assert wire.machine.next_deadline() is None
    wire.ready()
    assert wire.machine.next_deadline() is None
    wire.advance(100 * KEEPALIVE_S)
    assert wire.performed(Cut) == []


def test_a_cut_paho_reports_in_time_needs_no_rebuild(wire: Wire, outbox: Outbox) -> None:
    produce(outbox, 3)
    wire.ready()
    wire.advance(KEEPALIVE_S)
    wire.advance(KEEPALIVE_S)
    wire.feed(Disconnected("Connection lost"))
    wire.advance(10 * KEEPALIVE_S)
    assert len(wire.performed(Cut)) == 1 and wire.performed(Rebuild) == []
    assert wire.machine.last_error == "disconnected: Connection lost"  # CONNACK was seen
    wire.ready()
    back = wire.now
    wire.puback_all()  # paho resent its own queue; the machine waits a full resend timer
    wire.advance(RESEND_S - 1)
    assert wire.seqs(since=back) == []


def test_a_network_thread_that_ignores_the_cut_is_replaced_and_every_row_goes_again(
    wire: Wire, outbox: Outbox
) -> None:
    produce(outbox, 5)
    wire.ready()
    wire.puback(wire.mid_of(1))
    wire.puback(wire.mid_of(2))
    wire.advance(KEEPALIVE_S)
    [cut_at] = wire.performed(Cut)
    wire.advance(3 * KEEPALIVE_S - 0.01)
    assert wire.performed(Rebuild) == []
    wire.advance(0.01)
    assert wire.performed(Rebuild) == [pytest.approx(cut_at + 3 * KEEPALIVE_S)]
    assert wire.state() is LinkState.DISCONNECTED
    assert wire.machine.counters.rebuilds == 1 and wire.machine.in_flight == 0
    assert wire.machine.last_error == "MQTT client rebuilt: its network thread hung"
    assert wire.machine.next_deadline() is None
    wire.ready()  # the new client: its queue is empty, so every unwatermarked row at once
    back = wire.now
    assert wire.seqs(since=back) == [1, 2, 3, 4, 5]
    wire.puback_all()
    wire.ack(5)
    assert outbox.stats()["events"] == 0


# -- acks and commands -----------------------------------------------------------------------


def test_acks_for_another_outbox_or_past_the_last_seq_are_refused_and_delete_nothing(
    wire: Wire, outbox: Outbox
) -> None:
    produce(outbox, 3)
    wire.ready()
    wire.ack(3, epoch=FOREIGN_EPOCH)
    assert wire.machine.last_error is not None
    assert wire.machine.last_error.startswith("ack refused: ack is for outbox")
    wire.ack(99)
    wire.feed(MessageReceived(TOPICS.ack, b"not json", retained=True))
    assert wire.machine.counters.acks_refused == 3
    assert outbox.stats()["events"] == 3 and wire.machine.acked_upto == 0
    wire.ack(2)
    assert outbox.stats()["events"] == 1 and wire.machine.acked_upto == 2


def test_a_stale_ack_is_ignored(wire: Wire, outbox: Outbox) -> None:
    produce(outbox, 3)
    wire.ready()
    wire.ack(2)
    wire.ack(2)  # the retained ack again, after a reconnect
    wire.ack(1)
    assert wire.machine.acked_upto == 2 and wire.machine.counters.acks_refused == 0
    assert outbox.stats()["events"] == 1


def test_commands_are_delivered_and_a_retained_one_is_ignored_and_counted(wire: Wire) -> None:
    wire.ready()
    retained = MessageReceived(TOPICS.command("config"), b"{}", retained=True)
    assert wire.feed(retained) == []
    assert wire.machine.counters.retained_commands_ignored == 1
    fresh = MessageReceived(TOPICS.command("config"), b"{}", retained=False)
    assert wire.feed(fresh) == [DeliverCommand("config", b"{}")]
    assert wire.feed(MessageReceived("gate/v1/other", b"{}", retained=False)) == []


def test_commands_past_the_cap_are_dropped_and_counted_until_one_is_taken() -> None:
    gate = CommandGate()
    assert all(gate.admit() for _ in range(MAX_PENDING_COMMANDS))
    assert not gate.admit() and not gate.admit()
    assert gate.dropped == 2
    gate.release()  # the sender took one
    assert gate.admit() and not gate.admit()
    assert gate.dropped == 3


# -- reconnect delays ------------------------------------------------------------------------


def test_reconnect_delays_draw_from_the_window_double_to_the_cap_and_restart_on_reset() -> None:
    backoff = ReconnectJitter(first_min_s=1.0, first_max_s=5.0, max_s=12.0).backoff(
        random.Random(3))
    first = backoff.next()
    assert 1.0 <= first <= 5.0
    assert [backoff.next() for _ in range(3)] == [2 * first, min(4 * first, 12.0), 12.0]
    draws = []
    for _ in range(200):
        backoff.reset()
        draws.append(backoff.next())
    assert all(1.0 <= d <= 5.0 for d in draws) and max(draws) - min(draws) > 3.5
    with pytest.raises(ConfigError, match="first_min_s"):
        ReconnectJitter(first_min_s=5, first_max_s=1)
