"""The agent's side of the transaction log (``records/lane_log.py``), mixed into ``LaneAgent``.

What the lane does is recorded here as it happens: the start, each decision about a transit,
each change of the effective configuration, a step of the UTC clock, a new IO board firmware;
every record written goes to the backend as a ``transaction_record`` event (those a crash kept
from the outbox are sent at the next start). Nothing here may stop the lane: each
hook runs under the agent's fault guard, and a log that refuses records is an abnormality
(``lane.record_log_fault``) and a health entry, never a held truck.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.catalogue import Code, EventType
from edge_agent.protocols.iolink_session import BoardHello
from edge_agent.records.lane_log import LaneLog, config_doc, pass_facts
from edge_agent.records.software import software_id

if TYPE_CHECKING:
    from edge_agent.assembly import LaneDevices
    from edge_agent.config import AgentConfig
    from edge_agent.containment import Faults
    from edge_agent.lane.actions import LaneAction, Publish
    from edge_agent.lane.machine import LaneMachine
    from edge_agent.lifecycle import Stop
    from edge_agent.remote_commands import RemoteCommands
    from edge_agent.translate import DeviceInput


class TransactionLogging:
    txlog: LaneLog | None
    config: AgentConfig
    faults: Faults
    machine: LaneMachine
    devices: LaneDevices | None
    commands: RemoteCommands | None
    _clock: Callable[[], float]
    _wall_clock: Callable[[], float]
    _clock_status: Callable[[], tuple[bool, str]]
    _clock_synced: bool
    _txlog_due: list[dict[str, Any]]  # transit records to write after their decision's events

    if TYPE_CHECKING:  # the agent's own, used here

        def _record(self, type: EventType, data: dict[str, Any], transit_id: str | None,
                    now: float, *, sheddable: bool = False) -> dict[str, Any] | None: ...

        def _execute(self, actions: list[LaneAction], now: float) -> list[LaneAction]: ...

    def _txlog_open(self, devices: LaneDevices, now: float) -> None:
        """Open the log; it records this start and what changed while the lane was down."""
        self._txlog_due = []
        self.txlog = LaneLog(self.config.lane.state_dir, publish=self._txlog_publish,
                             on_fault=self._txlog_fault)  # fmt: skip
        synced, source = self._clock_status()
        with self.faults.guard("transaction log"):
            self.txlog.start(utc=self._wall_clock(), mono=now, config=config_doc(self.config),
                             software=software_id(), boot_id=devices.outbox.boot_id,
                             synced=synced, source=source)  # fmt: skip
        devices.quarantined += self.txlog.quarantined

    def _txlog_publish(self, data: dict[str, Any], transit_id: str | None) -> bool:
        """False: the outbox did not take it (held in memory), so a restart sends it again."""
        return self._record(EventType.TRANSACTION_RECORD, data, transit_id,
                            self._clock()) is not None  # fmt: skip

    def _txlog_fault(self, reason: str) -> None:
        """The log refuses records: said once; the lane goes on (the records wait in memory)."""
        from edge_agent.lane.actions import Publish

        data = {"code": Code.LANE_RECORD_LOG_FAULT, "detail": f"transaction log: {reason}"}
        self._execute([Publish(EventType.ABNORMALITY, data)], self._clock())

    def _txlog_transit(self, action: Publish, envelope: dict[str, Any] | None,
                       now: float) -> None:  # fmt: skip
        """A decision was published: its transit record is written once the decision's own
        events are out (``_txlog_tick``), with what is known now."""
        transit, devices = self.machine.transit, self.devices
        if self.txlog is None or devices is None:
            return
        claims = transit.claims if transit and transit.transit_id == action.transit_id else None
        synced, source = self._clock_status()
        self._txlog_due.append({
            "decision": action.data, "transit_id": action.transit_id,
            "pass_claims": pass_facts(claims), "event": envelope,
            "boot_id": devices.outbox.boot_id, "clock": {"synced": synced, "source": source},
            "utc": self._wall_clock(), "mono": now})  # fmt: skip

    def _txlog_config(self, by: str) -> None:
        """The effective configuration may have changed (reload, remote command)."""
        if self.txlog is not None:
            with self.faults.guard("transaction log"):
                self.txlog.config(config_doc(self.config), by=by, utc=self._wall_clock(),
                                  mono=self._clock())  # fmt: skip

    def _txlog_remote_config(self) -> None:
        versions = self.commands.versions() if self.commands is not None else None
        self._txlog_config(f"remote config version {(versions or {}).get('config')}")

    def _txlog_device(self, item: DeviceInput, now: float) -> None:
        """A device event: the IO board's hello says which firmware it runs."""
        if self.txlog is not None and isinstance(item, BoardHello):
            with self.faults.guard("transaction log"):
                self.txlog.firmware("io_board", {"firmware": item.firmware,
                                                 "manifest": item.manifest},
                                    utc=self._wall_clock(), mono=now)  # fmt: skip

    def _txlog_clock(self, now: float, source: str) -> None:
        if self.txlog is not None:
            self.txlog.observe_clock(utc=self._wall_clock(), mono=now,
                                     synced=self._clock_synced, source=source)  # fmt: skip

    def _txlog_tick(self, now: float) -> None:
        if self.txlog is not None:
            with self.faults.guard("transaction log"):
                self._txlog_write_due()
                self.txlog.tick(utc=self._wall_clock(), mono=now, synced=self._clock_synced)

    def _txlog_write_due(self) -> None:
        assert self.txlog is not None
        while self._txlog_due:
            self.txlog.transit(**self._txlog_due.pop(0))

    def _txlog_stop(self, why: Stop) -> None:
        if self.txlog is not None:
            with self.faults.guard("stop"):
                self._txlog_write_due()
                self.txlog.stop(utc=self._wall_clock(), mono=self._clock(), reason=why.reason,
                                by=why.by)  # fmt: skip

    def _txlog_health(self) -> dict[str, Any] | None:
        return None if self.txlog is None else self.txlog.health(self._wall_clock())

    def _evidence(self, transit_id: str, chunk: dict[str, Any],
                  now: float) -> dict[str, Any] | None:  # fmt: skip
        """An evidence chunk for the outbox; its file's hash goes into the transit's records."""
        if self.txlog is not None:
            self.txlog.note_evidence(transit_id, chunk)
        return self._record(EventType.EVIDENCE, chunk, transit_id, now, sheddable=True)
