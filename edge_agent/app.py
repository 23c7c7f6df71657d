"""The edge agent's imperative shell: drivers -> pure cores -> lane machine -> actions.

One reader thread per device (``readers.py``) hands the drivers' typed events to the inbox,
device inputs ahead of commands; the main loop owns every piece of state (weight watcher, lane
machine), so nothing else needs a lock. The barrier decision is taken on the main loop the
moment the later of pass and weight arrives, and the OPEN command goes straight to the IO
board's port.

``LaneAgent`` can also run without its threads: ``attach(devices)`` and then ``handle``,
``command`` and ``tick`` with any clock — the middle tier of tests runs whole trucks on fakes
in virtual time that way.

Containment: every stage of the loop runs under ``Faults.guard``; no input, stored file or
internal error stops the agent. Storage fails closed: records that cannot be written wait in
memory (``RecordKeeper``) and the machine holds trucks until they are stored (rule L9).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from edge_agent import __version__
from edge_agent.assembly import LaneDevices, open_devices, pass_trust
from edge_agent.catalogue import Code, EventType
from edge_agent.clock import wall_clock_status
from edge_agent.config import AgentConfig
from edge_agent.containment import Faults
from edge_agent.control import ControlRequest, serve_control
from edge_agent.control import answer as answer_control
from edge_agent.drivers.mode_file import load_mode, save_mode
from edge_agent.errors import EdgeAgentError
from edge_agent.execution import brief, execution_order, queue_evidence, record_pass_use
from edge_agent.health import Stamp, device_status, send_health
from edge_agent.identity_wiring import IdentityWiring
from edge_agent.inbox import LaneInbox
from edge_agent.lane.actions import (
    Answer,
    BoardMaintenance,
    CloseWhenClear,
    KeepCrop,
    LaneAction,
    MarkPassUsed,
    OpenBarrier,
    PersistMode,
    Publish,
    TakeSnapshot,
)
from edge_agent.lane.inputs import LaneInput, StorageChanged
from edge_agent.lane.machine import LaneMachine, MachineConfig
from edge_agent.lane.policy import PolicyConfig
from edge_agent.lifecycle import Stop, hand_over, readiness, reread, summary, wait_for_clock
from edge_agent.logs import event_fields
from edge_agent.notify import Service
from edge_agent.readers import Readers
from edge_agent.records.lane_log import LaneLog
from edge_agent.remote_commands import RemoteCommands
from edge_agent.remote_config import effective_config, reported
from edge_agent.site_policy import policy_from_config
from edge_agent.status import StatusBoard
from edge_agent.telemetry.records import RecordKeeper
from edge_agent.translate import DeviceInput, DeviceInputs
from edge_agent.txlog import TransactionLogging
from edge_agent.web.auth import read_token
from edge_agent.web.server import serve_page

log = logging.getLogger("edge_agent")

Clock = Callable[[], float]
ClockStatus = Callable[[], tuple[bool, str]]
STATUS_EVERY_S = 0.25
STORAGE_RETRY_S = 2.0
CLOCK_CHECK_S = 1.0
LEDGER_PURGE_S = 3600.0  # passes expired for a day leave the ledger once an hour


class LaneAgent(TransactionLogging, IdentityWiring):
    """Runs one lane until ``stop`` is set."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        clock_status: ClockStatus = wall_clock_status,
        service: Service | None = None,
    ) -> None:
        self.local_config = config  # the lane's file; signed config commands go on top
        self.config = config
        self._clock, self._wall_clock, self._clock_status = clock, wall_clock, clock_status
        self._inbox = LaneInbox()
        self._stop = threading.Event()
        self.faults = Faults(clock)
        self.machine = LaneMachine(
            MachineConfig(
                policy=_policy(config), pass_without_truck_s=config.lane.pass_without_truck_s
            ),
            new_id=_new_id,
        )
        self.devices: LaneDevices | None = None
        self.inputs: DeviceInputs | None = None
        self.records: RecordKeeper | None = None
        self.txlog: LaneLog | None = None  # the transaction log (docs/records.md)
        self.commands: RemoteCommands | None = None
        self.readers: Readers | None = None
        self.status = StatusBoard(
            config, self._device_status, clock=clock, wall_clock=wall_clock,
            frame=lambda: self.devices.evidence.latest() if self.devices else None)
        self._storage_ok = True
        self._next_health = 0.0
        self._next_status = 0.0
        self._next_retry = 0.0
        self._next_clock = 0.0
        self._next_purge = 0.0
        self._clock_synced = False  # the wall clock's state, looked at once a second
        self.service = Service() if service is None else service
        self._phase = "starting"  # then "waiting for clock sync", "running", "stopping"
        self._stopping: Stop | None = None
        self._reload_wanted = False

    # -- life ------------------------------------------------------------------------------------
    def run(self) -> None:
        """Open the devices, wait for the clock, run the lane until ``stop``, stop cleanly."""
        config = self.config
        config.lane.state_dir.mkdir(parents=True, exist_ok=True)
        devices = open_devices(config, self._clock, on_command=self._on_command)
        closers: list[Callable[[], None]] = []  # servers that read the lane: closed at stop
        try:
            self.attach(devices)
            devices.publisher.start()
            # Servers that read the lane start here (status page, control socket); each one
            # appends its close to ``closers``.
            closers.append(serve_page(
                config.status.listen, self.status, token=read_token(config.status.token_file),
                liveness=self.liveness, readiness=self.readiness).shutdown)
            closers.append(serve_control(config.control.socket, self._inbox.put).close)
            self.service.notifier.ready(self._summary())
            self._phase = "waiting for clock sync"
            if not wait_for_clock(self._clock_status, config.clock.wait_for_sync_s,
                                  clock=self._clock, stop=self._stop, turned=self._turned):
                return
            readers = self.readers = Readers(
                devices, self._put_device, self._clock, self._stop, self.faults, log
            )
            readers.start()
            self._plates_start(devices)
            self._phase = "running"
            log.info("lane %s/%s running (agent %s, boot %s)", config.lane.site,
                     config.lane.lane, __version__, devices.outbox.boot_id)
            self._main_loop()
        except BaseException as exc:
            if self._stopping is None:
                self._stopping = Stop("failed", detail=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._shutdown(devices, closers)

    def attach(self, devices: LaneDevices) -> None:
        """Take the opened devices: from here ``handle``, ``command`` and ``tick`` work."""
        self.devices = devices
        self.records = RecordKeeper(devices.outbox)
        self.inputs = DeviceInputs(
            self.config, devices.passes, is_used=devices.ledger.is_used,
            pass_time=lambda: devices.time_floor.now(self._wall_clock()),
        )
        self.commands = RemoteCommands(
            devices.commands, local_config=self.local_config, passes=devices.passes,
            ledger=devices.ledger, time_floor=devices.time_floor, wall_clock=self._wall_clock,
            release=lambda event: self._step(event, event.at), reconfigure=self._apply_remote,
            load_trust=pass_trust,
        )
        self._reconfigure(self._effective_config())
        self._plates_attach()
        now = self._clock()
        self._watch_clock(now)  # the clock's state is known before the first command
        self._txlog_open(devices, now)
        book, damaged = load_mode(self.config.lane.state_dir, self._wall_clock())
        self.machine.restore_modes(book)  # a restart keeps the lane's mode
        self.status.set_mode(book.to_status())
        if damaged is not None:
            devices.quarantined.append(damaged)
        for moved, problem in devices.quarantined:
            data = {"code": Code.LANE_STATE_QUARANTINED, "detail": f"{moved.name}: {problem}"}
            self._execute([Publish(EventType.ABNORMALITY, data)], now)

    def stop(self, by: str | None = None, detail: str | None = None) -> None:
        """A planned stop: the backend is told it was one, by whom and why when known."""
        if self._stopping is None:
            self._stopping = Stop("stopped", by, detail)
        self._stop.set()
        self._inbox.wake()

    def request_reload(self) -> None:
        """Re-read the configuration file, on the decision loop (SIGHUP)."""
        self._reload_wanted = True
        self._inbox.wake()

    def liveness(self) -> list[str]:
        """Why the agent is not alive (empty: the decision loop turned recently)."""
        return self.service.health.problems(self._clock())

    def readiness(self) -> list[str]:
        """Why the lane cannot take trucks now (empty: ready)."""
        devices, records = self.devices, self.records
        return readiness(
            self._phase if devices and records else "starting", self.liveness(),
            board_up=bool(devices and devices.board.link_up),
            camera_up=self.readers.camera_up if self.readers else None,
            storage_error=None if records is None or records.ok else records.error)

    def _shutdown(self, devices: LaneDevices, closers: list[Callable[[], None]]) -> None:
        """No new inputs; on a planned stop the ``lane_offline`` event is stored and handed to
        the broker; the retained farewell; devices closed. The barrier is left to the IO board:
        no command goes out from here, and the board closes when the host link goes silent."""
        why = self._stopping or Stop("stopped")
        self._phase = "stopping"
        self.service.notifier.stopping(f"lane {self.config.lane.lane}: stopping ({why})")
        self._stop.set()
        self._inbox.wake()
        for close in closers:
            with self.faults.guard("stop"):
                close()
        if self.readers is not None:
            self.readers.join(timeout=2.0)
        self._plates_stop()
        self._txlog_stop(why)
        if why.reason == "stopped" and self.records is not None:
            with self.faults.guard("stop"):
                envelope = self._record(EventType.LANE_OFFLINE,
                                        why.event(self.machine.state.value), None, self._clock())
                if envelope is not None:
                    hand_over(devices.publisher, envelope["seq"])
        devices.publisher.stop(reason=why.reason, by=why.by, detail=why.detail)
        snapshot = devices.board.snapshot
        devices.close()
        barrier = snapshot.barrier.value if snapshot else "unknown"
        log.info("lane %s stopped (%s); barrier %s, left to the IO board",
                 self.config.lane.lane, why, barrier)

    def _reload(self) -> None:
        """SIGHUP: apply what can change while running, say what needs a restart."""
        self.service.notifier.reloading()
        plan = reread(self.local_config)
        if plan is not None:
            self.local_config = plan.config
            self.status.config_loaded(plan.config)
            self._reconfigure(self._effective_config())
            self._txlog_config(f"reload of {plan.config.source}")
            self.service.log_level(plan.config.logging.level)
            log.warning("%s", plan.summary(self.local_config.source))
        self.service.notifier.reloaded()

    def _summary(self) -> str:
        state = self.machine.state.value if self._phase == "running" else self._phase
        return summary(self.config.lane.lane, state, self.machine.modes.mode.value,
                       self.devices.publisher if self.devices else None)

    def _turned(self) -> None:
        self.service.turned(self._clock(), self._loop_faults(), self._summary)

    def _loop_faults(self) -> int:
        """Faults of the loop's own stages (the readers' are their devices' business)."""
        return sum(n for stage, n in self.faults.counts.items() if not stage.startswith("reader"))

    def _put_device(self, item: DeviceInput) -> None:
        if not self._inbox.put("device", item):
            self.faults.record("inbox", OverflowError(
                f"device inbox full: {type(item).__name__} dropped"))

    def _on_command(self, name: str, payload: bytes) -> None:
        """From the MQTT sender thread: never blocks it; a flood is dropped and counted."""
        self._inbox.put("command", (name, payload))

    # -- the loop --------------------------------------------------------------------------------
    def _main_loop(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            deadline = self.next_deadline()
            timeout = 0.2 if deadline is None else max(0.0, min(deadline - now, 0.2))
            item = self._inbox.get(timeout)
            now = self._clock()
            timer_now = now
            if item is not None and item[0] == "command":
                name, payload = item[1]
                self.command(name, payload, now)
            elif item is not None:
                self.handle(item[1], now)
                if self._inbox.devices_waiting():
                    # Readings still queued: timers run on the time of the input handled,
                    # so a backlog never looks like a silent indicator.
                    timer_now = min(now, item[1].at)
            if self._reload_wanted:
                self._reload_wanted = False
                self._reload()
            self.tick(now, timer_now=timer_now)
            self._turned()

    def next_deadline(self) -> float | None:
        assert self.inputs is not None
        pending = (self.machine.next_deadline(), self.inputs.next_deadline())
        deadlines = [d for d in pending if d is not None]
        return min(deadlines) if deadlines else None

    def handle(self, item: DeviceInput, now: float) -> None:
        """One device event: translated, and each lane input it gives stepped through."""
        assert self.inputs is not None
        events: list[LaneInput] = []
        with self.faults.guard(f"input {type(item).__name__}"):
            events = self.inputs.translate(item)
        with self.faults.guard("status"):
            self.status.observe(item)
        self._txlog_device(item, now)
        for event in events:
            self._step(event, now)

    def command(self, name: str, payload: bytes | ControlRequest, now: float) -> None:
        """A command message from the backend; its outcome is recorded as ``cmd_result``.
        A request from the local control socket is answered to its client instead."""
        if isinstance(payload, ControlRequest):
            answer_control(payload, self.machine, self._step, now, self._wall_clock())
            return
        assert self.commands is not None
        with self.faults.guard("command"):
            outcome = self.commands.handle(name, payload, now, clock_synced=self._clock_synced)
            if outcome is not None:
                self._record(EventType.CMD_RESULT, outcome.to_data(), None, now)

    def tick(self, now: float, *, timer_now: float | None = None) -> None:
        """Everything time drives: weighing and lane timers, storage, clock, status, health."""
        assert self.inputs is not None
        timer_now = now if timer_now is None else timer_now
        with self.faults.guard("weighing timers"):
            for event in self.inputs.tick(timer_now):
                self._step(event, now)
        with self.faults.guard("lane timers"):
            self._execute(self.machine.handle_timer(timer_now), now)
        with self.faults.guard("storage"):
            self._watch_storage(now)
        with self.faults.guard("clock"):
            self._watch_clock(now)
        self._txlog_tick(now)
        if now >= self._next_purge:
            self._next_purge = now + LEDGER_PURGE_S
            with self.faults.guard("ledger purge"):
                self._purge_ledger()
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_S
            with self.faults.guard("status"):
                self.status.update_lane(self.machine)
        if now >= self._next_health:
            self._next_health = now + self.config.mqtt.health_interval_s
            with self.faults.guard("health"):
                self._health(now)

    def _step(self, event: LaneInput, now: float) -> list[LaneAction]:
        """One input through the machine, and what it asked for executed."""
        with self.faults.guard(f"lane {type(event).__name__}"):
            return self._execute(
                self.machine.handle(event, now, wall=self._wall_clock()), now)
        return []

    def _watch_storage(self, now: float) -> None:
        """L9: tell the machine when records stop (or start again) being writable."""
        devices, records = self.devices, self.records
        assert devices is not None and records is not None
        if not records.ok and now >= self._next_retry:
            self._next_retry = now + STORAGE_RETRY_S
            try:
                devices.ledger.probe(self._wall_clock())
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

    def _purge_ledger(self) -> None:
        """Keep passes.sqlite bounded: a pass expired a day ago is refused on its expiry alone.
        Only while the clock is synced: a clock run ahead must not let a valid pass's use go."""
        devices = self.devices
        assert devices is not None
        if not self._clock_synced:
            return
        purged = devices.ledger.purge_expired(devices.time_floor.now(self._wall_clock()))
        if purged:
            log.info("pass ledger: %d passes expired more than a day ago removed", purged)

    def _watch_clock(self, now: float) -> None:
        """Raise the persisted time floor from the wall clock while it is synced."""
        if now < self._next_clock:
            return
        self._next_clock = now + CLOCK_CHECK_S
        assert self.devices is not None
        self._clock_synced, source = self._clock_status()
        if self._clock_synced:
            self.devices.time_floor.observe(self._wall_clock(), synced=True)
        self._txlog_clock(now, source)

    # -- records ---------------------------------------------------------------------------------
    def _stamp(self, now: float) -> Stamp:
        """The times a record carries: monotonic ``now``, the wall clock and its status."""
        synced, source = self._clock_status()
        return Stamp(mono_ms=int(now * 1000), wall_ms=int(self._wall_clock() * 1000),
                      clock_synced=synced, clock_source=source)

    def _record(
        self, type: EventType, data: dict[str, Any], transit_id: str | None, now: float, *,
        sheddable: bool = False,
    ) -> dict[str, Any] | None:
        devices, records = self.devices, self.records
        assert devices is not None and records is not None
        envelope = records.add(
            type, data, transit_id=transit_id, stamp=self._stamp(now), sheddable=sheddable
        )
        devices.publisher.wake()
        return envelope

    def _health(self, now: float) -> None:
        """Periodic health report: sheddable, on its own counter, expires at the broker."""
        devices, records, commands = self.devices, self.records, self.commands
        assert devices is not None and records is not None and commands is not None
        data: dict[str, Any] = {
            "state": self.machine.state.value,
            "mode": self.machine.modes.mode.value,
            "devices": self._device_status(),
            "outbox": devices.outbox.stats(),
            "settings": reported(self.config),
            "storage": {"ok": records.ok, "error": records.error or None,
                        "parked": records.parked, "lost": records.lost},
            "inbox_dropped": dict(self._inbox.dropped),
            "commands_unreported": commands.refusals.suppressed,
            "faults": dict(self.faults.counts),
            "time_floor": int(devices.time_floor.value),
            "transaction_log": self._txlog_health(),
        }
        versions = commands.versions()
        if versions is not None:
            data["applied"] = versions
        send_health(devices, data, self._stamp(now))

    def _device_status(self) -> dict[str, Any]:
        """The devices as they are now; read by health and by the status server's thread."""
        devices, inputs = self.devices, self.inputs
        if devices is None or inputs is None:
            return {}
        camera_up = self.readers.camera_up if self.readers is not None else None
        return self._plates_status(device_status(
            devices, inputs, camera_up, self.config.lane.state_dir, self._wall_clock()))

    # -- remote settings -------------------------------------------------------------------------
    def _effective_config(self) -> AgentConfig:
        """The local file with the last applied remote settings on top."""
        commands = self.commands
        verifier = commands.verifier if commands is not None else None
        applied = verifier.applied("config") if verifier is not None else None
        return effective_config(self.local_config, applied)

    def _apply_remote(self) -> dict[str, Any]:
        self._reconfigure(self._effective_config())
        self._txlog_remote_config()
        return reported(self.config)

    def _reconfigure(self, config: AgentConfig) -> None:
        self.config = config
        # A shorter health interval takes effect now, not after the old one ran out.
        self._next_health = min(self._next_health, self._clock() + config.mqtt.health_interval_s)
        assert self.inputs is not None
        self.inputs.reconfigure(config)
        self.machine.set_policy(_policy(config))

    # -- the machine's actions -------------------------------------------------------------------
    def _execute(self, actions: list[LaneAction], now: float) -> list[LaneAction]:
        """Run the machine's actions; returns them with every follow-up they caused."""
        devices = self.devices
        assert devices is not None
        # Barrier commands go out before the records of why: the relay must not wait for the
        # outbox's fsync. The pass ledger goes first of all (L3: recorded before it opens).
        done: list[LaneAction] = []
        for action in sorted(actions, key=execution_order):
            done.append(action)
            try:
                follow = self._execute_one(devices, action, now)
            except EdgeAgentError as exc:
                # A failed device call must not stop the lane; the machine learns of link
                # loss through the driver's own events.
                log.error("%s failed: %s", type(action).__name__, exc)
                continue
            except Exception as exc:  # containment
                self.faults.record(f"execute {type(action).__name__}", exc)
                continue
            if follow:
                done += self._execute(follow, now)
        return done

    def _execute_one(
        self, devices: LaneDevices, action: LaneAction, now: float
    ) -> list[LaneAction]:
        match action:
            case OpenBarrier():
                seq = devices.board.open_barrier(valid_for_s=1.0)
                log.info("barrier OPEN sent (seq %s) for %s", seq, action.transit_id,
                         extra={"transit_id": action.transit_id})
            case CloseWhenClear():
                devices.board.close_when_clear()
                log.info("barrier close-when-clear sent for %s", action.transit_id)
            case Publish():
                with self.faults.guard("status"):
                    self.status.record_publish(action, self._clock())
                envelope = self._record(action.type, action.data, action.transit_id, now)
                if envelope is not None:
                    self.status.record_event(envelope)
                if action.type == EventType.DECISION:
                    self._txlog_transit(action, envelope, now)
                if action.type == EventType.TRANSIT_CLOSED and self.readers is not None:
                    self.readers.new_truck.set()
                where = envelope.get("seq") if envelope else "held in memory"
                log.info("event %s seq=%s %s", action.type, where, brief(action),
                         extra=event_fields(action.type, action.transit_id, action.data, where))
            case MarkPassUsed():
                assert self.records is not None
                used = record_pass_use(devices, self.records, action, self.config.lane.lane,
                                       now, self._wall_clock())
                return self.machine.handle(used, now)
            case TakeSnapshot():
                queue_evidence(devices, action, lambda chunk: self._evidence(
                    action.transit_id, chunk, now))
            case BoardMaintenance():
                seq = devices.board.maintenance(action.enter)
                log.info("maintenance %s sent (seq %s)", "enter" if action.enter else "leave", seq)
            case PersistMode():
                self.status.set_mode(self.machine.modes.to_status())
                save_mode(self.config.lane.state_dir, action.doc)
            case KeepCrop():
                self._plates_crop(devices, action, now)
            case Answer():
                pass  # handed back to the requester by whoever stepped the machine
        return []


def _policy(config: AgentConfig) -> PolicyConfig:
    return policy_from_config(config)


def _new_id() -> str:
    return uuid.uuid4().hex[:16]
