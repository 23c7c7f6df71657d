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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent.records import LOG_NAME
from edge_agent.records.codec import Record, decode_payload, split_frames
from edge_agent.records.verify import LogVerdict, Part, log_part, verify_chain

KEEP_DAYS = 90
BUDGET_BYTES = 1024 * 1024 * 1024  # 1 GiB of the Pi's card (docs/records.md: 90 days ~ 0.3 GiB)
_CLOSED = re.compile(r"^records-(\d{6,})\.log$")


def file_number(name: str) -> int | None:
    """The segment number a closed segment's file name says (None: not such a name)."""
    match = _CLOSED.match(name)
    return int(match.group(1)) if match else None


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
        number = file_number(name)
        if number is not None:
            found.append((number, Path(state_dir) / name))
    return sorted(found)


def all_segments(state_dir: Path) -> list[Path]:
    """Every segment file, oldest first, the active one last (when there is one)."""
    paths = [path for _n, path in closed_segments(state_dir)]
    active = Path(state_dir) / LOG_NAME
    return [*paths, active] if active.exists() else paths


def segment_records(path: Path) -> list[Record]:
    """The whole records of a segment file, in order (what is no record is passed over)."""
    frames = split_frames(path.read_bytes()).frames
    return [r for r in (decode_payload(f.payload) for f in frames) if isinstance(r, Record)]


def last_record(path: Path) -> Record | None:
    """The last whole record of a segment file (None when it has none)."""
    records = segment_records(path)
    return records[-1] if records else None


def state_parts(state_dir: Path) -> Iterator[Part]:
    """Each segment file of a state dir, oldest first, read as the check reaches it."""
    for path in all_segments(state_dir):
        yield log_part(path.name, path.read_bytes(), file_number(path.name))


def verify_segments(state_dir: Path) -> LogVerdict:
    """The whole log in a state dir, by ``verify.verify_chain`` (the one set of rules)."""
    return verify_chain(state_parts(state_dir))


@dataclass(frozen=True)
class SegmentInfo:
    path: Path
    size: int
    oldest_utc: float | None  # its header's UTC (None: no record)
    newest_utc: float | None  # its last record's UTC


def segment_info(path: Path) -> SegmentInfo:
    """Size and time span of one segment file (reads it whole: once per closed segment)."""
    recs = segment_records(path)
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
