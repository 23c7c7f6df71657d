"""The agent's configuration: one TOML file per lane (edge_agent/deploy/agent.example.toml).

Only URLs and numbers change between unit test, simulator, bench and lane. Every error names the
file and the key that is wrong.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LaneSection:
    site: str
    lane: str
    gate: str | None = None
    direction: str = "exit"
    state_dir: Path = Path("/var/lib/gatelane")
    pass_without_truck_s: float = 120.0  # a pass shown with no truck on the deck is let go


@dataclass(frozen=True, slots=True)
class IoBoardSection:
    url: str
    baudrate: int = 115200
    t_clear_s: float = 0.5


@dataclass(frozen=True, slots=True)
class WeighbridgeSection:
    url: str
    protocol: str = "yaohua-tf0"
    baudrate: int = 9600
    line: str = "8N1"
    max_kg: float = 60000.0
    e_kg: float = 20.0
    unstable_timeout_s: float = 15.0
    not_on_deck_s: float = 5.0
    frozen_s: float = 6.0


@dataclass(frozen=True, slots=True)
class CameraSection:
    source: str
    confirm_frames: int = 2
    snapshot_dir: Path | None = None
    snapshot_cap_mb: float = 200.0


@dataclass(frozen=True, slots=True)
class PassesSection:
    trust_list: Path
    ledger: Path
    revocations: Path | None = None
    skew_s: int = 300
    default_tolerance_kg: float | None = None


@dataclass(frozen=True, slots=True)
class MqttSection:
    broker: str
    lab: bool = False
    keepalive_s: int = 10
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    command_keys: Path | None = None
    health_interval_s: float = 30.0
    outbox_max_mb: float | None = None
    # The first reconnect after a loss waits a random time in this window (a fleet that lost
    # its broker together must not come back in the same second), then doubles up to the cap.
    reconnect_first_min_s: float = 1.0
    reconnect_first_max_s: float = 30.0
    reconnect_max_s: float = 120.0


@dataclass(frozen=True, slots=True)
class StatusSection:
    listen: str = "127.0.0.1:8787"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    lane: LaneSection
    io_board: IoBoardSection
    weighbridge: WeighbridgeSection
    camera: CameraSection
    passes: PassesSection
    mqtt: MqttSection
    status: StatusSection = field(default_factory=StatusSection)
    source: Path | None = None

    @property
    def outbox_path(self) -> Path:
        return self.lane.state_dir / "outbox.sqlite"


def load_config(path: Path) -> AgentConfig:
    """Read and validate the agent's TOML configuration file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path | None = None) -> AgentConfig:
    """Validate an already-parsed configuration mapping; paths resolve against the file's folder."""
    where = str(path) if path else "config"
    base = path.parent if path else Path.cwd()
    reader = _Reader(raw, where, base)
    lane = LaneSection(
        site=reader.text("lane", "site"),
        lane=reader.text("lane", "lane"),
        gate=reader.opt_text("lane", "gate"),
        direction=reader.choice("lane", "direction", ("exit", "entry"), "exit"),
        state_dir=reader.path("lane", "state_dir", Path("/var/lib/gatelane")),
        pass_without_truck_s=reader.number("lane", "pass_without_truck_s", 120.0),
    )
    state = lane.state_dir
    config = AgentConfig(
        lane=lane,
        io_board=IoBoardSection(
            url=reader.text("io_board", "url"),
            baudrate=reader.integer("io_board", "baudrate", 115200),
            t_clear_s=reader.number("io_board", "t_clear_s", 0.5),
        ),
        weighbridge=WeighbridgeSection(
            url=reader.text("weighbridge", "url"),
            protocol=reader.text("weighbridge", "protocol", "yaohua-tf0"),
            baudrate=reader.integer("weighbridge", "baudrate", 9600),
            line=reader.text("weighbridge", "line", "8N1"),
            max_kg=reader.number("weighbridge", "max_kg", 60000.0),
            e_kg=reader.number("weighbridge", "e_kg", 20.0),
            unstable_timeout_s=reader.number("weighbridge", "unstable_timeout_s", 15.0),
            not_on_deck_s=reader.number("weighbridge", "not_on_deck_s", 5.0),
            frozen_s=reader.number("weighbridge", "frozen_s", 6.0),
        ),
        camera=CameraSection(
            source=reader.text("camera", "source"),
            confirm_frames=reader.integer("camera", "confirm_frames", 2),
            snapshot_dir=reader.opt_path("camera", "snapshot_dir") or state / "snapshots",
            snapshot_cap_mb=reader.number("camera", "snapshot_cap_mb", 200.0),
        ),
        passes=PassesSection(
            trust_list=reader.path("passes", "trust_list"),
            ledger=reader.opt_path("passes", "ledger") or state / "passes.sqlite",
            revocations=reader.opt_path("passes", "revocations"),
            skew_s=reader.integer("passes", "skew_s", 300),
            default_tolerance_kg=reader.opt_number("passes", "default_tolerance_kg"),
        ),
        mqtt=MqttSection(
            broker=reader.text("mqtt", "broker"),
            lab=reader.flag("mqtt", "lab", False),
            keepalive_s=reader.integer("mqtt", "keepalive_s", 10),
            ca=reader.opt_path("mqtt", "ca"),
            cert=reader.opt_path("mqtt", "cert"),
            key=reader.opt_path("mqtt", "key"),
            command_keys=reader.opt_path("mqtt", "command_keys"),
            health_interval_s=reader.number("mqtt", "health_interval_s", 30.0),
            outbox_max_mb=reader.opt_number("mqtt", "outbox_max_mb"),
            reconnect_first_min_s=reader.number("mqtt", "reconnect_first_min_s", 1.0),
            reconnect_first_max_s=reader.number("mqtt", "reconnect_first_max_s", 30.0),
            reconnect_max_s=reader.number("mqtt", "reconnect_max_s", 120.0),
        ),
        status=StatusSection(listen=reader.text("status", "listen", "127.0.0.1:8787")),
        source=path,
    )
    _check_security(config, where)
    return config


def _check_security(config: AgentConfig, where: str) -> None:
    mqtt = config.mqtt
    window = (mqtt.reconnect_first_min_s, mqtt.reconnect_first_max_s, mqtt.reconnect_max_s)
    if not 0 < window[0] <= window[1] <= window[2]:
        raise ConfigError(
            f"{where}: [mqtt] needs 0 < reconnect_first_min_s <= reconnect_first_max_s <= "
            f"reconnect_max_s, got {window[0]:g}, {window[1]:g}, {window[2]:g}"
        )
    if mqtt.broker.startswith("mqtts://"):
        if not (mqtt.ca and mqtt.cert and mqtt.key):
            raise ConfigError(f"{where}: [mqtt] mqtts:// needs ca, cert and key")
    elif not mqtt.lab:
        raise ConfigError(
            f"{where}: [mqtt] broker {mqtt.broker!r} is not TLS (mqtts://); "
            "set lab = true only for a lab or simulator setup"
        )


_MISSING = object()


class _Reader:
    def __init__(self, raw: dict[str, Any], where: str, base: Path) -> None:
        self._raw, self._where, self._base = raw, where, base

    def _get(self, section: str, key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
        table = self._raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{self._where}: [{section}] must be a table")
        value = table.get(key, default)
        if value is _MISSING:
            raise ConfigError(f"{self._where}: [{section}] {key} is required")
        if value is not None and value is not default and not isinstance(value, kind):
            raise ConfigError(
                f"{self._where}: [{section}] {key} = {value!r} has the wrong type"
            )
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise ConfigError(f"{self._where}: [{section}] {key} must be a number, not a boolean")
        return value

    def text(self, section: str, key: str, default: Any = _MISSING) -> str:
        value: str = self._get(section, key, default, str)
        if not value:
            raise ConfigError(f"{self._where}: [{section}] {key} must not be empty")
        return value

    def opt_text(self, section: str, key: str) -> str | None:
        value: str | None = self._get(section, key, None, str)
        return value

    def integer(self, section: str, key: str, default: int) -> int:
        value: int = self._get(section, key, default, int)
        return value

    def number(self, section: str, key: str, default: float) -> float:
        return float(self._get(section, key, default, (int, float)))

    def opt_number(self, section: str, key: str) -> float | None:
        value = self._get(section, key, None, (int, float))
        return None if value is None else float(value)

    def flag(self, section: str, key: str, default: bool) -> bool:
        value: bool = self._get(section, key, default, bool)
        return value

    def choice(self, section: str, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.text(section, key, default)
        if value not in options:
            raise ConfigError(
                f"{self._where}: [{section}] {key} = {value!r}: "
                f"expected one of {', '.join(options)}"
            )
        return value

    def path(self, section: str, key: str, default: Any = _MISSING) -> Path:
        value = self._get(section, key, default, (str, Path))
        return self._base / value if not isinstance(value, Path) else value

    def opt_path(self, section: str, key: str) -> Path | None:
        value = self._get(section, key, None, str)
        return None if value is None else self._base / value
