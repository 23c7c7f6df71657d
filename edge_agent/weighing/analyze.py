"""Replay a recorded weight trace through the watcher (``lanectl weigh analyze``, the bench).

Trace CSV: ``t_s,kg[,front_clear,rear_clear]``, optional header line, beams 1 = clear. A row
whose kg cell is empty stands for a frame that failed its checks. The trace is one truck on
the deck until it ends: the weight is committed at ``decided_at_s`` and any abnormality found
later still turns the decision to hold.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.errors import EdgeAgentError
from edge_agent.weighing import events as ev
from edge_agent.weighing.declared import check_declared
from edge_agent.weighing.events import ScaleConfig, WeighEvent, WeightAbnormality, WeightCommitted
from edge_agent.weighing.watcher import SettlerFactory, WeightWatcher


class TraceError(EdgeAgentError, ValueError):
    """A trace file line cannot be read; the message names the line."""


@dataclass(frozen=True, slots=True)
class TraceRow:
    t: float
    kg: float | None
    front_clear: bool | None = None
    rear_clear: bool | None = None


def _flag(text: str, line: int, name: str) -> bool:
    value = text.strip()
    if value not in ("0", "1"):
        raise TraceError(f"line {line}: {name} must be 0 or 1, not {value!r}")
    return value == "1"


def read_trace(lines: Iterable[str]) -> list[TraceRow]:
    """Parse trace CSV lines (header optional, times must not go backwards)."""
    rows: list[TraceRow] = []
    for number, fields in enumerate(csv.reader(lines), start=1):
        if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
            continue
        if number == 1 and fields[0].strip().lower() in ("t_s", "t", "time"):
            continue
        if len(fields) not in (2, 4):
            raise TraceError(f"line {number}: expected t_s,kg[,front_clear,rear_clear]")
        try:
            t = float(fields[0])
            kg = float(fields[1]) if fields[1].strip() else None
        except ValueError as exc:
            raise TraceError(f"line {number}: {exc}") from exc
        if not math.isfinite(t) or (kg is not None and not math.isfinite(kg)):
            raise TraceError(f"line {number}: time and weight must be finite numbers")
        if rows and t < rows[-1].t:
            raise TraceError(f"line {number}: time {t} goes backwards")
        if len(fields) == 4:
            front = _flag(fields[2], number, "front_clear")
            rear = _flag(fields[3], number, "rear_clear")
            rows.append(TraceRow(t, kg, front, rear))
        else:
            rows.append(TraceRow(t, kg))
    return rows


@dataclass(frozen=True, slots=True)
class Analysis:
    events: tuple[tuple[float, WeighEvent], ...]
    committed: WeightCommitted | None
    abnormalities: tuple[WeightAbnormality, ...]

    @property
    def decision(self) -> str:
        return "ok" if self.committed is not None and not self.abnormalities else "hold"

    def as_json(self) -> dict[str, Any]:
        """The ``lanectl weigh analyze`` output object."""
        committed = self.committed
        return {
            "decision": self.decision,
            "weight_kg": committed.kg if committed else None,
            "uncertainty_kg": committed.uncertainty_kg if committed else None,
            "decided_at_s": committed.at if committed else None,
            "abnormalities": [
                {"code": a.code, "at_s": round(a.at, 3), "detail": a.detail}
                for a in self.abnormalities
            ],
        }


def analyze(
    rows: Sequence[TraceRow],
    scale: ScaleConfig,
    *,
    declared_kg: float | None = None,
    tolerance_kg: float | None = None,
    settler: SettlerFactory | None = None,
    frame_errors: Sequence[float] = (),
) -> Analysis:
    """Run ``rows`` (and frame errors at the given times) through a fresh watcher."""
    watcher = WeightWatcher(scale, settler=settler)
    log: list[tuple[float, WeighEvent]] = []
    errors = sorted(frame_errors)
    error_index = 0
    beams: tuple[bool, bool] | None = None

    def run_timers(until: float) -> None:
        deadline = watcher.next_deadline()
        while deadline is not None and deadline <= until:
            log.extend((deadline, e) for e in watcher.tick(deadline))
            following = watcher.next_deadline()
            if following == deadline:
                break
            deadline = following

    for row in rows:
        while error_index < len(errors) and errors[error_index] <= row.t:
            run_timers(errors[error_index])
            at = errors[error_index]
            log.extend((at, e) for e in watcher.add_frame_error(at, "corrupt frame"))
            error_index += 1
        run_timers(row.t)
        row_beams = (row.front_clear, row.rear_clear)
        if row.front_clear is not None and row.rear_clear is not None and beams != row_beams:
            beams = (row.front_clear, row.rear_clear)
            log.extend((row.t, e) for e in watcher.set_deck_beams(row.t, *beams))
        if row.kg is None:
            log.extend((row.t, e) for e in watcher.add_frame_error(row.t, "no value in trace"))
        else:
            log.extend((row.t, e) for e in watcher.add_reading(row.t, row.kg))
    if rows:
        run_timers(rows[-1].t)
    committed = next((e for _, e in log if isinstance(e, WeightCommitted)), None)
    abnormalities = [e for _, e in log if isinstance(e, WeightAbnormality)]
    if committed is not None and declared_kg is not None:
        detail = check_declared(
            committed.kg, committed.uncertainty_kg, declared_kg, tolerance_kg, scale.e_kg
        )
        if detail is not None:
            abnormalities.append(
                WeightAbnormality(committed.at, ev.DECLARED_MISMATCH, detail, committed.evidence)
            )
    abnormalities.sort(key=lambda a: a.at)
    return Analysis(tuple(log), committed, tuple(abnormalities))
