"""The log's segments on disk: naming, the chain across them, retention.

Closed segments are ``records-NNNNNN.log`` (NNNNNN: the segment number in its header); the
active one is ``records.log``. Each starts with a header (seq 0) whose ``previous`` names the
last record of the segment before it: segment, seq and hash. That link is inside the signed
header, so the oldest segment kept is an anchor: after the segments before it were dropped,
the chain from it to the newest record still verifies.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.records import LOG_NAME
from edge_agent.records.codec import Record, decode_payload, split_frames
from edge_agent.records.verify import verify_log

KEEP_DAYS = 90
BUDGET_BYTES = 1024 * 1024 * 1024  # 1 GiB of the Pi's card (docs/records.md: 90 days ~ 0.3 GiB)
_CLOSED = re.compile(r"^records-(\d{6,})\.log$")


def segment_path(state_dir: Path, number: int) -> Path:
    return Path(state_dir) / f"records-{number:06d}.log"


def closed_segments(state_dir: Path) -> list[tuple[int, Path]]:
    """(number, path) of every closed segment, oldest first."""
    found = []
    try:
        names = os.listdir(state_dir)
    except FileNotFoundError:
        return []
    for name in names:
        match = _CLOSED.match(name)
        if match:
            found.append((int(match.group(1)), Path(state_dir) / name))
    return sorted(found)


def all_segments(state_dir: Path) -> list[Path]:
    """Every segment file, oldest first, the active one last (when there is one)."""
    paths = [path for _n, path in closed_segments(state_dir)]
    active = Path(state_dir) / LOG_NAME
    return [*paths, active] if active.exists() else paths


def last_record(path: Path) -> Record | None:
    """The last whole record of a segment file (None when it has none)."""
    split = split_frames(path.read_bytes())
    for frame in reversed(split.frames):
        rec = decode_payload(frame.payload)
        if not isinstance(rec, str):
            return rec
    return None


@dataclass
class ChainVerdict:
    """The whole log: every segment verified and linked to the one before."""

    ok: bool
    segments: int
    records: int
    reason: str = ""
    anchor: dict[str, object] | None = None  # the oldest header's link back (None: the start)
    public_key: str = ""
    bad_segment: Path | None = None
    last: Record | None = field(default=None, repr=False)


def verify_segments(state_dir: Path) -> ChainVerdict:
    """Verify each segment with ``verify_log`` and each header's link to the segment before."""
    paths = all_segments(state_dir)
    if not paths:
        return ChainVerdict(False, 0, 0, "no transaction log in this directory")
    records = 0
    key = ""
    anchor: dict[str, object] | None = None
    before: Record | None = None
    before_number: int | None = None
    for index, path in enumerate(paths):
        verdict = verify_log(path.read_bytes())
        if not verdict.ok:
            return ChainVerdict(False, index, records, f"{path.name}: {verdict.reason}", anchor,
                                key, path)  # fmt: skip
        header, last = verdict.items[0], verdict.items[-1]
        number = header.body.get("segment", 0)
        previous = header.body.get("previous")
        if index == 0:
            key = verdict.public_key
            anchor = dict(previous) if isinstance(previous, dict) else None
        problem = _link_problem(path, number, previous, before, before_number, key,
                                verdict.public_key)  # fmt: skip
        if problem:
            return ChainVerdict(False, index, records, problem, anchor, key, path)
        records += verdict.records
        before, before_number = last, number if isinstance(number, int) else None
    return ChainVerdict(True, len(paths), records, "", anchor, key, None, before)


def _link_problem(path: Path, number: object, previous: object, before: Record | None,
                  before_number: int | None, key: str, own_key: str) -> str:  # fmt: skip
    match = _CLOSED.match(path.name)
    if match and int(match.group(1)) != number:
        return f"{path.name}: its header says segment {number}"
    if own_key != key:
        return f"{path.name}: signed by another key than the segments before it"
    if before is None:
        return ""
    if not isinstance(previous, dict):
        return f"{path.name}: header has no link to segment {before_number}"
    if not isinstance(number, int) or before_number is None or number != before_number + 1:
        return f"{path.name}: segment {number} follows segment {before_number}"
    want = {"segment": before_number, "seq": before.seq, "hash": before.hash}
    got = {k: previous.get(k) for k in want}
    if got != want:
        return (f"{path.name}: header links to {got}, but segment {before_number} ends with "
                f"seq {before.seq} hash {before.hash[:12]}… (a record was removed or added)")
    return ""


@dataclass(frozen=True)
class SegmentInfo:
    path: Path
    size: int
    oldest_utc: float | None  # its header's UTC (None: no record)
    newest_utc: float | None  # its last record's UTC


def segment_info(path: Path) -> SegmentInfo:
    """Size and time span of one segment file (reads it whole: once per closed segment)."""
    split = split_frames(path.read_bytes())
    recs = [r for r in (decode_payload(f.payload) for f in split.frames) if not isinstance(r, str)]
    return SegmentInfo(path, path.stat().st_size, recs[0].utc if recs else None,
                       recs[-1].utc if recs else None)  # fmt: skip


def segment_infos(state_dir: Path) -> list[SegmentInfo]:
    """Size and time span of every segment, oldest first."""
    infos = []
    for path in all_segments(state_dir):
        try:
            infos.append(segment_info(path))
        except OSError:
            continue
    return infos


def to_drop(infos: list[SegmentInfo], *, now_utc: float, budget_bytes: int,
            keep_days: float = KEEP_DAYS) -> list[Path]:  # fmt: skip
    """The oldest closed segments that are both older than ``keep_days`` and over the budget.

    Pure. The active segment (the last) is never dropped; nor is anything younger than
    ``keep_days``, whatever the budget says (the disk filling is reported instead)."""
    total = sum(info.size for info in infos)
    dropped = []
    for info in infos[:-1]:
        if total <= budget_bytes:
            break
        if info.newest_utc is None or now_utc - info.newest_utc < keep_days * 86400:
            break
        dropped.append(info.path)
        total -= info.size
    return dropped


def prune(infos: list[SegmentInfo], *, now_utc: float, budget_bytes: int = BUDGET_BYTES,
          keep_days: float = KEEP_DAYS) -> list[Path]:  # fmt: skip
    """Delete the segments ``to_drop`` names; returns them."""
    dropped = to_drop(infos, now_utc=now_utc, budget_bytes=budget_bytes, keep_days=keep_days)
    for path in dropped:
        path.unlink(missing_ok=True)
    return dropped
