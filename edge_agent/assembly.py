"""Assemble the lane from its configuration: open stores and drivers, load trust and keys.

Nothing here runs per input: translation of device output is ``translate.py``'s, the loop is
``app.py``'s. Damaged state files are kept aside (``quarantined``) and reported by the agent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.drivers.camera import check_frame_source
from edge_agent.drivers.ioboard import IoBoard
from edge_agent.drivers.pass_ledger import PassLedger
from edge_agent.drivers.serialport import LineSettings
from edge_agent.drivers.state_files import open_state_db
from edge_agent.drivers.weighbridge import WeighbridgeReader
from edge_agent.errors import ConfigError
from edge_agent.protocols import gp1
from edge_agent.remote_config import check_config_args
from edge_agent.telemetry.commands import CommandVerifier, TrustedKey
from edge_agent.telemetry.mqtt import ReconnectJitter, TlsFiles
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher
from edge_agent.timefloor import TimeFloor
from edge_agent.translate import PassAuthority
from edge_agent.vision.evidence import EvidenceStore
from edge_agent.vision.pipeline import QrPipeline

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
    passes: PassAuthority
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
    *,
    isolate_decoders: bool = True,
) -> LaneDevices:
    """Open stores and drivers. Device links are (re)established by their reader loops.

    ``on_command(name, payload)`` receives every command message for this lane (unverified).
    ``isolate_decoders`` runs the QR decoders in a supervised child process (the lane's way:
    native decoders have known aborts); off, they run in-process (tests on fakes).
    """
    from edge_agent import __version__

    # A camera whose library is missing stops the lane here, not at every grab.
    check_frame_source(config.camera.source)
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
        passes = pass_trust(config, commands)
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # pushed state from an older agent
        log.error("pushed pass trust not usable (%s): the local trust list applies", exc)
        passes = pass_trust(config, None)
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
        pipeline=QrPipeline(confirm_frames=config.camera.confirm_frames,
                            isolate=isolate_decoders),
        outbox=outbox,
        publisher=publisher,
        ledger=ledger,
        passes=passes,
        evidence=EvidenceStore(
            config.camera.snapshot_dir or state / "snapshots",
            cap_bytes=int(config.camera.snapshot_cap_mb * 1024 * 1024),
        ),
        commands=commands,
        time_floor=time_floor,
        quarantined=quarantined,
    )


def pass_trust(config: AgentConfig, commands: CommandVerifier | None) -> PassAuthority:
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
    return PassAuthority(trust, revoked)


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
