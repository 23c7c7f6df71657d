"""The agent's configuration: one TOML file per lane (edge_agent/deploy/agent.example.toml).

Only URLs and numbers change between unit test, simulator, bench and lane. Every error names the
file and the key that is wrong. Every number has a valid range, all of them in ``SETTING_RANGES``;
a value outside it (NaN and infinity included) is refused before any device is opened. A key
the file leaves out takes its field's default in the section dataclasses below, the one place
each default is written (``setting_default`` gives it to tools that run without a file).
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edge_agent import defaults
from edge_agent.errors import ConfigError
from edge_agent.telemetry.mqtt import ReconnectJitter


@dataclass(frozen=True, slots=True)
class Range:
    """Valid values of a numeric setting: finite, ``low..high``, above ``low`` if ``low_open``."""

    low: float
    high: float
    unit: str
    low_open: bool = False  # a duration or a size of 0 means nothing, so 0 itself is refused

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        # No float() here: TOML integers may exceed what a float holds.
        finite = isinstance(value, int) or math.isfinite(value)
        above = self.low < value if self.low_open else self.low <= value
        return finite and above and value <= self.high

    def describe(self, key: str) -> str:
        low = "<" if self.low_open else "<="
        return f"{_num(self.low)} {low} {key} <= {_num(self.high)} {self.unit}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


_DAY_S = 86400.0
_WAIT = Range(0, _DAY_S, "s", low_open=True)  # timeouts and intervals: more than 0, at most a day
_BAUD = Range(300, 4_000_000, "baud")
_DISK_MB = Range(1, 1_048_576, "MB")  # 1 MB .. 1 TiB; less than 1 MB holds almost nothing

# The one table of numeric ranges ("section.key"). The reader refuses a number without an entry,
# and remote_config may narrow these ranges for remote settings but never widen them.
SETTING_RANGES: Mapping[str, Range] = MappingProxyType({
    "lane.pass_without_truck_s": _WAIT,
    "io_board.baudrate": _BAUD,
    # The IO board refuses a CONFIG outside this (drivers/ioboard.py CONFIG_LIMITS_S).
    "io_board.t_clear_s": Range(0.1, 60.0, "s"),
    "weighbridge.baudrate": _BAUD,
    "weighbridge.max_kg": Range(0, 1_000_000, "kg", low_open=True),
    # Also e_kg <= max_kg / 20 (a scale has at least 20 divisions), checked across keys.
    "weighbridge.e_kg": Range(0, 50_000, "kg", low_open=True),
    "weighbridge.unstable_timeout_s": _WAIT,
    "weighbridge.not_on_deck_s": _WAIT,
    "weighbridge.frozen_s": _WAIT,
    # The frames must be read within the pipeline's 2 s confirm window; more than 10 rarely are.
    "camera.confirm_frames": Range(1, 10, "frames"),
    "camera.snapshot_cap_mb": _DISK_MB,
    # A pass clock more than an hour off is a broken clock, not skew.
    "passes.skew_s": Range(0, 3600, "s"),
    # 100 t is more than any truck: a wider tolerance would turn the declared-weight check off.
    "passes.default_tolerance_kg": Range(0, 100_000, "kg"),
    "mqtt.keepalive_s": Range(1, 3600, "s"),
    "mqtt.health_interval_s": _WAIT,
    "mqtt.outbox_max_mb": _DISK_MB,
    "mqtt.reconnect_first_min_s": _WAIT,
    "mqtt.reconnect_first_max_s": _WAIT,
    "mqtt.reconnect_max_s": _WAIT,
})  # fmt: skip

# The status page shows the lane's state and is for the lane's own host only.
_LOOPBACK_NAMES = ("localhost",)
_PORT = Range(1, 65535, "")
_PORTS = f"{_num(_PORT.low)}..{_num(_PORT.high)}"
_LISTEN_RULE = f"HOST:PORT with HOST in 127.0.0.0/8, ::1 or localhost and PORT {_PORTS}"


@dataclass(frozen=True, slots=True)
class LaneSection:
    site: str
    lane: str
    gate: str | None = None
    direction: str = "exit"
    state_dir: Path = Path("/var/lib/gatelane")
    pass_without_truck_s: float = defaults.PASS_WITHOUT_TRUCK_S


@dataclass(frozen=True, slots=True)
class IoBoardSection:
    url: str
    baudrate: int = 115200
    t_clear_s: float = defaults.T_CLEAR_S


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


_FLEET_SAFE = ReconnectJitter()


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
    reconnect_first_min_s: float = _FLEET_SAFE.first_min_s
    reconnect_first_max_s: float = _FLEET_SAFE.first_max_s
    reconnect_max_s: float = _FLEET_SAFE.max_s

    @property
    def reconnect(self) -> ReconnectJitter:
        """The reconnect window; refuses (ConfigError) one that is not ordered."""
        return ReconnectJitter(
            self.reconnect_first_min_s, self.reconnect_first_max_s, self.reconnect_max_s
        )


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
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        # TOMLDecodeError, text that is not UTF-8, and integers too long to convert.
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path | None = None) -> AgentConfig:
    """Validate an already-parsed configuration mapping; paths resolve against the file's folder."""
    where = str(path) if path else "config"
    reader = _Reader(raw, where, path.parent if path else Path.cwd())
    s = reader.section("lane", LaneSection)
    lane = LaneSection(
        site=s.text("site"),
        lane=s.text("lane"),
        gate=s.opt_text("gate"),
        direction=s.choice("direction", ("exit", "entry")),
        state_dir=s.path("state_dir"),
        pass_without_truck_s=s.number("pass_without_truck_s"),
    )
    state = lane.state_dir
    s = reader.section("io_board", IoBoardSection)
    io_board = IoBoardSection(
        url=s.text("url"), baudrate=s.integer("baudrate"), t_clear_s=s.number("t_clear_s")
    )
    s = reader.section("weighbridge", WeighbridgeSection)
    weighbridge = WeighbridgeSection(
        url=s.text("url"),
        protocol=s.text("protocol"),
        baudrate=s.integer("baudrate"),
        line=s.text("line"),
        max_kg=s.number("max_kg"),
        e_kg=s.number("e_kg"),
        unstable_timeout_s=s.number("unstable_timeout_s"),
        not_on_deck_s=s.number("not_on_deck_s"),
        frozen_s=s.number("frozen_s"),
    )
    s = reader.section("camera", CameraSection)
    camera = CameraSection(
        source=s.text("source"),
        confirm_frames=s.integer("confirm_frames"),
        snapshot_dir=s.opt_path("snapshot_dir") or state / "snapshots",
        snapshot_cap_mb=s.number("snapshot_cap_mb"),
    )
    s = reader.section("passes", PassesSection)
    passes = PassesSection(
        trust_list=s.path("trust_list"),
        ledger=s.opt_path("ledger") or state / "passes.sqlite",
        revocations=s.opt_path("revocations"),
        skew_s=s.integer("skew_s"),
        default_tolerance_kg=s.opt_number("default_tolerance_kg"),
    )
    s = reader.section("mqtt", MqttSection)
    mqtt = MqttSection(
        broker=s.text("broker"),
        lab=s.flag("lab"),
        keepalive_s=s.integer("keepalive_s"),
        ca=s.opt_path("ca"),
        cert=s.opt_path("cert"),
        key=s.opt_path("key"),
        command_keys=s.opt_path("command_keys"),
        health_interval_s=s.number("health_interval_s"),
        outbox_max_mb=s.opt_number("outbox_max_mb"),
        reconnect_first_min_s=s.number("reconnect_first_min_s"),
        reconnect_first_max_s=s.number("reconnect_first_max_s"),
        reconnect_max_s=s.number("reconnect_max_s"),
    )
    status = StatusSection(listen=reader.section("status", StatusSection).listen("listen"))
    config = AgentConfig(lane=lane, io_board=io_board, weighbridge=weighbridge, camera=camera,
                         passes=passes, mqtt=mqtt, status=status, source=path)  # fmt: skip
    _check_relations(config, where)
    _check_security(config, where)
    return config


def _check_relations(config: AgentConfig, where: str) -> None:
    """Ranges that depend on another setting (each key's own range is checked as it is read)."""
    scale = config.weighbridge
    # The scale refuses Max < 20 e (weighing/events.py ScaleConfig); say so before it is opened.
    if scale.e_kg > scale.max_kg / 20:
        raise ConfigError(
            f"{where}: [weighbridge] e_kg = {_num(scale.e_kg)} is out of range; allowed: "
            f"0 < e_kg <= max_kg / 20 = {_num(scale.max_kg / 20)} kg"
        )
    mqtt = config.mqtt
    try:
        _ = mqtt.reconnect  # ReconnectJitter checks the window as it is made
    except ConfigError as exc:
        window = (mqtt.reconnect_first_min_s, mqtt.reconnect_first_max_s, mqtt.reconnect_max_s)
        raise ConfigError(
            f"{where}: [mqtt] needs 0 < reconnect_first_min_s <= reconnect_first_max_s <= "
            f"reconnect_max_s, got {window[0]:g}, {window[1]:g}, {window[2]:g}"
        ) from exc


def _check_security(config: AgentConfig, where: str) -> None:
    mqtt = config.mqtt
    if mqtt.broker.startswith("mqtts://"):
        if not (mqtt.ca and mqtt.cert and mqtt.key):
            raise ConfigError(f"{where}: [mqtt] mqtts:// needs ca, cert and key")
    elif not mqtt.lab:
        raise ConfigError(
            f"{where}: [mqtt] broker {mqtt.broker!r} is not TLS (mqtts://); "
            "set lab = true only for a lab or simulator setup"
        )


_MISSING: Any = object()


def _field_default(section: type[Any], name: str) -> Any:
    """The default declared on ``section``'s field ``name``; ``_MISSING`` when it has none."""
    for item in fields(section):
        if item.name == name:
            if item.default is not MISSING:
                return item.default
            if item.default_factory is not MISSING:
                return item.default_factory()
            return _MISSING
    raise KeyError(f"{section.__name__} has no setting {name!r}")


def setting_default(section: type[Any], name: str) -> Any:
    """A setting's default as the file reader uses it (e.g. for a tool that runs without a file).

    Raises:
        KeyError: the section has no such setting, or the setting is required.
    """
    value = _field_default(section, name)
    if value is _MISSING:
        raise KeyError(f"{section.__name__}.{name} is required: it has no default")
    return value


class _Reader:
    def __init__(self, raw: dict[str, Any], where: str, base: Path) -> None:
        self._raw, self._where, self._base = raw, where, base

    def section(self, name: str, shape: type[Any]) -> _Section:
        """The ``[name]`` table, its settings' defaults taken from the dataclass ``shape``."""
        table = self._raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{self._where}: [{name}] must be a table")
        return _Section(table, f"{self._where}: [{name}]", name, shape, self._base)


class _Section:
    """One table of the file. A key the file leaves out takes its field's default; a key whose
    field has no default is required."""

    def __init__(
        self, table: dict[str, Any], where: str, name: str, shape: type[Any], base: Path
    ) -> None:
        self._table, self._where, self._name = table, where, name
        self._shape, self._base = shape, base

    def _get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        expected: str = "",
        *,
        optional: bool = False,
    ) -> Any:
        default = None if optional else _field_default(self._shape, key)
        value = self._table.get(key, default)
        if value is _MISSING:
            raise ConfigError(f"{self._where} {key} is required")
        if value is not None and value is not default and not isinstance(value, kind):
            raise ConfigError(f"{self._where} {key} = {value!r} has the wrong type{expected}")
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise ConfigError(f"{self._where} {key} must be a number, not a boolean")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, str)
        if not value:
            raise ConfigError(f"{self._where} {key} must not be empty")
        return value

    def opt_text(self, key: str) -> str | None:
        value: str | None = self._get(key, str, optional=True)
        return value

    def _in_range(self, key: str, value: float) -> None:
        allowed = SETTING_RANGES[f"{self._name}.{key}"]
        if value not in allowed:
            finite = isinstance(value, int) or math.isfinite(value)
            problem = "is out of range" if finite else "is not a finite number"
            raise ConfigError(
                f"{self._where} {key} = {value!r} {problem}; allowed: {allowed.describe(key)}"
            )

    def integer(self, key: str) -> int:
        allowed = SETTING_RANGES[f"{self._name}.{key}"]
        expected = f"; allowed: an integer, {allowed.describe(key)}"
        value: int = self._get(key, int, expected)
        self._in_range(key, value)
        return value

    def number(self, key: str) -> float:
        value: float = self._get(key, (int, float))
        self._in_range(key, value)  # before float(): a huge integer would overflow
        return float(value)

    def opt_number(self, key: str) -> float | None:
        value: float | None = self._get(key, (int, float), optional=True)
        if value is None:
            return None
        self._in_range(key, value)
        return float(value)

    def flag(self, key: str) -> bool:
        value: bool = self._get(key, bool)
        return value

    def listen(self, key: str) -> str:
        value = self.text(key)
        problem = _listen_problem(value)
        if problem:
            raise ConfigError(
                f"{self._where} {key} = {value!r} {problem}; allowed: {_LISTEN_RULE}"
            )
        return value

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in options:
            raise ConfigError(
                f"{self._where} {key} = {value!r}: expected one of {', '.join(options)}"
            )
        return value

    def path(self, key: str) -> Path:
        value = self._get(key, (str, Path))
        return self._base / value if not isinstance(value, Path) else value

    def opt_path(self, key: str) -> Path | None:
        value = self._get(key, str, optional=True)
        return None if value is None else self._base / value


def _listen_problem(listen: str) -> str | None:
    """Why ``listen`` is not a loopback ``host:port`` (None when it is one)."""
    if listen.startswith("["):
        host, bracket, port = listen[1:].partition("]:")
        if not bracket:
            return "is not HOST:PORT"
    else:
        # Split like the status server does: the port follows the last colon (also ::1:8787).
        host, _, port = listen.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        return "is not HOST:PORT"
    if len(port) > 5 or int(port) not in _PORT:  # length first: int() refuses 4300+ digits
        return f"has a port outside {_PORTS}"
    if host.lower() in _LOOPBACK_NAMES:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return None if loopback else "is not a loopback address"
