"""The edge agent's imperative shell: drivers -> pure cores -> lane machine -> commands.

One reader thread per device (``readers.py``) hands typed input to the inbox, device inputs
ahead of commands; the main loop owns every piece of state (weight watcher, lane machine), so
nothing else needs a lock. The barrier decision is taken on the main loop the moment the later
of pass and weight arrives, and the OPEN command goes straight to the IO board's port.

Containment: every stage of the loop runs under ``Faults.guard``; no input, stored file or
internal error stops the agent. Storage fails closed: records that cannot be written wait in
memory (``RecordKeeper``) and the machine holds trucks until they are stored (rule L9).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from edge_agent import __version__
from edge_agent.clock import wall_clock_status
from edge_agent.config import AgentConfig, load_config
from edge_agent.containment import Faults
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.inbox import LaneInbox
from edge_agent.lane.commands import (
    CloseWhenClear,
    LaneCommand,
    MarkPassUsed,
    OpenBarrier,
    Publish,
    TakeSnapshot,
)
from edge_agent.lane.events import (
    LaneEvent,
    PassUseRecorded,
    RemoteRelease,
    StorageChanged,
)
from edge_agent.lane.machine import LaneMachine, MachineConfig
from edge_agent.lane.policy import PolicyConfig
from edge_agent.protocols import gp1
from edge_agent.readers import Readers
from edge_agent.remote_config import apply_settings, reported
from edge_agent.status import StatusBoard, serve_status
from edge_agent.telemetry.commands import Command, Rejection, echo
from edge_agent.telemetry.evidence import chunk_evidence
from edge_agent.telemetry.outbox import HEALTH_EXPIRY_MS, OutboxError
from edge_agent.telemetry.records import RecordKeeper, RefusalBudget
from edge_agent.wiring import DeviceInputs, LaneDevices, open_devices, pass_trust

log = logging.getLogger("edge_agent")

Clock = Callable[[], float]


class LaneAgent:
    """Runs one lane until ``stop`` is set."""

    def __init__(self, config: AgentConfig, *, clock: Clock = time.monotonic) -> None:
        self.local_config = config  # the lane's file; signed config commands go on top
        self.config = config
        self._clock = clock
        self._inbox = LaneInbox()
        self._stop = threading.Event()
        self._faults = Faults(clock)
        self._refusals = RefusalBudget()
        self.status = StatusBoard(config)
        self.machine = LaneMachine(
            MachineConfig(
                policy=_policy(config), pass_without_truck_s=config.lane.pass_without_truck_s
            ),
            new_id=_new_id,
        )
        self._devices: LaneDevices | None = None
        self._inputs: DeviceInputs | None = None
        self._records: RecordKeeper | None = None
        self._readers: Readers | None = None
        self._storage_ok = True
        self._next_health = 0.0
        self._next_status = 0.0
        self._next_retry = 0.0
        self._next_clock = 0.0
        self._clock_synced = False  # the wall clock's state, looked at once a second

    # -- life ------------------------------------------------------------------------------------
    def run(self) -> None:
        config = self.config
        config.lane.state_dir.mkdir(parents=True, exist_ok=True)
        devices = open_devices(config, self._clock, on_command=self._on_command)
        self._devices = devices
        self._records = RecordKeeper(devices.outbox)
        self._inputs = DeviceInputs(config, devices, self._clock)
        self._reconfigure(self._effective_config())
        server = serve_status(config.status.listen, self.status)
        readers = self._readers = Readers(
            devices, self._put_device, self._clock, self._stop, self._faults, log
        )
        devices.publisher.start()
        readers.start()
        log.info(
            "lane %s/%s running (agent %s, boot %s)",
            config.lane.site,
            config.lane.lane,
            __version__,
            devices.outbox.boot_id,
        )
        now = self._clock()
        self._watch_clock(now)  # the clock's state is known before the first command
        for moved, problem in devices.quarantined:
            data = {"code": "lane.state_quarantined", "detail": f"{moved.name}: {problem}"}
            self._execute([Publish("abnormality", data)], now)
        try:
            self._main_loop()
        finally:
            self._stop.set()
            self._inbox.wake()
            server.shutdown()
            readers.join(timeout=2.0)
            devices.close()
            log.info("lane %s stopped", config.lane.lane)

    def stop(self) -> None:
        self._stop.set()
        self._inbox.wake()

    def _put_device(self, source: str, payload: Any) -> None:
        if not self._inbox.put("device", (source, payload)):
            self._faults.record("inbox", OverflowError(f"device inbox full: {source} dropped"))

    def _on_command(self, name: str, payload: bytes) -> None:
        """From the MQTT sender thread: never blocks it; a flood is dropped and counted."""
        self._inbox.put("command", (name, payload))

    # -- the loop --------------------------------------------------------------------------------
    def _main_loop(self) -> None:
        inputs = self._inputs
        assert inputs is not None
        faults = self._faults
        while not self._stop.is_set():
            now = self._clock()
            pending = (self.machine.next_deadline(), inputs.next_deadline())
            deadlines = [d for d in pending if d is not None]
            timeout = 0.2 if not deadlines else max(0.0, min(min(deadlines) - now, 0.2))
            item = self._inbox.get(timeout)
            now = self._clock()
            events: list[LaneEvent] = []
            timer_now = now
            if item is not None and item[0] == "command":
                name, body = item[1]
                with faults.guard("command"):
                    self._command(name, body, now)
            elif item is not None:
                source, payload = item[1]
                with faults.guard(f"input {source}"):
                    events += inputs.translate(source, payload, now)
                if self._inbox.devices_waiting():
                    # Readings still queued: timers run on the time of the input handled,
                    # so a backlog never looks like a silent indicator.
                    timer_now = min(now, _input_time(payload, now))
            with faults.guard("weighing timers"):
                events += inputs.tick(timer_now)
            for event in events:
                self._step(event, now)
            with faults.guard("lane timers"):
                self._execute(self.machine.handle_timer(timer_now), now)
            with faults.guard("storage"):
                self._watch_storage(now)
            with faults.guard("clock"):
                self._watch_clock(now)
            if now >= self._next_status:
                self._next_status = now + 0.25
                with faults.guard("status"):
                    self.status.update_lane(self.machine, inputs)
            if now >= self._next_health:
                self._next_health = now + self.config.mqtt.health_interval_s
                with faults.guard("health"):
                    self._health(now)

    def _step(self, event: LaneEvent, now: float) -> list[LaneCommand]:
        """One event through the machine, and what it asked for executed."""
        with self._faults.guard(f"lane {type(event).__name__}"):
            return self._execute(self.machine.handle(event, now), now)
        return []

    def _watch_storage(self, now: float) -> None:
        """L9: tell the machine when records stop (or start again) being writable."""
        devices, records = self._devices, self._records
        assert devices is not None and records is not None
        if not records.ok and now >= self._next_retry:
            self._next_retry = now + 2.0
            try:
                devices.ledger.probe(time.time())
            except EdgeAgentError as exc:
                records.fail(str(exc))
            else:
                records.retry()
                devices.publisher.wake()
        if records.ok != self._storage_ok:
            self._storage_ok = records.ok
            if records.ok:
                log.warning("storage writable again; the events held in memory are stored")
            else:
                log.error("storage fault: %s; trucks are held until it is back", records.error)
            self._step(StorageChanged(now, records.ok, records.error), now)

    def _watch_clock(self, now: float) -> None:
        """Raise the persisted time floor from the wall clock while it is synced."""
        if now < self._next_clock:
            return
        self._next_clock = now + 1.0
        devices = self._devices
        assert devices is not None
        self._clock_synced, _source = wall_clock_status()
        if self._clock_synced:
            devices.time_floor.observe(time.time(), synced=True)

    # -- records ---------------------------------------------------------------------------------
    def _record(
        self, type: str, data: dict[str, Any], transit_id: str | None, now: float, *,
        sheddable: bool = False,
    ) -> dict[str, Any] | None:
        devices, records = self._devices, self._records
        assert devices is not None and records is not None
        envelope = records.add(
            type, data, transit_id=transit_id, stamp=_stamp(now), sheddable=sheddable
        )
        devices.publisher.wake()
        return envelope

    def _upload_evidence(self, ref: str, transit_id: str, path: Path, now: float) -> None:
        """Queue the snapshot for the backend as bounded ``evidence`` events (sheddable)."""
        media_type = "image/jpeg" if path.suffix == ".jpg" else "image/x-portable-graymap"
        try:
            chunks = chunk_evidence(ref, path.read_bytes(), media_type)
        except (OSError, EdgeAgentError) as exc:
            log.error("evidence %s not uploaded: %s", ref, exc)
            return
        for chunk in chunks:
            if self._record("evidence", chunk, transit_id, now, sheddable=True) is None:
                log.warning("evidence %s not queued: storage is short", ref)
                return

    def _health(self, now: float) -> None:
        """Periodic health report: sheddable, on its own counter, expires at the broker."""
        devices, inputs, records = self._devices, self._inputs, self._records
        assert devices is not None and inputs is not None and records is not None
        data: dict[str, Any] = {
            "state": self.machine.state.value,
            "devices": inputs.describe(),
            "outbox": devices.outbox.stats(),
            "settings": reported(self.config),
            "storage": {"ok": records.ok, "error": records.error or None,
                        "parked": records.parked, "lost": records.lost},
            "inbox_dropped": dict(self._inbox.dropped),
            "commands_unreported": self._refusals.suppressed,
            "faults": dict(self._faults.counts),
            "time_floor": int(devices.time_floor.value),
        }
        if devices.commands is not None:
            kinds = ("trust_update", "revocations", "config", "site_uses")
            data["applied"] = {kind: devices.commands.version(kind) for kind in kinds}
        try:
            stored = devices.outbox.add_health(data, **_stamp(now))
        except OutboxError:
            stored = None
        if stored is None:
            # The disk budget or the disk itself refused it: the alarm still goes out.
            log.warning("health report not stored (storage short): sent without keeping it")
            topic, payload = devices.outbox.transient_health(data, **_stamp(now))
            devices.publisher.publish_transient(topic, payload, HEALTH_EXPIRY_MS // 1000)
        devices.publisher.wake()

    # -- commands --------------------------------------------------------------------------------
    def _command(self, name: str, payload: bytes, now: float) -> None:
        """A command from the backend: verify, run at most once, publish the result."""
        devices = self._devices
        assert devices is not None
        if devices.commands is None:
            log.warning("command %s ignored: no command keys configured", echo(name))
            return
        topic = devices.commands.topics.command(name)
        wall = devices.time_floor.now(time.time())
        verdict = devices.commands.verify(topic, payload, wall, clock_synced=self._clock_synced)
        if isinstance(verdict, Rejection):
            # Anyone on the broker can send garbage: only a bounded number of unsigned
            # refusals cost a record; a refusal of a validly signed command always does.
            if verdict.authenticated or self._refusals.allow(now):
                log.warning("command %s refused: %s (%s)", echo(name), verdict.code,
                            verdict.reason)
                self._result(
                    verdict.cmd_id or "", echo(name), False, verdict.code, verdict.reason, now,
                    problems=verdict.problems,
                )
            return
        devices.time_floor.observe(devices.commands.time_floor)
        match verdict.name:
            case "remote_release":
                self._release(verdict, now)
            case "trust_update" | "revocations":
                devices.trust, devices.revoked = pass_trust(self.local_config, devices.commands)
                applied = {
                    "version": verdict.args["version"],
                    "pass_keys": len(devices.trust.entries),
                    "pass_revocations": len(devices.revoked),
                    "command_keys": sorted(devices.commands.trusted_keys()),
                }
                self._result(verdict.cmd_id, name, True, None, "applied", now, reported=applied)
            case "site_uses":
                hashes = [gp1.parse_revocation_hash(h) for h in verdict.args["pass_hashes"]]
                learned = devices.ledger.learn_site_uses(hashes, now=time.time())
                applied = {"version": verdict.args["version"], "site_uses": len(hashes),
                           "new": learned}
                self._result(verdict.cmd_id, name, True, None, "applied", now, reported=applied)
            case "config":
                self._reconfigure(self._effective_config())
                settings = {"version": verdict.args["version"], "settings": reported(self.config)}
                self._result(verdict.cmd_id, name, True, None, "applied", now, reported=settings)

    def _release(self, verdict: Command, now: float) -> None:
        release = RemoteRelease(
            now, verdict.cmd_id, str(verdict.args["challenge"]), officer=verdict.issuer
        )
        commands = self._step(release, now)
        if any(isinstance(c, OpenBarrier) for c in commands):
            self._result(verdict.cmd_id, verdict.name, True, None, "barrier opened", now)
            return
        refused = [c for c in commands if isinstance(c, Publish) and c.type == "release_refused"]
        held = [c for c in commands if isinstance(c, Publish) and c.type == "decision"]
        why = (
            str(refused[0].data["reason"]) if refused
            else f"held: {', '.join(held[-1].data['reasons'])}" if held
            else "no held truck with that challenge"
        )
        self._result(verdict.cmd_id, verdict.name, False, "cmd.precondition", why, now)

    def _effective_config(self) -> AgentConfig:
        """The local file with the last applied remote settings on top."""
        devices = self._devices
        applied = devices.commands.applied("config") if devices and devices.commands else None
        if applied is None:
            return self.local_config
        try:
            return apply_settings(self.local_config, applied.body.get("settings", {}))
        except ValueError as exc:  # stored by an agent version with wider limits
            log.error("remote settings (version %s) not applied: %s", applied.version, exc)
            return self.local_config

    def _reconfigure(self, config: AgentConfig) -> None:
        self.config = config
        # A shorter health interval takes effect now, not after the old one ran out.
        self._next_health = min(self._next_health, self._clock() + config.mqtt.health_interval_s)
        assert self._inputs is not None
        self._inputs.reconfigure(config)
        self.machine.set_policy(_policy(config))

    def _result(
        self,
        cmd_id: str,
        name: str,
        ok: bool,
        code: str | None,
        detail: str,
        now: float,
        *,
        problems: tuple[str, ...] = (),
        reported: dict[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {"cmd_id": cmd_id, "name": name, "accepted": ok, "code": code,
                                "detail": detail}
        if problems:
            data["problems"] = list(problems)
        if reported is not None:
            data["reported"] = reported
        self._record("cmd_result", data, None, now)
        log.info("command %s %s: %s", name, "executed" if ok else "refused", code or detail)

    # -- the machine's commands ------------------------------------------------------------------
    def _execute(self, commands: list[LaneCommand], now: float) -> list[LaneCommand]:
        """Run the machine's commands; returns them with every follow-up they caused."""
        devices = self._devices
        assert devices is not None
        # Barrier commands go out before the records of why: the relay must not wait for the
        # outbox's fsync. The pass ledger goes first of all (L3: recorded before it opens).
        ordered = sorted(commands, key=_order)
        done: list[LaneCommand] = []
        for command in ordered:
            done.append(command)
            try:
                follow = self._execute_one(devices, command, now)
            except EdgeAgentError as exc:
                # A failed device call must not stop the lane; the machine learns of link
                # loss through the driver's own events.
                log.error("command %s failed: %s", type(command).__name__, exc)
                continue
            except Exception as exc:  # containment
                self._faults.record(f"execute {type(command).__name__}", exc)
                continue
            if follow:
                done += self._execute(follow, now)
        return done

    def _execute_one(
        self, devices: LaneDevices, command: LaneCommand, now: float
    ) -> list[LaneCommand]:
        match command:
            case OpenBarrier():
                seq = devices.board.open_barrier(valid_for_s=1.0)
                log.info("barrier OPEN sent (seq %s) for %s", seq, command.transit_id)
            case CloseWhenClear():
                devices.board.close_when_clear()
                log.info("barrier close-when-clear sent for %s", command.transit_id)
            case Publish():
                envelope = self._record(command.type, command.data, command.transit_id, now)
                if envelope is not None:
                    self.status.record_event(envelope)
                if command.type == "transit_closed" and self._readers is not None:
                    self._readers.new_truck.set()
                where = envelope.get("seq") if envelope else "held in memory"
                log.info("event %s seq=%s %s", command.type, where, _brief(command))
            case MarkPassUsed():
                return self.machine.handle(self._mark_used(devices, command, now), now)
            case TakeSnapshot():
                if devices.outbox.space_short():
                    log.warning("evidence %s not taken: storage is short", command.ref)
                    return []
                path = devices.evidence.snapshot(command.ref)
                log.info("evidence %s for %s: %s", command.ref, command.reason, path or "no frame")
                if path is not None:
                    self._upload_evidence(command.ref, command.transit_id, path, now)
        return []

    def _mark_used(
        self, devices: LaneDevices, command: MarkPassUsed, now: float
    ) -> PassUseRecorded:
        """Record the pass's use durably; the barrier opens only if this says ok (L3)."""
        assert self._records is not None
        try:
            fresh = devices.ledger.mark_used(
                bytes.fromhex(command.cti_hex),
                exp=command.exp,
                now=time.time(),
                lane=self.config.lane.lane,
            )
        except EdgeAgentError as exc:
            log.error("pass use not recorded, truck held: %s", exc)
            self._records.fail(str(exc))
            return PassUseRecorded(now, False, "lane.storage_fault", f"pass ledger: {exc}")
        if not fresh:
            return PassUseRecorded(now, False, "pass.already_used", "the ledger holds this pass")
        return PassUseRecorded(now, True)


def _order(command: LaneCommand) -> int:
    if isinstance(command, MarkPassUsed):
        return 0
    return 1 if isinstance(command, OpenBarrier | CloseWhenClear) else 2


def _input_time(payload: Any, default: float) -> float:
    """When a device input happened: readings are ``(at, item)``, events carry ``at``."""
    if isinstance(payload, tuple) and payload and isinstance(payload[0], int | float):
        return float(payload[0])
    at = getattr(payload, "at", None)
    return float(at) if isinstance(at, int | float) else default


class _Stamp(TypedDict):
    mono_ms: int
    wall_ms: int
    clock_synced: bool
    clock_source: str


def _stamp(now: float) -> _Stamp:
    """The times an outbox record carries: monotonic ``now``, and the wall clock with its status."""
    synced, source = wall_clock_status()
    return _Stamp(
        mono_ms=int(now * 1000),
        wall_ms=int(time.time() * 1000),
        clock_synced=synced,
        clock_source=source,
    )


def _policy(config: AgentConfig) -> PolicyConfig:
    return PolicyConfig(
        e_kg=config.weighbridge.e_kg,
        default_tolerance_kg=config.passes.default_tolerance_kg,
    )


def _brief(command: Publish) -> str:
    data = command.data
    keys = ("decision", "reasons", "code", "kg", "valid", "reason", "outcome", "by")
    parts = [f"{k}={data[k]}" for k in keys if k in data and data[k] not in (None, [], "")]
    return " ".join(parts)


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-agent", description="Run one gate lane.")
    parser.add_argument("--config", required=True, type=Path, help="the lane's TOML file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return 2
    agent = LaneAgent(config)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    try:
        agent.run()
    except EdgeAgentError as exc:
        log.error("edge-agent stopped: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
