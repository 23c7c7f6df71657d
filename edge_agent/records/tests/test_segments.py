"""The log cut into segments: rotation, the links between them, retention, a failing disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.records import LOG_NAME
from edge_agent.records.chain import ChainFollower
from edge_agent.records.segments import (
    SegmentInfo,
    all_segments,
    closed_segments,
    segment_infos,
    segment_path,
    to_drop,
    verify_segments,
)
from edge_agent.records.store import RecordStore
from edge_agent.records.verify import verify_log

KEY = Ed25519PrivateKey.generate()
DAY = 86400.0
BODY = {"pass_id": "P", "weight_kg": 32480, "frames": ["022b30333234383030313603"] * 8}


def fill(state: Path, n: int, *, segment_bytes: int = 1500, utc0: float = 0.0) -> RecordStore:
    store = RecordStore(state, KEY, utc=utc0, mono=0.0, segment_bytes=segment_bytes,
                        anchor=lambda: {"config_changes": 3})  # fmt: skip
    for i in range(n):
        store.append("transit", {**BODY, "i": i}, utc=utc0 + i * DAY, mono=float(i))
    return store


def test_a_full_segment_is_closed_and_the_next_links_to_its_last_record(tmp_path: Path) -> None:
    fill(tmp_path, 12).close()
    closed = closed_segments(tmp_path)
    assert len(closed) >= 2
    first_last = verify_log(closed[0][1].read_bytes()).items[-1]
    header = verify_log(closed[1][1].read_bytes()).items[0]
    assert header.body["segment"] == 1
    assert header.body["previous"] == {"segment": 0, "seq": first_last.seq,
                                       "hash": first_last.hash, "utc": first_last.utc}
    assert header.body["anchor"] == {"config_changes": 3}
    # The active segment stands alone (what `lanectl record verify` reads) ...
    assert verify_log((tmp_path / LOG_NAME).read_bytes()).ok
    # ... and all of them chain into one log of every record appended.
    verdict = verify_segments(tmp_path)
    assert verdict.ok, verdict.reason
    assert verdict.records - verdict.segments == 12 and verdict.starts_after is None


def test_the_oldest_segments_dropped_the_rest_verifies_from_its_anchor(tmp_path: Path) -> None:
    fill(tmp_path, 12).close()
    oldest = closed_segments(tmp_path)[0][1]
    oldest.unlink()
    verdict = verify_segments(tmp_path)
    assert verdict.ok and verdict.starts_after is not None and verdict.starts_after["segment"] == 0


def test_a_removed_middle_segment_or_record_is_named(tmp_path: Path) -> None:
    fill(tmp_path, 20).close()
    closed = closed_segments(tmp_path)
    assert len(closed) >= 3
    closed[1][1].unlink()
    verdict = verify_segments(tmp_path)
    assert not verdict.ok and verdict.bad_segment == closed[2][1].name
    assert "follows segment 0" in verdict.reason


def test_a_crash_between_closing_a_segment_and_its_successor_is_healed(tmp_path: Path) -> None:
    store = fill(tmp_path, 6)
    number = store.segment
    store.close()
    os.replace(tmp_path / LOG_NAME, segment_path(tmp_path, number))  # renamed; no new header
    store = RecordStore(tmp_path, KEY, utc=9 * DAY, mono=9.0, segment_bytes=1500)
    store.append("power_cycle", {}, utc=9 * DAY, mono=9.0)
    store.close()
    assert store.segment == number + 1
    verdict = verify_segments(tmp_path)
    assert verdict.ok, verdict.reason


def test_retention_drops_only_what_is_both_older_than_90_days_and_over_budget() -> None:
    def info(name: str, newest_day: float) -> SegmentInfo:
        return SegmentInfo(Path(name), 100, (newest_day - 1) * DAY, newest_day * DAY)

    infos = [info("a", 1), info("b", 5), info("c", 50), info("d", 120)]  # d: active
    now = 130 * DAY
    assert to_drop(infos, now_utc=now, budget_bytes=250) == [Path("a"), Path("b")]
    assert to_drop(infos, now_utc=now, budget_bytes=1000) == []  # within budget: all kept
    # Over budget but younger than 90 days: kept (health says the budget is exceeded).
    assert to_drop(infos, now_utc=60 * DAY, budget_bytes=10) == []
    # The active segment is never dropped.
    assert to_drop(infos[-1:], now_utc=10_000 * DAY, budget_bytes=0) == []


def test_segment_infos_give_size_and_time_span(tmp_path: Path) -> None:
    fill(tmp_path, 12).close()
    infos = segment_infos(tmp_path)
    assert [i.path for i in infos] == all_segments(tmp_path)
    assert sum(i.size for i in infos) == sum(p.stat().st_size for p in all_segments(tmp_path))
    assert infos[0].oldest_utc == 0.0 and infos[-1].newest_utc == 11 * DAY


def test_a_refused_write_leaves_the_log_ending_on_a_whole_record(tmp_path: Path) -> None:
    store = fill(tmp_path, 2, segment_bytes=1 << 20)
    size = (tmp_path / LOG_NAME).stat().st_size
    os.close(store._fd)
    store._fd = os.open(tmp_path / LOG_NAME, os.O_RDONLY)  # the disk now refuses writes
    with pytest.raises(OSError):
        store.append("transit", BODY, utc=5.0, mono=5.0)
    store.close()
    assert (tmp_path / LOG_NAME).stat().st_size == size
    again = RecordStore(tmp_path, KEY, utc=6.0, mono=6.0)
    assert again.quarantined is None and again.next_seq == 3


def test_the_follower_checks_each_record_as_it_arrives(tmp_path: Path) -> None:
    fill(tmp_path, 12).close()
    docs = [(int(verify_log(p.read_bytes()).items[0].body["segment"]), r.to_doc())
            for p in all_segments(tmp_path) for r in verify_log(p.read_bytes()).items]
    intact = ChainFollower()
    assert all(intact.add(segment, doc) == "" for segment, doc in docs)
    assert intact.add(*docs[-1]) == "" and intact.state.duplicates == 1
    assert intact.state.first_break is None and intact.state.records == len(docs)

    missing = ChainFollower()
    for segment, doc in docs[:4] + docs[5:]:
        missing.add(segment, doc)
    assert missing.state.first_break is not None
    assert missing.state.first_break["seq"] == docs[5][1]["seq"]
    assert "missing" in missing.state.first_break["reason"]

    edited = ChainFollower()
    changed = [(s, dict(d)) for s, d in docs]
    changed[3][1]["body"] = {**changed[3][1]["body"], "weight_kg": 1}
    for segment, doc in changed:
        edited.add(segment, doc)
    assert edited.state.first_break == {"segment": changed[3][0], "seq": changed[3][1]["seq"],
                                        "reason": "content edited: hash does not match"}

    forged = ChainFollower()
    other = Ed25519PrivateKey.generate()
    store = RecordStore(tmp_path / "other", other, utc=0.0, mono=0.0)
    foreign = store.append("transit", BODY, utc=1.0, mono=1.0)
    store.close()
    for segment, doc in docs:
        forged.add(segment, doc)
    last = docs[-1][1]
    fake = {**foreign.to_doc(), "seq": last["seq"] + 1, "prev_hash": last["hash"]}
    assert forged.add(docs[-1][0], fake) != ""  # re-hashed or not, it is not the lane's
