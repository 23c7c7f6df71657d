"""The IO-board link codec against the golden vectors shared with the firmware tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols import iolink

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "firmware" / "vectors" / "link_vectors.json").read_text()
)
FRAMES = {v["name"]: v for v in VECTORS["frames"]}
ALL_WIRE = b"".join(bytes.fromhex(v["wire"]) for v in VECTORS["frames"])


def _meaning(message: iolink.Message, keys: list[str]) -> dict[str, Any]:
    """The message's JSON view in the vectors' terms: inputs and outputs as the names on."""
    fields = iolink.message_json(message)
    for name in ("inputs", "outputs"):
        if name in fields:
            fields[name] = sorted(k for k, v in fields[name].items() if v)
    return {k: fields.get(k) for k in keys}


def test_name_tables_match_the_vectors() -> None:
    names = VECTORS["names"]
    assert list(iolink.INPUT_NAMES) == names["inputs"]
    assert list(iolink.OUTPUT_NAMES) == names["outputs"]
    assert list(iolink.BARRIER_STATES) == names["barrier_states"]
    assert list(iolink.FAULT_NAMES) == names["faults"]
    assert list(iolink.FLAG_NAMES) == names["flags"]
    assert list(iolink.RESULT_NAMES) == names["results"]
    assert list(iolink.RESET_CAUSES) == names["reset_causes"]
    assert {t.name.lower(): int(t) for t in iolink.MsgType} == VECTORS["types"]


def test_crc_check_value() -> None:
    check = VECTORS["crc16_check"]
    assert iolink.crc16(check["ascii"].encode()) == int(check["crc"], 16)


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("hello", iolink.encode_hello(0, 0x12345678, 1000)),
        ("heartbeat", iolink.encode_heartbeat(1200)),
        ("open", iolink.encode_open(2, 2000)),
        ("close_when_clear", iolink.encode_close_when_clear(3, 0xFFFFFF00)),
        ("config", iolink.encode_config(1, 500, 4000, 200)),
        ("clear_fault", iolink.encode_clear_fault(4, 3000)),
        ("maintenance", iolink.encode_maintenance(5, 3000, True)),
        ("output_pulse", iolink.encode_output_pulse(6, 3000, "buzzer", 500)),
        ("result_ok", iolink.encode_result(9, 2, "ok", "opening")),
    ],
)
def test_encoders_reproduce_the_vectors(name: str, wire: bytes) -> None:
    assert wire.hex() == FRAMES[name]["wire"]


PULSE_FRAMES = [v for v in VECTORS["frames"] if v["type"] == iolink.MsgType.OUTPUT_PULSE]
# All but the truncated payload, which no encoder input can produce.
ENCODABLE_PULSES = [v for v in PULSE_FRAMES if "pulse_ms" in v["meaning"]]


@pytest.mark.parametrize("vector", ENCODABLE_PULSES, ids=lambda v: v["name"])
def test_output_pulse_encoder_builds_what_the_board_accepts_and_nothing_else(
    vector: dict[str, Any],
) -> None:
    meaning = vector["meaning"]
    args = (vector["seq"], meaning["deadline_ms"], meaning["output"], meaning["pulse_ms"])
    if vector["answer"] == "ok":
        assert iolink.encode_output_pulse(*args).hex() == vector["wire"]
    else:
        assert vector["answer"] == "bad_request"
        with pytest.raises(LocalProtocolError, match=r"cannot be pulsed|outside 10\.\.10000 ms"):
            iolink.encode_output_pulse(*args)


def test_output_pulse_vectors_cover_both_answers_and_the_limits() -> None:
    answers = {v["answer"] for v in PULSE_FRAMES}
    assert answers == {"ok", "bad_request"}
    accepted = {v["meaning"]["pulse_ms"] for v in PULSE_FRAMES if v["answer"] == "ok"}
    assert set(iolink.PULSE_MS_LIMITS) <= accepted
    refused = {v["meaning"].get("output") for v in PULSE_FRAMES if v["answer"] == "bad_request"}
    assert set(iolink.OUTPUT_NAMES) - set(iolink.PULSE_OUTPUTS) <= refused


def test_output_pulse_refusals_name_what_was_wrong() -> None:
    with pytest.raises(LocalProtocolError, match="'light_green' cannot be pulsed"):
        iolink.encode_output_pulse(1, 0, "light_green", 500)
    with pytest.raises(LocalProtocolError, match="'horn' cannot be pulsed"):
        iolink.encode_output_pulse(1, 0, "horn", 500)
    with pytest.raises(LocalProtocolError, match="pulse of 9 ms"):
        iolink.encode_output_pulse(1, 0, "buzzer", 9)
    with pytest.raises(LocalProtocolError, match="seq"):
        iolink.encode_output_pulse(256, 0, "buzzer", 500)
    assert iolink.check_output_pulse("light_red", 10) == iolink.OUTPUT_NAMES.index("light_red")


BOARD_FRAMES = [v["name"] for v in VECTORS["frames"] if v["direction"] == "board"]


@pytest.mark.parametrize("name", BOARD_FRAMES)
def test_board_frames_decode_to_their_meaning(name: str) -> None:
    vector = FRAMES[name]
    [message] = iolink.LinkCodec().receive_data(bytes.fromhex(vector["wire"]))
    assert _meaning(message, list(vector["meaning"])) == vector["meaning"]


def test_state_encoder_round_trips() -> None:
    [message] = iolink.LinkCodec().receive_data(bytes.fromhex(FRAMES["snapshot"]["wire"]))
    assert isinstance(message, iolink.BoardState)
    assert iolink.encode_state(message).hex() == FRAMES["snapshot"]["wire"]


def test_host_frames_decode_as_plain_frames() -> None:
    [message] = iolink.LinkCodec().receive_data(bytes.fromhex(FRAMES["open"]["wire"]))
    assert message == iolink.Frame(iolink.MsgType.OPEN, 2, 0, bytes.fromhex("000007d0"))


def test_whole_split_and_byte_by_byte_give_the_same_messages() -> None:
    whole = iolink.LinkCodec().receive_data(ALL_WIRE)
    assert len(whole) == len(VECTORS["frames"])
    for cut in range(len(ALL_WIRE) + 1):
        codec = iolink.LinkCodec()
        assert codec.receive_data(ALL_WIRE[:cut]) + codec.receive_data(ALL_WIRE[cut:]) == whole
    codec = iolink.LinkCodec()
    single = [m for i in range(len(ALL_WIRE)) for m in codec.receive_data(ALL_WIRE[i : i + 1])]
    assert single == whole


@pytest.mark.parametrize("vector", VECTORS["garbage"], ids=lambda v: v["name"])
def test_garbage_is_an_error_event_then_resync(vector: dict[str, str]) -> None:
    codec = iolink.LinkCodec()
    good = bytes.fromhex(FRAMES["result_ok"]["wire"])
    messages = codec.receive_data(bytes.fromhex(vector["wire"]) + good)
    assert isinstance(messages[0], iolink.LinkError)
    assert messages[0].kind == vector["error"]
    assert isinstance(messages[1], iolink.Result)
    assert codec.errors == 1 and codec.frames == 1


def test_every_bit_flip_is_detected() -> None:
    wire = bytes.fromhex(FRAMES["snapshot"]["wire"])
    for i in range(len(wire) - 1):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            messages = iolink.LinkCodec().receive_data(bytes(bad))
            assert messages, (i, bit)
            assert all(isinstance(m, iolink.LinkError) for m in messages), (i, bit)


def test_short_payload_is_a_payload_error() -> None:
    wire = iolink.encode_frame(iolink.MsgType.SNAPSHOT, 0, 0, b"\x01\x02")
    [message] = iolink.LinkCodec().receive_data(wire)
    assert isinstance(message, iolink.LinkError) and message.kind == "payload"


def test_encoder_rejects_illegal_frames() -> None:
    with pytest.raises(LocalProtocolError, match="payload"):
        iolink.encode_frame(0x10, 1, 0, bytes(241))
    with pytest.raises(LocalProtocolError, match="seq"):
        iolink.encode_frame(0x10, 256, 0)
    with pytest.raises(LocalProtocolError, match="t_clear_ms"):
        iolink.encode_config(1, 70000, 4000, 200)


@given(st.binary(max_size=600))
def test_cobs_round_trip(data: bytes) -> None:
    encoded = iolink.cobs_encode(data)
    assert 0 not in encoded
    assert iolink.cobs_decode(encoded) == data


@given(st.binary(max_size=300), st.binary(max_size=240))
def test_garbage_never_raises_and_a_later_frame_survives(garbage: bytes, payload: bytes) -> None:
    codec = iolink.LinkCodec()
    wire = iolink.encode_frame(0x7F, 1, 2, payload)
    messages = codec.receive_data(garbage + b"\x00" + wire)
    assert messages[-1] == iolink.Frame(0x7F, 1, 2, payload)
