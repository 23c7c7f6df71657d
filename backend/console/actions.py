"""An officer's action on a held truck: checked, audited, signed here, sent to the lane.

The console host holds the command-tier key; the officer's browser only ever sends "release
this truck, the one whose hold I looked at". Before anything is signed the console checks
that the officer may act (command tier), that the truck is still held, that it is the hold
the officer saw (the lane may have decided the truck again since: new reasons, a new
challenge), that no other action on it is still waiting for the lane's answer, and, for a
refusal, that there is a reason to tell. The audit row is written before the command leaves;
the command carries the officer's name as its ``issuer``, which the lane records too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.commands import Backend, CommandService, SigningKey
from backend.console.audit import AuditEntry, AuditLog
from backend.console.auth import Session
from backend.console.desk import VERBS, TruckView
from backend.errors import BackendError
from edge_agent.lane.modes import MAX_REASON, text_problems

SAID = {"release": "release", "refuse": "refusal", "reweigh": "re-weigh request"}


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What the officer is told: an HTTP status, one sentence, and the cmd_id when sent."""

    status: int
    message: str
    cmd_id: str | None = None

    @property
    def sent(self) -> bool:
        return self.cmd_id is not None


class OfficerActions:
    """Signs with ``key`` (kid ``kid``) for the lanes of ``site``, sending through ``backend``."""

    def __init__(self, *, site: str, key: Ed25519PrivateKey, kid: str, backend: Backend,
                 audit: AuditLog) -> None:  # fmt: skip
        self.site, self._key, self._kid = site, key, kid
        self._backend, self._audit = backend, audit

    def act(
        self, session: Session, view: TruckView | None, verb: str, *, lane: str,
        transit_id: str, hold_event_id: str, reason: str, client: str, now: float,
    ) -> ActionResult:
        reason = reason.strip()
        entry = AuditEntry(now, session.user, session.tier, verb, "denied", self.site, lane,
                           transit_id, hold_event_id, reason=reason[:MAX_REASON], client=client)
        refusal = self._refusal(session, view, verb, hold_event_id, reason)
        if refusal is not None:
            self._audit.add(_with(entry, detail=refusal.message))
            return refusal
        assert view is not None
        cmd_id = f"{verb}-{transit_id}-{secrets.token_hex(4)}"
        args: dict[str, Any] = {"challenge": view.challenge, "transit_id": transit_id}
        if reason:
            args["reason"] = reason
        sent = _with(entry, outcome="sent", cmd_id=cmd_id)
        self._audit.add(sent)  # on disk before the command can act
        service = CommandService(self._backend, self.site,
                                 officer=SigningKey(self._kid, self._key, session.user))
        try:
            service.send(lane, VERBS[verb], args, cmd_id=cmd_id)
        except BackendError as exc:
            self._audit.add(_with(sent, outcome="failed", detail=str(exc)))
            return ActionResult(503, f"The {SAID[verb]} was not sent: {exc}.")
        return ActionResult(303, f"The {SAID[verb]} was sent to lane {lane}; waiting for the "
                            "lane's answer.", cmd_id)

    def _refusal(
        self, session: Session, view: TruckView | None, verb: str, hold_event_id: str,
        reason: str,
    ) -> ActionResult | None:
        if verb not in VERBS:
            return ActionResult(404, f"There is no action {verb[:20]!r}.")
        if not session.may_act:
            return ActionResult(403, f"{session.user} is a view-tier officer: only a "
                                "command-tier officer may act on a held truck.")
        if view is None:
            return ActionResult(404, "The console knows no hold of that truck.")
        if not view.held:
            return ActionResult(409, f"This truck is not held any more ({view.resolution}).")
        if hold_event_id != view.hold_event_id:
            return ActionResult(409, "The lane decided this truck again since the page was "
                                "loaded: look at its new reasons and evidence first.")
        if view.pending is not None:
            p = view.pending
            return ActionResult(409, f"A {SAID.get(p['action'], p['action'])} by "
                                f"{p['officer']} is waiting for the lane's answer.")
        if not view.challenge:
            return ActionResult(409, "The hold carries no challenge: the lane cannot be asked "
                                "remotely (use the technician at the lane).")
        if verb == "refuse" or reason:
            problems = text_problems("reason", reason, MAX_REASON)
            if problems:
                told = "a reason for the driver and the record" if verb == "refuse" else "reason"
                return ActionResult(400, f"The {told}: {problems[0]}.")
        return None


def _with(entry: AuditEntry, **changes: Any) -> AuditEntry:
    fields = entry.to_json()
    fields.update(changes)
    return AuditEntry(**fields)
