"""The transaction log in the running lane: opened at start, fed by the agent, never in its way.

``LaneLog`` appends what the lane must be able to prove later: a ``power_cycle`` at every start
(with how the run before ended), a ``transit`` for each decision, a ``config_change`` when the
effective configuration differs from the one last recorded, a ``software_update`` when the
software identification differs, a ``clock_step`` when the UTC clock steps. Every record that
was written is handed to ``publish`` (the agent sends it to the backend as an event).

A disk that refuses a record never stops the lane: the record waits in memory (in order,
bounded), ``on_fault`` is told once, health says why, and the log is reopened and the waiting
records written every ``RETRY_S``. A damaged active segment is moved aside (``quarantined``)
and a new one follows the last whole segment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edge_agent.protocols import gp1
from edge_agent.records import LOG_NAME
from edge_agent.records.bodies import (
    CLOCK_STEP_S,
    ClockWatch,
    clock_step_body,
    config_change_body,
    firmware_update_body,
    identity_reads,
    software_update_body,
    transit_body,
)
from edge_agent.records.codec import Record
from edge_agent.records.keys import load_or_create_key
from edge_agent.records.segments import (
    BUDGET_BYTES,
    KEEP_DAYS,
    SegmentInfo,
    closed_segments,
    prune,
    segment_info,
    segment_records,
)
from edge_agent.records.store import SEGMENT_BYTES, RecordStore

log = logging.getLogger(__name__)

SHUTDOWN_NAME = "records.shutdown"  # written by a clean stop: the last record it left
ENQUEUED_NAME = "records.enqueued"  # the last record the outbox took: those after it are resent
PENDING_LIMIT = 1000
RETRY_S = 30.0
PRUNE_S = 3600.0
EVIDENCE_TRANSITS = 50  # transits whose evidence hashes are kept for their records

# Event data, transit id; returns False when the event is not stored yet (held in memory).
Publish = Callable[[dict[str, Any], str | None], bool | None]
Fault = Callable[[str], None]


class LaneLog:
    def __init__(self, state_dir: Path, *, publish: Publish, on_fault: Fault,
                 budget_bytes: int = BUDGET_BYTES, keep_days: float = KEEP_DAYS,
                 segment_bytes: int = SEGMENT_BYTES) -> None:  # fmt: skip
        self.state_dir = Path(state_dir)
        self._publish, self._on_fault = publish, on_fault
        self.budget_bytes, self.keep_days = budget_bytes, keep_days
        self.segment_bytes = segment_bytes
        self.store: RecordStore | None = None
        self.error = ""
        self.lost = 0  # records dropped from memory while the disk refused them
        self.quarantined: list[tuple[Path, str]] = []
        self._pending: deque[tuple[str, dict[str, Any], float, float, str | None]] = deque()
        self._config: dict[str, Any] | None = None  # the effective config last recorded
        self._config_changes = 0
        self._software: dict[str, str] | None = None
        self._firmware: dict[str, dict[str, str]] = {}  # device: the firmware last recorded
        self._clock = ClockWatch()
        self._evidence: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._closed: dict[Path, SegmentInfo] = {}
        self._next_retry = self._next_prune = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and not self._pending

    # -- life --------------------------------------------------------------------------------
    def start(self, *, utc: float, mono: float, config: Mapping[str, Any],
              software: Mapping[str, str], boot_id: int, synced: bool,
              source: str) -> None:  # fmt: skip
        """Open the log, and record the start and whatever changed while the lane was down."""
        marker = self._take_shutdown_marker()
        existed = (self.state_dir / LOG_NAME).exists() or bool(closed_segments(self.state_dir))
        self._open(utc, mono)
        store = self.store
        last = store.last if store is not None else None
        self._resend()
        self._recover_state()
        torn = store.quarantined if store is not None else None
        self._append("power_cycle", {
            "boot_id": boot_id, "previous_shutdown": _previous_shutdown(marker, last, existed),
            "previous_stop": marker, "torn_tail": None if torn is None else torn.name,
            "last_record": None if last is None else {"seq": last.seq, "utc": last.utc},
            "software": dict(software), "clock": {"synced": synced, "source": source},
        }, utc, mono)  # fmt: skip
        if last is not None and last.kind != "header" and last.utc - utc >= CLOCK_STEP_S:
            self._append("clock_step", clock_step_body(
                utc - last.utc, utc=utc, mono=mono, synced=synced, source=source,
                seen="at start: behind the last record"), utc, mono)  # fmt: skip
        self._clock.observe(utc, mono)
        if self._software is not None and dict(software) != self._software:
            self._append("software_update", software_update_body(self._software, software),
                         utc, mono)  # fmt: skip
        self._software = dict(software)
        self.config(config, by="startup", utc=utc, mono=mono)

    def stop(self, *, utc: float, mono: float, reason: str, by: str | None) -> None:
        """A clean stop: what is waiting is written if it can be, and the stop is noted."""
        self._flush(utc, mono)
        store = self.store
        if store is not None and not self._pending and store.last is not None:
            marker = {"segment": store.segment, "seq": store.last.seq, "hash": store.last.hash,
                      "utc": utc, "reason": reason, "by": by}  # fmt: skip
            with contextlib.suppress(OSError):
                _write_atomic(self.state_dir / SHUTDOWN_NAME, json.dumps(marker).encode())
        self._close()

    # -- what the agent records ----------------------------------------------------------------
    def config(self, config: Mapping[str, Any], *, by: str, utc: float, mono: float) -> None:
        new = dict(config)
        if new == self._config:
            return
        self._config_changes += 1
        body = config_change_body(self._config, new, by=by, counter=self._config_changes)
        self._config = new
        self._append("config_change", body, utc, mono)

    def firmware(self, device: str, version: Mapping[str, str], *, utc: float,
                 mono: float) -> None:  # fmt: skip
        """A device said which firmware it runs (``version["firmware"]``); recorded when that
        differs from the one last recorded for it."""
        old = self._firmware.get(device)
        if old is not None and old.get("firmware") == version.get("firmware"):
            return
        self._firmware[device] = dict(version)
        self._append("firmware_update", firmware_update_body(device, old, version), utc, mono)

    def transit(self, decision: Mapping[str, Any], *, transit_id: str | None,
                pass_claims: Mapping[str, Any] | None, event: Mapping[str, Any] | None,
                boot_id: int, clock: Mapping[str, Any], utc: float,
                mono: float) -> None:  # fmt: skip
        ids = {"transit_id": transit_id, "boot_id": boot_id,
               "event_id": None if event is None else event.get("event_id"),
               "event_seq": None if event is None else event.get("seq")}  # fmt: skip
        body = transit_body(
            decision, ids=ids, pass_claims=pass_claims,
            plates_read=identity_reads(decision, "plate"),
            containers_read=identity_reads(decision, "container"),
            evidence=list(self._evidence.get(transit_id or "", [])),
            software=self._software or {}, config_changes=self._config_changes, clock=clock)
        self._append("transit", body, utc, mono, transit_id)

    def note_evidence(self, transit_id: str | None, chunk: Mapping[str, Any]) -> None:
        """An evidence file's hash, from its first chunk, for the transit's records."""
        if transit_id is None or chunk.get("part") != 0:
            return
        kept = self._evidence.setdefault(transit_id, [])
        self._evidence.move_to_end(transit_id)
        kept.append({k: chunk.get(k) for k in ("ref", "sha256", "size", "media_type")})
        while len(self._evidence) > EVIDENCE_TRANSITS:
            self._evidence.popitem(last=False)

    def observe_clock(self, *, utc: float, mono: float, synced: bool, source: str) -> None:
        step = self._clock.observe(utc, mono)
        if step is not None:
            self._append("clock_step", clock_step_body(step, utc=utc, mono=mono, synced=synced,
                                                       source=source, seen="running"), utc, mono)

    def tick(self, *, utc: float, mono: float, synced: bool) -> None:
        """Retry what waits; drop the segments retention allows (only on a synced clock: a
        clock run ahead must not age the log)."""
        if (self._pending or self.store is None) and mono >= self._next_retry:
            self._next_retry = mono + RETRY_S
            self._flush(utc, mono)
        if synced and mono >= self._next_prune:
            self._next_prune = mono + PRUNE_S
            dropped = prune(self._infos(), now_utc=utc, budget_bytes=self.budget_bytes,
                            keep_days=self.keep_days)  # fmt: skip
            for path in dropped:
                self._closed.pop(path, None)
                log.info("transaction log: %s dropped (older than %g days, over the budget)",
                         path.name, self.keep_days)

    def health(self, utc: float) -> dict[str, Any]:
        """The log's state and disk use, for the health report."""
        store = self.store
        infos = self._infos()
        used = sum(i.size for i in infos)
        oldest = next((i.oldest_utc for i in infos if i.oldest_utc is not None), None)
        days = None if oldest is None else round(max(0.0, utc - oldest) / 86400, 2)
        return {"ok": self.ok, "error": self.error or None, "pending": len(self._pending),
                "lost": self.lost, "segment": None if store is None else store.segment,
                "seq": None if store is None or store.last is None else store.last.seq,
                "bytes": used, "budget_bytes": self.budget_bytes, "segments": len(infos),
                "days_kept": days, "keep_days": self.keep_days,
                "over_budget": used > self.budget_bytes}  # fmt: skip

    # -- inside ----------------------------------------------------------------------------------
    def _append(self, kind: str, body: dict[str, Any], utc: float, mono: float,
                transit_id: str | None = None) -> None:  # fmt: skip
        if self._pending or self.store is None:
            self._wait(kind, body, utc, mono, transit_id)
            return
        try:
            rec = self.store.append(kind, body, utc=utc, mono=mono)
        except (OSError, ValueError) as exc:
            self._failed(f"append failed: {exc}")
            self._wait(kind, body, utc, mono, transit_id)
            return
        self._sent(rec, transit_id)

    def _wait(self, kind: str, body: dict[str, Any], utc: float, mono: float,
              transit_id: str | None) -> None:  # fmt: skip
        if len(self._pending) >= PENDING_LIMIT:
            self._pending.popleft()
            self.lost += 1
        self._pending.append((kind, body, utc, mono, transit_id))

    def _flush(self, utc: float, mono: float) -> None:
        if self.store is None:
            self._open(utc, mono)
        store = self.store
        while store is not None and self._pending:
            kind, body, at_utc, at_mono, transit_id = self._pending[0]
            try:
                rec = store.append(kind, body, utc=at_utc, mono=at_mono)
            except (OSError, ValueError) as exc:
                self._failed(f"append failed: {exc}")
                return
            self._pending.popleft()
            self._sent(rec, transit_id)
        if store is not None and not self._pending and self.error:
            log.warning("transaction log writable again (%s)", self.error)
            self.error = ""

    def _sent(self, rec: Record | None, transit_id: str | None) -> None:
        """Hand written records on: a new segment's header first, then ``rec``."""
        store = self.store
        assert store is not None
        for header in store.take_headers():
            self._hand_on(int(header.body.get("segment", 0)), header, None)
        if rec is not None:
            self._hand_on(store.segment, rec, transit_id)

    def _hand_on(self, segment: int, rec: Record, transit_id: str | None) -> None:
        try:
            stored = self._publish({"segment": segment, "record": rec.to_doc()}, transit_id)
        except Exception as exc:  # containment: the record is on disk; the next start resends
            log.error("transaction record %s/%s not queued for the backend: %s", segment,
                      rec.seq, exc)  # fmt: skip
            return
        if stored is not False:
            marker = {"segment": segment, "seq": rec.seq, "hash": rec.hash}
            with contextlib.suppress(OSError):  # an older marker only resends a record again
                _write_atomic(self.state_dir / ENQUEUED_NAME, json.dumps(marker).encode())

    def _resend(self) -> None:
        """At start: the active segment's header (the receiver pins the key from it; a repeat
        is harmless), and every record after the last one the outbox took (a stop between
        writing a record and queueing its event left it unsent)."""
        store = self.store
        if store is None or store.header is None:
            return
        store.take_headers()  # the new segment's header, if one was started, is among these
        for segment, rec in self._unsent(store):
            transit_id = rec.body.get("transit_id") if rec.kind == "transit" else None
            self._hand_on(segment, rec, transit_id if isinstance(transit_id, str) else None)

    def _unsent(self, store: RecordStore) -> list[tuple[int, Record]]:
        assert store.header is not None
        header = (store.segment, store.header)
        marker = _read_marker(self.state_dir / ENQUEUED_NAME)
        if marker is None:
            return [header]
        segment, seq, _hash = marker
        found, after = False, []
        paths = [(n, p) for n, p in closed_segments(self.state_dir) if n >= segment]
        for number, path in [*paths, (store.segment, store.path)]:
            for rec in _records(path):
                if found:
                    after.append((number, rec))
                found = found or (number, rec.seq, rec.hash) == marker
        if not found:
            log.warning("transaction log: the last record queued (segment %s seq %s) is not in "
                        "the log; none resent", segment, seq)  # fmt: skip
            return [header]
        if not any(number == store.segment and rec.seq == 0 for number, rec in after):
            after.insert(0, header)
        return after

    def _open(self, utc: float, mono: float) -> None:
        try:
            key = load_or_create_key(self.state_dir)
            try:
                self.store = self._store(key, utc, mono)
            except ValueError as exc:  # damaged inside, not a torn tail: keep it, start anew
                moved = _move_aside(self.state_dir / LOG_NAME, utc)
                self.quarantined.append((moved, str(exc)))
                log.error("transaction log damaged (%s): kept as %s", exc, moved.name)
                self.store = self._store(key, utc, mono, damaged=moved.name)
        except (OSError, ValueError) as exc:
            self._failed(f"cannot open: {exc}")

    def _store(self, key: Any, utc: float, mono: float, damaged: str | None = None) -> RecordStore:
        return RecordStore(self.state_dir, key, utc=utc, mono=mono,
                           header={"after_damaged": damaged} if damaged else None,
                           anchor=self._anchor, segment_bytes=self.segment_bytes)  # fmt: skip

    def _anchor(self) -> dict[str, Any]:
        """What the log had recorded before a new segment: so a segment stands on its own."""
        return {"config": self._config, "config_changes": self._config_changes,
                "software": self._software, "firmware": self._firmware}  # fmt: skip

    def _recover_state(self) -> None:
        """The last recorded config and software: from the active segment's header anchor and
        the newest records after it."""
        store = self.store
        if store is None or store.header is None:
            return
        anchor = store.header.body.get("anchor") or {}
        self._config = anchor.get("config")
        self._config_changes = int(anchor.get("config_changes") or 0)
        self._software = anchor.get("software")
        self._firmware = dict(anchor.get("firmware") or {})
        flashed = store.latest.get("firmware_update")
        if flashed is not None and isinstance(flashed.body.get("new"), dict):
            self._firmware[str(flashed.body.get("device"))] = dict(flashed.body["new"])
        change = store.latest.get("config_change")
        if change is not None:
            self._config = dict(change.body.get("new") or {})
            self._config_changes = int(change.body.get("counter") or self._config_changes)
        carried = [(r.seq, r.body.get("new" if r.kind == "software_update" else "software"))
                   for kind, r in store.latest.items()
                   if kind in ("software_update", "power_cycle", "transit")]  # fmt: skip
        found = [(seq, doc) for seq, doc in carried if isinstance(doc, dict)]
        if found:
            self._software = dict(max(found, key=lambda item: item[0])[1])

    def _failed(self, reason: str) -> None:
        first = not self.error
        self.error = reason
        self._close()
        if first:
            log.error("transaction log: %s; records wait in memory", reason)
            try:
                self._on_fault(reason)
            except Exception as exc:  # containment
                log.error("transaction log fault not reported: %s", exc)

    def _close(self) -> None:
        if self.store is not None:
            with contextlib.suppress(OSError):
                self.store.close()
            self.store = None

    def _take_shutdown_marker(self) -> dict[str, Any] | None:
        path = self.state_dir / SHUTDOWN_NAME
        try:
            marker = json.loads(path.read_bytes())
        except (OSError, ValueError):
            marker = None
        with contextlib.suppress(OSError):
            path.unlink()
        return marker if isinstance(marker, dict) else None

    def _infos(self) -> list[SegmentInfo]:
        """Closed segments (each read once) and the active one."""
        closed = closed_segments(self.state_dir)
        for _n, path in closed:
            if path not in self._closed:
                with contextlib.suppress(OSError):
                    self._closed[path] = segment_info(path)
        infos = [self._closed[p] for _n, p in closed if p in self._closed]
        store = self.store
        if store is not None:
            first = store.header.utc if store.header is not None else None
            last = store.last.utc if store.last is not None else None
            infos.append(SegmentInfo(store.path, store.size, first, last))
        return infos


def _previous_shutdown(marker: Mapping[str, Any] | None, last: Record | None,
                       existed: bool) -> str:  # fmt: skip
    """clean: the stop noted the record the log still ends with; unknown: a new log."""
    if not existed:
        return "unknown"
    if marker is not None and last is not None and marker.get("hash") == last.hash:
        return "clean"
    return "unclean"


def pass_facts(claims: gp1.PassClaims | None) -> dict[str, Any] | None:
    """What a transit record keeps of its pass: the pass is named by its revocation hash (never
    by its cti, which would let a reader forge a use of it)."""
    if claims is None:
        return None
    return {"release_no": claims.release_no, "pass_hash": gp1.revocation_hash(claims.cti).hex(),
            "enterprise": claims.enterprise, "plates": list(claims.plates),
            "containers": list(claims.containers), "declared_gross_kg": claims.declared_gross_kg,
            "tolerance_kg": claims.tolerance_kg, "issuer": claims.iss, "exp": claims.exp}


def config_doc(config: Any) -> dict[str, Any]:
    """The agent's effective configuration, flat: ``{"section.key": value}`` (JSON values)."""
    flat: dict[str, Any] = {}
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        for item in dataclasses.fields(value):
            flat[f"{section.name}.{item.name}"] = _json_value(getattr(value, item.name))
    return flat


def _json_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _move_aside(path: Path, utc: float) -> Path:
    target = path.with_name(f"{path.name}.damaged-{int(utc)}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged-{int(utc)}.{n}")
        n += 1
    os.replace(path, target)
    return target


def _read_marker(path: Path) -> tuple[int, int, str] | None:
    try:
        doc = json.loads(path.read_bytes())
        return int(doc["segment"]), int(doc["seq"]), str(doc["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _records(path: Path) -> list[Record]:
    try:
        return segment_records(path)
    except OSError:
        return []


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
