"""``lanectl record``: read, verify and export the lane's transaction log; print a ticket.

The log is the segments ``records-NNNNNN.log`` and ``records.log`` in the lane's state dir
(``--state-dir``; else ``[lane] state_dir`` of ``--config``, or of /etc/gatelane/agent.toml
when it exists, or the agent's default). Each command also takes a FILE instead: a state dir,
one segment, or an export (JSON lines or a tarball). Reading: ``record_source.py``.

Exit codes: 0 the log is intact (and the command did its work), 1 the log is not intact (the
message names the first bad record), 2 bad arguments or a file that cannot be read.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from cryptography.hazmat.primitives import serialization

from edge_agent.records import LOG_NAME
from edge_agent.records.codec import Record, encode_frame, public_key_from_text
from edge_agent.records.software import software_id
from edge_agent.records.ticket import (
    DEFAULT_WIDTH,
    ENCODINGS,
    TicketError,
    render_escpos,
    render_text,
    software_for,
    ticket_from_record,
    ticket_lines,
    utc_text,
)
from edge_agent.records.verify import LogVerdict, parse_known
from host_tools.cli import add_json, command, emit, text
from host_tools.errors import ToolError
from host_tools.record_source import (
    DEFAULT_CONFIG,
    TAR_QUARANTINE,
    Source,
    load_pubkey,
    open_source,
)

BROKEN_EXIT = 1  # the log is not intact
TAR_KEY = "public-key.pem"
TAR_VERDICT = "verdict.json"
SUMMARY_KEYS = {
    "header": ("segment", "software", "previous", "after_damaged"),
    "transit": ("indicator_kg", "decision", "release_no", "plates", "plate_read", "transit_id"),
    "config_change": ("by", "changed"),
    "software_update": ("old", "new"),
}
SUMMARY_WIDTH = 72
NAMED_BY = {"pass": "plates", "ids": "transit_id", "software": "version", "old": "version",
            "new": "version"}  # a nested field in a listing: the part of it that names it


def register(subparsers: Any) -> None:
    parser = command(subparsers, "record", "the lane's transaction log: show, verify, export, "
                     "print a weighing ticket", "lanectl record verify",
                     "lanectl record show --last 20",
                     "lanectl record ticket --seq 17 --format escpos --output /dev/usb/lp0")
    actions = parser.add_subparsers(dest="record_command", metavar="ACTION", required=True)

    show = command(actions, "show", "list the records (seq, kind, UTC time, key fields)",
                   "lanectl record show --last 20", "lanectl record show --seq 17 --json",
                   "lanectl record show export.jsonl")  # fmt: skip
    which = show.add_mutually_exclusive_group()
    which.add_argument("--seq", type=_count, metavar="N", help="one record in full")
    which.add_argument("--last", type=_count, metavar="N", help="the last N records only")
    _segment(show)
    _finish(show, _show)

    verify = command(actions, "verify", "check every record: exit 0 when the log is intact, 1 "
                     "naming the first edited, deleted, reordered or foreign record",
                     "lanectl record verify", "lanectl record verify export.tar --pubkey "
                     "lane-07.pem --known 9f86d081884c7d65")  # fmt: skip
    _verify_options(verify)
    _finish(verify, _verify)

    export = command(actions, "export", "write the log for offline checking: JSON lines, or a "
                     "tarball with the raw log and the public key",
                     "lanectl record export --output lane-07.jsonl",
                     "lanectl record export --output lane-07.tar")  # fmt: skip
    export.add_argument("--output", required=True, metavar="FILE",
                        help="where to write (.tar, .tar.gz or .tgz: a tarball); - for stdout")
    export.add_argument("--format", choices=("jsonl", "tar"),
                        help="jsonl or tar (default: from the --output name, else jsonl)")
    export.add_argument("--force", action="store_true", help="replace an existing FILE")
    _finish(export, _export)

    ticket = command(actions, "ticket", "a transit's weighing ticket: ESC/POS for a receipt "
                     "printer or plain text", "lanectl record ticket --seq 17",
                     "lanectl record ticket --seq 17 --format escpos --output /dev/usb/lp0")
    ticket.add_argument("--seq", type=_count, required=True, metavar="N",
                        help="the transit record's seq")
    _segment(ticket)
    ticket.add_argument("--format", choices=("text", "escpos"), default="text",
                        help="text (default) or escpos")
    ticket.add_argument("--width", type=_width, default=DEFAULT_WIDTH, metavar="CHARS",
                        help=f"characters a line (default {DEFAULT_WIDTH}: 58 mm; 48 for 80 mm)")
    ticket.add_argument("--encoding", choices=tuple(ENCODINGS), default="gb18030",
                        help="the printer's character set (default gb18030)")
    ticket.add_argument("--output", metavar="FILE", help="write here (e.g. /dev/usb/lp0), "
                        "not to stdout")  # fmt: skip
    _finish(ticket, _ticket, "the ticket's fields and lines as JSON")


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number, 0 or more")
    return int(text)


def _width(text: str) -> int:
    if not text.isdigit() or not 24 <= int(text) <= 80:
        raise argparse.ArgumentTypeError(f"{text!r}: give characters a line, 24 to 80")
    return int(text)


def _known(text: str) -> str:
    try:
        return parse_known(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _finish(parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int],
            json_help: str = "one JSON object") -> None:  # fmt: skip
    """What every action takes last: where the log is, --json, and the action itself."""
    _source(parser)
    add_json(parser, json_help)
    parser.set_defaults(func=func)


def _segment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segment", type=_count, metavar="S",
                        help="the segment --seq counts in (default: the newest)")


def _source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE",
                        help="a log or an export (.jsonl, .tar) instead of the lane's own log")
    where = parser.add_argument_group("the lane's own log")
    where.add_argument("--state-dir", type=Path, metavar="DIR",
                       help=f"the lane's state dir, holding {LOG_NAME}")
    where.add_argument("--config", type=Path, metavar="FILE",
                       help=f"the agent's TOML file: reads [lane] state_dir (default "
                            f"{DEFAULT_CONFIG} when it exists)")  # fmt: skip


def _verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pubkey", metavar="KEY",
                        help="the lane's public key (a PEM file, or the key in base64 as the "
                             "header shows it): a log signed by any other key fails")
    parser.add_argument("--known", type=_known, action="append", default=[], metavar="HASH",
                        help="a record's hash known from elsewhere (a ticket, the backend): it "
                             "must be in the log, which catches records cut off the end; may "
                             "be repeated")  # fmt: skip


def _warn(message: str) -> None:
    print(f"lanectl record: {message}", file=sys.stderr, flush=True)


def _broken(path: Path, verdict: LogVerdict) -> str:
    return f"{path}: NOT INTACT: {verdict.reason} (nothing from there on can be trusted)"


# -- show --------------------------------------------------------------------------------------
def _brief(key: str, value: Any) -> str:
    """One body field in a few characters: a dict by what names it, a list joined."""
    if isinstance(value, dict):
        if key == "previous":
            return f"{value.get('segment')}/{value.get('seq')}"
        value = value.get(NAMED_BY.get(key, ""), "{...}")
    if isinstance(value, list):
        return ",".join(str(v.get("key", "...")) if isinstance(v, dict) else str(v)
                        for v in value)  # fmt: skip
    return "" if value is None else str(value)


def summary(rec: Record, width: int = SUMMARY_WIDTH) -> str:
    """The record's key fields as ``key=value``, cut to ``width``."""
    keys = SUMMARY_KEYS.get(rec.kind) or tuple(rec.body)
    parts = [f"{key}={brief}" for key in keys if (brief := _brief(key, rec.body.get(key)))]
    line = " ".join(parts)
    return line if len(line) <= width else line[: width - 3] + "..."


def _show(args: argparse.Namespace) -> int:
    source = open_source(args)
    if args.seq is not None:
        number = args.segment if args.segment is not None else source.newest_segment()
        verdict = source.check(segment=number)
        chosen = [(n, r) for n, r in verdict.items if r.seq == args.seq]
        if not chosen:
            _seq_missing(source.path, verdict, number, args.seq)
    else:
        verdict = source.check(segment=args.segment)
        chosen = verdict.items
        if args.last is not None:
            chosen = chosen[-args.last :] if args.last else []
    if args.json:
        emit(args, {"ok": verdict.ok, "reason": verdict.reason,
                    "records": [{"segment": n, **r.to_doc()} for n, r in chosen]})  # fmt: skip
    elif args.seq is not None:
        number, rec = chosen[0]
        print(text({"segment": number, **rec.to_doc(), "utc": f"{utc_text(rec.utc)} ({rec.utc})"}))
    else:
        print(f"{'seg':>4} {'seq':>6}  {'kind':<15} {'utc':<23}  fields")
        for number, rec in chosen:
            print(f"{number:>4} {rec.seq:>6}  {rec.kind:<15} {utc_text(rec.utc):<23}  "
                  f"{summary(rec)}")
    if not verdict.ok:
        _warn(_broken(source.path, verdict))
        return BROKEN_EXIT
    return 0


def _seq_missing(path: Path, verdict: LogVerdict, number: int, seq: int) -> NoReturn:
    if not verdict.ok:
        raise ToolError(f"no verified record {seq} in segment {number}: "
                        f"{_broken(path, verdict)}", BROKEN_EXIT)  # fmt: skip
    raise ToolError(f"{path}: segment {number} has no record {seq}")


# -- verify ------------------------------------------------------------------------------------
def _verify(args: argparse.Namespace) -> int:
    pinned = load_pubkey(args.pubkey) if args.pubkey else None
    source = open_source(args)
    verdict = source.check(pinned, args.known, keep=lambda _segment: False)
    last = verdict.last
    doc = {"file": str(source.path), **verdict.to_doc(),
           "last": {"segment": last[0], "seq": last[1].seq, "hash": last[1].hash}
           if last else None, "pinned": pinned is not None, "known": list(args.known),
           "quarantined": {name: len(data) for name, data in source.quarantined.items()}}
    emit(args, doc, _verify_text)
    return 0 if verdict.ok else BROKEN_EXIT


def _verify_text(doc: dict[str, Any]) -> str:
    if doc["ok"]:
        last = doc["last"]
        lines = [f"{doc['file']}: intact: {doc['records']} records in {doc['segments']} "
                 "segment(s); chain, hashes and signatures verify",
                 f"last        segment {last['segment']} seq {last['seq']} hash {last['hash']}",
                 f"public key  {doc['public_key']}"
                 + ("  (pinned)" if doc["pinned"] else "  (from the header: not pinned)")]
        if doc["known"]:
            lines.append(f"known       {len(doc['known'])} record(s) found")
        after = doc["starts_after"]
        if after:
            lines.append(f"starts after segment {after.get('segment')} seq {after.get('seq')} "
                         "(the segments before it are not here: dropped by retention, or not "
                         "given)")
    else:
        lines = [f"{doc['file']}: NOT INTACT: {doc['reason']}",
                 f"{doc['records']} records before it verify; nothing from there on can be "
                 "trusted"]
    for name, size in doc["quarantined"].items():
        lines.append(f"note: {name} ({size} bytes): a write cut by a power loss, set aside")
    return "\n".join(lines)


# -- export ------------------------------------------------------------------------------------
def _export(args: argparse.Namespace) -> int:
    source = open_source(args)
    verdict = source.check(keep=lambda _segment: False)
    name = str(args.output)
    kind = args.format or ("tar" if name.endswith((".tar", ".tar.gz", ".tgz")) else "jsonl")
    with _output(name, args.force) as out:
        if kind == "tar":
            export_tar(source, verdict, out, time.time(), gzip=name.endswith("gz"))
        else:
            export_jsonl(source, verdict.records, out)
        size = out.tell() if out.seekable() else None
    doc = {"output": name, "format": kind, "bytes": size, "records": verdict.records,
           "ok": verdict.ok, "reason": verdict.reason}
    if name != "-":
        emit(args, doc, lambda d: f"wrote {d['output']}: {d['records']} records as {d['format']}"
             f" ({d['bytes']} bytes)")  # fmt: skip
    if not verdict.ok:
        what = "the raw log is in it as found" if kind == "tar" else "only records that verify"
        _warn(f"{_broken(source.path, verdict)}; exported anyway, {what}")
        return BROKEN_EXIT
    return 0


def export_jsonl(source: Source, records: int, out: BinaryIO) -> None:
    """The first ``records`` records (those that verified), one canonical JSON a line."""
    left = records
    for part in source.parts():
        for _where, payload in part.units[:left]:
            out.write(payload + b"\n")
        left -= min(left, len(part.units))
        if not left:
            return


def export_tar(source: Source, verdict: LogVerdict, out: BinaryIO, now: float, *,
               gzip: bool = False) -> None:  # fmt: skip
    """The segment files as found, the header's public key (PEM), the verdict, torn tails."""

    def add(archive: tarfile.TarFile, member: str, data: bytes) -> None:
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = len(data), int(now), 0o644
        archive.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=out, mode="w|gz" if gzip else "w|") as archive:
        if source.jsonl is not None:  # an export re-exported: the records framed again
            add(archive, LOG_NAME, b"".join(encode_frame(payload) for part in source.parts()
                                            for _w, payload in part.units))  # fmt: skip
        for name, read in source.files:
            add(archive, name, read())
        if verdict.public_key:
            key = public_key_from_text(verdict.public_key)
            add(archive, TAR_KEY, key.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
        doc = {**verdict.to_doc(), "exported_utc": utc_text(now), "exported_by": software_id()}
        add(archive, TAR_VERDICT, json.dumps(doc, indent=2).encode() + b"\n")
        for name, data in source.quarantined.items():
            add(archive, TAR_QUARANTINE + name, data)


@contextmanager
def _output(name: str, force: bool) -> Iterator[BinaryIO]:
    """Where a command writes: stdout for -, a device (a printer) straight, a file through a
    temporary one beside it, renamed when whole."""
    if name == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = Path(name)
    try:
        if path.is_char_device():
            with path.open("wb") as handle:
                yield handle
            return
        if path.exists() and not force:
            raise ToolError(f"{path}: exists (give --force to replace it)")
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as handle:
                yield handle
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    except OSError as exc:
        raise ToolError(f"{path}: cannot write: {exc.strerror or exc}") from None


# -- ticket ------------------------------------------------------------------------------------
def _ticket(args: argparse.Namespace) -> int:
    source = open_source(args)
    number = args.segment if args.segment is not None else source.newest_segment()
    verdict = source.check(segment=number)
    upto = [r for _n, r in verdict.items if r.seq <= args.seq]
    if not upto or upto[-1].seq != args.seq:
        _seq_missing(source.path, verdict, number, args.seq)
    software = software_for(upto)
    if not software:
        _warn("the log names no software for this record: the ticket shows this lanectl's")
        software = software_id()
    try:
        ticket = ticket_from_record(upto[-1], upto[0], software, segment=number)
        printed = (render_escpos(ticket, args.width, args.encoding) if args.format == "escpos"
                   else render_text(ticket, args.width).encode())  # fmt: skip
    except TicketError as exc:
        raise ToolError(str(exc)) from None
    if args.json:
        emit(args, {**asdict(ticket), "lines": ticket_lines(ticket, args.width)})
    else:
        with _output(args.output or "-", force=True) as out:
            out.write(printed)
    if not verdict.ok:
        _warn(f"{_broken(source.path, verdict)}; record {args.seq} comes before the fault and "
              "verifies")
    return 0
