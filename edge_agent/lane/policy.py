"""The lane's decision policy: given what is known about a truck, open or hold, and why.

Pure and small on purpose: it is the rule a customs officer must be able to read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.lane.events import PassInfo
from edge_agent.weighing.declared import check_declared


@dataclass(frozen=True, slots=True)
class Decision:
    open: bool
    reasons: tuple[str, ...]

    @property
    def verdict(self) -> str:
        return "open" if self.open else "hold"


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    e_kg: float = 20.0
    default_tolerance_kg: float | None = None


def decide(
    pass_info: PassInfo,
    weight_kg: float,
    uncertainty_kg: float,
    abnormal_codes: Iterable[str],
    config: PolicyConfig,
) -> tuple[Decision, str | None]:
    """Decide for one truck. Returns the decision and, on a declared-weight mismatch, its detail."""
    reasons = list(dict.fromkeys(abnormal_codes))
    mismatch: str | None = None
    if not pass_info.valid:
        reasons.insert(0, pass_info.reason or "pass.bad_format")
    elif pass_info.declared_gross_kg is not None:
        tolerance = (
            float(pass_info.tolerance_kg)
            if pass_info.tolerance_kg is not None
            else config.default_tolerance_kg
        )
        mismatch = check_declared(
            weight_kg, uncertainty_kg, float(pass_info.declared_gross_kg), tolerance, config.e_kg
        )
        if mismatch is not None:
            reasons.append("weight.declared_mismatch")
    return Decision(open=not reasons, reasons=tuple(reasons)), mismatch
