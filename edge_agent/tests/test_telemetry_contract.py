"""Contract test: every MQTT message on the wire validates against docs/asyncapi.yaml.

The document itself is first validated against the official AsyncAPI 3.0.0 JSON Schema
(vendored from npm ``@asyncapi/specs``, see docs/schemas/README.md).

A sniffer subscribed to ``gate/#`` records what really crosses a private broker while a lane
publishes events, a command result and health, receives a signed command and an ack, and
stops; each message is matched to its channel by address and validated with jsonschema.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.client import MQTTMessage

from backend.ingest import IngestWorker
from edge_agent.telemetry.commands import sign_command
from edge_agent.telemetry.envelope import state_message
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from simulators.broker import MosquittoBroker

if TYPE_CHECKING:
    from conftest import LaneRigs, WaitUntil

DOCS = Path(__file__).resolve().parents[2] / "docs"
SPEC_PATH = DOCS / "asyncapi.yaml"
ASYNCAPI_SCHEMA_PATH = DOCS / "schemas" / "asyncapi-3.0.0.json"
SITE, LANE = "site-1", "lane-01"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def channel_patterns(spec: dict[str, Any]) -> list[tuple[str, re.Pattern[str]]]:
    patterns = []
    for name, channel in spec["channels"].items():
        regex = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(channel["address"]))
        patterns.append((name, re.compile(f"^{regex}$")))
    return patterns


def validator_for(spec: dict[str, Any], channel: str) -> jsonschema.Draft7Validator:
    [message] = spec["channels"][channel]["messages"].values()
    payload_ref = resolve(spec, message)["payload"]["$ref"]
    # The whole document is the root, so every '#/components/...' reference resolves.
    return jsonschema.Draft7Validator({**spec, "$ref": payload_ref})


@pytest.fixture(scope="module")
def asyncapi_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(ASYNCAPI_SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_the_document_is_valid_against_the_official_asyncapi_3_schema(
    spec: dict[str, Any], asyncapi_validator: jsonschema.Draft7Validator
) -> None:
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in asyncapi_validator.iter_errors(spec)
    ]
    assert errors == []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("operations", "sendEvent", "action"), "publish"),  # the AsyncAPI 2.x verb
        (("operations", "sendEvent", "bindings", "mqtt", "qos"), 3),
        (("servers", "site", "protocolVersion"), 5),  # must be a string
        (("channels", "ack", "subscribe"), {}),  # 2.x channel shape
    ],
)
def test_the_official_schema_rejects_a_broken_document(
    spec: dict[str, Any],
    asyncapi_validator: jsonschema.Draft7Validator,
    where: tuple[str, ...],
    value: Any,
) -> None:
    broken = copy.deepcopy(spec)
    node = broken
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    assert not asyncapi_validator.is_valid(broken)


def test_the_document_is_a_consistent_asyncapi_3_description(spec: dict[str, Any]) -> None:
    assert spec["asyncapi"] == "3.0.0"
    for name, operation in spec["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        assert resolve(spec, operation["channel"]) in spec["channels"].values()
    for name, channel in spec["channels"].items():
        placeholders = set(re.findall(r"\{([a-z_]+)\}", channel["address"]))
        assert placeholders == set(channel.get("parameters", {})), name
        for message in channel["messages"].values():
            assert "payload" in resolve(spec, message), name
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)


def test_every_message_on_the_wire_matches_its_channel_schema(
    broker: MosquittoBroker,
    backend: IngestWorker,
    lane_rig: LaneRigs,
    wait_until: WaitUntil,
    spec: dict[str, Any],
) -> None:
    captured: list[MQTTMessage] = []
    subscribed = threading.Event()
    address = parse_broker_url(broker.url)
    sniffer = make_client("sniffer", address)
    sniffer.on_connect = lambda c, *a: c.subscribe("gate/#", qos=1)
    sniffer.on_subscribe = lambda *a: subscribed.set()
    sniffer.on_message = lambda c, u, m: captured.append(m)
    sniffer.connect(address.host, address.port)
    sniffer.loop_start()
    assert subscribed.wait(5)

    commands: list[tuple[str, bytes]] = []
    lane = lane_rig(
        agent_version="1.0.0", on_command=lambda name, payload: commands.append((name, payload))
    )
    now_ms = int(time.time() * 1000)
    clock = {"mono_ms": 5, "wall_ms": now_ms, "clock_synced": True}
    hold = {"decision": "hold", "reasons": ["weight.frozen"], "weight_kg": None,
            "release_no": "RL-1", "input_at_mono": 4.5, "detail": "frozen", "challenge": "c1"}
    lane.outbox.add_event("decision", hold, transit_id="t1", **clock)
    frozen = {"code": "weight.frozen", "detail": "no change for 60 s"}
    lane.outbox.add_event("abnormality", frozen, transit_id=None, **clock)
    lane.outbox.add_command_result("cmd-0", {
        "name": "config", "accepted": True, "code": None, "detail": "applied",
        "reported": {"version": 2, "settings": {"passes.skew_s": 120}},
    }, **clock)
    lane.outbox.add_health({
        "state": "idle", "devices": {}, "outbox": {"events": 3},
        "settings": {"passes.skew_s": 120}, "applied": {"config": 2},
    }, **clock)
    lane.publisher.wake()
    assert wait_until(lambda: lane.status()["acked_upto"] == 3)
    claims = {
        "cmd_id": "cmd-1", "name": "remote_release", "site": SITE, "lane": LANE,
        "iat": now_ms // 1000, "exp": now_ms // 1000 + 60, "nonce": "n-1",
        "issuer": "officer-1", "args": {"challenge": "c1", "reason_ref": "e1"},
    }
    key = Ed25519PrivateKey.generate()
    backend.publish_command(SITE, LANE, "remote_release", sign_command(key, "k1", claims))
    assert wait_until(lambda: len(commands) == 1)
    lane.close()
    assert wait_until(lambda: any(json.loads(m.payload) == {"online": False, "boot_id": 1,
                                                         "reason": "stopped"}
                                  for m in captured if m.topic.endswith("/state")))
    sniffer.disconnect()
    sniffer.loop_stop()

    patterns = channel_patterns(spec)
    seen: set[str] = set()
    for message in captured:
        [channel] = [name for name, pattern in patterns if pattern.match(message.topic)]
        errors = list(validator_for(spec, channel).iter_errors(json.loads(message.payload)))
        assert errors == [], (message.topic, [e.message for e in errors])
        seen.add(channel)
    assert seen == set(spec["channels"])  # every channel was exercised


def test_the_last_will_and_a_broken_envelope_are_judged_correctly(spec: dict[str, Any]) -> None:
    assert validator_for(spec, "state").is_valid(state_message(False, 3))
    assert not validator_for(spec, "state").is_valid({"online": "yes", "boot_id": 3})
    event_schema = validator_for(spec, "laneEvent")
    assert not event_schema.is_valid({"schema": "gate.lane_event/1", "seq": 0})
