"""Bad input at ingest: refused with a reason, kept in quarantine and counted; what was valid
is stored, the worker goes on, and evidence is reassembled and checked."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

from backend.ingest import MAX_MESSAGE_BYTES, IngestWorker
from backend.tests.test_backend import LANE, TOPICS, RawClient, make_event
from edge_agent.telemetry.evidence_chunks import chunk_evidence

if TYPE_CHECKING:
    from conftest import WaitUntil

__all__ = ["lane"]  # the fixture, shared with test_backend.py
from backend.tests.test_backend import lane


def test_every_bad_message_is_quarantined_with_its_reason_and_valid_ones_go_on(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    lane.publish(TOPICS.event("vehicle_passed"), make_event(1))
    lane.publish(TOPICS.event("vehicle_passed"), b"{not json")
    lane.publish(TOPICS.event("vehicle_passed"), make_event(2, lane="lane-b"))
    bad_hold = {"decision": "hold", "reasons": ["weight.made_up"], "weight_kg": 1.0,
                "release_no": "R", "input_at_mono": 1.0, "challenge": "c", "detail": "d"}
    lane.publish(TOPICS.event("decision"), make_event(2, type="decision", data=bad_hold))
    lane.publish(TOPICS.event("vehicle_passed"), b"x" * (MAX_MESSAGE_BYTES + 1))
    lane.publish("gate/v1/s1", b"{}")  # not a lane topic (a lane may not publish there anyway)
    lane.publish(TOPICS.event("vehicle_passed"), make_event(3))
    assert wait_until(lambda: backend.stats()["quarantined"] >= 4)
    # The schema-invalid seq 2 is kept in quarantine and settled: seq 3 is not held behind it.
    assert wait_until(lambda: backend.watermark(LANE) == 3)
    assert [e["seq"] for e in backend.events(LANE)] == [1, 3]
    kinds = {q["kind"]: q["reason"] for q in backend.quarantined()}
    assert "malformed" in kinds and "oversized" in kinds
    assert "lane-b published under s1/lane-a" in kinds["foreign_topic"]
    assert kinds["schema"].startswith("data.reasons.0:")
    lane.publish(TOPICS.event("decision"), make_event(2, type="decision", data=bad_hold))
    assert wait_until(lambda: backend.stats()["duplicates"] >= 1)  # resent: settled already


def test_evidence_is_reassembled_checked_and_kept(
    lane: RawClient, backend: IngestWorker, wait_until: WaitUntil
) -> None:
    jpeg = b"\xff\xd8" + bytes(range(256)) * 200
    chunks = chunk_evidence("snap-1", jpeg, "image/jpeg", chunk_bytes=20_000)
    assert len(chunks) == 3
    for seq, data in zip((1, 3, 2), [chunks[0], chunks[2], chunks[1]], strict=True):
        lane.publish(TOPICS.event("evidence"), make_event(seq, type="evidence", data=data))
    assert wait_until(lambda: backend.evidence(LANE, "snap-1") is not None)
    assert backend.evidence(LANE, "snap-1") == ("image/jpeg", jpeg)
    # Parts that do not add up to their hash are refused with the reason, and nothing kept.
    forged = [dict(c, ref="snap-2", sha256=hashlib.sha256(b"other").hexdigest())
              for c in chunk_evidence("snap-2", b"abc", "image/jpeg")]
    forged[0]["data"] = base64.b64encode(b"abd").decode()
    lane.publish(TOPICS.event("evidence"), make_event(4, type="evidence", data=forged[0]))
    assert wait_until(lambda: any(q["kind"] == "evidence" for q in backend.quarantined()))
    assert backend.evidence(LANE, "snap-2") is None
    assert backend.watermark(LANE) == 4  # the chunk itself is stored: nothing is lost
