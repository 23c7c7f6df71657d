"""Lane events as a real lane sends them, for the console's tests: one ``LaneEvents`` per lane
numbers its envelopes, and ``hold`` makes a held truck like the demo's mismatch truck (its
pass read, weight, snapshot chunks and hold decision, with the numbers the lane publishes)."""

from __future__ import annotations

import io
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image

from backend.store import EventStore
from edge_agent.telemetry.evidence_chunks import chunk_evidence

SITE = "BZ01"
T0 = datetime(2026, 12, 3, 19, 15, tzinfo=UTC)
TRACE = [[5288.894 + i / 10, 41_200.0 + (i % 3) * 60] for i in range(18)]
FRAMES = [{"t": 5291.294 + i / 10, "kg": 41_260.0, "stable": None, "raw": "02"} for i in range(11)]


def snapshot_jpeg(width: int = 320, height: int = 180) -> bytes:
    image = Image.new("RGB", (width, height), (40, 60, 90))
    for x in range(0, width, 20):
        for y in range(height):
            image.putpixel((x, y), (230, 230, 230))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


class LaneEvents:
    """Envelopes of one lane in seq order; a new ``boot_id`` is a new run of its agent."""

    def __init__(self, lane: str = "exit-03", *, site: str = SITE,
                 epoch: str = "2251a80dde5c") -> None:  # fmt: skip
        self.lane, self.site, self.epoch = lane, site, epoch
        self.boot_id = 1
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, data: dict[str, Any], transit_id: str | None = None, *,
            at_s: float = 0.0, synced: bool = True) -> dict[str, Any]:  # fmt: skip
        seq = next(self._seq)
        when = (T0 + timedelta(seconds=at_s or seq)).isoformat(timespec="milliseconds")
        event = {
            "schema": "gate.lane_event/1", "event_id": str(uuid.uuid4()), "site": self.site,
            "lane": self.lane, "seq": seq, "boot_id": self.boot_id, "type": kind,
            "occurred_at": when.replace("+00:00", "Z"), "mono_ms": 5_285_844 + seq * 100,
            "clock": {"synced": synced, "source": "ntp" if synced else "system"},
            "transit_id": transit_id, "agent_version": "0.1.0", "data": data,
            "epoch": self.epoch,
        }
        self.events.append(event)
        return event

    def transit(self) -> str:
        return f"{next(self._ids):016x}"

    def hold(self, transit_id: str | None = None, *, reasons: tuple[str, ...] = (
             "weight.declared_mismatch",), plate_reads: tuple[str, ...] = ("SU-B2002",),
             snapshot: bytes | None = None, challenge: str | None = None,
             arrive: bool = True) -> dict[str, Any]:  # fmt: skip
        """A truck driven on, its pass read, weighed and held; returns the hold decision."""
        transit_id = transit_id or self.transit()
        ref = f"{transit_id}-{reasons[0]}"
        if arrive:
            self.add("truck_arrived", {}, transit_id)
            self.add("pass_read", {
                "valid": True, "reason": None, "release_no": "RL-SU-B2002-25334",
                "enterprise": "Demo Logistics Co.", "plates": ["SU-B2002"],
                "declared_gross_kg": 36_000, "tolerance_kg": 300}, transit_id)
        for chunk in chunk_evidence(ref, snapshot or snapshot_jpeg(), "image/jpeg",
                                    chunk_bytes=4096):
            self.add("evidence", chunk, transit_id)
        return self.add("decision", {
            "decision": "hold", "reasons": list(reasons), "weight_kg": 41_260.0,
            "uncertainty_kg": 11.3, "release_no": "RL-SU-B2002-25334",
            "declared_gross_kg": 36_000, "input_at_mono": 5290.59, "estimate_kg": 41_258.6,
            "indicator_kg": 41_260.0, "indicator_stable": None, "indicator_frames": FRAMES,
            "weight_rules": [{"rule": "pass", "measured_kg": 41_258.6, "uncertainty_kg": 11.3,
                              "declared_kg": 36_000.0, "difference_kg": 5_258.6,
                              "tolerance_kg": 300.0, "ok": False}],
            "identity": [{"check": "plate", "code": None, "matched": True,
                          "reads": list(plate_reads)}] if plate_reads else [],
            "flags": [],
            "detail": "measured 41259 +- 11 kg, declared 36000 kg (+5259 kg), tolerance 300 kg",
            "challenge": challenge or uuid.uuid4().hex[:16], "snapshot": ref, "trace": TRACE,
        }, transit_id)

    def release(self, hold: dict[str, Any], officer: str = "officer-7",
                cmd_id: str = "release-1") -> None:  # fmt: skip
        transit_id = hold["transit_id"]
        self.add("decision", {"decision": "open", "reasons": [], "weight_kg": 41_260.0,
                              "release_no": "RL-SU-B2002-25334", "input_at_mono": 5292.3,
                              "by": "remote"}, transit_id)
        self.add("released", {"by": "remote", "cmd_id": cmd_id, "officer": officer}, transit_id)
        self.add("cmd_result", {"cmd_id": cmd_id, "name": "remote_release", "accepted": True,
                                "code": None, "detail": "barrier opened"})

    def store(self, store: EventStore) -> None:
        """Offer every event to ``store`` as an ingest worker would."""
        with store.write():
            for event in self.events:
                store.add(self.site, event, json.dumps(event), 1_796_325_300.0)
            store.advance(self.lane)
