"""The identity condition: the truck on the deck is the one its pass names. Pure functions.

Each kind of identity evidence is one ``IdentityCheck``: what the pass expects (its plates),
how a read is matched against it (``match_plate``), and the code of a truck whose evidence
never came (``vehicle.plate_unread``). A lane checks the kinds its ``IdentityPolicy`` names:
``plate``, ``container`` (``match_containers``) and ``seal`` (``match_seals``, e-seal sightings
as ``ID#status`` texts). The machine hands every check the reads of the transit
(``IdentitySeen`` of that kind) and follows ``judge_identity``.

A pass that names no plate or seal has nothing of that kind to confirm. A pass that names no
container is an empty truck's: a container read during the transit is a container nobody
declared, ``vehicle.container_mismatch``; without one the check is confirmed at once (waiting
cannot prove a truck empty).

A check is *confirmed* as soon as a read matches. Until then it is *waiting*, but never longer
than ``wait_s`` after the moment the truck could otherwise be decided; then it is *final*:
reads that match none of the expected values are a mismatch (always a hold), no usable read
is unread (a hold, or under the site's ``flag`` policy a decision that carries the code in its
``flags``). A check whose source is down is final at once: waiting would not bring a read.
So is a check whose code no later read can undo (its ``settled`` codes: a container nobody
declared, a tampered seal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edge_agent.identity.containers import (
    CONTAINER_MISMATCH,
    CONTAINER_UNREAD,
    ContainerVerdict,
    match_containers,
)
from edge_agent.identity.plate_match import PLATE_UNREAD, PlateVerdict, match_plate
from edge_agent.identity.seals import SEAL_TAMPERED, SEAL_UNREAD, SealVerdict, match_seals
from edge_agent.lane.inputs import IdentitySeen
from edge_agent.protocols.gp1 import PassClaims

UnreadPolicy = Literal["hold", "flag"]
UNREAD_POLICIES: tuple[UnreadPolicy, ...] = ("hold", "flag")
DEFAULT_WAIT_S = 3.0


class MatchVerdict(Protocol):
    """What a check's matcher returns (``PlateVerdict`` and its kin): the code, None = match."""

    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class IdentityCheck:
    """One kind of identity evidence and how it is judged against the pass."""

    kind: str  # the ``IdentitySeen.kind`` it reads
    expected: Callable[[PassClaims], Sequence[str]]
    match: Callable[[Sequence[str], Sequence[str]], MatchVerdict]
    unread_code: str
    evidence: Callable[[Any], dict[str, Any]]  # the verdict's own words for the event
    judged_when_none_expected: bool = False  # a pass naming none still has reads to refuse
    settled: frozenset[str] = frozenset()  # codes no later read can undo: final at once


def _plate_evidence(verdict: PlateVerdict) -> dict[str, Any]:
    return {"matched": verdict.matched, "read": verdict.read,
            "province_missing": verdict.province_missing}


def _container_evidence(verdict: ContainerVerdict) -> dict[str, Any]:
    return verdict.as_data()


def _seal_evidence(verdict: SealVerdict) -> dict[str, Any]:
    return verdict.as_data()


PLATE = IdentityCheck("plate", lambda claims: claims.plates, match_plate, PLATE_UNREAD,
                      _plate_evidence)
# A container nobody declared stays undeclared, a tamper stays latched: no wait for those.
CONTAINER = IdentityCheck("container", lambda claims: claims.containers, match_containers,
                          CONTAINER_UNREAD, _container_evidence, judged_when_none_expected=True,
                          settled=frozenset({CONTAINER_MISMATCH}))
# Seals not on the pass never fail a truck (the reader hears the next lane): none expected,
# nothing to judge.
SEAL = IdentityCheck("seal", lambda claims: claims.seals, match_seals, SEAL_UNREAD,
                     _seal_evidence, settled=frozenset({SEAL_TAMPERED}))
CHECKS: Mapping[str, IdentityCheck] = {PLATE.kind: PLATE, CONTAINER.kind: CONTAINER,
                                       SEAL.kind: SEAL}


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """Which identity checks this lane makes, how long a decision waits, what unread means."""

    checks: tuple[str, ...] = ()  # kinds in CHECKS; () = the lane checks no identity
    wait_s: float = DEFAULT_WAIT_S
    unread: Mapping[str, UnreadPolicy] = field(default_factory=dict)  # kind -> policy; hold

    def __post_init__(self) -> None:
        unknown = [kind for kind in (*self.checks, *self.unread) if kind not in CHECKS]
        if unknown:
            raise ValueError(f"unknown identity check {unknown[0]!r}; known: {', '.join(CHECKS)}")
        if not self.wait_s > 0:
            raise ValueError(f"identity wait must be more than 0 s, got {self.wait_s!r}")

    def unread_policy(self, kind: str) -> UnreadPolicy:
        return self.unread.get(kind, "hold")


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's state for a transit: ``code`` None is confirmed; ``waiting`` is not final."""

    kind: str
    code: str | None
    waiting: bool
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IdentityOutcome:
    findings: tuple[Finding, ...] = ()

    @property
    def waiting(self) -> bool:
        return any(f.waiting for f in self.findings)

    def holds(self, policy: IdentityPolicy) -> list[str]:
        return [f.code for f in self.final() if f.code is not None
                and not self._flagged(f, policy)]

    def flags(self, policy: IdentityPolicy) -> list[str]:
        return [f.code for f in self.final() if f.code is not None and self._flagged(f, policy)]

    def final(self) -> list[Finding]:
        return [f for f in self.findings if not f.waiting]

    @staticmethod
    def _flagged(finding: Finding, policy: IdentityPolicy) -> bool:
        check = CHECKS[finding.kind]
        return finding.code == check.unread_code and policy.unread_policy(finding.kind) == "flag"

    def as_data(self) -> list[dict[str, Any]]:
        """For the decision event: each check with its code and evidence."""
        return [{"check": f.kind, "code": f.code, **f.data} for f in self.findings]

    def detail(self) -> str:
        return "; ".join(f.data["detail"] for f in self.final() if f.code is not None)


def judge_identity(
    claims: PassClaims,
    seen: Sequence[IdentitySeen],
    policy: IdentityPolicy,
    *,
    expired: bool,
    down: Mapping[str, str] | None = None,
) -> IdentityOutcome:
    """Every check of ``policy`` on the reads ``seen`` during the transit. ``expired``: the
    wait is over; ``down``: kinds whose source is down, with why (final at once)."""
    down = down or {}
    findings = []
    for kind in policy.checks:
        check = CHECKS[kind]
        expected = list(check.expected(claims))
        if not expected and not check.judged_when_none_expected:
            continue  # the pass names none: nothing to confirm
        mine = [s for s in seen if s.kind == kind]
        reads = [text for s in mine for text in s.reads]
        verdict = check.match(reads, expected)
        code = verdict.reason
        # Nothing expected is judged on the reads so far: no read is owed, so no wait.
        final = (code is None or code in check.settled or expired or kind in down
                 or not expected)
        crops = [s.crop_ref for s in mine if s.crop_ref]
        data: dict[str, Any] = {"expected": expected, "reads": list(dict.fromkeys(reads)),
                                "crop": crops[-1] if crops else None,
                                **check.evidence(verdict)}
        if code is not None and final:
            why = f"; source down: {down[kind]}" if kind in down else ""
            shown = ", ".join(data["reads"]) or "nothing"
            named = ", ".join(expected) or "none"
            data["detail"] = f"{kind} read {shown}, pass names {named} ({code}){why}"
        findings.append(Finding(kind, code, not final, data))
    return IdentityOutcome(tuple(findings))
