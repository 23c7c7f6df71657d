"""Where ``lanectl record`` reads a transaction log from: the lane's state dir, one segment
file, a JSON-lines export or an export tarball. Segment files are read one at a time, as the
check reaches them, so a log of many segments is checked in the memory of one.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.config import LaneSection, load_config, setting_default
from edge_agent.records import LOG_NAME
from edge_agent.records.codec import Record, decode_payload, public_key_from_text, split_frames
from edge_agent.records.segments import all_segments, file_number
from edge_agent.records.verify import (
    LogVerdict,
    Part,
    jsonl_parts,
    log_part,
    looks_like_jsonl,
    segment_number,
    verify_chain,
)
from host_tools.errors import ToolError

DEFAULT_CONFIG = Path("/etc/gatelane/agent.toml")
TAR_QUARANTINE = "quarantine/"
Reader = Callable[[], bytes]
LIVE_RETRIES = 3
LIVE_WAIT_S = 0.2


@dataclass
class Source:
    path: Path
    files: list[tuple[str, Reader]]  # the segment files as found, oldest first
    jsonl: bytes | None = None  # an export in JSON lines instead of files
    quarantined: dict[str, bytes] = field(default_factory=dict)  # name: a torn tail set aside

    def parts(self, segment: int | None = None) -> Iterator[Part]:
        """Each segment in order (only segment ``segment`` when given)."""
        if self.jsonl is not None:
            for part in jsonl_parts(self.path.name, self.jsonl):
                if segment is None or _part_number(part) == segment:
                    yield part
            return
        for name, read in self.files:
            if segment is not None and file_number(name) not in (segment, None):
                continue
            part = log_part(name, read(), file_number(name))
            if segment is None or _part_number(part) == segment:
                yield part

    def check(self, pinned: Ed25519PublicKey | None = None, known: Iterable[str] = (),
              keep: Callable[[int], bool] | None = None,
              segment: int | None = None) -> LogVerdict:  # fmt: skip
        """Verify the whole log, or only segment ``segment`` (its records kept)."""
        verdict = verify_chain(self.parts(segment), pinned, known, keep)
        if segment is not None and verdict.segments == 0 and not verdict.bad_segment:
            raise ToolError(f"{self.path}: no segment {segment} (segments are numbered in "
                            "their headers; `lanectl record show` lists them)")
        return verdict

    def newest_segment(self) -> int:
        """The newest segment's number, from its header (0 when it has none)."""
        parts = list(jsonl_parts(self.path.name, self.jsonl)) if self.jsonl is not None else []
        if parts:
            return _part_number(parts[-1]) or 0
        if not self.files:
            return 0
        name, read = self.files[-1]
        number = file_number(name)
        if number is not None:
            return number
        frames = split_frames(read()).frames
        header = decode_payload(frames[0].payload) if frames else "empty"
        return _header_number(header) or 0


def _part_number(part: Part) -> int | None:
    if part.number is not None:
        return part.number
    return _header_number(decode_payload(part.units[0][1])) if part.units else None


def _header_number(rec: Record | str) -> int | None:
    return None if isinstance(rec, str) or rec.kind != "header" else segment_number(rec)


def state_dir(args: argparse.Namespace) -> Path:
    """The lane's state dir: --state-dir, else --config's (or the default config's) setting."""
    if args.state_dir is not None:
        return Path(args.state_dir)
    config = args.config if args.config is not None else (
        DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)  # fmt: skip
    if config is not None:
        return load_config(config).lane.state_dir
    return Path(setting_default(LaneSection, "state_dir"))


def open_source(args: argparse.Namespace) -> Source:
    """The log the command names: FILE, else the lane's state dir.

    Raises:
        ToolError: both given, or nothing readable there.
    """
    if args.file is not None and (args.state_dir is not None or args.config is not None):
        raise ToolError("give FILE or --state-dir/--config, not both")
    path = Path(args.file) if args.file is not None else state_dir(args)
    if path.is_dir():
        segments = all_segments(path)
        if not segments:
            raise ToolError(f"{path}: no transaction log here ({LOG_NAME} or records-NNNNNN.log;"
                            " name the lane's state dir with --state-dir DIR)")
        torn = {p.name: read_file(p) for p in sorted(path.glob(f"{LOG_NAME}.torn-*"))}
        readers = [(p.name, _reader(p)) for p in segments[:-1]]
        return Source(path, [*readers, (segments[-1].name, _live(segments[-1]))], None, torn)
    data = read_file(path)
    if _is_tar(data):
        files, torn = _from_tar(path, data)
        return Source(path, [(n, _held(d)) for n, d in files.items()], None, torn)
    if looks_like_jsonl(data):
        return Source(path, [], data)
    return Source(path, [(path.name, _held(data))])


def _reader(path: Path) -> Reader:
    def read() -> bytes:
        if not path.exists():  # renamed by a rotation after the listing
            raise ToolError(f"{path}: the log moved on to a new segment while it was read: run "
                            "the command again")  # fmt: skip
        return read_file(path)

    return read


def _live(path: Path) -> Reader:
    """The active segment, which the running agent may be appending to as it is read: a cut
    frame at its end is read again (an append lands within milliseconds) before it counts."""

    def read() -> bytes:
        data = _reader(path)()
        for _ in range(LIVE_RETRIES):
            split = split_frames(data)
            if split.bad_at is None or not split.torn:
                break
            time.sleep(LIVE_WAIT_S)
            data = _reader(path)()
        return data

    return read


def _held(data: bytes) -> Reader:
    return lambda: data


def _log_name(name: str) -> bool:
    return name == LOG_NAME or file_number(name) is not None


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ToolError(f"{path}: no such file (name the lane's state dir with --state-dir DIR, "
                        "or a log or export as FILE)") from None
    except PermissionError:
        raise ToolError(f"{path}: permission denied (the log belongs to the agent: run as a "
                        "member of its group, or with sudo)") from None
    except IsADirectoryError:
        raise ToolError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ToolError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _is_tar(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar"


def _from_tar(path: Path, data: bytes) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The segment files of an export tarball (oldest first, the active one last) and the
    torn tails in it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            names = archive.getnames()
            logs = sorted((n for n in names if _log_name(n)),
                          key=lambda n: (n == LOG_NAME, file_number(n) or 0))  # fmt: skip
            if not logs:
                raise ToolError(f"{path}: a tarball without {LOG_NAME}: not a record export")
            files = {n: _member(archive, n) for n in logs}
            torn = {n.removeprefix(TAR_QUARANTINE): _member(archive, n)
                    for n in names if n.startswith(TAR_QUARANTINE)}  # fmt: skip
            return files, torn
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ToolError(f"{path}: not a readable tarball: {exc}") from None


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.getmember(name)
    handle = archive.extractfile(member) if member.isfile() else None
    return handle.read() if handle is not None else b""


def load_pubkey(text: str) -> Ed25519PublicKey:
    """A PEM file, a file holding the base64 key, or the base64 key itself.

    Raises:
        ToolError: none of those, or not an Ed25519 key.
    """
    path = Path(text)
    raw = read_file(path) if path.is_file() else text.encode()
    where = str(path) if path.is_file() else "--pubkey"
    if b"-----BEGIN" in raw:
        try:
            key = serialization.load_pem_public_key(raw)
        except ValueError as exc:
            raise ToolError(f"{where}: not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ToolError(f"{where}: not an Ed25519 public key")
        return key
    try:
        return public_key_from_text(raw.decode().strip())
    except (ValueError, UnicodeDecodeError):
        raise ToolError(f"{where}: give a PEM public key file or the lane's key in base64 "
                        "(as `lanectl record show --seq 0` shows it)") from None
