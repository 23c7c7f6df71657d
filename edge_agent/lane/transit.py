"""One truck's passage through the lane, and the data of the events published about it.

Pure helpers of the lane machine: the machine decides what to publish and when; these build
what each event says. The shapes are contracts (design section 7): the backend, the
simulators and the HIL tests read them, so a field is added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.lane.inputs import PassPresented
from edge_agent.protocols import gp1
from edge_agent.weighing.events import Evidence


@dataclass
class Transit:
    """One truck's passage through the lane: what is known of it and how far it got."""

    transit_id: str
    started_at: float
    pass_presented: PassPresented | None = None  # the pass the truck is decided on
    weight_kg: float | None = None
    uncertainty_kg: float | None = None
    weight_evidence: Evidence = ()
    abnormal: list[str] = field(default_factory=list)
    hold_reasons: tuple[str, ...] = ()
    challenge: str | None = None
    passed: bool = False
    deck_clear: bool = False
    opened_by: str | None = None
    loaded: bool = False  # a load was seen on the deck during this transit
    pass_at: float | None = None  # when the last pass was read
    pass_marked: bool = False  # the pass's use is in the ledger (L3: once per transit)

    @property
    def claims(self) -> gp1.PassClaims | None:
        return None if self.pass_presented is None else self.pass_presented.claims

    def release_no(self) -> str | None:
        """The pass's release number; "" for a pass that did not verify, None with no pass."""
        if self.pass_presented is None:
            return None
        claims = self.pass_presented.claims
        return claims.release_no if claims is not None else ""

    def to_status(self) -> dict[str, Any]:
        """The transit as the status page shows it."""
        presented = self.pass_presented
        return {
            "id": self.transit_id,
            "pass": self.release_no(),
            "pass_valid": None if presented is None else presented.valid,
            "weight_kg": self.weight_kg,
            "hold_reasons": list(self.hold_reasons),
        }


def trace(evidence: Evidence) -> list[list[float]]:
    """Weight evidence as published: ``[[t_s, kg], ...]``, times to the millisecond."""
    return [[round(t, 3), kg] for t, kg in evidence]


def abnormality_data(code: str, detail: str, evidence: Evidence = ()) -> dict[str, Any]:
    data: dict[str, Any] = {"code": code, "detail": detail}
    if evidence:
        data["trace"] = trace(evidence)
    return data


def pass_read_data(event: PassPresented) -> dict[str, Any]:
    data: dict[str, Any] = {"valid": event.valid, "reason": event.reason}
    claims = event.claims
    if claims is not None and claims.release_no:
        data.update(
            release_no=claims.release_no,
            enterprise=claims.enterprise,
            plates=list(claims.plates),
            declared_gross_kg=claims.declared_gross_kg,
            tolerance_kg=claims.tolerance_kg,
        )
    if event.snapshot_ref:
        data["snapshot"] = event.snapshot_ref
    return data


def decision_data(
    transit: Transit, decision: str, reasons: list[str], input_at: float
) -> dict[str, Any]:
    """``input_at`` is when the input that led to the decision happened (decision latency)."""
    claims = transit.claims
    return {
        "decision": decision,
        "reasons": reasons,
        "weight_kg": transit.weight_kg,
        "uncertainty_kg": transit.uncertainty_kg,
        "release_no": transit.release_no(),
        "declared_gross_kg": claims.declared_gross_kg if claims is not None else None,
        "input_at_mono": round(input_at, 6),
    }


def hold_data(
    transit: Transit, reasons: list[str], detail: str, snapshot_ref: str, input_at: float
) -> dict[str, Any]:
    """A hold: its reasons, the challenge a remote release must echo, the snapshot taken, and
    the weight trace when a weighing code is among the reasons."""
    data = decision_data(transit, "hold", reasons, input_at)
    data.update(detail=detail, challenge=transit.challenge, snapshot=snapshot_ref)
    if transit.weight_evidence and any(r.startswith("weight.") for r in reasons):
        data["trace"] = trace(transit.weight_evidence)
    return data


def pass_used_data(claims: gp1.PassClaims) -> dict[str, Any]:
    """Names the pass's use to the backend by its revocation hash, never by its cti."""
    return {"pass_hash": gp1.revocation_hash(claims.cti).hex(), "release_no": claims.release_no}
