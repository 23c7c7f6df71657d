"""The simulated lane with an e-seal reader: ``EsealSim`` on a pty, read by the real agent.

``SealLane`` is ``SimLane`` plus the e-seal simulator and ``[eseal] url`` in the agent's file.
A truck's ``TruckPlan.seals`` go on its pass and the simulator hears them from its drive-on
until it has gone (``ID``: closed; ``ID:tampered``, ``ID:open``; ``ID:unheard``: on the pass
but never heard, an unread seal). Trucks without seals run as they do without it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from simulators.errors import SimulatorSetupError
from simulators.eseal import EsealSim
from simulators.harness import SimLane
from simulators.outcomes import TruckOutcome
from simulators.scenarios import Scenario, TruckPlan
from simulators.world import TruckSpec

UNHEARD = "unheard"


def plan_seals(plan: TruckPlan) -> list[tuple[str, str]]:
    """``(tag, status)`` of each of the plan's seals."""
    out = []
    for text in plan.seals:
        tag, _, status = text.partition(":")
        if not tag:
            raise SimulatorSetupError(f"truck {plan.name}: a seal needs an id, got {text!r}")
        out.append((tag, status or "closed"))
    return out


class SealLane(SimLane):
    """``SimLane`` with the e-seal reader simulated on a pty."""

    def __init__(self, *args: Any, wait_s: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eseal = EsealSim(seed=self._seed)
        self._seal_wait_s = wait_s

    def start(self) -> None:
        self.eseal.start()
        self._stack.callback(self.eseal.stop)
        self._log(f"e-seal      reader sentences on {self.eseal.port}")
        super().start()

    def _write_agent_config(self) -> Path:
        path = super()._write_agent_config()
        with path.open("a", encoding="utf-8") as out:
            out.write(f'\n[eseal]\nurl = "{self.eseal.port}"\nwait_s = {self._seal_wait_s}\n')
        return path

    def issue_pass(self, plan: TruckPlan) -> str | None:
        if not plan.seals or plan.pass_kind != "valid":
            return super().issue_pass(plan)
        from edge_agent.protocols import gp1

        now = datetime.now(UTC)
        text: str = gp1.issue_pass(
            self.issuer_key, release_no=f"RL-{plan.truck.plate}-{int(now.timestamp()) % 100000}",
            enterprise="Demo Logistics Co.", plates=(plan.truck.plate,),
            seals=tuple(tag for tag, _ in plan_seals(plan)), declared_gross_kg=plan.declared,
            tolerance_kg=plan.tolerance_kg, site=self.scenario.site, gates=(self.scenario.gate,),
            direction="exit", valid_from=now - timedelta(hours=1), valid_for_s=4 * 3600)
        return text

    def run_truck(self, plan: TruckPlan, **kwargs: Any) -> TruckOutcome:
        heard = [(tag, status) for tag, status in plan_seals(plan) if status != UNHEARD]
        for tag, status in heard:
            self.eseal.show(tag, status)
        try:
            return super().run_truck(plan, **kwargs)
        finally:
            for tag, _ in heard:
                self.eseal.hide(tag)


def _sealed(name: str, plate: str, gross: int, seals: tuple[str, ...],
            reason: str | None = None) -> TruckPlan:
    truck = replace(TruckSpec(plate=plate, gross_kg=gross), back_off_after_s=8.0)
    return TruckPlan(name, truck, seals=seals, expect_decision="hold" if reason else "open",
                     expect_reason=reason)


SEALS = Scenario(
    name="seals",
    description="sealed trucks: closed seals open, a tampered or unheard seal holds",
    trucks=(
        _sealed("sealed", "SU-A1001", 32_480, ("ES-00471135",)),
        _sealed("tampered", "SU-B2002", 28_100, ("ES-00471136:tampered",),
                "vehicle.seal_tampered"),
        _sealed("unheard", "SU-C3003", 18_940, ("ES-00471137:unheard",), "vehicle.seal_unread"),
        _sealed("unsealed", "SU-E5005", 45_120, ()),
    ),
)
