"""The edge agent's imperative shell: drivers -> pure cores -> lane machine -> commands.

This is the only module with threads and loops. One reader thread per device pushes raw input
onto one queue; the main loop owns every piece of state (weight watcher, lane machine), so
nothing else needs a lock. The barrier decision is taken on the main loop the moment the later
of pass and weight arrives, and the OPEN command goes straight to the IO board's port.
"""

from __future__ import annotations

import argparse
import logging
import math
import queue
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from edge_agent import __version__
from edge_agent.clock import wall_clock_status
from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.lane.commands import (
    CloseWhenClear,
    LaneCommand,
    MarkPassUsed,
    OpenBarrier,
    Publish,
    TakeSnapshot,
)
from edge_agent.lane.events import LaneEvent, RemoteRelease
from edge_agent.lane.machine import LaneMachine, MachineConfig
from edge_agent.lane.policy import PolicyConfig
from edge_agent.remote_config import apply_settings, reported
from edge_agent.status import StatusBoard, serve_status
from edge_agent.telemetry.commands import Command, Rejection
from edge_agent.telemetry.evidence import chunk_evidence
from edge_agent.wiring import DeviceInputs, LaneDevices, open_devices, pass_trust

log = logging.getLogger("edge_agent")

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class _Input:
    """One item on the main loop's queue: which device, and what it said."""

    source: str
    payload: Any


class LaneAgent:
    """Runs one lane until ``stop`` is set."""

    def __init__(self, config: AgentConfig, *, clock: Clock = time.monotonic) -> None:
        self.local_config = config  # the lane's file; signed config commands go on top
        self.config = config
        self._clock = clock
        self._queue: queue.Queue[_Input] = queue.Queue(maxsize=10_000)
        self._stop = threading.Event()
        # Set by the main loop when a transit ends; the camera thread then forgets the passes
        # it already handed out, so the next truck's pass is read even if it is the same text.
        self._new_truck = threading.Event()
        self.status = StatusBoard(config)
        self.machine = LaneMachine(
            MachineConfig(
                policy=_policy(config), pass_without_truck_s=config.lane.pass_without_truck_s
            ),
            new_id=_new_id,
        )
        self._devices: LaneDevices | None = None
        self._next_health = 0.0
        self._inputs: DeviceInputs | None = None

    # -- life ------------------------------------------------------------------------------------
    def run(self) -> None:
        config = self.config
        config.lane.state_dir.mkdir(parents=True, exist_ok=True)
        devices = open_devices(
            config, self._clock, on_command=lambda name, payload: self._put("cmd", (name, payload))
        )
        self._devices = devices
        self._inputs = DeviceInputs(config, devices, self._clock)
        self._reconfigure(self._effective_config())
        server = serve_status(config.status.listen, self.status)
        loops = {"io": self._io_loop, "weigh": self._weigh_loop, "camera": self._camera_loop}
        threads = [
            threading.Thread(target=target, name=name, daemon=True)
            for name, target in loops.items()
        ]
        devices.publisher.start()
        for thread in threads:
            thread.start()
        log.info(
            "lane %s/%s running (agent %s, boot %s)",
            config.lane.site,
            config.lane.lane,
            __version__,
            devices.outbox.boot_id,
        )
        try:
            self._main_loop()
        finally:
            self._stop.set()
            server.shutdown()
            for thread in threads:
                thread.join(timeout=2.0)
            devices.close()
            log.info("lane %s stopped", config.lane.lane)

    def stop(self) -> None:
        self._stop.set()

    def _put(self, source: str, payload: Any) -> None:
        try:
            self._queue.put(_Input(source, payload), timeout=1.0)
        except queue.Full:
            log.error("input queue full; dropping %s input", source)

    # -- reader threads: each owns one device and only puts raw input on the queue -------------
    def _io_loop(self) -> None:
        assert self._devices is not None
        board = self._devices.board
        backoff = _Backoff()
        while not self._stop.is_set():
            try:
                board.open()
                backoff.reset()
                while not self._stop.is_set():
                    for event in board.read_events(0.05):
                        self._put("io", event)
            except EdgeAgentError as exc:
                self._put("io", _link_lost(self._clock(), str(exc)))
                log.warning("IO board: %s; retrying in %.1f s", exc, backoff.peek())
                self._stop.wait(backoff.next())

    def _weigh_loop(self) -> None:
        assert self._devices is not None
        reader = self._devices.weighbridge
        while not self._stop.is_set():
            for item in reader.read(0.1):
                self._put("weigh", item)

    def _camera_loop(self) -> None:
        from edge_agent.drivers.camera import open_frame_source

        assert self._devices is not None
        url, pipeline = self._devices.camera_url, self._devices.pipeline
        evidence = self._devices.evidence
        seen_polygons: list[Any] = []
        seen_at = -math.inf
        backoff = _Backoff()
        while not self._stop.is_set():
            try:
                source = open_frame_source(url)
            except EdgeAgentError as exc:
                self._put("camera", (False, str(exc)))
                self._stop.wait(backoff.next())
                continue
            self._put("camera", (True, ""))
            backoff.reset()
            try:
                while not self._stop.is_set():
                    frame = source.read(0.5)
                    if frame is None:
                        continue
                    if self._new_truck.is_set():
                        self._new_truck.clear()
                        pipeline.forget_all()
                    reads = pipeline.process(frame.image, frame.at)
                    polygons = [raw.polygon for raw in pipeline.last_raw]
                    # Frames the motion gate skipped carry no polygon: keep the last second's.
                    if polygons:
                        seen_polygons, seen_at = polygons, frame.at
                    elif frame.at - seen_at < 1.0:
                        polygons = seen_polygons
                    evidence.remember(frame.image, polygons)
                    for read in reads:
                        self._put("qr", read)
            except EdgeAgentError as exc:
                self._put("camera", (False, str(exc)))
                log.warning("camera %s lost: %s", url, exc)
            finally:
                source.close()

    # -- the loop --------------------------------------------------------------------------------
    def _main_loop(self) -> None:
        assert self._inputs is not None
        while not self._stop.is_set():
            now = self._clock()
            pending = (self.machine.next_deadline(), self._inputs.next_deadline())
            deadlines = [d for d in pending if d is not None]
            timeout = 0.2 if not deadlines else max(0.0, min(min(deadlines) - now, 0.2))
            try:
                item: _Input | None = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            now = self._clock()
            events: list[LaneEvent] = []
            if item is not None and item.source == "cmd":
                name, payload = item.payload
                self._command(name, payload, now)
            elif item is not None:
                events += self._inputs.translate(item.source, item.payload, now)
            events += self._inputs.tick(now)
            for event in events:
                self._execute(self.machine.handle(event, now), now)
            self._execute(self.machine.handle_timer(now), now)
            self.status.update_lane(self.machine, self._inputs)
            if now >= self._next_health:
                self._next_health = now + self.config.mqtt.health_interval_s
                self._health(now)

    def _upload_evidence(self, ref: str, transit_id: str, path: Path, now: float) -> None:
        """Queue the snapshot for the backend as bounded ``evidence`` events."""
        devices = self._devices
        assert devices is not None
        media_type = "image/jpeg" if path.suffix == ".jpg" else "image/x-portable-graymap"
        try:
            chunks = chunk_evidence(ref, path.read_bytes(), media_type)
        except (OSError, EdgeAgentError) as exc:
            log.error("evidence %s not uploaded: %s", ref, exc)
            return
        for chunk in chunks:
            devices.outbox.add_event("evidence", chunk, transit_id=transit_id, **_stamp(now))
        devices.publisher.wake()

    def _health(self, now: float) -> None:
        """Periodic health report: sheddable, on its own counter, expires at the broker."""
        devices, inputs = self._devices, self._inputs
        assert devices is not None and inputs is not None
        data = {
            "state": self.machine.state.value,
            "devices": inputs.describe(),
            "outbox": devices.outbox.stats(),
            "settings": reported(self.config),
        }
        if devices.commands is not None:
            kinds = ("trust_update", "revocations", "config")
            data["applied"] = {kind: devices.commands.version(kind) for kind in kinds}
        stored = devices.outbox.add_health(data, **_stamp(now))
        if stored is None:
            log.warning("health report shed: the outbox is at its disk budget")
        devices.publisher.wake()

    def _command(self, name: str, payload: bytes, now: float) -> None:
        """A command from the backend: verify, run at most once, publish the result."""
        devices = self._devices
        assert devices is not None
        if devices.commands is None:
            log.warning("command %s ignored: no command keys configured", name)
            return
        synced, _source = wall_clock_status()
        topic = devices.commands.topics.command(name)
        verdict = devices.commands.verify(topic, payload, time.time(), clock_synced=synced)
        if isinstance(verdict, Rejection):
            log.warning("command %s refused: %s (%s)", name, verdict.code, verdict.reason)
            self._result(
                verdict.cmd_id or "", name, False, verdict.code, verdict.reason, now,
                problems=verdict.problems,
            )
            return
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
            case "config":
                self._reconfigure(self._effective_config())
                settings = {"version": verdict.args["version"], "settings": reported(self.config)}
                self._result(verdict.cmd_id, name, True, None, "applied", now, reported=settings)

    def _release(self, verdict: Command, now: float) -> None:
        release = RemoteRelease(
            now, verdict.cmd_id, str(verdict.args["challenge"]), officer=verdict.issuer
        )
        commands = self.machine.handle(release, now)
        opened = any(isinstance(c, OpenBarrier) for c in commands)
        self._execute(commands, now)
        if opened:
            self._result(verdict.cmd_id, verdict.name, True, None, "barrier opened", now)
            return
        refused = [c for c in commands if isinstance(c, Publish) and c.type == "release_refused"]
        why = str(refused[0].data["reason"]) if refused else "no held truck with that challenge"
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
        devices = self._devices
        assert devices is not None
        data: dict[str, Any] = {"name": name, "accepted": ok, "code": code, "detail": detail}
        if problems:
            data["problems"] = list(problems)
        if reported is not None:
            data["reported"] = reported
        devices.outbox.add_command_result(cmd_id, data, **_stamp(now))
        devices.publisher.wake()
        log.info("command %s %s: %s", name, "executed" if ok else "refused", code or detail)

    def _execute(self, commands: list[LaneCommand], now: float) -> None:
        devices = self._devices
        assert devices is not None
        # Barrier commands go out before the records of why: the relay must not wait for the
        # outbox's fsync. Otherwise commands run in the order the machine gave them.
        ordered = sorted(commands, key=lambda c: not isinstance(c, (OpenBarrier, CloseWhenClear)))
        for command in ordered:
            try:
                self._execute_one(devices, command, now)
            except EdgeAgentError as exc:
                # A failed device call must not stop the lane; the machine learns of link
                # loss through the driver's own events.
                log.error("command %s failed: %s", type(command).__name__, exc)

    def _execute_one(self, devices: LaneDevices, command: LaneCommand, now: float) -> None:
        match command:
            case OpenBarrier():
                seq = devices.board.open_barrier(valid_for_s=1.0)
                log.info("barrier OPEN sent (seq %s) for %s", seq, command.transit_id)
            case CloseWhenClear():
                devices.board.close_when_clear()
                log.info("barrier close-when-clear sent for %s", command.transit_id)
            case Publish():
                envelope = devices.outbox.add_event(
                    command.type, command.data, transit_id=command.transit_id, **_stamp(now)
                )
                devices.publisher.wake()
                self.status.record_event(envelope)
                if command.type == "transit_closed":
                    self._new_truck.set()
                log.info("event %s seq=%s %s", command.type, envelope.get("seq"), _brief(command))
            case MarkPassUsed():
                devices.ledger.mark_used(
                    bytes.fromhex(command.cti_hex),
                    exp=command.exp,
                    now=time.time(),
                    lane=self.config.lane.lane,
                )
            case TakeSnapshot():
                path = devices.evidence.snapshot(command.ref)
                log.info("evidence %s for %s: %s", command.ref, command.reason, path or "no frame")
                if path is not None:
                    self._upload_evidence(command.ref, command.transit_id, path, now)


class _Backoff:
    """Reconnect delays: 0.2 s doubling to 5 s, with jitter so a fleet does not stampede."""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self._first, self._cap, self._delay = first, cap, first

    def peek(self) -> float:
        return self._delay

    def next(self) -> float:
        delay = self._delay * random.uniform(0.8, 1.2)
        self._delay = min(self._cap, self._delay * 2)
        return delay

    def reset(self) -> None:
        self._delay = self._first


def _link_lost(at: float, reason: str) -> Any:
    from edge_agent.drivers.ioboard import LinkLost

    return LinkLost(at, reason)


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
