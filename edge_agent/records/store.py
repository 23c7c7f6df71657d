"""The append-only record file in the lane's state dir, cut into segments.

The active segment is ``records.log``; a full one is renamed ``records-NNNNNN.log`` (its
segment number) and a new ``records.log`` starts with a header whose body links back to the
last record of the one before (``previous``: segment, seq, hash) and carries the ``anchor``
the caller gives (what the log had recorded so far). Each segment is a whole log by itself
(seq 0 header, gap-free seqs, one hash chain), so ``verify_log`` checks any one of them and
``verify.verify_chain`` the links between them (``segments.verify_segments``: a state dir's).

On open the active file is scanned; a torn tail (a write cut by a power loss) is copied to a
quarantine file beside the log and cut off, so the log continues after the last whole record.
Each append is written and fsync'ed before it returns; a segment is closed (renamed) only
before an append, so an append that returned is never touched again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.records import LOG_NAME
from edge_agent.records.codec import (
    GENESIS,
    Record,
    decode_payload,
    encode_frame,
    make_record,
    public_key_text,
    split_frames,
)
from edge_agent.records.segments import closed_segments, last_record, segment_path

SEGMENT_BYTES = 8 * 1024 * 1024  # a few days of a busy lane; a unit retention can drop
Anchor = Callable[[], Mapping[str, Any]]


class RecordStore:
    def __init__(self, state_dir: Path, key: Ed25519PrivateKey, *, utc: float, mono: float,
                 header: Mapping[str, Any] | None = None, anchor: Anchor | None = None,
                 segment_bytes: int = SEGMENT_BYTES) -> None:  # fmt: skip
        self.dir = Path(state_dir)
        self.path = self.dir / LOG_NAME
        self.key = key
        self.segment_bytes = segment_bytes
        self._header_extra = dict(header or {})
        self._anchor = anchor
        self.quarantined: Path | None = None
        self.new_headers: list[Record] = []  # headers written since the owner last took them
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        split = split_frames(data)
        if split.bad_at is not None and split.torn:
            self.quarantined = _free_name(self.path.with_name(f"{LOG_NAME}.torn-{split.bad_at}"))
            self.quarantined.write_bytes(data[split.bad_at :])
            with open(self.path, "r+b") as handle:
                handle.truncate(split.bad_at)
                os.fsync(handle.fileno())
            data = data[: split.bad_at]
        elif split.bad_at is not None:
            raise ValueError(f"{self.path}: {split.reason} at byte {split.bad_at}; "
                             "run `lanectl record verify`")  # fmt: skip
        self.last: Record | None = None
        self.header: Record | None = None
        # The newest record of each kind in the active segment (the header's anchor says
        # what the segments before had recorded).
        self.latest: dict[str, Record] = {}
        for frame in split.frames:
            rec = decode_payload(frame.payload)
            if isinstance(rec, str):
                raise ValueError(f"{self.path}: record at byte {frame.offset} unreadable: {rec}")
            self.latest[rec.kind] = rec
            self.last = rec
        self.header = self.latest.get("header")
        self.size = len(data)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.last is None:
            self._start_segment(utc, mono)

    @property
    def next_seq(self) -> int:
        return 0 if self.last is None else self.last.seq + 1

    @property
    def segment(self) -> int:
        """The active segment's number (from its header)."""
        return int(self.header.body.get("segment", 0)) if self.header is not None else 0

    def _start_segment(self, utc: float, mono: float) -> None:
        """The header of a new active segment: the key, its number, the link back."""
        closed = closed_segments(self.dir)
        previous: dict[str, Any] | None = None
        number = 0
        if closed:
            number = closed[-1][0] + 1
            before = last_record(closed[-1][1])
            if before is not None:
                previous = {"segment": closed[-1][0], "seq": before.seq, "hash": before.hash,
                            "utc": before.utc}  # fmt: skip
        body: dict[str, Any] = {"public_key": public_key_text(self.key.public_key()),
                                **self._header_extra, "segment": number,
                                "previous": previous}  # fmt: skip
        if self._anchor is not None:
            body["anchor"] = dict(self._anchor())
        self.latest = {}
        header = make_record(self.key, seq=0, kind="header", utc=utc, mono=mono, body=body,
                             prev_hash=GENESIS)  # fmt: skip
        self._write(header)
        self.header = header
        self.new_headers.append(header)

    def take_headers(self) -> list[Record]:
        """The segment headers written since the last call (to send them on)."""
        taken, self.new_headers = self.new_headers, []
        return taken

    def _write(self, rec: Record) -> None:
        frame = encode_frame(rec.encoded())
        try:
            written = os.write(self._fd, frame)
            if written != len(frame):
                raise OSError(f"{self.path}: short write ({written} of {len(frame)} bytes)")
            os.fsync(self._fd)
        except OSError:
            # Cut a partial frame off again, so the file still ends on a whole record.
            with contextlib.suppress(OSError):  # else the next open quarantines it as torn
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(frame)
        self.latest[rec.kind] = rec
        self.last = rec

    def append(self, kind: str, body: Mapping[str, Any], *, utc: float, mono: float) -> Record:
        """Write one record and fsync it; raises OSError when the disk refuses."""
        if self.size >= self.segment_bytes:
            self._rotate(utc, mono)
        prev = self.last.hash if self.last is not None else GENESIS
        rec = make_record(self.key, seq=self.next_seq, kind=kind, utc=utc, mono=mono, body=body,
                          prev_hash=prev)  # fmt: skip
        self._write(rec)
        return rec

    def _rotate(self, utc: float, mono: float) -> None:
        """Close the full segment under its number and start the next one."""
        os.close(self._fd)
        self._fd = -1
        os.replace(self.path, segment_path(self.dir, self.segment))
        _fsync_dir(self.dir)
        self.size = 0
        self.last = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._start_segment(utc, mono)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _free_name(path: Path) -> Path:
    """``path``, or ``path.N`` when a file of that name is already kept."""
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{n}")
        n += 1
    return candidate


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
