"""What each record kind says: pure builders of record bodies, and the clock-step watch.

The shapes are a contract (docs/records.md): a field is added, never renamed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from edge_agent.records.codec import canonical

# The decision event's fields a transit record keeps (lane/transit.py ``decision_data``).
DECISION_FIELDS = ("decision", "reasons", "by", "detail", "weight_kg", "uncertainty_kg",
                   "estimate_kg", "indicator_kg", "indicator_stable", "indicator_frames",
                   "weight_rules", "release_no", "declared_gross_kg", "input_at_mono",
                   "snapshot", "identity", "flags")  # fmt: skip
CLOCK_STEP_S = 2.0  # the wall clock moved this much against the monotonic one: a step


def transit_body(
    decision: Mapping[str, Any], *, ids: Mapping[str, Any], pass_claims: Mapping[str, Any] | None,
    plates_read: list[str], containers_read: list[str], evidence: list[dict[str, Any]],
    software: Mapping[str, str], config_changes: int, clock: Mapping[str, Any],
) -> dict[str, Any]:
    """One decision about a transit. ``ids``: transit_id, the decision event's event_id and
    seq, the lane's boot_id; ``pass_claims``: what the pass said (None: no readable pass);
    ``plates_read`` / ``containers_read``: what the lane's cameras read (empty without one)."""
    body: dict[str, Any] = dict(ids)
    body.update({name: decision.get(name) for name in DECISION_FIELDS})
    body["reasons"] = list(decision.get("reasons") or [])
    body["indicator_frames"] = list(decision.get("indicator_frames") or [])
    body["weight_rules"] = list(decision.get("weight_rules") or [])
    body["pass"] = None if pass_claims is None else dict(pass_claims)
    body["plates"] = [] if pass_claims is None else list(pass_claims.get("plates") or [])
    body["containers"] = [] if pass_claims is None else list(pass_claims.get("containers") or [])
    body["plates_read"] = list(plates_read)
    body["plate_read"] = plates_read[0] if plates_read else None
    body["containers_read"] = list(containers_read)
    body["evidence"] = list(evidence)
    body["software"] = dict(software)
    body["config_changes"] = config_changes
    body["clock"] = dict(clock)
    return body


def identity_reads(decision: Mapping[str, Any], kind: str) -> list[str]:
    """What the lane read of one identity kind (``plate``, ``container``) for a decision."""
    reads: list[str] = []
    for finding in decision.get("identity") or []:
        if isinstance(finding, Mapping) and finding.get("check") == kind:
            reads += [str(r) for r in finding.get("reads") or [] if str(r) not in reads]
    return reads


def doc_hash(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(doc)).hexdigest()


def config_change_body(old: Mapping[str, Any] | None, new: Mapping[str, Any], *, by: str,
                       counter: int) -> dict[str, Any]:  # fmt: skip
    """The effective configuration changed: who, both hashes, each changed key, the new one.

    ``old`` and ``new`` are flat ``{"section.key": value}``; ``old`` None: none recorded yet."""
    before = dict(old or {})
    changed = [{"key": key, "old": before.get(key), "new": new.get(key)}
               for key in sorted(set(before) | set(new)) if before.get(key) != new.get(key)]
    return {"by": by, "counter": counter, "old_hash": None if old is None else doc_hash(old),
            "new_hash": doc_hash(new), "changed": changed, "new": dict(new)}  # fmt: skip


def software_update_body(old: Mapping[str, str] | None, new: Mapping[str, str]) -> dict[str, Any]:
    return {"old": None if old is None else dict(old), "new": dict(new)}


def firmware_update_body(device: str, old: Mapping[str, str] | None,
                         new: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    """A device's firmware differs from the one last recorded (``old`` None: none was)."""
    return {"device": device, "old": None if old is None else dict(old), "new": dict(new)}


class ClockWatch:
    """Sees the UTC clock step: its offset to the monotonic clock moves by ``CLOCK_STEP_S``.

    NTP slews by at most 0.5 ms a second, so anything bigger between two looks is a step (a
    manual set, a first sync, a clock jumping back)."""

    def __init__(self, threshold_s: float = CLOCK_STEP_S) -> None:
        self._threshold = threshold_s
        self._offset: float | None = None

    def observe(self, utc: float, mono: float) -> float | None:
        """The step in seconds (positive: forward) when there was one, else None."""
        offset = utc - mono
        before, self._offset = self._offset, offset
        if before is None or abs(offset - before) < self._threshold:
            return None
        return offset - before


def clock_step_body(step_s: float, *, utc: float, mono: float, synced: bool, source: str,
                    seen: str) -> dict[str, Any]:  # fmt: skip
    return {"step_s": round(step_s, 3), "utc_before": round(utc - step_s, 3),
            "utc_after": round(utc, 3), "mono": round(mono, 3), "synced": synced,
            "source": source, "seen": seen}  # fmt: skip
