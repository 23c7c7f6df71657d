"""A whole lane in virtual time: the real ``LaneAgent`` on the in-package fakes, a truck in ms.

The world (``world.py``) drives the truck; the fake IO board runs the real firmware core with
its arm; the fake indicator sends the deck's dynamics (``weight_dynamics.py``) through the real
encoders; the pass the driver holds up reaches the agent as the camera reader hands it over (a
confirmed ``QrRead``). The agent is the one ``edge-agent`` runs, without its threads: this
harness is its reader loop, polling each device every ``step_s`` of virtual time and then
letting the agent's timers run. Nothing sleeps, no broker is needed (the outbox is the real
SQLite one; the records are read from it), and a demo truck takes milliseconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.app import LaneAgent
from edge_agent.assembly import LaneDevices, open_devices
from edge_agent.config import load_config
from edge_agent.drivers import ioboard_fake, weighbridge_fake
from edge_agent.drivers.fakes import VirtualClock
from edge_agent.drivers.ioboard_fake import FakeIoBoard
from edge_agent.drivers.weighbridge_fake import FakeIndicator
from edge_agent.protocols import gp1
from edge_agent.telemetry.commands import public_key_text, sign_command
from edge_agent.telemetry.outbox import Priority
from edge_agent.vision.pipeline import QrRead
from simulators.errors import SimulatorError
from simulators.scenarios import Scenario, TruckPlan
from simulators.weight_dynamics import DeckDynamics
from simulators.world import Phase, World

WALL_START = datetime(2027, 3, 1, 8, 0, tzinfo=UTC).timestamp()
QR_OUTLINE = ((500, 300), (620, 300), (620, 420), (500, 420))


@dataclass
class VirtualOutcome:
    """What the lane did with one truck, read from its own records and the board's relays."""

    name: str
    transit_id: str | None = None
    decision: str = "-"
    reasons: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    barrier: list[str] = field(default_factory=list)  # relays driven: "open" / "close"
    seconds: float = 0.0  # virtual
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class VirtualLane:
    """``VirtualLane(workdir)``; then ``run_truck(plan)`` for each truck; ``close()``."""

    def __init__(
        self,
        workdir: Path,
        scenario: Scenario,
        *,
        protocol: str = "yaohua-tf0",
        seed: int = 1,
        step_s: float = 0.01,
    ) -> None:
        self.scenario = scenario
        self.step_s = step_s
        self.clock = VirtualClock(1000.0)
        self._name = f"virtual-{os.getpid()}-{id(self):x}"
        self.board = ioboard_fake.REGISTRY.register(
            self._name, FakeIoBoard(self.clock, travel_s=0.8, advance_on_wait=False))
        self.indicator = weighbridge_fake.INDICATORS.register(
            self._name, FakeIndicator(protocol, clock=self.clock, rate_hz=10))
        self.world = World()
        self.world.on_show = self._on_show
        rng = np.random.default_rng(seed)
        self._dynamics = DeckDynamics(20, rng)
        self._history: list[tuple[float, float]] = []
        self._showing: str | None = None  # the pass text to hand to the agent once
        self._current_pass: str | None = None
        self._first_valid_pass: str | None = None
        self._frozen = False
        self._keys(workdir / "keys")
        path = self._write_config(workdir)
        self.config = load_config(path)
        self.agent = LaneAgent(self.config, clock=self.clock, wall_clock=self.wall,
                               clock_status=lambda: (True, "virtual"))
        self.devices: LaneDevices = open_devices(self.config, self.clock,
                                                 isolate_decoders=False)
        self.agent.attach(self.devices)
        self.devices.board.open(timeout=2.0)
        self._records: list[dict[str, Any]] = []
        self._read_upto = 0

    def wall(self) -> float:
        return WALL_START + self.clock()

    def close(self) -> None:
        self.devices.close()
        ioboard_fake.REGISTRY.unregister(self._name)
        weighbridge_fake.INDICATORS.unregister(self._name)

    # -- set-up ------------------------------------------------------------------------------
    def _keys(self, keys: Path) -> None:
        self.issuer_key_path, self.trust_path = gp1.write_keypair(keys, "ed25519")
        self.issuer_key = gp1.load_private_key(self.issuer_key_path)
        self.rogue_key = gp1.generate_key("ed25519")
        self.officer_key = Ed25519PrivateKey.generate()
        self.command_keys_path = keys / "command_keys.json"
        self.command_keys_path.write_text(json.dumps({"keys": [
            {"kid": "officer-console", "role": "command",
             "public_key": public_key_text(self.officer_key)},
        ]}))

    def _write_config(self, workdir: Path) -> Path:
        s = self.scenario
        state = workdir / "state"
        text = f"""[lane]
site = "{s.site}"
lane = "{s.lane}"
gate = "{s.gate}"
direction = "exit"
state_dir = "{state}"

[io_board]
url = "fake-ioboard://{self._name}"
t_clear_s = 0.3

[weighbridge]
url = "fake-indicator://{self._name}"
protocol = "{self.indicator.protocol}"
max_kg = 60000
e_kg = 20
not_on_deck_s = 3.0
frozen_s = 4.0

[camera]
source = "fake-camera://{self._name}"

[passes]
trust_list = "{self.trust_path}"
ledger = "{state / 'passes.sqlite'}"

[mqtt]
broker = "mqtt://127.0.0.1:9"
lab = true
command_keys = "{self.command_keys_path}"
"""
        path = workdir / "agent.toml"
        path.write_text(text, encoding="utf-8")
        return path

    # -- time --------------------------------------------------------------------------------
    def step(self) -> None:
        """Advance the world and every device by ``step_s``; the agent handles what came."""
        self.clock.advance(self.step_s)
        now = self.clock()
        self.world.step(now, self.board.arm)
        sensors = self.world.sensors()
        self.board.set_inputs(loop_a=sensors.loop_a, loop_b=sensors.loop_b,
                              photo_eye=sensors.photo_eye, deck_front=sensors.deck_front,
                              deck_rear=sensors.deck_rear)
        if not self._frozen:
            self._show_weight(now)
        for event in self.devices.board.read_events(0.0):
            self.agent.handle(event, now)
        for arrival in self.devices.weighbridge.read(0.0):
            self.agent.handle(arrival, now)
        if self._showing is not None:
            text, self._showing = self._showing, None
            self.agent.handle(QrRead(text, QR_OUTLINE, now, "virtual", 0.0), now)
        self.agent.tick(now)

    def run_for(self, seconds: float) -> None:
        for _ in range(round(seconds / self.step_s)):
            self.step()

    def run_until(self, done: Callable[[], bool], *, timeout_s: float) -> bool:
        for _ in range(round(timeout_s / self.step_s)):
            if done():
                return True
            self.step()
        return done()

    def _show_weight(self, now: float) -> None:
        kg = self._dynamics.display(now, self.world.deck_load_kg(), period_s=0.1)
        self._history = [(t, v) for t, v in self._history if t >= now - 1.0]
        self._history.append((now, kg))
        values = [v for _t, v in self._history]
        self.indicator.set_weight(kg, motion=max(values) - min(values) > 20)

    def _on_show(self, showing: bool) -> None:
        if showing and self._current_pass is not None:
            self._showing = self._current_pass

    # -- records -----------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every event the lane stored so far, in seq order (the outbox keeps them: no broker)."""
        outbox = self.devices.outbox
        rows = [row for priority in (Priority.URGENT, Priority.NORMAL)
                for row in outbox.pending(100_000, after_seq=self._read_upto, priority=priority)]
        for row in sorted(rows, key=lambda r: r.key):
            self._records.append(json.loads(row.payload))
            self._read_upto = max(self._read_upto, row.key)
        return list(self._records)

    def transit_records(self, transit_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("transit_id") == transit_id]

    # -- the backend's side ------------------------------------------------------------------
    def issue_pass(self, plan: TruckPlan) -> str | None:
        if plan.pass_kind == "none":
            return None
        if plan.pass_kind == "reuse" and self._first_valid_pass is not None:
            return self._first_valid_pass
        now = datetime.fromtimestamp(self.wall(), UTC)
        valid_from, valid_for = now - timedelta(hours=1), 4 * 3600
        if plan.pass_kind == "expired":
            valid_from, valid_for = now - timedelta(hours=5), 3600
        text: str = gp1.issue_pass(
            self.rogue_key if plan.pass_kind == "untrusted" else self.issuer_key,
            release_no=f"RL-{plan.truck.plate}", enterprise="Demo Logistics Co.",
            plates=(plan.truck.plate,), declared_gross_kg=plan.declared,
            tolerance_kg=plan.tolerance_kg, site=self.scenario.site,
            gates=(self.scenario.gate,), direction="exit", valid_from=valid_from,
            valid_for_s=valid_for,
        )
        if plan.pass_kind == "valid" and self._first_valid_pass is None:
            self._first_valid_pass = text
        return text

    def signed_command(self, name: str, args: dict[str, Any], *, cmd_id: str) -> bytes:
        """A command as the officer's console signs it, at the lane's wall time."""
        now = int(self.wall())
        claims = {"cmd_id": cmd_id, "name": name, "site": self.scenario.site,
                  "lane": self.scenario.lane, "iat": now, "exp": now + 60,
                  "nonce": os.urandom(12).hex(), "issuer": "officer-7", "args": args}
        return sign_command(self.officer_key, "officer-console", claims)

    def release(self, hold: dict[str, Any], *, challenge: str | None = None) -> str:
        """The officer releases the truck ``hold`` (its decision record) held; the cmd_id."""
        cmd_id = f"release-{hold['transit_id']}-{os.urandom(3).hex()}"
        args = {"challenge": challenge or hold["data"]["challenge"],
                "transit_id": hold["transit_id"]}
        self.agent.command("remote_release", self.signed_command(
            "remote_release", args, cmd_id=cmd_id), self.clock())
        return cmd_id

    def result(self, cmd_id: str) -> dict[str, Any] | None:
        for record in self.records():
            if record["type"] == "cmd_result" and record["data"]["cmd_id"] == cmd_id:
                data: dict[str, Any] = record["data"]
                return data
        return None

    # -- one truck ---------------------------------------------------------------------------
    def run_truck(self, plan: TruckPlan, *, timeout_s: float = 60.0,
                  pass_text: str | None = None) -> VirtualOutcome:
        outcome = VirtualOutcome(plan.name)
        self._current_pass = pass_text if pass_text is not None else self.issue_pass(plan)
        started, first_row = self.clock(), len(self.records())
        relays_before = len(self.board.output_changes())
        self.world.send(plan.truck)
        released = False
        for _ in range(round(timeout_s / self.step_s)):
            truck = self.world.truck
            if truck is None or truck.phase is Phase.GONE:
                break
            hold = self._hold_since(first_row)
            if hold is not None and plan.release == "remote" and not released:
                self.release(hold)
                released = True
            elif hold is not None and plan.release == "technician" and not released:
                self.board.set_input("tech_key", True)
                released = True
            elif hold is not None and plan.release is None:
                self.world.back_off()
            if truck.phase is Phase.STOPPED and plan.faults and not self._frozen:
                if set(plan.faults) - {"frozen"}:
                    raise SimulatorError(f"virtual lane: faults {plan.faults} not modelled")
                self._frozen = True
            self.step()
        else:
            outcome.problems.append(f"truck still in the lane after {timeout_s:.0f} s")
        self._frozen = False
        self.board.set_input("tech_key", False)
        self.run_until(lambda: self.devices.board.snapshot is not None
                       and self.devices.board.snapshot.barrier == "closed"
                       and self.agent.machine.transit is None, timeout_s=10.0)
        outcome.seconds = self.clock() - started
        self._collect(plan, outcome, first_row, relays_before)
        return outcome

    def _hold_since(self, first_row: int) -> dict[str, Any] | None:
        for record in self.records()[first_row:]:
            if record["type"] == "decision" and record["data"]["decision"] == "hold":
                return record
        return None

    def _collect(self, plan: TruckPlan, outcome: VirtualOutcome, first_row: int,
                 relays_before: int) -> None:
        records = self.records()[first_row:]
        arrived = [r for r in records if r["type"] == "truck_arrived"]
        if not arrived:
            outcome.problems.append("no truck_arrived record for this truck")
            return
        transit_id = outcome.transit_id = arrived[0]["transit_id"]
        mine = [r for r in records if r.get("transit_id") == transit_id]
        outcome.events = [r["type"] for r in mine]
        decisions = [r["data"] for r in mine if r["type"] == "decision"]
        if decisions:
            outcome.decision = decisions[0]["decision"]
            outcome.reasons = list(decisions[0]["reasons"])
        for _t, name, value in self.board.output_changes()[relays_before:]:
            if value and name in ("barrier_open", "barrier_close"):
                outcome.barrier.append("open" if name == "barrier_open" else "close")
        for problem in _problems(plan, outcome):
            outcome.problems.append(problem)
        outcome.problems.extend(self.world.violations)
        self.world.violations.clear()


def _problems(plan: TruckPlan, outcome: VirtualOutcome) -> Iterator[str]:
    if outcome.decision != plan.expect_decision:
        yield f"decision {outcome.decision!r}, expected {plan.expect_decision!r}"
    if plan.expect_reason and plan.expect_reason not in outcome.reasons:
        yield f"hold reasons {outcome.reasons}, expected {plan.expect_reason!r} among them"
    should_open = plan.expect_decision == "open" or plan.release is not None
    if should_open and "open" not in outcome.barrier:
        yield "the firmware never drove the barrier-open relay"
    if not should_open and "open" in outcome.barrier:
        yield "the barrier opened for a held truck"
    if should_open and "close" not in outcome.barrier:
        yield "the barrier did not close after the truck"
    if "transit_closed" not in outcome.events:
        yield "no transit_closed record"
