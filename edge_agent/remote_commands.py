"""Signed commands from the backend: verified, run at most once, answered with an outcome.

``RemoteCommands.handle`` takes a command message as it came off the broker and returns what
the lane must record as its ``cmd_result`` (or None when the refusal is not worth a record).
The verifier (``telemetry/commands.py``) checks signature, freshness and replay; this module
runs what it let through: a remote release and a lane mode go to the lane machine, pushed
trust and revocations replace the pass authority, pushed site uses go into the pass ledger,
a pushed configuration is applied by the agent. Anyone on the broker can send garbage: only
a bounded number of unsigned refusals cost a record, a refusal of a validly signed command
always does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent.catalogue import Code, EventType
from edge_agent.config import AgentConfig
from edge_agent.drivers.pass_ledger import PassLedger
from edge_agent.lane.actions import Answer, LaneAction, OpenBarrier, Publish
from edge_agent.lane.inputs import ModeRequested, RemoteRelease
from edge_agent.lane.modes import Via, parse_mode
from edge_agent.protocols import gp1
from edge_agent.telemetry.command_args import VERDICTS
from edge_agent.telemetry.commands import Command, CommandVerifier, Rejection, echo
from edge_agent.telemetry.records import RefusalBudget
from edge_agent.timefloor import TimeFloor
from edge_agent.translate import PassAuthority

log = logging.getLogger("edge_agent.commands")

APPLIED_KINDS = ("trust_update", "revocations", "config", "site_uses")


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """The ``cmd_result`` of one command."""

    cmd_id: str
    name: str
    accepted: bool
    code: str | None
    detail: str
    problems: tuple[str, ...] = ()
    reported: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"cmd_id": self.cmd_id, "name": self.name,
                                "accepted": self.accepted, "code": self.code,
                                "detail": self.detail}
        if self.problems:
            data["problems"] = list(self.problems)
        if self.reported is not None:
            data["reported"] = self.reported
        return data


class RemoteCommands:
    def __init__(
        self,
        verifier: CommandVerifier | None,
        *,
        local_config: AgentConfig,
        passes: PassAuthority,
        ledger: PassLedger,
        time_floor: TimeFloor,
        wall_clock: Callable[[], float],
        release: Callable[[RemoteRelease | ModeRequested], list[LaneAction]],
        reconfigure: Callable[[], dict[str, Any]],
        load_trust: Callable[[AgentConfig, CommandVerifier], PassAuthority],
    ) -> None:
        """``release`` steps the lane machine with a verified release (or lane mode) and
        returns what it asked for; ``reconfigure`` applies the stored remote settings and
        returns them as reported; ``load_trust`` builds the pass authority from the local
        file and the pushed state."""
        self.verifier = verifier
        self._local_config = local_config
        self._passes = passes
        self._ledger = ledger
        self._time_floor = time_floor
        self._wall_clock = wall_clock
        self._release = release
        self._reconfigure = reconfigure
        self._load_trust = load_trust
        self.refusals = RefusalBudget()

    def versions(self) -> dict[str, int | None] | None:
        """The version of each kind of pushed state in force (health reports it)."""
        if self.verifier is None:
            return None
        return {kind: self.verifier.version(kind) for kind in APPLIED_KINDS}

    def handle(
        self, name: str, payload: bytes, now: float, *, clock_synced: bool
    ) -> CommandOutcome | None:
        verifier = self.verifier
        if verifier is None:
            log.warning("command %s ignored: no command keys configured", echo(name))
            return None
        topic = verifier.topics.command(name)
        wall = self._time_floor.now(self._wall_clock())
        verdict = verifier.verify(topic, payload, wall, clock_synced=clock_synced)
        if isinstance(verdict, Rejection):
            if not (verdict.authenticated or self.refusals.allow(now)):
                return None
            log.warning("command %s refused: %s (%s)", echo(name), verdict.code, verdict.reason)
            return CommandOutcome(verdict.cmd_id or "", echo(name), False, verdict.code,
                                  verdict.reason, problems=verdict.problems)
        self._time_floor.observe(verifier.time_floor)
        outcome = self._run(verifier, verdict, name, now)
        log.info("command %s %s: %s", name, "executed" if outcome.accepted else "refused",
                 outcome.code or outcome.detail)
        return outcome

    def _run(
        self, verifier: CommandVerifier, verdict: Command, name: str, now: float
    ) -> CommandOutcome:
        version = verdict.args.get("version")
        match verdict.name:
            case "remote_release" | "remote_refuse" | "remote_reweigh":
                return self._remote_release(verdict, now)
            case "lane_mode":
                return self._lane_mode(verdict, now)
            case "trust_update" | "revocations":
                fresh = self._load_trust(self._local_config, verifier)
                self._passes.trust, self._passes.revoked = fresh.trust, fresh.revoked
                reported: dict[str, Any] = {
                    "version": version,
                    "pass_keys": len(fresh.trust.entries),
                    "pass_revocations": len(fresh.revoked),
                    "command_keys": sorted(verifier.trusted_keys()),
                }
            case "site_uses":
                hashes = [gp1.parse_revocation_hash(h) for h in verdict.args["pass_hashes"]]
                learned = self._ledger.learn_site_uses(hashes, now=self._wall_clock())
                reported = {"version": version, "site_uses": len(hashes), "new": learned}
            case "config":
                reported = {"version": version, "settings": self._reconfigure()}
            case other:  # the verifier knows every name it lets through
                raise ValueError(f"verified command {other!r} has no handler")
        return CommandOutcome(verdict.cmd_id, name, True, None, "applied", reported=reported)

    def _lane_mode(self, verdict: Command, now: float) -> CommandOutcome:
        """The machine decides (modes.py: remote may only move between in_service and
        out_of_service); a refusal changes nothing and says why."""
        request = ModeRequested(
            now, parse_mode(verdict.args["mode"]), verdict.issuer, str(verdict.args["reason"]),
            Via.REMOTE, verdict.cmd_id, self._time_floor.now(self._wall_clock()),
        )
        answers = [a for a in self._release(request)
                   if isinstance(a, Answer) and a.ref == verdict.cmd_id]  # fmt: skip
        if answers and answers[0].accepted:
            return CommandOutcome(verdict.cmd_id, verdict.name, True, None, answers[0].detail)
        why = answers[0].detail if answers else "the lane did not take the request"
        return CommandOutcome(verdict.cmd_id, verdict.name, False, Code.CMD_PRECONDITION, why)

    def _remote_release(self, verdict: Command, now: float) -> CommandOutcome:
        release = RemoteRelease(
            now, verdict.cmd_id, str(verdict.args["challenge"]), officer=verdict.issuer,
            verdict=VERDICTS[verdict.name], reason=str(verdict.args.get("reason", "")),
        )
        actions = self._release(release)
        if any(isinstance(a, OpenBarrier) for a in actions):
            return CommandOutcome(verdict.cmd_id, verdict.name, True, None, "barrier opened")
        published = [a for a in actions if isinstance(a, Publish)]
        told = [a for a in published if a.type == EventType.REMOTE_VERDICT]
        if told:
            return CommandOutcome(verdict.cmd_id, verdict.name, True, None,
                                  str(told[0].data["instruction"]))
        refused = [a for a in published if a.type == EventType.RELEASE_REFUSED]
        held = [a for a in published if a.type == EventType.DECISION]
        why = (
            str(refused[0].data["reason"]) if refused
            else f"held: {', '.join(held[-1].data['reasons'])}" if held
            else "no held truck with that challenge"
        )
        return CommandOutcome(verdict.cmd_id, verdict.name, False, Code.CMD_PRECONDITION, why)
