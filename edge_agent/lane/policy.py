"""The lane's decision policy: a verified pass and a clean weighing; open, or hold and why.

Pure and small on purpose: it is the rule a customs officer must be able to read. The machine
calls it once both are known and nothing else holds the truck: a refused pass and a weighing
abnormality hold it before (rule L4), the lane's own conditions after.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.catalogue import Code
from edge_agent.protocols.gp1 import PassClaims
from edge_agent.weighing.declared import check_declared


@dataclass(frozen=True, slots=True)
class Decision:
    open: bool
    reasons: tuple[str, ...] = ()
    detail: str = ""  # why, in words, for a hold


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    e_kg: float = 20.0
    default_tolerance_kg: float | None = None


def decide(
    claims: PassClaims, weight_kg: float, uncertainty_kg: float, config: PolicyConfig
) -> Decision:
    """Open when the weight matches the gross weight the pass declares, within its tolerance
    (the pass's own, else the lane's default); hold with ``weight.declared_mismatch`` if not."""
    tolerance = (
        float(claims.tolerance_kg)
        if claims.tolerance_kg is not None
        else config.default_tolerance_kg
    )
    mismatch = check_declared(
        weight_kg, uncertainty_kg, float(claims.declared_gross_kg), tolerance, config.e_kg
    )
    if mismatch is not None:
        return Decision(open=False, reasons=(Code.WEIGHT_DECLARED_MISMATCH,), detail=mismatch)
    return Decision(open=True)
