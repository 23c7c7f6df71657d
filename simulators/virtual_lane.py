"""A whole lane in virtual time: the real ``LaneAgent`` on the in-package fakes, a truck in ms.

The world (``world.py``) drives the truck; the fake IO board runs the real firmware core with
its arm; the fake indicator sends the deck's dynamics (``weight_dynamics.py``) through the real
encoders; the pass the driver holds up reaches the agent as the camera reader hands it over (a
confirmed ``QrRead``). The agent is the one ``edge-agent`` runs, without its threads: this
harness is its reader loop, polling each device every ``step_s`` of virtual time and then
letting the agent's timers run. Nothing sleeps, no broker is needed (the outbox is the real
SQLite one; the records are read from it), and a demo truck takes milliseconds.

The camera is the in-package fake on the virtual clock, opened by its URL and read every
``CAMERA_PERIOD_S`` as the agent's camera reader reads it: its frames become the evidence the
agent keeps, and losing it (``lose_camera``) is reported as the reader reports it. The pass
itself reaches the agent without decoding (decoding is the vision tests' and bench's).

With ``broker_url`` the agent's real publisher runs (its own thread, the wall clock) and
delivers the outbox to that broker: the backend's acks then delete rows, and those the
harness had not read yet are taken from ``acked`` (what the backend stored).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.app import LaneAgent
from edge_agent.assembly import LaneDevices, open_devices
from edge_agent.config import load_config
from edge_agent.drivers import camera_fake, ioboard_fake, weighbridge_fake
from edge_agent.drivers.camera import CameraLost, FrameSource, open_frame_source
from edge_agent.drivers.camera_fake import FakeCamera
from edge_agent.drivers.fakes import VirtualClock
from edge_agent.drivers.ioboard_fake import FakeIoBoard
from edge_agent.drivers.weighbridge_fake import FakeIndicator
from edge_agent.lane.inputs import CameraChanged
from edge_agent.lane.machine import LaneState
from edge_agent.protocols import gp1
from edge_agent.telemetry.commands import public_key_text, sign_command
from edge_agent.vision.pipeline import QrRead
from simulators.errors import SimulatorError
from simulators.scenarios import Scenario, TruckPlan
from simulators.weight_dynamics import DeckDynamics
from simulators.world import Phase, Sensors, World

WALL_START = datetime(2027, 3, 1, 8, 0, tzinfo=UTC).timestamp()
QR_OUTLINE = ((500, 300), (620, 300), (620, 420), (500, 420))
CAMERA_SIZE = (1280, 720)
CAMERA_FPS = 10.0
CAMERA_PERIOD_S = 0.5  # how often the harness reads the camera (the agent's reader: always)
INDICATOR_PERIOD_S = 0.1  # the fake indicator's rate: the weight shown changes this often
FAULTS = ("frozen", "indicator_drop")  # weighbridge faults a truck plan may name

# Envelopes the backend stored, for the given seqs (those it acked out of the outbox).
AckedRecords = Callable[[Sequence[int]], list[dict[str, Any]]]


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
        broker_url: str | None = None,
        acked: AckedRecords | None = None,
        snapshot_cap_mb: float = 200.0,
    ) -> None:
        self.scenario = scenario
        self.step_s = step_s
        self.clock = VirtualClock(1000.0)
        self._broker_url, self._acked = broker_url, acked
        self._snapshot_cap_mb = snapshot_cap_mb
        self._name = f"virtual-{os.getpid()}-{id(self):x}"
        self.board = ioboard_fake.REGISTRY.register(
            self._name, FakeIoBoard(self.clock, travel_s=0.8, advance_on_wait=False))
        self.indicator = weighbridge_fake.INDICATORS.register(
            self._name, FakeIndicator(protocol, clock=self.clock, rate_hz=10))
        rng = np.random.default_rng(seed)
        self.camera = camera_fake.CAMERAS.register(
            self._name, FakeCamera(clock=self.clock, fps=CAMERA_FPS, size=CAMERA_SIZE))
        self.camera.show(_scene(rng))
        self._source: FrameSource | None = None
        self._camera_up: bool | None = None  # None: no frame and no failure yet
        self._next_camera = 0.0
        self.world = World()
        self.world.on_show = self._on_show
        self._dynamics = DeckDynamics(20, rng)
        self._history: deque[tuple[float, float]] = deque()
        self._next_weight = 0.0
        self._sensors: Sensors | None = None
        self._in_view = False  # a pass is held up to the camera
        self._showing: str | None = None  # the pass text to hand to the agent once
        self._current_pass: str | None = None
        self._last_valid_pass: str | None = None  # what a reused pass reuses
        self._frozen = False
        self._keys(workdir / "keys")
        path = self._write_config(workdir)
        self.config = load_config(path)
        self.clock_synced = True  # what the lane's clock status says; a test may turn it off
        self.agent = LaneAgent(self.config, clock=self.clock, wall_clock=self.wall,
                               clock_status=lambda: (self.clock_synced, "virtual"))
        self.devices: LaneDevices = open_devices(self.config, self.clock,
                                                 isolate_decoders=False)
        self.agent.attach(self.devices)
        self.devices.board.open(timeout=2.0)
        self._records: list[dict[str, Any]] = []
        self._read_upto = 0
        self.unaccounted: list[int] = []  # seqs gone from the outbox that the backend lacks
        if broker_url is not None:
            self.devices.publisher.start()

    def wall(self) -> float:
        return WALL_START + self.clock()

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self.devices.close()
        ioboard_fake.REGISTRY.unregister(self._name)
        weighbridge_fake.INDICATORS.unregister(self._name)
        camera_fake.CAMERAS.unregister(self._name)

    # -- faults between trucks ---------------------------------------------------------------
    def lose_camera(self, reason: str = "camera unplugged") -> None:
        """The camera goes away (reads and opens fail) until ``restore_camera``."""
        self.camera.lose(reason)

    def restore_camera(self) -> None:
        self.camera.restore()

    def silence_indicator(self, silent: bool = True) -> None:
        """The indicator stops sending (cable cut, switched off), or sends again."""
        self.indicator.set_silent(silent)

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
snapshot_cap_mb = {self._snapshot_cap_mb}

[passes]
trust_list = "{self.trust_path}"
ledger = "{state / 'passes.sqlite'}"

[mqtt]
broker = "{self._broker_url or 'mqtt://127.0.0.1:9'}"
lab = true
command_keys = "{self.command_keys_path}"
# A lab broker on this machine: come back at once after an outage.
reconnect_first_min_s = 0.1
reconnect_first_max_s = 0.3
reconnect_max_s = 1.0
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
        if sensors != self._sensors:  # the board's loop catches up on every read anyway
            self._sensors = sensors
            self.board.set_inputs(loop_a=sensors.loop_a, loop_b=sensors.loop_b,
                                  photo_eye=sensors.photo_eye, deck_front=sensors.deck_front,
                                  deck_rear=sensors.deck_rear)
        if not self._frozen and now >= self._next_weight:
            self._next_weight = now + INDICATOR_PERIOD_S
            self._show_weight(now)
        for event in self.devices.board.read_events(0.0):
            self.agent.handle(event, now)
        for arrival in self.devices.weighbridge.read(0.0):
            self.agent.handle(arrival, now)
        if now >= self._next_camera:
            self._next_camera = now + CAMERA_PERIOD_S
            self._read_camera(now)
        if self._showing is not None and self._camera_up is not False:
            text, self._showing = self._showing, None
            self.agent.handle(QrRead(text, QR_OUTLINE, now, "virtual", 0.0), now)
        self.agent.tick(now)

    def _read_camera(self, now: float) -> None:
        """What the agent's camera reader does with a frame, without decoding it: keep it as
        the evidence moment, and report the camera's loss and return (changes only)."""
        try:
            if self._source is None:
                self._source = open_frame_source(self.config.camera.source)
            frame = self._source.read(0.0)
        except CameraLost as exc:
            if self._source is not None:
                self._source.close()
                self._source = None
            self._camera_changed(False, str(exc), now)
            return
        if frame is not None:
            outline = [QR_OUTLINE] if self._in_view else []
            self.devices.evidence.remember(frame.image, frame.at, outline)
            self._camera_changed(True, "", now)

    def _camera_changed(self, up: bool, reason: str, now: float) -> None:
        if up != self._camera_up:
            self._camera_up = up
            self.agent.handle(CameraChanged(now, up, reason), now)

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
        kg = self._dynamics.display(now, self.world.deck_load_kg(), period_s=INDICATOR_PERIOD_S)
        while self._history and self._history[0][0] < now - 1.0:
            self._history.popleft()
        self._history.append((now, kg))
        values = [v for _t, v in self._history]
        self.indicator.set_weight(kg, motion=max(values) - min(values) > 20)

    def _on_show(self, showing: bool) -> None:
        self._in_view = showing and self._current_pass is not None
        if self._in_view:
            self._showing = self._current_pass

    # -- records -----------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Every event the lane stored so far (since ``forget_records``), in seq order."""
        self._read_new()
        return list(self._records)

    def forget_records(self) -> None:
        """Drop the records read so far (a long run keeps only the current truck's)."""
        self._read_new()
        self._records.clear()

    @property
    def records_read_upto(self) -> int:
        """The highest seq read: every event up to it was read, in order."""
        return self._read_upto

    def _read_new(self) -> None:
        """Read the events stored since the last read. With a broker, the backend's acks
        delete rows: always a prefix of what is stored, so the unread rows missing before the
        first one still there (or all of them) are the backend's to give."""
        outbox = self.devices.outbox
        rows = outbox.pending(1_000_000, after_seq=self._read_upto)  # one snapshot, seq order
        for row in rows:
            self._take_acked(row.key - 1)
            self._records.append(json.loads(row.payload))
            self._read_upto = row.key
        if not rows and self._acked is not None:
            self._take_acked(outbox.stats()["next_seq"] - 1)

    def _take_acked(self, upto: int) -> None:
        """The records up to ``upto`` not read yet: gone from the outbox, so the backend's."""
        if upto <= self._read_upto or self._acked is None:
            return
        wanted = list(range(self._read_upto + 1, upto + 1))
        found = {int(r["seq"]): r for r in self._acked(wanted)}
        self.unaccounted += [seq for seq in wanted if seq not in found]
        self._records += [found[seq] for seq in wanted if seq in found]
        self._read_upto = upto

    def transit_records(self, transit_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("transit_id") == transit_id]

    # -- the backend's side ------------------------------------------------------------------
    def issue_pass(self, plan: TruckPlan) -> str | None:
        if plan.pass_kind == "none":
            return None
        if plan.pass_kind == "reuse" and self._last_valid_pass is not None:
            return self._last_valid_pass
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
        if plan.pass_kind == "valid" and plan.expect_decision == "open":
            self._last_valid_pass = text  # used, and still valid when a long run reuses it
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
        self._read_new()
        started, first_row = self.clock(), len(self._records)
        relays_before = len(self.board.output_changes())
        self.world.send(plan.truck)
        released = faulted = False
        hold: dict[str, Any] | None = None
        for _ in range(round(timeout_s / self.step_s)):
            truck = self.world.truck
            if truck is None or truck.phase is Phase.GONE:
                break
            # Only a held lane has a hold record to look for (reading the outbox costs).
            if hold is None and self.agent.machine.state is LaneState.HOLD:
                hold = self._hold_since(first_row)
            if hold is not None and plan.release == "remote" and not released:
                self.release(hold)
                released = True
            elif hold is not None and plan.release == "technician" and not released:
                self.board.set_input("tech_key", True)
                released = True
            elif hold is not None and plan.release is None:
                self.world.back_off()
            if truck.phase is Phase.STOPPED and plan.faults and not faulted:
                if set(plan.faults) - set(FAULTS):
                    raise SimulatorError(f"virtual lane: faults {plan.faults} not modelled "
                                         f"(modelled: {', '.join(FAULTS)})")
                faulted = True
                self._frozen = "frozen" in plan.faults
                if "indicator_drop" in plan.faults:
                    self.silence_indicator(True)
            self.step()
        else:
            outcome.problems.append(f"truck still in the lane after {timeout_s:.0f} s")
        self._frozen = False
        if faulted and "indicator_drop" in plan.faults:
            self.silence_indicator(False)
        self.board.set_input("tech_key", False)
        self.run_until(lambda: self.devices.board.snapshot is not None
                       and self.devices.board.snapshot.barrier == "closed"
                       and self.agent.machine.transit is None, timeout_s=10.0)
        outcome.seconds = self.clock() - started
        self._collect(plan, outcome, first_row, relays_before)
        return outcome

    def _hold_since(self, first_row: int) -> dict[str, Any] | None:
        self._read_new()
        for record in self._records[first_row:]:
            if record["type"] == "decision" and record["data"]["decision"] == "hold":
                return record
        return None

    def _collect(self, plan: TruckPlan, outcome: VirtualOutcome, first_row: int,
                 relays_before: int) -> None:
        self._read_new()
        records = self._records[first_row:]
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


def _scene(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A lane camera's view: light and shade with sensor noise (so evidence JPEGs are of a
    camera's size, not a flat grey's)."""
    w, h = CAMERA_SIZE
    ys, xs = np.mgrid[0:h, 0:w]
    shade = 90 + 60 * np.sin(xs / 97.0) * np.cos(ys / 61.0)
    noise = rng.normal(0, 6, (h, w))
    scene: npt.NDArray[np.uint8] = np.clip(shade + noise, 0, 255).astype(np.uint8)
    return scene


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
