"""One truck's passage through the lane, and the data of the events published about it.

Pure helpers of the lane machine: the machine decides what to publish and when; these build
what each event says. The shapes are contracts (design section 7): the backend, the
simulators and the HIL tests read them, so a field is added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.lane.inputs import IdentitySeen, PassPresented
from edge_agent.protocols import gp1
from edge_agent.weighing.events import Evidence, Indication, WeightCommitted
from edge_agent.weighing.indication import frames_data


@dataclass
class Transit:
    """One truck's passage through the lane: what is known of it and how far it got."""

    transit_id: str
    started_at: float
    pass_presented: PassPresented | None = None  # the pass the truck is decided on
    weight_kg: float | None = None  # on record: the indicator's value, else the estimate
    uncertainty_kg: float | None = None
    estimate_kg: float | None = None  # the watcher's estimate: the decision aid
    indication: Indication | None = None
    weight_rules: tuple[dict[str, Any], ...] = ()  # the declared/tare rules judged, with numbers
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
    identity_seen: list[IdentitySeen] = field(default_factory=list)  # reads during the transit
    identity_since: float | None = None  # when all but identity was ready: the wait starts
    identity_deadline: float | None = None  # set while the decision waits for identity reads
    identity: tuple[dict[str, Any], ...] = ()  # each identity check judged, with its evidence
    remote_verdict: str | None = None  # refuse / reweigh: how the transit ends when it backs off
    flags: tuple[str, ...] = ()  # codes a decision went on with (an unread plate under flag)

    def take_weight(self, event: WeightCommitted) -> dict[str, Any]:
        """Keep a committed weight; returns the ``weight_committed`` event's data."""
        self.loaded = True
        self.indication = event.indication
        self.estimate_kg = event.kg
        self.weight_kg = event.kg if event.indication is None else event.indication.kg
        self.uncertainty_kg = event.uncertainty_kg
        self.weight_evidence = event.evidence
        return {"kg": event.kg, "uncertainty_kg": event.uncertainty_kg,
                **indication_data(self)}

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


def indication_data(transit: Transit) -> dict[str, Any]:
    """The indicator's own value at standstill beside the estimate (None until shown)."""
    shown = transit.indication
    return {
        "estimate_kg": transit.estimate_kg,
        "indicator_kg": None if shown is None else shown.kg,
        "indicator_stable": None if shown is None else shown.stable,
        "indicator_frames": [] if shown is None else frames_data(shown),
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
        **indication_data(transit),
        "weight_rules": list(transit.weight_rules),
        "identity": list(transit.identity),
        "flags": list(transit.flags),
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
