"""Topic tree and envelope codec: pure functions, no broker."""

from __future__ import annotations

import json
import uuid

import pytest

from edge_agent.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from edge_agent.telemetry import envelope
from edge_agent.telemetry.topics import (
    INGEST_FILTERS,
    LaneTopics,
    ParsedTopic,
    TopicKind,
    parse_topic,
    shared,
)


def test_lane_topics_follow_the_design_tree() -> None:
    topics = LaneTopics("site-1", "lane-07")
    assert topics.event("weight_measured") == "gate/v1/site-1/lane-07/evt/weight_measured"
    assert topics.cmd_result == "gate/v1/site-1/lane-07/cmd_result"
    assert topics.health == "gate/v1/site-1/lane-07/health"
    assert topics.state == "gate/v1/site-1/lane-07/state"
    assert topics.command("remote_release") == "gate/v1/site-1/lane-07/cmd/remote_release"
    assert topics.commands == "gate/v1/site-1/lane-07/cmd/+"
    assert topics.ack == "gate/v1/site-1/lane-07/ack"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "lane 1", "-lead", "x" * 65, "é"])
def test_unsafe_topic_levels_are_refused_with_the_field_named(bad: str) -> None:
    with pytest.raises(ConfigError, match="lane"):
        LaneTopics("site", bad)
    with pytest.raises(ConfigError, match="event type"):
        LaneTopics("site", "lane").event(bad)


def test_parse_topic_inverts_every_lane_topic() -> None:
    topics = LaneTopics("s", "l")
    assert parse_topic(topics.event("abnormality")) == ParsedTopic(
        "s", "l", TopicKind.EVENT, "abnormality"
    )
    command = ParsedTopic("s", "l", TopicKind.COMMAND, "config")
    assert parse_topic(topics.command("config")) == command
    for topic, kind in [
        (topics.cmd_result, TopicKind.CMD_RESULT),
        (topics.health, TopicKind.HEALTH),
        (topics.state, TopicKind.STATE),
        (topics.ack, TopicKind.ACK),
    ]:
        assert parse_topic(topic) == ParsedTopic("s", "l", kind, None)


@pytest.mark.parametrize(
    "topic",
    ["other/v1/s/l/state", "gate/v2/s/l/state", "gate/v1/s/l/nope", "gate/v1/s/l/evt",
     "gate/v1/s/l/evt/a/b", "gate/v1/s/l/state/x", "gate/v1/s/+/state"],
)
def test_parse_topic_rejects_foreign_or_malformed_topics(topic: str) -> None:
    assert parse_topic(topic) is None


def test_shared_subscription_form() -> None:
    assert shared(INGEST_FILTERS[0], "ingest") == "$share/ingest/gate/v1/+/+/evt/+"


def test_uuid7_carries_version_variant_and_millisecond_timestamp() -> None:
    wall_ms = 1_714_564_800_123
    value = uuid.UUID(envelope.uuid7(wall_ms, bytes(range(10))))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == wall_ms
    later = envelope.uuid7(wall_ms + 1, b"\x00" * 10)
    assert later > str(value)  # sorts by time in its text form too


def test_uuid7_rejects_a_wrong_random_length_and_negative_time() -> None:
    with pytest.raises(LocalProtocolError):
        envelope.uuid7(1, b"short")
    with pytest.raises(LocalProtocolError):
        envelope.uuid7(-1)


def test_occurred_at_is_utc_iso8601_with_milliseconds_and_z() -> None:
    assert envelope.format_utc_ms(0) == "1970-01-01T00:00:00.000Z"
    assert envelope.format_utc_ms(1_714_564_800_007) == "2024-05-01T12:00:00.007Z"


def _sample(**changes: object) -> dict[str, object]:
    message = envelope.build_envelope(
        event_id=envelope.uuid7(1_714_564_800_000),
        site="s",
        lane="l",
        seq=1,
        boot_id=2,
        type="vehicle_passed",
        wall_ms=1_714_564_800_000,
        mono_ms=5,
        clock_synced=True,
        clock_source="ntp",
        transit_id="t-1",
        agent_version="0.1.0",
        data={"plate": "AB-123"},
    )
    message.update(changes)
    return message


def test_envelope_round_trips_with_every_design_field() -> None:
    message = _sample()
    assert tuple(message) == envelope.ENVELOPE_FIELDS
    assert message["clock"] == {"synced": True, "source": "ntp"}
    assert envelope.decode(envelope.encode(message)) == message


def test_encode_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(LocalProtocolError):
        envelope.encode(_sample(data={"x": float("nan")}))
    with pytest.raises(LocalProtocolError):
        envelope.encode(_sample(data={"x": object()}))


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"\xff", "UTF-8 JSON"),
        (b"[1]", "not a JSON object"),
        (json.dumps({"schema": envelope.SCHEMA}).encode(), "lacks"),
        (envelope.encode(_sample(schema="other/9")), "unknown envelope schema"),
        (envelope.encode(_sample(seq=0)), "seq"),
        (envelope.encode(_sample(seq=True)), "seq"),
        (envelope.encode(_sample(data=[])), "data"),
    ],
)
def test_decode_names_what_is_wrong(payload: bytes, complaint: str) -> None:
    with pytest.raises(RemoteProtocolError, match=complaint):
        envelope.decode(payload)
