"""A whole simulated lane on one machine: broker, backend, IO board firmware, weighbridge,
camera, the lane world, and the real ``edge-agent`` as its own process.

Used by ``lane-sim run`` (and so ``make demo``) and by the HIL suite's ``sim`` environment.
Everything started here is stopped by ``close()``, also after an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from simulators.errors import SimulatorTimeout
from simulators.outcomes import TruckOutcome, collect_outcome
from simulators.scenarios import Scenario, TruckPlan
from simulators.world import Phase, World

__all__ = ["SimLane", "TruckOutcome", "stop_agent_process"]

Log = Callable[[str], None]


class SimLane:
    """Start with ``with SimLane(scenario) as lane:``; then ``lane.run_truck(plan)``."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        broker_url: str | None = None,
        workdir: Path | None = None,
        log: Log = print,
        seed: int = 1,
        protocol: str = "yaohua-tf0",
        prepare_state: Callable[[Path], None] | None = None,
        store: str = "sqlite",
    ) -> None:
        """``protocol`` is the weighbridge indicator's format; ``prepare_state(state_dir)``
        runs before the agent first starts (to stage damaged or aged state files)."""
        self.scenario = scenario
        self._protocol = protocol
        self._prepare_state = prepare_state
        self._store_kind = store  # the backend's: "sqlite" (a file) or "postgresql" (private)
        self._broker_url = broker_url
        self._log = log
        self._seed = seed
        self._stack = contextlib.ExitStack()
        self._tmp = workdir or Path(tempfile.mkdtemp(prefix="gatelane-sim-"))
        self.world = World()
        self.broker: Any = None
        self._stop = threading.Event()
        self._agent: subprocess.Popen[bytes] | None = None
        self._first_valid_pass: str | None = None
        self.world_thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------------------
    def __enter__(self) -> SimLane:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from backend.commands import CommandService, SigningKey
        from backend.ingest import IngestWorker
        from edge_agent.protocols import gp1
        from edge_agent.telemetry.commands import public_key_text
        from simulators.barrier import BarrierMotor
        from simulators.broker import MosquittoBroker
        from simulators.camera import CameraSim
        from simulators.iohost import IoBoardHost
        from simulators.weighbridge import WeighbridgeSim

        keys = self._tmp / "keys"
        self.issuer_key_path, self.trust_path = gp1.write_keypair(keys, "ed25519")
        self.issuer_key = gp1.load_private_key(self.issuer_key_path)
        self.rogue_key = gp1.generate_key("ed25519")
        self.officer_key = Ed25519PrivateKey.generate()
        self.root_key = Ed25519PrivateKey.generate()  # the site's offline trust-list key
        self.command_keys_path = keys / "command_keys.json"
        self.command_keys_path.write_text(json.dumps({"keys": [
            {"kid": "officer-console", "role": "command",
             "public_key": public_key_text(self.officer_key)},
            {"kid": "site-root", "role": "root", "public_key": public_key_text(self.root_key)},
        ]}))

        if self._broker_url is None:
            broker = MosquittoBroker(workdir=self._tmp / "broker")
            self._stack.callback(broker.close)
            broker.start()
            self.broker = broker
            self._broker_url = broker.url
        self._log(f"broker      {self._broker_url}")

        store_url = str(self._tmp / "backend.sqlite")
        if self._store_kind == "postgresql":
            from backend.pgserver import PgServer

            pg = PgServer(self._tmp / "postgresql")
            self._stack.callback(pg.close)
            pg.start()
            store_url = pg.url
        self._log(f"store       {self._store_kind} {store_url}")
        self.backend = IngestWorker(self._broker_url, store=store_url)
        self._stack.callback(self.backend.stop)
        self.backend.start()
        self.console = CommandService(
            self.backend,
            self.scenario.site,
            officer=SigningKey("officer-console", self.officer_key, "officer-7"),
            root=SigningKey("site-root", self.root_key, "site-operations"),
        )

        self.iohost = IoBoardHost()
        self._stack.callback(self.iohost.stop)
        self.iohost.start()
        self._log(f"IO board    MicroPython firmware on {self.iohost.port}")

        self.barrier = BarrierMotor(travel_s=0.8)
        self.barrier_position = self.barrier.step(
            time.monotonic(), open_relay=False, close_relay=False
        )
        self.weighbridge = WeighbridgeSim(
            self._protocol, rate_hz=10, load_fn=lambda now: self.world.deck_load_kg(),
            seed=self._seed,
        )
        self._stack.callback(self.weighbridge.stop)
        self.weighbridge.start()
        self._log(f"weighbridge {self._protocol} at 10 Hz on {self.weighbridge.port}")

        self.camera = CameraSim(fps=8, seed=self._seed)
        self._stack.callback(self.camera.stop)
        self.camera.start()
        self._log(f"camera      {self.camera.url}")

        self.world.on_show = self._on_show
        self._current_pass: str | None = None
        self.world_thread = threading.Thread(target=self._world_loop, name="world", daemon=True)
        self.world_thread.start()
        self._stack.callback(self._stop_world)

        self.config_path = self._write_agent_config()
        if self._prepare_state is not None:
            self._prepare_state(self.state_dir)
        self._start_agent()

    def close(self) -> None:
        self._stop_agent()
        self._stack.close()

    # -- the agent process ---------------------------------------------------------------------
    def _write_agent_config(self) -> Path:
        s = self.scenario
        state = self.state_dir = self._tmp / "agent-state"
        state.mkdir(parents=True, exist_ok=True)
        self.status_port = _free_port()
        text = f"""# Generated by lane-sim for scenario {s.name!r}.
[lane]
site = "{s.site}"
lane = "{s.lane}"
gate = "{s.gate}"
direction = "exit"
state_dir = "{state}"

[io_board]
url = "{self.iohost.port}"

[weighbridge]
url = "{self.weighbridge.port}"
protocol = "{self._protocol}"
baudrate = 9600
max_kg = 60000
e_kg = 20
# Shorter than a site would use, so the demo's abnormal trucks do not keep the lane long.
not_on_deck_s = 3.0
frozen_s = 4.0

[camera]
source = "{self.camera.url}"

[passes]
trust_list = "{self.trust_path}"
ledger = "{state / 'passes.sqlite'}"

[mqtt]
broker = "{self._broker_url}"
lab = true
keepalive_s = 5
reconnect_first_min_s = 0.5  # one lane: no herd to spread, and the demo stays brisk
reconnect_first_max_s = 2
command_keys = "{self.command_keys_path}"

[status]
listen = "127.0.0.1:{self.status_port}"

[control]
socket = "{self._tmp / 'control.sock'}"
"""
        path = self._tmp / "agent.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def _start_agent(self) -> None:
        self.agent_log_path = self._tmp / "agent.log"
        log_file = self.agent_log_path.open("wb")
        self._stack.callback(log_file.close)
        self._agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "--config", str(self.config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._log(f"edge-agent  pid {self._agent.pid}, config {self.config_path}")
        lane = self.scenario.lane
        online = self.backend.wait_for(
            lambda _events: bool((self.backend.lane_state(lane) or {}).get("online")),
            timeout=30.0,
        )
        if not online:
            raise SimulatorTimeout(
                "edge-agent did not come online within 30 s; its log:\n" + self.agent_log()
            )
        self._log("edge-agent  online (birth message received by the backend)")

    def _stop_agent(self) -> None:
        agent, self._agent = self._agent, None
        stop_agent_process(agent)

    def restart_agent(self) -> None:
        """Stop the agent (it says goodbye: state offline) and start it again."""
        lane = self.scenario.lane
        self._stop_agent()
        self.backend.wait_for(
            lambda _events: not (self.backend.lane_state(lane) or {}).get("online"), timeout=10.0
        )
        self._start_agent()

    def agent_log(self, tail: int = 60) -> str:
        try:
            lines = self.agent_log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def agent_alive(self) -> bool:
        return self._agent is not None and self._agent.poll() is None

    # -- the world loop ------------------------------------------------------------------------
    def _world_loop(self) -> None:
        last_inputs: dict[str, bool] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            outputs = self.iohost.outputs()
            position = self.barrier.step(
                now,
                open_relay=outputs.get("barrier_open", False),
                close_relay=outputs.get("barrier_close", False),
            )
            self.barrier_position = position
            self.world.step(now, position.fraction)
            sensors = self.world.sensors()
            inputs = {
                "loop_a": sensors.loop_a,
                "loop_b": sensors.loop_b,
                "photo_eye": sensors.photo_eye,
                "deck_front": sensors.deck_front,
                "deck_rear": sensors.deck_rear,
                "limit_open": position.limit_open,
                "limit_closed": position.limit_closed,
            }
            if inputs != last_inputs:
                self.iohost.set_inputs(**inputs)
                last_inputs = inputs
            self._stop.wait(0.01)

    def _stop_world(self) -> None:
        self._stop.set()
        if self.world_thread is not None:
            self.world_thread.join(timeout=2)

    def _on_show(self, showing: bool) -> None:
        self.camera.show(self._current_pass if showing else None)

    # -- passes ----------------------------------------------------------------------------------
    def issue_pass(self, plan: TruckPlan) -> str | None:
        from edge_agent.protocols import gp1

        s = self.scenario
        now = datetime.now(UTC)
        if plan.pass_kind == "none":
            return None
        if plan.pass_kind == "reuse" and self._first_valid_pass is not None:
            return self._first_valid_pass
        key = self.rogue_key if plan.pass_kind == "untrusted" else self.issuer_key
        valid_from = now - timedelta(hours=1)
        valid_for = 4 * 3600
        if plan.pass_kind == "expired":
            valid_from, valid_for = now - timedelta(hours=5), 3600
        text: str = gp1.issue_pass(
            key,
            release_no=f"RL-{plan.truck.plate}-{int(now.timestamp()) % 100000}",
            enterprise="Demo Logistics Co.",
            plates=(plan.truck.plate,),
            declared_gross_kg=plan.declared,
            tolerance_kg=plan.tolerance_kg,
            site=s.site,
            gates=(s.gate,),
            direction="exit",
            valid_from=valid_from,
            valid_for_s=valid_for,
        )
        if plan.pass_kind == "valid" and self._first_valid_pass is None:
            self._first_valid_pass = text
        return text

    # -- one truck -----------------------------------------------------------------------------
    def run_truck(
        self,
        plan: TruckPlan,
        *,
        timeout_s: float = 40.0,
        pass_text: str | None = None,
        on_hold: Callable[[dict[str, Any]], None] | None = None,
    ) -> TruckOutcome:
        """Drive ``plan``'s truck through the lane (showing ``pass_text`` when given).

        For a plan released remotely, ``on_hold(hold_event)`` takes the officer's place: it
        runs once the hold reaches the backend, while the truck waits on the deck.
        """
        outcome = TruckOutcome(
            plan.name, plan.truck.plate, plan.expect_decision, plan.expect_reason
        )
        self._current_pass = pass_text if pass_text is not None else self.issue_pass(plan)
        started = time.monotonic()
        faults_on = False
        released = False
        outage = plan.broker_outage and self._own_broker()
        if outage:
            self.broker.stop()
            self._log(f"[{plan.name}] broker stopped: the lane must work on, and lose nothing")
        self.world.send(plan.truck)
        self._log(f"[{plan.name}] truck {plan.truck.plate} drives onto the deck "
                  f"(gross {plan.truck.gross_kg:.0f} kg, pass {plan.pass_kind})")
        deadline = started + timeout_s
        try:
            while time.monotonic() < deadline:
                truck = self.world.truck
                if truck is not None and truck.phase is Phase.GONE:
                    break
                if plan.release == "remote" and not released:
                    released = self._release_remotely(plan, outcome, started, on_hold)
                if plan.release is None and plan.expect_decision == "hold" and self._held(started):
                    self.world.back_off()
                if truck is not None and truck.phase is Phase.STOPPED and not faults_on:
                    # Faults start once the truck stands on the deck: the lane has seen it come.
                    for fault in plan.faults:
                        self.weighbridge.set_fault(fault, True)
                    faults_on = True
                if not self.agent_alive():
                    outcome.problems.append("edge-agent exited:\n" + self.agent_log())
                    break
                time.sleep(0.05)
            else:
                outcome.problems.append(f"truck still in the lane after {timeout_s:.0f} s")
        finally:
            for fault in plan.faults:
                self.weighbridge.set_fault(fault, False)
            if outage:
                self.broker.restart()  # same port: the agent and backend reconnect by themselves
                down = time.monotonic() - started
                outcome.notes.append(f"broker down {down:.1f} s")
                self._log(f"[{plan.name}] broker back after {down:.1f} s")
        self._wait_lane_idle(deadline=time.monotonic() + 8.0)
        finished = time.monotonic()
        outcome.seconds = finished - started
        collect_outcome(self.backend, self.iohost, self.world, self.scenario.lane, plan, outcome,
                        started, finished)
        self._log(
            f"[{plan.name}] {outcome.decision}"
            + (f" ({', '.join(outcome.reasons)})" if outcome.reasons else "")
            + (f", weight {outcome.weight_kg:.0f} kg" if outcome.weight_kg is not None else "")
            + (" OK" if outcome.ok else f" PROBLEM: {'; '.join(outcome.problems)}")
        )
        return outcome

    def _release_remotely(
        self,
        plan: TruckPlan,
        outcome: TruckOutcome,
        since: float,
        on_hold: Callable[[dict[str, Any]], None] | None,
    ) -> bool:
        """The officer's console: once the hold is published, sign a release echoing its
        challenge and send it down the lane's command topic. True once sent."""
        holds = [
            e for e in self.backend.events(self.scenario.lane)
            if e.get("type") == "decision"
            and e["data"].get("decision") == "hold"
            and e.get("mono_ms", 0) / 1000.0 >= since
        ]
        if not holds:
            return False
        if on_hold is not None:
            on_hold(holds[0])
            return True
        self.console.release(self.scenario.lane, holds[0])
        outcome.notes.append("released by officer-7")
        self._log(f"[{plan.name}] officer-7 checks the evidence and releases the truck remotely")
        return True

    def _held(self, since: float) -> bool:
        """Has the lane announced a hold since ``since`` (the driver's red sign)?"""
        return any(
            e.get("type") == "decision"
            and e["data"].get("decision") == "hold"
            and e.get("mono_ms", 0) / 1000.0 >= since
            for e in self.backend.events(self.scenario.lane)
        )

    def _own_broker(self) -> bool:
        """Outages can only be staged on the broker this harness started itself."""
        return getattr(self, "broker", None) is not None

    def _wait_lane_idle(self, deadline: float) -> None:
        """Wait for the barrier to be closed and the lane's transit to be closed: the arm may
        be down before the truck's rear has left the deck, and the transit ends only then."""
        while time.monotonic() < deadline:
            outputs = self.iohost.outputs()
            moving = outputs.get("barrier_open") or outputs.get("barrier_close")
            if not moving and self.barrier_position.limit_closed and self._lane_idle():
                return
            time.sleep(0.05)

    def _lane_idle(self) -> bool:
        try:
            return self.status().get("state") == "idle"
        except (OSError, ValueError):  # the agent's page not up (yet): the barrier decides
            return True

    def status(self) -> dict[str, Any]:
        """The agent's own status document (what ``lanectl status`` shows)."""
        import urllib.request

        url = f"http://127.0.0.1:{self.status_port}/status"
        with urllib.request.urlopen(url, timeout=2) as response:
            document: dict[str, Any] = json.loads(response.read())
        return document


def stop_agent_process(agent: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop an agent started in its own session: SIGTERM (it says goodbye), then SIGKILL."""
    if agent is None or agent.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(agent.pid, signal.SIGTERM)
    try:
        agent.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent.pid, signal.SIGKILL)
        agent.wait(timeout=5)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
