"""The backend follows each lane's transaction log as its events arrive (no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.store import EventStore
from backend.tests.conftest import OpenStore
from edge_agent.records.lane_log import LaneLog

SITE, LANE = "site-1", "lane-01"
UTC0 = 1_800_000_000.0


def lane_records(state: Path, transits: int, segment_bytes: int = 4000) -> list[dict[str, Any]]:
    """What a lane's log sends: ``transaction_record`` events in the order it wrote them."""
    sent: list[dict[str, Any]] = []
    log = LaneLog(state, publish=lambda data, _tid: sent.append(data), on_fault=print,
                  segment_bytes=segment_bytes)  # fmt: skip
    log.start(utc=UTC0, mono=1.0, config={"weighbridge.e_kg": 20}, software={"version": "1"},
              boot_id=1, synced=True, source="chrony")  # fmt: skip
    for i in range(transits):
        log.transit({"decision": "open", "indicator_kg": 32480.0 + i}, transit_id=f"T{i}",
                    pass_claims=None, event=None, boot_id=1, clock={}, utc=UTC0 + i,
                    mono=2.0 + i)  # fmt: skip
    log.stop(utc=UTC0 + 100, mono=200.0, reason="stopped", by=None)
    return [{"event_id": f"e-{n}", "lane": LANE, "seq": n, "boot_id": 1,
             "type": "transaction_record", "data": data} for n, data in enumerate(sent, 1)]


def offer(store: EventStore, *events: dict[str, Any]) -> None:
    with store.write():
        for e in events:
            store.add(SITE, e, json.dumps(e), 0.0)
        store.advance(LANE)
        store.follow_records(LANE)


def test_an_intact_log_is_followed_across_its_segments(stores: OpenStore, tmp_path: Path) -> None:
    events = lane_records(tmp_path, 12)
    store = stores()
    offer(store, *events[:5])
    offer(store, *events[5:])
    chain = store.record_chain(LANE)
    assert chain is not None and chain["first_break"] is None
    assert chain["records"] == len(events) and chain["segment"] > 0  # segments were closed


def test_records_arriving_out_of_order_are_checked_once_the_gap_is_filled(
    stores: OpenStore, tmp_path: Path
) -> None:
    events = lane_records(tmp_path, 6)
    store = stores()
    offer(store, *events[:2], *events[3:])  # one is late: nothing past the gap is judged
    chain = store.record_chain(LANE)
    assert chain is not None and chain["records"] == 2
    offer(store, events[2])
    chain = store.record_chain(LANE)
    assert chain is not None and chain["first_break"] is None and chain["records"] == len(events)


def test_the_first_break_is_kept_with_its_place(stores: OpenStore, tmp_path: Path) -> None:
    events = lane_records(tmp_path, 6, segment_bytes=1 << 20)  # one segment: seq = place
    edited = json.loads(json.dumps(events[4]))
    edited["data"]["record"]["body"]["indicator_kg"] = 1.0  # changed on the way
    lost = events[6]["data"]["record"]["seq"]
    store = stores()
    # A dead letter stands in for a record the broker refused: the chain sees it missing.
    dead = {**events[6], "type": "dead_letter", "data": {"seq": 999}}
    offer(store, *events[:4], edited, events[5], dead, *events[7:])
    chain = store.record_chain(LANE)
    assert chain is not None and chain["breaks"] == 2
    assert chain["first_break"]["seq"] == events[4]["data"]["record"]["seq"]
    assert "edited" in chain["first_break"]["reason"]
    assert lost == chain["first_break"]["seq"] + 2
