"""A stand-in for the shell's side of the lane machine, for tests of the layers above it.

The real shell (``edge_agent.app``) records a pass's use in the SQLite ledger when the machine
asks (MarkPassUsed) and answers with PassUseRecorded. ``step`` does the same with an
in-memory answer, so a test sees the barrier open in the same call, as on a lane.
"""

from __future__ import annotations

from edge_agent.lane.actions import LaneAction, MarkPassUsed
from edge_agent.lane.inputs import LaneInput, PassUseRecorded
from edge_agent.lane.machine import LaneMachine


def answer_ledger(
    machine: LaneMachine,
    commands: list[LaneAction],
    now: float,
    *,
    ok: bool = True,
    code: str | None = None,
) -> list[LaneAction]:
    """``commands`` followed by what the machine does once each MarkPassUsed is answered."""
    out = list(commands)
    for command in commands:
        if isinstance(command, MarkPassUsed):
            answer = PassUseRecorded(now, ok, None if ok else code or "lane.storage_fault")
            out += answer_ledger(machine, machine.handle(answer, now), now, ok=ok, code=code)
    return out


def step(
    machine: LaneMachine, event: LaneInput, now: float, *, ledger_ok: bool = True
) -> list[LaneAction]:
    """Handle ``event`` and answer the ledger like a working (or a failing) one."""
    return answer_ledger(machine, machine.handle(event, now), now, ok=ledger_ok)
