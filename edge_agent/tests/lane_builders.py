"""Short builders of lane-machine inputs for the lane tests: the real types, few arguments."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.lane.inputs import PassPresented
from edge_agent.protocols import gp1
from edge_agent.protocols.iolink import INPUT_NAMES, OUTPUT_NAMES, Barrier
from edge_agent.protocols.iolink_session import BoardSnapshot, LinkLost, LinkUp
from edge_agent.weighing.events import DeckCleared, TruckOnDeck, WeightAbnormality, WeightCommitted

_LEDGER_REFUSALS = ("pass.already_used", "lane.storage_fault")


@dataclass(frozen=True, slots=True)
class PassSpec:
    """What a pass says and how it was judged; ``shown`` turns it into a PassPresented."""

    valid: bool
    reason: str | None
    release_no: str = ""
    enterprise: str = ""
    plates: tuple[str, ...] = ()
    declared_gross_kg: int | None = None
    tolerance_kg: int | None = None
    cti_hex: str = ""
    exp: int = 0


def shown(at: float, spec: PassSpec, snapshot_ref: str | None = None) -> PassPresented:
    """The pass ``spec`` presented at ``at``: claims when it names a release, the verifier's
    verdict, and a ledger refusal for pass.already_used / lane.storage_fault."""
    claims = None
    if spec.valid or spec.release_no:
        claims = gp1.PassClaims(
            release_no=spec.release_no, enterprise=spec.enterprise, plates=spec.plates,
            containers=(), declared_gross_kg=spec.declared_gross_kg or 0,
            tolerance_kg=spec.tolerance_kg, site="BZ01", gates=(), direction="exit",
            iss="issuer", iat=0, nbf=0, exp=spec.exp,
            cti=bytes.fromhex(spec.cti_hex or "00" * 16),
        )
    if spec.reason in _LEDGER_REFUSALS:
        return PassPresented(at, gp1.Verdict(True, None, claims), spec.reason, snapshot_ref)
    return PassPresented(at, gp1.Verdict(spec.valid, spec.reason, claims), None, snapshot_ref)


def truck_on(at: float) -> TruckOnDeck:
    return TruckOnDeck(at)


def weight(at: float, kg: float, uncertainty_kg: float,
           evidence: tuple[tuple[float, float], ...] = ()) -> WeightCommitted:
    return WeightCommitted(at, kg, uncertainty_kg, at, evidence)


def abnormal(at: float, code: str, detail: str,
             evidence: tuple[tuple[float, float], ...] = ()) -> WeightAbnormality:
    return WeightAbnormality(at, code, detail, evidence)


def cleared(at: float, zero_kg: float) -> DeckCleared:
    return DeckCleared(at, zero_kg)


def board(at: float, barrier: str, *, loop_b: bool = False, tech_key: bool = False,
          faults: frozenset[str] = frozenset()) -> BoardSnapshot:
    inputs = dict.fromkeys(INPUT_NAMES, False) | {"loop_b": loop_b, "tech_key": tech_key,
                                                   "deck_front": True, "deck_rear": True}
    return BoardSnapshot(at, inputs, dict.fromkeys(OUTPUT_NAMES, False), Barrier(barrier),
                         frozenset(faults), 0, 0)


def link(at: float, up: bool, reason: str = "") -> LinkUp | LinkLost:
    return LinkUp(at) if up else LinkLost(at, reason)


def deck_and_link(at: float) -> list[DeckCleared | BoardSnapshot | LinkUp | LinkLost]:
    """The lane's own inputs beside a truck's, for random timelines: the deck cleared, the
    barrier closed and open with a truck on loop B, the IO link lost and back."""
    return [cleared(at, 0.0), board(at, "closed"), board(at, "open", loop_b=True),
            link(at, False), link(at, True)]
