"""The backend's store on its own: once by event_id, contiguous watermark, gaps, shared file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.store import AckRow, EventStore, Stored
from backend.tests.conftest import OpenStore

SITE, LANE = "site-1", "lane-01"


def event(seq: int, *, event_id: str | None = None, lost: int | None = None) -> dict[str, Any]:
    """A lane event; with ``lost``, a dead letter naming the seq the broker refused."""
    return {"event_id": event_id or f"e-{seq}", "lane": LANE, "seq": seq, "boot_id": 1,
            "type": "vehicle_passed" if lost is None else "dead_letter",
            "data": {} if lost is None else {"seq": lost}}


def add(store: EventStore, *events: dict[str, Any]) -> list[Stored]:
    with store.write():
        outcomes = [store.add(SITE, e, json.dumps(e), 0.0) for e in events]
        store.advance(LANE)
    return outcomes


def test_each_event_is_stored_once_and_a_conflict_never_overwrites(stores: OpenStore) -> None:
    store = stores()
    assert add(store, event(1), event(2)) == [Stored.NEW, Stored.NEW]
    assert add(store, event(2)) == [Stored.DUPLICATE]
    assert add(store, event(1, event_id="other")) == [Stored.SEQ_CONFLICT]
    assert add(store, event(4), event(4, event_id="other")) == [Stored.NEW, Stored.SEQ_CONFLICT]
    assert add(store, event(5, event_id="e-4")) == [Stored.ID_CONFLICT]
    assert sorted((lane, seq) for lane, seq, _ in store.stored()) == [
        (LANE, 1), (LANE, 2), (LANE, 4)]


def test_the_watermark_stops_at_a_gap_until_it_is_filled_or_declared_lost(
    stores: OpenStore,
) -> None:
    store = stores()
    add(store, event(1), event(3), event(6))
    assert store.upto(LANE) == 1
    assert store.gaps(LANE) == [2, 4, 5]
    add(store, event(2))
    assert (store.upto(LANE), store.gaps(LANE)) == (3, [4, 5])
    add(store, event(7, lost=4), event(5))  # a dead letter says seq 4 will never come
    assert (store.upto(LANE), store.gaps(LANE)) == (7, [])


def test_acks_due_and_a_learned_watermark(stores: OpenStore) -> None:
    store = stores()
    add(store, event(1), event(2))
    assert store.ack_rows() == [AckRow(LANE, SITE, 2, 1, 0)]
    with store.write():
        store.record_ack(LANE, 2)
        store.record_ack(LANE, 1)  # an older confirmation never lowers the record
        store.learn_watermark(SITE, "lane-02", 40)  # a predecessor's retained ack
    assert store.ack_rows() == [AckRow(LANE, SITE, 2, 1, 2), AckRow("lane-02", SITE, 40, 0, 40)]
    assert store.upto("lane-02") == 40
    # Rows the predecessor stored are not here: below the watermark is a duplicate.
    old = {**event(3), "lane": "lane-02"}
    with store.write():
        assert store.add(SITE, old, json.dumps(old), 0.0) is Stored.DUPLICATE


def test_workers_sharing_one_file_see_each_others_rows(stores: OpenStore, tmp_path: Path) -> None:
    one, two = stores(), stores()
    try:
        add(one, event(1), event(3))
        assert add(two, event(1), event(2)) == [Stored.DUPLICATE, Stored.NEW]
        assert one.upto(LANE) == two.upto(LANE) == 3
    finally:
        one.close()
        two.close()


def test_retention_drops_old_days_and_keeps_the_watermark(stores: OpenStore) -> None:
    store = stores()
    day = 86_400.0
    now = 100 * day + 3600.0
    with store.write():
        for seq, age_days in ((1, 40), (2, 31), (3, 30), (4, 1), (5, 0)):
            e = event(seq)
            store.add(SITE, e, json.dumps(e), now - age_days * day)
        store.advance(LANE)
    assert store.prune(32, now) == 1  # keeps today and the 31 days before: 40 days old goes
    assert store.prune(31, now) == 1  # now 31 days old is past
    assert [e["seq"] for e in store.events(LANE)] == [3, 4, 5]
    assert store.upto(LANE) == 5
    with store.write():  # a pruned event sent again is still a duplicate, never stored anew
        assert store.add(SITE, event(1), json.dumps(event(1)), now) is Stored.DUPLICATE
    assert store.prune(31, now) == 0


def test_events_are_queried_by_lane_and_type(stores: OpenStore) -> None:
    store = stores()
    other = {**event(1, event_id="o-1"), "lane": "lane-02"}
    with store.write():
        for e in (event(1), event(2, lost=7), other):
            store.add(SITE, e, json.dumps(e), 0.0)
    assert [(e["lane"], e["seq"]) for e in store.events()] == [
        (LANE, 1), (LANE, 2), ("lane-02", 1)]
    assert [e["seq"] for e in store.events(LANE, types=["dead_letter"])] == [2]
    assert store.events("lane-03") == []


def test_quarantine_evidence_and_lane_documents_are_kept(stores: OpenStore) -> None:
    store = stores()
    with store.write():
        store.quarantine(5.0, "gate/v1/s/l/evt/x", "malformed", "not JSON", b"\xff" * 70_000)
        store.quarantine(6.0, "gate/v1/s/l/evt/x", "schema", "data.kg: not a number", b"{}")
        store.put_evidence(LANE, "snap-1", "image/jpeg", "ab" * 32, b"\xff\xd8jpeg", 7.0)
        store.put_evidence(LANE, "snap-1", "image/jpeg", "ab" * 32, b"other", 8.0)  # kept once
        store.put_lane_doc(SITE, LANE, "state", {"online": True}, 9.0)
        store.put_lane_doc(SITE, LANE, "state", {"online": False}, 10.0)
    newest, oldest = store.quarantined()
    assert (newest["kind"], newest["reason"]) == ("schema", "data.kg: not a number")
    assert oldest["size"] == 70_000 and len(oldest["payload"]) <= 64 * 1024
    assert store.quarantine_counts() == {"malformed": 1, "schema": 1}
    assert store.evidence(LANE, "snap-1") == ("image/jpeg", b"\xff\xd8jpeg")
    assert store.evidence(LANE, "snap-2") is None
    assert store.lane_docs() == {LANE: {"site": SITE, "state": {"online": False}}}


def test_evidence_chunks_are_found_by_ref(stores: OpenStore) -> None:
    store = stores()
    chunks = [{**event(n), "type": "evidence", "data": {"ref": ref, "part": 0}}
              for n, ref in ((1, "a"), (2, "b"), (3, "a"))]
    with store.write():
        for e in chunks:
            store.add(SITE, e, json.dumps(e), 0.0)
    assert [c["ref"] for c in store.evidence_chunks(LANE, "a")] == ["a", "a"]
    assert store.evidence_chunks("lane-02", "a") == []
