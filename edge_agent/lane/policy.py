"""The lane's decision policy: a verified pass and a clean weighing; open, or hold and why.

Pure and small on purpose: it is the rule a customs officer must be able to read. The machine
calls it once both are known and nothing else holds the truck: a refused pass and a weighing
abnormality hold it before (rule L4), the lane's own conditions after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.catalogue import Code
from edge_agent.lane.identity import IdentityPolicy
from edge_agent.protocols.gp1 import PassClaims
from edge_agent.weighing.declared import Tare, TolerancePolicy, judge_declared, judge_tare


@dataclass(frozen=True, slots=True)
class Decision:
    open: bool
    reasons: tuple[str, ...] = ()
    detail: str = ""  # why, in words, for a hold
    weight_rules: tuple[dict[str, Any], ...] = ()  # each weight rule judged, with its numbers


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    e_kg: float = 20.0
    default_tolerance_kg: float | None = None
    tolerance: TolerancePolicy | None = None  # None: default_tolerance_kg flat, else both
    tares: Mapping[str, Tare] = field(default_factory=dict)  # plate -> tare and band
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)  # the truck is the pass's

    @property
    def tolerance_policy(self) -> TolerancePolicy:
        if self.tolerance is not None:
            return self.tolerance
        return TolerancePolicy(absolute_kg=self.default_tolerance_kg)


def decide(
    claims: PassClaims, weight_kg: float, uncertainty_kg: float, config: PolicyConfig
) -> Decision:
    """Open when the weight matches the gross weight the pass declares, within its tolerance
    (the pass's own, else the site's rule), and is not below a known tare of the pass's
    plates; hold with ``weight.declared_mismatch`` if not. The rules judged, with their
    numbers, go with the decision."""
    pass_tolerance = None if claims.tolerance_kg is None else float(claims.tolerance_kg)
    verdicts = [judge_declared(weight_kg, uncertainty_kg, float(claims.declared_gross_kg),
                               config.e_kg, config.tolerance_policy, pass_tolerance)]
    tare = judge_tare(weight_kg, uncertainty_kg, claims.plates, config.tares)
    if tare is not None:
        verdicts.append(tare)
    rules = tuple(v.as_data() for v in verdicts)
    failed = [v.detail for v in verdicts if v.detail is not None]
    if failed:
        return Decision(open=False, reasons=(Code.WEIGHT_DECLARED_MISMATCH,),
                        detail="; ".join(failed), weight_rules=rules)
    return Decision(open=True, weight_rules=rules)
