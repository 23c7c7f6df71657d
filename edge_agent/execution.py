"""The parts of carrying out the machine's actions that touch storage: the pass ledger and the
evidence frames; and the order actions go out in. ``LaneAgent._execute`` drives them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edge_agent.assembly import LaneDevices
from edge_agent.catalogue import Code
from edge_agent.errors import EdgeAgentError
from edge_agent.lane.actions import (
    BoardMaintenance,
    CloseWhenClear,
    LaneAction,
    MarkPassUsed,
    OpenBarrier,
    Publish,
    TakeSnapshot,
)
from edge_agent.lane.inputs import PassUseRecorded
from edge_agent.telemetry.evidence_chunks import chunk_evidence
from edge_agent.telemetry.records import RecordKeeper

log = logging.getLogger("edge_agent")

_BRIEF_KEYS = ("decision", "reasons", "code", "kg", "valid", "reason", "outcome", "by")


def execution_order(action: LaneAction) -> int:
    """The pass ledger first (L3: recorded before it opens), then the barrier, then records:
    the relay must not wait for the outbox's fsync."""
    if isinstance(action, MarkPassUsed):
        return 0
    return 1 if isinstance(action, OpenBarrier | CloseWhenClear | BoardMaintenance) else 2


def record_pass_use(
    devices: LaneDevices, records: RecordKeeper, action: MarkPassUsed, lane: str, now: float,
    wall_s: float,
) -> PassUseRecorded:
    """Record the pass's use durably; the barrier opens only if this says ok (L3)."""
    try:
        fresh = devices.ledger.mark_used(
            bytes.fromhex(action.cti_hex), exp=action.exp, now=wall_s, lane=lane)
    except EdgeAgentError as exc:
        log.error("pass use not recorded, truck held: %s", exc)
        records.fail(str(exc))
        return PassUseRecorded(now, False, Code.LANE_STORAGE_FAULT, f"pass ledger: {exc}")
    if not fresh:
        return PassUseRecorded(now, False, Code.PASS_ALREADY_USED, "the ledger holds this pass")
    return PassUseRecorded(now, True)


def queue_evidence(
    devices: LaneDevices, action: TakeSnapshot,
    record: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> None:
    """Keep the evidence frame and queue it for the backend as ``evidence`` events."""
    if devices.outbox.space_short():
        log.warning("evidence %s not taken: storage is short", action.ref)
        return
    snapshot = devices.evidence.snapshot(action.ref)
    log.info("evidence %s for %s: %s", action.ref, action.reason,
             snapshot.path if snapshot else "no frame")
    if snapshot is None:
        return
    for chunk in chunk_evidence(action.ref, snapshot.data, snapshot.media_type):
        if record(chunk) is None:
            log.warning("evidence %s not queued: storage is short", action.ref)
            return


def brief(action: Publish) -> str:
    """The few fields of an event worth a log line."""
    data = action.data
    parts = [f"{k}={data[k]}" for k in _BRIEF_KEYS if k in data and data[k] not in (None, [], "")]
    return " ".join(parts)
