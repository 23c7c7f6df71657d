"""The agent's configuration: one TOML file per lane (edge_agent/deploy/agent.example.toml).

Only URLs and numbers change between unit test, simulator, bench and lane. The sections below
are the schema (pydantic dataclasses: each key's type, default and range, nothing else
accepted); ``check_config`` reports every problem of a file at once, one line per key, and
``load_config`` refuses a file with any. Every number has a valid range, all of them in
``SETTING_RANGES``; a value outside it (NaN and infinity included) is refused before any device
is opened. A key the file leaves out takes its field's default below, the one place each
default is written (``setting_default`` gives it to tools that run without a file).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)
from pydantic.dataclasses import dataclass as schema

from edge_agent import config_rules as rules
from edge_agent import defaults
from edge_agent.config_rules import ConfigProblem, Range
from edge_agent.drivers.serialport import LineSettings
from edge_agent.errors import ConfigError
from edge_agent.protocols.indicators.registry import PROTOCOLS
from edge_agent.telemetry.mqtt import ReconnectJitter, parse_broker_url

__all__ = ["SETTING_RANGES", "AgentConfig", "ConfigError", "ConfigFileError", "ConfigProblem",
           "Range", "check_config", "load_config", "parse_config", "setting_default"]  # fmt: skip


_DAY_S = 86400.0
_WAIT = Range(0, _DAY_S, "s", low_open=True)  # timeouts and intervals: more than 0, at most a day
_BAUD = Range(300, 4_000_000, "baud")
_DISK_MB = Range(1, 1_048_576, "MB")  # 1 MB .. 1 TiB; less than 1 MB holds almost nothing

# The one table of numeric ranges ("section.key"). Every number of the schema takes its range
# from here, and remote_config may narrow these ranges for remote settings but never widen them.
SETTING_RANGES: Mapping[str, Range] = MappingProxyType({
    "lane.pass_without_truck_s": _WAIT,
    "io_board.baudrate": _BAUD,
    # The IO board refuses a CONFIG outside this (drivers/ioboard.py CONFIG_LIMITS_S).
    "io_board.t_clear_s": Range(0.1, 60.0, "s"),
    "weighbridge.baudrate": _BAUD,
    "eseal.baudrate": _BAUD,
    "weighbridge.max_kg": Range(0, 1_000_000, "kg", low_open=True),
    # Also e_kg <= max_kg / 20 (a scale has at least 20 divisions), checked across keys.
    "weighbridge.e_kg": Range(0, 50_000, "kg", low_open=True),
    "weighbridge.unstable_timeout_s": _WAIT,
    "weighbridge.not_on_deck_s": _WAIT,
    "weighbridge.frozen_s": _WAIT,
    # The indicator settles about a second after the estimate; a minute is a stuck indicator.
    "weighbridge.indication_wait_s": Range(0, 60, "s", low_open=True),
    # The frames must be read within the pipeline's 2 s confirm window; more than 10 rarely are.
    "camera.confirm_frames": Range(1, 10, "frames"),
    "camera.snapshot_cap_mb": _DISK_MB,
    # A pass clock more than an hour off is a broken clock, not skew.
    "passes.skew_s": Range(0, 3600, "s"),
    # 100 t is more than any truck: a wider tolerance would turn the declared-weight check off.
    "passes.default_tolerance_kg": Range(0, 100_000, "kg"),
    # Half the declared gross would pass a truck carrying a third more or less: no check at all.
    "passes.tolerance_percent": Range(0, 50, "%"),
    "passes.tare_band_kg": Range(0, 100_000, "kg"),
    # A decision waits this long for the plate; longer and the queue behind it grows.
    "plates.wait_s": Range(0, 30, "s", low_open=True),
    "containers.wait_s": Range(0, 30, "s", low_open=True),
    "eseal.wait_s": Range(0, 30, "s", low_open=True),
    # What e-seal readers report (ISO 18185 readers give -128..0 dBm).
    "eseal.min_rssi_dbm": Range(-128, 0, "dBm"),
    "mqtt.keepalive_s": Range(1, 3600, "s"),
    "mqtt.health_interval_s": _WAIT,
    "mqtt.outbox_max_mb": _DISK_MB,
    "mqtt.reconnect_first_min_s": _WAIT,
    "mqtt.reconnect_first_max_s": _WAIT,
    "mqtt.reconnect_max_s": _WAIT,
    # 0 starts at once; an hour covers a cold start's NTP/GNSS fix.
    "clock.wait_for_sync_s": Range(0, 3600, "s"),
})  # fmt: skip


# The entries of passes.tares (a table per plate, not one setting each).
TARE_RANGES: Mapping[str, Range] = MappingProxyType({
    "kg": Range(0, 100_000, "kg", low_open=True),
    "band_kg": SETTING_RANGES["passes.tare_band_kg"],
})  # fmt: skip

PixelBox = tuple[int, int, int, int]  # x, y, width, height


def _tares_problem(value: object) -> str | None:
    return rules.tares_problem(value, TARE_RANGES)


# -- value types -----------------------------------------------------------------------------


def _number(name: str) -> BeforeValidator:
    """A float setting ranged by ``SETTING_RANGES[name]``; an integer is taken, a bool is not."""
    allowed, key = SETTING_RANGES[name], name.partition(".")[2]

    def check(value: object) -> object:
        if value is None:  # the default of an optional number
            return value
        reason = rules.range_reason(allowed, key, value)
        if reason or not isinstance(value, int | float):
            raise rules.problem(reason or "must be a number")
        return float(value)  # only now: a huge integer is refused above, not overflowed here

    return BeforeValidator(check)


def _integer(name: str) -> BeforeValidator:
    allowed, key = SETTING_RANGES[name], name.partition(".")[2]

    def check(value: object) -> object:
        reason = rules.range_reason(allowed, key, value, integer=True)
        if reason:
            raise rules.problem(reason)
        return value

    return BeforeValidator(check)


def _path(value: object, info: ValidationInfo) -> object:
    """A path from the file resolves against the file's folder (``base`` in the context)."""
    if value is None or isinstance(value, Path):  # a default, or a section being copied
        return value
    if not isinstance(value, str) or not value:
        got = "an empty text" if value == "" else rules.shown(value)
        raise rules.problem(f"must be a path in quotes, got {got}")
    base = (info.context or {}).get("base")
    return base / value if isinstance(base, Path) else Path(value)


def _filled(value: str) -> str:
    if not value:
        raise rules.problem("must not be empty")
    return value


def _one_of(options: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in options:
            near = rules.closest(value, options)
            hint = f"; did you mean {near}?" if near else ""
            raise rules.problem(f"must be one of {', '.join(options)}, "
                                f"got {rules.shown(value)}{hint}")  # fmt: skip
        return value

    return check


def _line(value: str) -> str:
    try:
        LineSettings.parse(value, 9600)
    except ConfigError:
        raise rules.problem("must be like 8N1 or 7E1 (7 or 8 data bits, parity N, E or O, "
                            f"1 or 2 stop bits), got {rules.shown(value)}") from None
    return value


def _broker(value: str) -> str:
    try:
        parse_broker_url(value)
    except ConfigError as exc:
        detail = str(exc).removeprefix(f"broker URL {value!r}").lstrip(": ")
        raise rules.problem(f"must be mqtts://HOST[:PORT] (mqtt:// in a lab), "
                            f"got {rules.shown(value)}: {detail}") from None  # fmt: skip
    return value


def _listen(value: str) -> str:
    reason = rules.listen_form_problem(value)
    if reason:
        raise rules.problem(reason)
    return value


def _checked(reason_of: Callable[[Any], str | None]) -> Callable[[Any], Any]:
    """A validator from a ``config_rules`` check that names what is wrong (None: good)."""

    def check(value: Any) -> Any:
        reason = reason_of(value)
        if reason:
            raise rules.problem(reason)
        return tuple(value) if isinstance(value, list) else value

    return check


Text = Annotated[str, Strict(), AfterValidator(_filled)]
Flag = Annotated[bool, Strict()]
FilePath = Annotated[Path, BeforeValidator(_path)]
OptPath = Annotated[Path | None, BeforeValidator(_path)]

_SCHEMA = ConfigDict(extra="forbid", defer_build=True)  # built on first use: tools import cheaply


# -- the sections ----------------------------------------------------------------------------


@schema(frozen=True, slots=True, config=_SCHEMA)
class LaneSection:
    site: Text
    lane: Text
    gate: Text | None = None
    any_gate: Flag = False  # a pass for any gate is accepted: only when the file says so
    direction: Literal["exit", "entry"] = "exit"
    state_dir: FilePath = Path("/var/lib/gatelane")
    pass_without_truck_s: Annotated[float, _number("lane.pass_without_truck_s")] = (
        defaults.PASS_WITHOUT_TRUCK_S
    )


@schema(frozen=True, slots=True, config=_SCHEMA)
class IoBoardSection:
    url: Text
    baudrate: Annotated[int, _integer("io_board.baudrate")] = 115200
    t_clear_s: Annotated[float, _number("io_board.t_clear_s")] = defaults.T_CLEAR_S


@schema(frozen=True, slots=True, config=_SCHEMA)
class WeighbridgeSection:
    url: Text
    protocol: Annotated[str, Strict(), AfterValidator(_one_of(PROTOCOLS))] = "yaohua-tf0"
    baudrate: Annotated[int, _integer("weighbridge.baudrate")] = 9600
    line: Annotated[str, Strict(), AfterValidator(_line)] = "8N1"
    max_kg: Annotated[float, _number("weighbridge.max_kg")] = 60000.0
    e_kg: Annotated[float, _number("weighbridge.e_kg")] = 20.0
    unstable_timeout_s: Annotated[float, _number("weighbridge.unstable_timeout_s")] = 15.0
    not_on_deck_s: Annotated[float, _number("weighbridge.not_on_deck_s")] = 5.0
    frozen_s: Annotated[float, _number("weighbridge.frozen_s")] = 6.0
    # The indicator settles about a second after the estimate (weighing/indication.py).
    indication_wait_s: Annotated[float, _number("weighbridge.indication_wait_s")] = 5.0


@schema(frozen=True, slots=True, config=_SCHEMA)
class CameraSection:
    source: Text
    confirm_frames: Annotated[int, _integer("camera.confirm_frames")] = 2
    snapshot_dir: OptPath = None  # the file leaves it out: state_dir/snapshots
    snapshot_cap_mb: Annotated[float, _number("camera.snapshot_cap_mb")] = 200.0


@schema(frozen=True, slots=True, config=_SCHEMA)
class PassesSection:
    trust_list: FilePath
    ledger: FilePath = Path("passes.sqlite")  # the file leaves it out: in lane.state_dir
    revocations: OptPath = None
    skew_s: Annotated[int, _integer("passes.skew_s")] = 300
    default_tolerance_kg: Annotated[float | None, _number("passes.default_tolerance_kg")] = None
    # Unset: default_tolerance_kg flat when it is set, else both (weighing/declared.py).
    tolerance_rule: Literal["absolute", "percent", "both"] | None = None
    tolerance_percent: Annotated[float, _number("passes.tolerance_percent")] = 1.0
    tare_band_kg: Annotated[float, _number("passes.tare_band_kg")] = 500.0
    tares: Annotated[dict[str, Any], BeforeValidator(_checked(_tares_problem))] = field(
        default_factory=dict
    )

    def tare_table(self) -> dict[str, tuple[float, float]]:
        """The site's tares: plate -> (tare kg, band kg), the band its own or tare_band_kg."""
        out = {}
        for plate, entry in self.tares.items():
            table = entry if isinstance(entry, Mapping) else {"kg": entry}
            out[plate] = (float(table["kg"]), float(table.get("band_kg", self.tare_band_kg)))
        return out


@schema(frozen=True, slots=True, config=_SCHEMA)
class PlatesSection:
    """The plate check; with neither source nor region the lane reads no plate."""

    source: Text | None = None  # the plate camera's own frame source (URL as camera.source)
    region: Annotated[PixelBox | None, BeforeValidator(_checked(rules.region_problem))] = None
    engine: Annotated[str, Strict(), AfterValidator(_checked(rules.plate_engine_problem))] = (
        rules.PLATE_ENGINES[0]
    )
    wait_s: Annotated[float, _number("plates.wait_s")] = 3.0
    unread: Literal["hold", "flag"] = "hold"

    @property
    def configured(self) -> bool:
        return self.source is not None or self.region is not None


@schema(frozen=True, slots=True, config=_SCHEMA)
class ContainersSection:
    """The container check; its reads come in on ``socket`` (docs/lane-identity.md)."""

    check: Flag = False
    socket: FilePath = Path("/run/gatelane/containers.sock")
    wait_s: Annotated[float, _number("containers.wait_s")] = 3.0
    unread: Literal["hold", "flag"] = "hold"


@schema(frozen=True, slots=True, config=_SCHEMA)
class EsealSection:
    """The seal check; without ``url`` the lane reads no seal."""

    url: Text | None = None  # the e-seal reader's port (a serialport URL or fake-eseal://NAME)
    line: Annotated[str, Strict(), AfterValidator(_line)] = "8N1"
    baudrate: Annotated[int, _integer("eseal.baudrate")] = 9600
    min_rssi_dbm: Annotated[int | None, _integer("eseal.min_rssi_dbm")] = None
    wait_s: Annotated[float, _number("eseal.wait_s")] = 3.0
    unread: Literal["hold", "flag"] = "hold"


_FLEET_SAFE = ReconnectJitter()


@schema(frozen=True, slots=True, config=_SCHEMA)
class MqttSection:
    broker: Annotated[str, Strict(), AfterValidator(_broker)]
    lab: Flag = False
    keepalive_s: Annotated[int, _integer("mqtt.keepalive_s")] = 10
    ca: OptPath = None
    cert: OptPath = None
    key: OptPath = None
    command_keys: OptPath = None
    health_interval_s: Annotated[float, _number("mqtt.health_interval_s")] = 30.0
    outbox_max_mb: Annotated[float | None, _number("mqtt.outbox_max_mb")] = None
    # The first reconnect after a loss waits a random time in this window (a fleet that lost
    # its broker together must not come back in the same second), then doubles up to the cap.
    reconnect_first_min_s: Annotated[float, _number("mqtt.reconnect_first_min_s")] = (
        _FLEET_SAFE.first_min_s
    )
    reconnect_first_max_s: Annotated[float, _number("mqtt.reconnect_first_max_s")] = (
        _FLEET_SAFE.first_max_s
    )
    reconnect_max_s: Annotated[float, _number("mqtt.reconnect_max_s")] = _FLEET_SAFE.max_s

    @property
    def reconnect(self) -> ReconnectJitter:
        """The reconnect window; refuses (ConfigError) one that is not ordered."""
        return ReconnectJitter(
            self.reconnect_first_min_s, self.reconnect_first_max_s, self.reconnect_max_s
        )


@schema(frozen=True, slots=True, config=_SCHEMA)
class StatusSection:
    # Loopback unless token_file is set: the page then asks for the token in that file.
    listen: Annotated[str, Strict(), AfterValidator(_listen)] = "127.0.0.1:8787"
    token_file: OptPath = None


@schema(frozen=True, slots=True, config=_SCHEMA)
class LoggingSection:
    level: Literal["debug", "info", "warning", "error"] = "info"


@schema(frozen=True, slots=True, config=_SCHEMA)
class ClockSection:
    wait_for_sync_s: Annotated[float, _number("clock.wait_for_sync_s")] = 0.0


@schema(frozen=True, slots=True, config=_SCHEMA)
class ControlSection:
    socket: FilePath = Path("/run/gatelane/control.sock")


@dataclasses.dataclass(frozen=True, slots=True)
class AgentConfig:
    lane: LaneSection
    io_board: IoBoardSection
    weighbridge: WeighbridgeSection
    camera: CameraSection
    passes: PassesSection
    mqtt: MqttSection
    plates: PlatesSection = field(default_factory=PlatesSection)
    containers: ContainersSection = field(default_factory=ContainersSection)
    eseal: EsealSection = field(default_factory=EsealSection)
    status: StatusSection = field(default_factory=StatusSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    clock: ClockSection = field(default_factory=ClockSection)
    control: ControlSection = field(default_factory=ControlSection)
    source: Path | None = None

    @property
    def outbox_path(self) -> Path:
        return self.lane.state_dir / "outbox.sqlite"


# The file's sections, in the order the schema declares them.
SECTIONS: Mapping[str, type[Any]] = MappingProxyType({
    name: kind for name, kind in get_type_hints(AgentConfig).items() if name != "source"
})  # fmt: skip
_KEYS = {name: tuple(item.name for item in fields(kind)) for name, kind in SECTIONS.items()}


# -- reading a file --------------------------------------------------------------------------


class ConfigFileError(ConfigError):
    """A configuration file with problems; the message has one line per problem."""

    def __init__(self, where: str, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(f"{where}: {item}" for item in problems))
        self.where, self.problems = where, problems


def _read(path: Path) -> tuple[dict[str, Any] | None, ConfigProblem | None]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, ConfigProblem("", "configuration file not found")
    except OSError as exc:
        return None, ConfigProblem("", f"cannot be read: {exc.strerror or exc}")
    except ValueError as exc:
        # TOMLDecodeError, text that is not UTF-8, and integers too long to convert.
        return None, ConfigProblem("", f"not valid TOML: {exc}")


def check_config(path: Path) -> list[ConfigProblem]:
    """Every problem of the configuration file at ``path``, in file order (empty: it is good)."""
    raw, unreadable = _read(path)
    if raw is None:
        return [unreadable] if unreadable else []
    return _validate(raw, path)[1]


def load_config(path: Path) -> AgentConfig:
    """Read and validate the agent's TOML configuration file.

    Raises:
        ConfigFileError: the file is missing, unreadable, not TOML, or has problems (all of
            them in the message, one per line).
    """
    raw, unreadable = _read(path)
    if raw is None:
        raise ConfigFileError(str(path), [unreadable] if unreadable else [])
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path | None = None) -> AgentConfig:
    """Validate an already-parsed configuration mapping; paths resolve against the file's folder."""
    config, problems = _validate(raw, path)
    if config is None or problems:
        raise ConfigFileError(str(path) if path else "config", problems)
    return config


def _validate(
    raw: dict[str, Any], path: Path | None
) -> tuple[AgentConfig | None, list[ConfigProblem]]:
    base = path.parent if path else Path.cwd()
    problems = [rules.unknown_section(name, value, _KEYS) for name, value in raw.items()
                if name not in SECTIONS]  # fmt: skip
    made: dict[str, Any] = {}
    checkable: dict[str, tuple[Any, set[str]]] = {}
    for name, kind in SECTIONS.items():
        section, usable, bad, found = _section(name, kind, raw.get(name, {}), base.absolute())
        problems += found
        if section is not None:
            made[name] = section
        if usable is not None:
            checkable[name] = (usable, bad)
    for name, keys, check in rules.ACROSS:
        if name in checkable and not keys & checkable[name][1]:
            problems += check(checkable[name][0])
    problems = rules.in_file_order(problems, raw, _KEYS)
    if problems:
        return None, problems
    state = made["lane"].state_dir
    if "snapshot_dir" not in raw.get("camera", {}):
        made["camera"] = dataclasses.replace(made["camera"], snapshot_dir=state / "snapshots")
    if "ledger" not in raw.get("passes", {}):
        made["passes"] = dataclasses.replace(made["passes"], ledger=state / "passes.sqlite")
    return AgentConfig(**made, source=path), []


def _section(
    name: str, kind: type[Any], table: object, base: Path
) -> tuple[Any, Any, set[str], list[ConfigProblem]]:
    """``[name]`` validated: (the section or None, a section to check across keys or None, the
    keys that are wrong, the problems). With wrong keys, the section without them (their
    defaults in their place) is still checked across the keys it has right."""
    adapter, context = TypeAdapter(kind), {"base": base}
    try:
        section = adapter.validate_python(table, context=context)
        return section, section, set(), []
    except ValidationError as exc:
        errors = exc.errors()
    problems = []
    for error in errors:
        item = rules.translate(error, name)
        if item.reason == "unknown key":
            item = rules.unknown_key(item, _KEYS[name])
        problems.append(item)
    bad = {str(error["loc"][0]) for error in errors if error["loc"]}
    if not isinstance(table, dict) or len(bad) < len(errors):
        return None, None, bad, problems
    try:
        rest = {key: value for key, value in table.items() if key not in bad}
        return None, adapter.validate_python(rest, context=context), bad, problems
    except ValidationError:  # a required key is wrong or missing
        return None, None, bad, problems


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
