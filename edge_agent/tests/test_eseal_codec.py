"""E-seal reader line codec: golden sentences, splits, garbage and resynchronisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.errors import LocalProtocolError
from edge_agent.protocols.eseal import (
    MAX_LINE,
    EsealDecoder,
    EsealEvent,
    ReaderHeartbeat,
    SealFrameError,
    SealRead,
    checksum,
    encode_heartbeat,
    encode_read,
)

# Checksums worked by hand: XOR of every byte between '$' and '*'.
GOLDEN = [
    (b"$HBT*5E\r\n", None),  # 0x48 ^ 0x42 ^ 0x54
    (b"$SEAL,ES-00471135,closed,-58*3B\r\n", SealRead("ES-00471135", "closed", -58)),
    (b"$SEAL,ES-00471136,tampered,-61*3E\r\n", SealRead("ES-00471136", "tampered", -61)),
    (b"$SEAL,E2801160600002084D5A6B2C,open,*57\r\n",
     SealRead("E2801160600002084D5A6B2C", "open", None)),
]


def events(data: bytes) -> list[EsealEvent]:
    return list(EsealDecoder().receive_data(data))


def plain(event: object) -> object:
    """The event without its raw bytes, for comparison."""
    if isinstance(event, SealRead):
        return SealRead(event.tag_id, event.status, event.rssi_dbm)
    return ReaderHeartbeat() if isinstance(event, ReaderHeartbeat) else event


@pytest.mark.parametrize(("wire", "read"), GOLDEN)
def test_golden_sentences_decode_and_encode(wire: bytes, read: SealRead | None) -> None:
    (event,) = events(wire)
    assert plain(event) == (read or ReaderHeartbeat())
    assert event.raw == wire
    assert (encode_read(read) if read else encode_heartbeat()) == wire


def test_checksum_is_the_xor_between_dollar_and_star() -> None:
    assert checksum(b"HBT") == 0x5E and checksum(b"") == 0


def test_bare_lf_lower_case_and_lower_hex_are_accepted() -> None:
    body = b"SEAL,es-1,CLOSED,-5"
    line = b"$" + body + b"*" + f"{checksum(body):02x}".encode() + b"\n"
    assert [plain(e) for e in events(line)] == [SealRead("ES-1", "closed", -5)]


@pytest.mark.parametrize(("wire", "why"), [
    (b"$SEAL,ES-00471135,closed,-58*3C\r\n", "checksum 3C does not match 3B"),
    (b"$SEAL,ES-00471135,closed,-58\r\n", "no *HH checksum"),
    (b"$SEAL,ES-1,closed*", "cut short"),
    (b"$XYZ,1*" + f"{checksum(b'XYZ,1'):02X}".encode() + b"\r\n", "unknown sentence 'XYZ'"),
    (b"$SEAL,ES-1,broken,-5*" + f"{checksum(b'SEAL,ES-1,broken,-5'):02X}".encode() + b"\r\n",
     "unknown seal status 'broken'"),
    (b"$SEAL,ES-1,open,7*" + f"{checksum(b'SEAL,ES-1,open,7'):02X}".encode() + b"\r\n",
     "rssi '7'"),
    (b"$SEAL,ES_1,open,*" + f"{checksum(b'SEAL,ES_1,open,'):02X}".encode() + b"\r\n", "tag id"),
    (b"$SEAL,ES-1,open*" + f"{checksum(b'SEAL,ES-1,open'):02X}".encode() + b"\r\n",
     "2 fields, expected 3"),
    (b"noise\r\n", "bytes outside a sentence"),
])
def test_bad_input_is_an_error_event_that_says_why(wire: bytes, why: str) -> None:
    out = EsealDecoder()
    found = out.receive_data(wire) + out.receive_data(b"$")  # the next '$' ends a cut line
    assert next(e.reason for e in found if isinstance(e, SealFrameError)).count(why) == 1


def test_a_cut_sentence_costs_only_itself() -> None:
    good = GOLDEN[1][0]
    found = events(good[:12] + good + good)
    assert [type(e) for e in found] == [SealFrameError, SealRead, SealRead]
    assert isinstance(found[0], SealFrameError) and found[0].reason == "sentence cut short"


def test_an_endless_line_is_dropped_and_the_next_sentence_read() -> None:
    decoder = EsealDecoder()
    flood = decoder.receive_data(b"$" + b"A" * 5000)
    assert [e.reason for e in flood if isinstance(e, SealFrameError)] == ["line too long"]
    assert len(flood) == 1
    after = decoder.receive_data(b"AAAA\r\n" + GOLDEN[1][0])
    assert plain(after[-1]) == GOLDEN[1][1]


def test_idle_line_bytes_are_not_errors() -> None:
    assert [plain(e) for e in events(b"\r\n\x00\x00 " + GOLDEN[0][0] + b"\r\n")] == [
        ReaderHeartbeat()]


@pytest.mark.parametrize("read", [SealRead("", "closed"), SealRead("ES 1", "closed"),
                                  SealRead("A" * 33, "closed"), SealRead("ES-1", "broken"),
                                  SealRead("ES-1", "open", 5), SealRead("ES-1", "open", -129)])
def test_the_encoder_refuses_what_the_protocol_cannot_carry(read: SealRead) -> None:
    with pytest.raises(LocalProtocolError):
        encode_read(read)


tags = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=32)
reads = st.builds(SealRead, tags, st.sampled_from(["closed", "open", "tampered"]),
                  st.one_of(st.none(), st.integers(-128, 0)))


@given(st.lists(reads, min_size=1, max_size=6), st.lists(st.integers(0, 300), max_size=8))
def test_any_split_of_a_stream_decodes_the_same(sent: list[SealRead], cuts: list[int]) -> None:
    wire = b"".join(encode_read(r) for r in sent)
    decoder = EsealDecoder()
    got: list[object] = []
    start = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        got += decoder.receive_data(wire[start:cut])
        start = cut
    got += decoder.receive_data(wire[start:])
    assert [plain(e) for e in got] == sent
    assert all(len(encode_read(r)) <= MAX_LINE for r in sent)


@given(st.binary(max_size=400), reads)
def test_garbage_never_raises_and_the_next_good_sentence_still_decodes(
        garbage: bytes, read: SealRead) -> None:
    decoder = EsealDecoder()
    found = decoder.receive_data(garbage) + decoder.receive_data(b"\r\n" + encode_read(read))
    assert all(isinstance(e, (SealRead, ReaderHeartbeat, SealFrameError)) for e in found)
    assert plain(found[-1]) == read


@given(st.lists(st.binary(max_size=60), max_size=10))
def test_random_chunks_only_ever_give_events(chunks: list[bytes]) -> None:
    decoder = EsealDecoder()
    for chunk in chunks:
        for event in decoder.receive_data(chunk):
            assert isinstance(event, (SealRead, ReaderHeartbeat, SealFrameError))
            if isinstance(event, SealFrameError):
                assert event.reason and isinstance(event.raw, bytes)
