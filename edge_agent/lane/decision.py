"""The lane machine's decision (a mixin of LaneMachine): rule L2's condition, the open and the
hold, and the identity reads that the condition waits for.

``machine.TRANSITIONS`` names these handlers like its own. The order of ``_try_decide`` is the
rule an officer reads: the mode, a refused pass, a weighing abnormality, the declared weight
(``policy.decide``), the truck's identity (``identity.judge_identity``: it may wait, at most
its ``wait_s`` from the moment all the rest was in), then the lane's own conditions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_agent.catalogue import Code, EventType
from edge_agent.lane.actions import (
    KeepCrop,
    LaneAction,
    MarkPassUsed,
    OpenBarrier,
    Publish,
    TakeSnapshot,
)
from edge_agent.lane.identity import CHECKS, IdentityOutcome, judge_identity
from edge_agent.lane.inputs import IdentitySeen, IdentitySourceChanged, PassUseRecorded
from edge_agent.lane.policy import decide
from edge_agent.lane.state import LaneState, MachineConfig
from edge_agent.lane.table import DeadlinePassed
from edge_agent.lane.transit import (
    Transit,
    abnormality_data,
    decision_data,
    hold_data,
    pass_used_data,
)

MAX_READS_KEPT = 200


class DecisionRules:
    """Handlers ``(self, input, now) -> actions`` of the decision; see the module doc."""

    state: LaneState
    transit: Transit | None
    _config: MachineConfig
    _io_up: bool
    _storage_ok: bool
    _input_at: float
    _opening_deadline: float | None
    _identity_down: dict[str, str]
    _new_id: Callable[[], str]

    if TYPE_CHECKING:  # the machine's own, used here

        @property
        def _transit_id(self) -> str | None: ...

        def _mode_hold(self, now: float) -> list[LaneAction] | None: ...

        def _no_truck_expired(self, event: DeadlinePassed, now: float) -> list[LaneAction]: ...

    def _try_decide(self, now: float) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        presented, weight = transit.pass_presented, transit.weight_kg
        if presented is not None and (held := self._mode_hold(now)) is not None:
            return held
        if presented is not None and not presented.valid:
            return self._hold([presented.reason or Code.PASS_BAD_FORMAT], now, "pass rejected")
        if transit.abnormal:
            return self._hold(list(transit.abnormal), now, "weighing abnormality")
        if presented is None or presented.claims is None or weight is None:
            return []
        policy = self._config.policy
        aid = weight if transit.estimate_kg is None else transit.estimate_kg  # the estimate
        decision = decide(presented.claims, aid, transit.uncertainty_kg or 0.0, policy)
        transit.weight_rules = decision.weight_rules
        if not decision.open:
            return self._hold(list(decision.reasons), now, decision.detail)
        identity = self._judge_identity(now)
        if identity.waiting:
            return []  # next_deadline() names the end of the wait
        if holds := identity.holds(policy.identity):
            return [*self._hold(holds, now, identity.detail()),
                    *self._keep_crops(identity, holds)]
        transit.flags = tuple(identity.flags(policy.identity))
        if not self._io_up:
            return self._hold([Code.LANE_IO_LINK_LOST], now, "IO board link is down")
        if not self._storage_ok:
            return self._hold(
                [Code.LANE_STORAGE_FAULT], now, "the lane cannot record the transit"
            )
        return self._open(now, by="policy")

    # -- identity (L2's identity condition) ----------------------------------------------------
    def _judge_identity(self, now: float) -> IdentityOutcome:
        """The identity checks on the transit's reads; starts the wait the first time."""
        transit = self.transit
        assert transit is not None and transit.claims is not None
        policy = self._config.policy.identity
        transit.identity_deadline = None
        if not policy.checks:
            return IdentityOutcome()
        if transit.identity_since is None:
            transit.identity_since = now
        deadline = transit.identity_since + policy.wait_s
        outcome = judge_identity(transit.claims, transit.identity_seen, policy,
                                 expired=now >= deadline, down=self._identity_down)
        transit.identity = tuple(outcome.as_data())
        if outcome.waiting:
            transit.identity_deadline = deadline
        return outcome

    def _keep_crops(self, identity: IdentityOutcome, codes: list[str]) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        return [KeepCrop(transit.transit_id, f.kind, f.data["crop"],
                         f"{transit.transit_id}-{f.code}-crop")
                for f in identity.final() if f.code in codes and f.data.get("crop")]

    def _identity_seen(self, event: IdentitySeen, now: float) -> list[LaneAction]:
        """A read during the transit; one that a waiting decision needs decides it now."""
        transit = self.transit
        if transit is None or event.kind not in CHECKS:
            return []
        transit.identity_seen.append(event)
        del transit.identity_seen[:-MAX_READS_KEPT]  # a truck held for hours is read all along
        if self.state is LaneState.LOADING and transit.identity_deadline is not None:
            return self._try_decide(now)
        return []

    def _identity_source(self, event: IdentitySourceChanged, now: float) -> list[LaneAction]:
        """A reader's source lost or back; a decision waiting for it stops waiting."""
        if (event.kind in self._identity_down) != event.up:
            return []
        if event.up:
            del self._identity_down[event.kind]
            return [Publish(EventType.IDENTITY_SOURCE_RESTORED, {"kind": event.kind},
                            self._transit_id)]
        self._identity_down[event.kind] = event.reason or "down"
        detail = f"{event.kind}: {event.reason}" if event.reason else event.kind
        actions: list[LaneAction] = [Publish(EventType.ABNORMALITY, abnormality_data(
            Code.LANE_IDENTITY_SOURCE_LOST, detail), self._transit_id)]
        transit = self.transit
        if self.state is LaneState.LOADING and transit and transit.identity_deadline is not None:
            actions += self._try_decide(now)
        return actions

    def _loading_expired(self, event: DeadlinePassed, now: float) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        if transit.identity_deadline is not None and now >= transit.identity_deadline:
            return self._try_decide(now)
        return self._no_truck_expired(event, now)

    # -- open and hold -------------------------------------------------------------------------
    def _open(self, now: float, *, by: str) -> list[LaneAction]:
        """L3: a valid pass is recorded as used first; the barrier opens on PassUseRecorded."""
        transit = self.transit
        assert transit is not None
        transit.identity_deadline = None  # a release ends any wait
        presented = transit.pass_presented
        if presented is None or not presented.valid or transit.pass_marked:
            return self._commit_open(now, by=by)
        assert presented.claims is not None
        transit.opened_by = by
        self.state = LaneState.RECORDING
        claims = presented.claims
        return [MarkPassUsed(claims.cti.hex(), claims.exp, transit.transit_id)]

    def _commit_open(self, now: float, *, by: str) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        transit.opened_by = by
        self.state = LaneState.OPENING
        self._opening_deadline = now + self._config.opening_timeout_s
        data = {**decision_data(transit, "open", [], self._input_at), "by": by}
        return [Publish(EventType.DECISION, data, transit.transit_id),
                OpenBarrier(transit.transit_id)]

    def _recording_result(self, event: PassUseRecorded, now: float) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        by = transit.opened_by or "policy"
        if event.ok:
            transit.pass_marked = True
            assert transit.claims is not None  # only a valid pass is marked (_open)
            used = Publish(EventType.PASS_USED, pass_used_data(transit.claims), transit.transit_id)
            return [*self._commit_open(now, by=by), used]
        transit.opened_by = None
        code = event.code or Code.LANE_STORAGE_FAULT
        return self._hold([code], now, event.detail or "the pass's use could not be recorded")

    def _hold(self, reasons: list[str], now: float, detail: str) -> list[LaneAction]:
        transit = self.transit
        assert transit is not None
        transit.identity_deadline = None
        reasons = list(dict.fromkeys(reasons))
        if self.state is LaneState.HOLD and tuple(reasons) == transit.hold_reasons:
            return []
        self.state = LaneState.HOLD
        transit.hold_reasons = tuple(reasons)
        transit.challenge = self._new_id()
        snapshot_ref = f"{transit.transit_id}-{reasons[0]}"
        data = hold_data(transit, reasons, detail, snapshot_ref, self._input_at)
        return [
            TakeSnapshot(transit.transit_id, reasons[0], snapshot_ref),
            Publish(EventType.DECISION, data, transit.transit_id),
        ]
