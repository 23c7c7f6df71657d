"""Tampering with a real log (written by RecordStore) is caught, and the first bad record named."""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.records import LOG_NAME
from edge_agent.records.codec import (
    CRC,
    HEAD,
    decode_payload,
    encode_frame,
    make_record,
    split_frames,
)
from edge_agent.records.segments import all_segments
from edge_agent.records.tests.sample_log import log_bytes, write_log
from edge_agent.records.verify import (
    Part,
    jsonl_parts,
    log_part,
    parse_known,
    verify_chain,
    verify_log,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@cache
def sample() -> bytes:
    """One real log (7 records), written once for every example hypothesis draws."""
    return log_bytes(write_log(Path(tempfile.mkdtemp()), KEY))


@cache
def boundaries() -> list[int]:
    """Where each frame starts, and the end."""
    frames = split_frames(sample()).frames
    return [f.offset for f in frames] + [len(sample())]


def frame_at(position: int) -> int:
    """The index (= seq) of the frame holding byte ``position``."""
    starts = boundaries()
    return max(i for i, start in enumerate(starts[:-1]) if start <= position)


def last_hash() -> str:
    items = verify_log(sample()).items
    return items[-1].hash


def test_the_sample_log_is_intact() -> None:
    verdict = verify_log(sample())
    assert verdict.ok and verdict.records == 7 and verdict.bad_seq is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_changed_byte_is_caught_at_its_record(data: st.DataObject) -> None:
    log = bytearray(sample())
    position = data.draw(st.integers(0, len(log) - 1), label="position")
    log[position] ^= data.draw(st.integers(1, 255), label="xor")
    verdict = verify_log(bytes(log))
    assert not verdict.ok
    assert verdict.bad_seq == frame_at(position)
    assert verdict.records == frame_at(position)  # every record before it still verifies


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_removed_bytes_are_caught_with_the_last_hash_known(data: st.DataObject) -> None:
    log = sample()
    start = data.draw(st.integers(0, len(log) - 1), label="start")
    end = data.draw(st.integers(start + 1, len(log)), label="end")
    cut = log[:start] + log[end:]
    verdict = verify_chain([log_part(LOG_NAME, cut)], known=[last_hash()])
    assert not verdict.ok
    assert verdict.bad_seq == frame_at(start)


def test_whole_records_cut_off_the_end_need_a_known_hash() -> None:
    cut = sample()[: boundaries()[4]]
    alone = verify_log(cut)
    assert alone.ok and alone.records == 4  # sound as far as it goes
    verdict = verify_chain([log_part(LOG_NAME, cut)], known=[last_hash()[:16]])
    assert not verdict.ok and verdict.bad_seq == 4
    assert "is not in the log" in verdict.reason


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_inserted_bytes_are_caught(data: st.DataObject) -> None:
    log = sample()
    position = data.draw(st.integers(0, len(log)), label="position")
    junk = data.draw(st.binary(min_size=1, max_size=40), label="junk")
    verdict = verify_log(log[:position] + junk + log[position:])
    assert not verdict.ok
    assert verdict.bad_seq == (frame_at(position) if position < len(log) else 7)


def frames() -> list[bytes]:
    starts = boundaries()
    return [sample()[a:b] for a, b in itertools.pairwise(starts)]


@pytest.mark.parametrize(("i", "j"), [(0, 1), (1, 2), (2, 5), (5, 6), (1, 6)])
def test_swapped_records_are_caught_at_the_first(i: int, j: int) -> None:
    parts = frames()
    parts[i], parts[j] = parts[j], parts[i]
    verdict = verify_log(b"".join(parts))
    assert not verdict.ok and verdict.bad_seq == i


def test_removed_middle_record_is_named() -> None:
    parts = frames()
    del parts[3]
    verdict = verify_log(b"".join(parts))
    assert not verdict.ok and verdict.bad_seq == 3
    assert "deleted" in verdict.reason


def test_repeated_record_is_caught() -> None:
    parts = frames()
    parts.insert(3, parts[2])
    verdict = verify_log(b"".join(parts))
    assert not verdict.ok and verdict.bad_seq == 3 and "repeated" in verdict.reason


def reframed(index: int, edit: str, new: str) -> bytes:
    """The sample with record ``index``'s JSON text edited and its CRC made right again."""
    parts = frames()
    payload = parts[index][HEAD.size : -CRC.size]
    assert edit.encode() in payload
    parts[index] = encode_frame(payload.replace(edit.encode(), new.encode(), 1))
    return b"".join(parts)


def test_an_edit_with_the_crc_made_right_is_caught_by_the_hash() -> None:
    verdict = verify_log(reframed(2, '"indicator_kg":32500.0', '"indicator_kg":32400.0'))
    assert not verdict.ok and verdict.bad_seq == 2 and "hash does not match" in verdict.reason


def test_a_same_value_respelled_is_caught() -> None:
    verdict = verify_log(reframed(2, '"seq":2', '"seq":2.0'))
    assert not verdict.ok and verdict.bad_seq == 2 and "canonical" in verdict.reason


def test_a_rehashed_edit_is_caught_by_the_signature() -> None:
    rec = decode_payload(frames()[2][HEAD.size : -CRC.size])
    assert not isinstance(rec, str)
    forged_body = {**rec.body, "indicator_kg": 30000.0}
    forged = make_record(Ed25519PrivateKey.generate(), seq=2, kind="transit", utc=rec.utc,
                         mono=rec.mono, body=forged_body, prev_hash=rec.prev_hash)
    parts = frames()
    parts[2] = encode_frame(forged.encoded())
    verdict = verify_log(b"".join(parts))
    assert not verdict.ok and verdict.bad_seq == 2 and "signature" in verdict.reason


def test_a_log_rewritten_under_a_foreign_key_fails_only_when_pinned(tmp_path: Path) -> None:
    foreign = log_bytes(write_log(tmp_path, Ed25519PrivateKey.generate()))
    assert verify_log(foreign).ok
    verdict = verify_log(foreign, pinned=KEY.public_key())
    assert not verdict.ok and verdict.bad_seq == 0 and "foreign" in verdict.reason
    assert verify_log(sample(), pinned=KEY.public_key()).ok


def test_a_second_header_is_refused() -> None:
    first = verify_log(sample()).items
    header = make_record(KEY, seq=7, kind="header", utc=first[-1].utc, mono=0.0,
                         body=dict(first[0].body), prev_hash=first[-1].hash)
    verdict = verify_log(sample() + encode_frame(header.encoded()))
    assert not verdict.ok and verdict.bad_seq == 7 and "second header" in verdict.reason


@pytest.mark.parametrize("data", [b"", b"GR", b"\x00" * 40, b"hello world", b"GR\x00\x00\x00\x02{}"
                                  + CRC.pack(0x8A9136AA)])  # fmt: skip
def test_garbage_is_a_verdict_never_an_exception(data: bytes) -> None:
    verdict = verify_log(data)
    assert not verdict.ok and verdict.bad_seq == 0 and verdict.reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_payload_decodes_to_a_record_or_a_reason(payload: bytes) -> None:
    assert decode_payload(payload) is not None


@pytest.mark.parametrize("payload", [b"[" * 100_000, b'{"seq":NaN}', b'{"utc":1e999}',
                                     b'{"seq":1e999,"kind":"x","utc":1,"mono":1,"body":{},'
                                     b'"prev_hash":"","hash":"","sig":""}'])  # fmt: skip
def test_hostile_json_gives_a_reason(payload: bytes) -> None:
    assert isinstance(decode_payload(payload), str)


# -- segments ----------------------------------------------------------------------------------
def segmented(tmp_path: Path) -> list[Path]:
    write_log(tmp_path, KEY, transits=8, segment_bytes=1500)
    paths = all_segments(tmp_path)
    assert len(paths) >= 3
    return paths


def parts_of(paths: list[Path]) -> list[Part]:
    return [log_part(p.name, p.read_bytes(), None if p.name == LOG_NAME else int(p.stem[8:]))
            for p in paths]  # fmt: skip


def test_segments_verify_as_one_log(tmp_path: Path) -> None:
    verdict = verify_chain(parts_of(segmented(tmp_path)), pinned=KEY.public_key())
    assert verdict.ok and verdict.starts_after is None
    assert sum(r.kind != "header" for _n, r in verdict.items) == 9  # 8 transits, 1 change
    assert [n for n, r in verdict.items if r.kind == "header"] == list(range(verdict.segments))


def test_a_removed_middle_segment_is_named(tmp_path: Path) -> None:
    paths = segmented(tmp_path)
    verdict = verify_chain(parts_of(paths[:1] + paths[2:]))
    assert not verdict.ok and verdict.bad_segment == paths[2].name and verdict.bad_seq == 0


def test_the_oldest_segments_dropped_still_verify_and_say_so(tmp_path: Path) -> None:
    verdict = verify_chain(parts_of(segmented(tmp_path)[1:]))
    assert verdict.ok and verdict.starts_after is not None
    assert verdict.starts_after["segment"] == 0


def test_a_segment_renamed_is_caught(tmp_path: Path) -> None:
    paths = segmented(tmp_path)
    parts = parts_of(paths)
    parts[0] = Part(parts[0].name, parts[0].units, parts[0].tail, 7)
    verdict = verify_chain(parts)
    assert not verdict.ok and "file name" in verdict.reason


def test_a_byte_changed_in_an_old_segment_is_named(tmp_path: Path) -> None:
    paths = segmented(tmp_path)
    data = bytearray(paths[1].read_bytes())
    data[len(data) // 2] ^= 0x20
    parts = parts_of(paths)
    parts[1] = log_part(paths[1].name, bytes(data), 1)
    verdict = verify_chain(parts)
    assert not verdict.ok and verdict.bad_segment == paths[1].name
    starts = [f.offset for f in split_frames(paths[1].read_bytes()).frames]
    assert verdict.bad_seq == max(i for i, at in enumerate(starts) if at <= len(data) // 2)


# -- JSON lines --------------------------------------------------------------------------------
def jsonl(tmp_path: Path) -> bytes:
    parts = parts_of(segmented(tmp_path))
    return b"".join(payload + b"\n" for part in parts for _where, payload in part.units)


def test_a_jsonl_export_verifies_like_the_log(tmp_path: Path) -> None:
    verdict = verify_chain(jsonl_parts("x.jsonl", jsonl(tmp_path)), pinned=KEY.public_key())
    assert verdict.ok and verdict.segments >= 3
    assert sum(r.kind != "header" for _n, r in verdict.items) == 9


@pytest.mark.parametrize("change", ["drop", "swap", "edit", "cut"])
def test_a_changed_jsonl_export_fails(tmp_path: Path, change: str) -> None:
    lines = jsonl(tmp_path).splitlines(keepends=True)
    if change == "drop":
        del lines[2]
    elif change == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif change == "edit":
        doc = json.loads(lines[1])
        doc["body"]["indicator_kg"] += 20
        lines[1] = json.dumps(doc).encode() + b"\n"
    else:
        lines[-1] = lines[-1][:20]
    verdict = verify_chain(jsonl_parts("x.jsonl", b"".join(lines)))
    assert not verdict.ok and verdict.reason


@pytest.mark.parametrize(("text", "ok"), [("9f86d081884c7d65", True), ("9F86D081884C7D65AB", True),
                                          ("9f86", False), ("zz" * 10, False), ("a" * 65, False)])
def test_parse_known(text: str, ok: bool) -> None:  # fmt: skip
    if ok:
        assert parse_known(text) == text.lower()
    else:
        with pytest.raises(ValueError, match="hash"):
            parse_known(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(), lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["kind", "utc", "hash", "sig", ',"kind":', "x"]) | st.text(),
                      inner, max_size=4), max_leaves=10)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(body=st.dictionaries(st.text(), json_values, max_size=5),
       kind=st.sampled_from(["transit", "header", "clock_step"]),
       utc=st.floats(0, 4e9), mono=st.floats(0, 1e7), seq=st.integers(0, 10**9))
def test_the_one_pass_encoding_is_the_canonical_one(body: dict[str, object], kind: str,
                                                     utc: float, mono: float, seq: int) -> None:
    rec = make_record(KEY, seq=seq, kind=kind, utc=utc, mono=mono, body=body, prev_hash="0" * 64)
    assert rec.hashed_and_encoded() == (rec.computed_hash(), rec.encoded())


def test_a_long_log_is_checked_one_segment_at_a_time(tmp_path: Path) -> None:
    paths = segmented(tmp_path)
    read: list[str] = []

    def lazily() -> Iterator[Part]:
        for part in parts_of(paths):
            read.append(part.name)
            yield part

    verdict = verify_chain(lazily(), keep=lambda _segment: False)
    assert verdict.ok and verdict.items == [] and read == [p.name for p in paths]
    assert verdict.last is not None and verdict.last[1].kind == "config_change"
    kept = verify_chain(parts_of(paths), keep=lambda segment: segment == 1)
    assert {n for n, _r in kept.items} == {1}
