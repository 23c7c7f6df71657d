"""Build the lane's devices from configuration, and turn their raw output into lane events.

``DeviceInputs`` owns the pure cores that sit between drivers and the lane machine (the weight
watcher, the pass verifier) and runs only on the agent's main loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent import weighing
from edge_agent.config import AgentConfig
from edge_agent.drivers.camera import CameraState
from edge_agent.drivers.ioboard import (
    BoardSnapshot,
    CommandResult,
    InputChanged,
    IoBoard,
    LinkLost,
    LinkUp,
)
from edge_agent.drivers.pass_ledger import PassLedger
from edge_agent.drivers.serialport import LineSettings
from edge_agent.drivers.state_files import open_state_db
from edge_agent.drivers.weighbridge import WeighbridgeReader
from edge_agent.errors import ConfigError, DeviceError
from edge_agent.lane.events import (
    BoardStatus,
    CameraChanged,
    DeckCleared,
    IoLinkChanged,
    LaneEvent,
    PassInfo,
    PassPresented,
    TruckArrived,
    WeightAbnormal,
    WeightCommitted,
)
from edge_agent.protocols import gp1
from edge_agent.protocols.indicators import FrameError, IndicatorReading
from edge_agent.remote_config import check_config_args
from edge_agent.telemetry.commands import CommandVerifier, TrustedKey
from edge_agent.telemetry.mqtt import ReconnectJitter, TlsFiles
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher
from edge_agent.timefloor import TimeFloor
from edge_agent.vision.evidence import EvidenceStore
from edge_agent.vision.pipeline import QrPipeline, QrRead

log = logging.getLogger("edge_agent.inputs")


@dataclass
class LaneDevices:
    """Every device and store the lane uses; closed together."""

    board: IoBoard
    weighbridge: WeighbridgeReader
    camera_url: str
    pipeline: QrPipeline
    outbox: Outbox
    publisher: Publisher
    ledger: PassLedger
    trust: gp1.TrustList
    revoked: frozenset[bytes]
    evidence: EvidenceStore
    commands: CommandVerifier | None
    time_floor: TimeFloor
    # State files found damaged at start: (file kept for analysis, what was wrong).
    quarantined: list[tuple[Path, str]] = field(default_factory=list)

    def close(self) -> None:
        self.publisher.stop()
        self.pipeline.close()
        closers = [self.board.close, self.weighbridge.close, self.ledger.close, self.outbox.close]
        if self.commands is not None:
            closers.append(self.commands.close)
        for close in closers:
            try:
                close()
            except Exception as exc:  # closing one device must not keep the others open
                log.warning("closing %s: %s", close, exc)


def open_devices(
    config: AgentConfig,
    clock: Callable[[], float],
    on_command: Callable[[str, bytes], None] | None = None,
) -> LaneDevices:
    """Open stores and drivers. Device links are (re)established by their reader loops.

    ``on_command(name, payload)`` receives every command message for this lane (unverified).
    """
    from edge_agent import __version__

    state = config.lane.state_dir
    state.mkdir(parents=True, exist_ok=True)
    quarantined: list[tuple[Path, str]] = []

    def kept(moved: Path | None, problem: str) -> None:
        if moved is not None:
            log.error("state file damaged (%s): kept as %s, a new one started", problem, moved)
            quarantined.append((moved, problem))

    outbox, moved, problem = open_state_db(
        config.outbox_path,
        lambda path: Outbox(
            path,
            site=config.lane.site,
            lane=config.lane.lane,
            agent_version=__version__,
            max_bytes=None
            if config.mqtt.outbox_max_mb is None
            else int(config.mqtt.outbox_max_mb * 1024 * 1024),
        ),
    )
    kept(moved, problem)
    publisher = Publisher(
        outbox,
        broker_url=config.mqtt.broker,
        site=config.lane.site,
        lane=config.lane.lane,
        keepalive_s=config.mqtt.keepalive_s,
        on_command=on_command,
        reconnect=ReconnectJitter(
            config.mqtt.reconnect_first_min_s,
            config.mqtt.reconnect_first_max_s,
            config.mqtt.reconnect_max_s,
        ),
        # load_config has checked that mqtts:// comes with ca, cert and key.
        tls=TlsFiles(config.mqtt.ca, config.mqtt.cert, config.mqtt.key)
        if config.mqtt.broker.startswith("mqtts://")
        else None,
    )
    commands = None
    if config.mqtt.command_keys is not None:
        trusted = load_command_keys(config.mqtt.command_keys)
        commands, moved, problem = open_state_db(
            state / "commands.sqlite",
            lambda path: CommandVerifier(
                path,
                site=config.lane.site,
                lane=config.lane.lane,
                trusted=trusted,
                checks={"config": check_config_args},
            ),
        )
        kept(moved, problem)
    ledger, moved, problem = PassLedger.open_checked(config.passes.ledger)
    kept(moved, problem)
    time_floor, moved, problem = open_state_db(state / "time_floor.json", TimeFloor, sqlite=False)
    kept(moved, problem)
    if commands is not None:
        time_floor.observe(commands.time_floor)
    try:
        trust, revoked = pass_trust(config, commands)
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # pushed state from an older agent
        log.error("pushed pass trust not usable (%s): the local trust list applies", exc)
        trust, revoked = pass_trust(config, None)
    line = LineSettings.parse(config.weighbridge.line, config.weighbridge.baudrate)
    return LaneDevices(
        board=IoBoard(
            config.io_board.url,
            baudrate=config.io_board.baudrate,
            clock=clock,
            t_clear_s=config.io_board.t_clear_s,
        ),
        weighbridge=WeighbridgeReader(
            config.weighbridge.url, config.weighbridge.protocol, line=line, clock=clock
        ),
        camera_url=config.camera.source,
        # Native decoders have known aborts: they run in a supervised child process.
        pipeline=QrPipeline(confirm_frames=config.camera.confirm_frames, isolate=True),
        outbox=outbox,
        publisher=publisher,
        ledger=ledger,
        trust=trust,
        revoked=revoked,
        evidence=EvidenceStore(
            config.camera.snapshot_dir or state / "snapshots",
            cap_bytes=int(config.camera.snapshot_cap_mb * 1024 * 1024),
        ),
        commands=commands,
        time_floor=time_floor,
        quarantined=quarantined,
    )


def pass_trust(
    config: AgentConfig, commands: CommandVerifier | None
) -> tuple[gp1.TrustList, frozenset[bytes]]:
    """The pass issuer keys and revoked passes in force.

    The trust list of the last signed ``trust_update`` that carried one replaces the local
    file (which only bootstraps a new lane); revocations are the local file's plus those of
    the last signed ``revocations`` command.
    """
    update = commands.applied("trust_update") if commands else None
    if update is not None and "pass_keys" in update.body:
        trust = gp1.TrustList.from_json({"keys": update.body["pass_keys"]})
    else:
        trust = gp1.TrustList.load(config.passes.trust_list)
    revoked = load_revocations(config.passes.revocations)
    pushed = commands.applied("revocations") if commands else None
    if pushed is not None:
        revoked |= {gp1.parse_revocation_hash(text) for text in pushed.body.get("pass_hashes", [])}
    return trust, revoked


def load_command_keys(path: Path) -> list[TrustedKey]:
    """Keys allowed to sign commands: JSON ``{"keys": [{kid, role, public_key}]}``.

    ``role`` is ``command`` (remote_release, config) or ``root`` (trust_update, revocations);
    ``public_key`` is the raw Ed25519 key in base64url.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return [
            TrustedKey.from_raw(entry["kid"], entry["role"], entry["public_key"])
            for entry in document["keys"]
        ]
    except OSError as exc:
        raise ConfigError(f"[mqtt] command_keys {path}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"[mqtt] command_keys {path}: not a key list: {exc}") from exc


def load_revocations(path: Path | None) -> frozenset[bytes]:
    """Revoked passes: one hex ``revocation_hash(cti)`` per line; ``#`` starts a comment."""
    if path is None:
        return frozenset()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"[passes] revocations {path}: {exc}") from exc
    hashes = set()
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            hashes.add(gp1.parse_revocation_hash(text))
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
    return frozenset(hashes)


class DeviceInputs:
    """Raw device output -> lane events. Runs on the main loop only."""

    def __init__(
        self, config: AgentConfig, devices: LaneDevices, clock: Callable[[], float]
    ) -> None:
        self._config = config
        self._devices = devices
        self._clock = clock
        scale = weighing.ScaleConfig(
            max_kg=config.weighbridge.max_kg,
            e_kg=config.weighbridge.e_kg,
            unstable_timeout_s=config.weighbridge.unstable_timeout_s,
            not_on_deck_s=config.weighbridge.not_on_deck_s,
            frozen_s=config.weighbridge.frozen_s,
        )
        self.watcher = weighing.WeightWatcher(scale)
        self._beams: tuple[bool, bool] | None = None
        self._board: dict[str, Any] = {"link": "down"}
        self._weight: dict[str, Any] = {"kg": None, "frames": 0, "errors": 0}
        self._camera: dict[str, Any] = {"up": False, "reads": 0}

    def reconfigure(self, config: AgentConfig) -> None:
        """Take changed remote settings: the watcher's time limits and the pass clock skew."""
        self._config = config
        self.watcher.set_time_limits(
            unstable_timeout_s=config.weighbridge.unstable_timeout_s,
            not_on_deck_s=config.weighbridge.not_on_deck_s,
            frozen_s=config.weighbridge.frozen_s,
        )

    # -- translation -----------------------------------------------------------------------------
    def translate(self, source: str, payload: Any, now: float) -> list[LaneEvent]:
        if source == "weigh":
            at, item = payload
            return self._weigh(at, item)
        if source == "io":
            return self._io(payload)
        if source == "qr":
            return self._qr(payload)
        if source == "camera":
            state: CameraState = payload
            self._camera["up"] = state.up
            return [CameraChanged(state.at, state.up, state.reason)]
        raise ValueError(f"unknown input source {source!r}")

    def tick(self, now: float) -> list[LaneEvent]:
        return self._weigh_events(self.watcher.tick(now))

    def next_deadline(self) -> float | None:
        return self.watcher.next_deadline()

    def _weigh(self, at: float, item: IndicatorReading | FrameError) -> list[LaneEvent]:
        if isinstance(item, FrameError):
            self._weight["errors"] += 1
            return self._weigh_events(self.watcher.add_frame_error(at, item.reason))
        self._weight["frames"] += 1
        self._weight["kg"] = item.kg
        return self._weigh_events(
            self.watcher.add_reading(
                at, item.kg, motion=item.motion, overload=item.overload, net=item.net
            )
        )

    def _weigh_events(self, events: list[weighing.WeighEvent]) -> list[LaneEvent]:
        out: list[LaneEvent] = []
        for event in events:
            match event:
                case weighing.TruckOnDeck():
                    out.append(TruckArrived(event.at))
                case weighing.WeightCommitted():
                    out.append(
                        WeightCommitted(event.at, event.kg, event.uncertainty_kg, event.evidence)
                    )
                case weighing.WeightAbnormality():
                    out.append(WeightAbnormal(event.at, event.code, event.detail, event.evidence))
                case weighing.DeckCleared():
                    out.append(DeckCleared(event.at, event.zero_kg))
        return out

    def _io(self, event: Any) -> list[LaneEvent]:
        match event:
            case BoardSnapshot():
                self._board.update(
                    link="up", barrier=event.barrier, faults=sorted(event.faults),
                    inputs=dict(event.inputs), outputs=dict(event.outputs),
                    loop_max_us=event.loop_max_us,
                )
                out = self._beams_changed(event.at, event.inputs)
                out.append(
                    BoardStatus(
                        event.at,
                        event.barrier,
                        loop_b=bool(event.inputs.get("loop_b")),
                        tech_key=bool(event.inputs.get("tech_key")),
                        faults=frozenset(event.faults),
                    )
                )
                return out
            case InputChanged():
                inputs = dict(self._board.get("inputs", {}))
                inputs[event.name] = event.value
                self._board["inputs"] = inputs
                out = self._beams_changed(event.at, inputs)
                if event.name in ("loop_b", "tech_key"):
                    out.append(
                        BoardStatus(
                            event.at,
                            str(self._board.get("barrier", "unknown")),
                            loop_b=bool(inputs.get("loop_b")),
                            tech_key=bool(inputs.get("tech_key")),
                            faults=frozenset(self._board.get("faults", ())),
                        )
                    )
                return out
            case LinkLost():
                self._board["link"] = "down"
                return [IoLinkChanged(event.at, False, event.reason)]
            case LinkUp():
                self._board["link"] = "up"
                return [IoLinkChanged(event.at, True)]
            case CommandResult():
                if event.result != "ok":
                    log.warning("IO board refused command seq %s: %s", event.seq, event.result)
                return []
        return []

    def _beams_changed(self, at: float, inputs: Any) -> list[LaneEvent]:
        beams = (bool(inputs.get("deck_front", True)), bool(inputs.get("deck_rear", True)))
        if beams == self._beams:
            return []
        self._beams = beams
        return self._weigh_events(self.watcher.set_deck_beams(at, *beams))

    def _qr(self, read: QrRead) -> list[LaneEvent]:
        self._camera["reads"] += 1
        lane = self._config.lane
        verdict = gp1.verify_pass(
            read.text,
            trust=self._devices.trust,
            site=lane.site,
            gate=lane.gate,
            direction=lane.direction,
            # Never earlier than a time known to have passed: a Pi without a battery clock
            # may boot with a stale one.
            now=self._devices.time_floor.now(time.time()),
            skew_s=self._config.passes.skew_s,
            revoked=self._devices.revoked,
        )
        claims = verdict.claims
        reason = verdict.reason
        if verdict.valid and claims is not None:
            try:
                if self._devices.ledger.is_used(claims.cti):
                    reason = "pass.already_used"
            except DeviceError as exc:  # fail closed: a use that cannot be checked holds
                log.error("pass ledger unreadable: %s", exc)
                reason = "lane.storage_fault"
        info = PassInfo(
            valid=reason is None,
            reason=reason,
            release_no=claims.release_no if claims else "",
            enterprise=claims.enterprise if claims else "",
            plates=claims.plates if claims else (),
            declared_gross_kg=claims.declared_gross_kg if claims else None,
            tolerance_kg=claims.tolerance_kg if claims else None,
            cti_hex=claims.cti.hex() if claims else "",
            use_hash=gp1.revocation_hash(claims.cti).hex() if claims else "",
            exp=claims.exp if claims else 0,
        )
        log.info("pass read by %s in %.1f ms: %s", read.engine, read.ms, reason or "valid")
        return [PassPresented(read.at, info)]

    # -- status ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "io_board": dict(self._board),
            "weighbridge": dict(self._weight),
            "camera": dict(self._camera),
            "telemetry": self._devices.publisher.status(),
        }
