"""The configuration file's rules in plain words: schema errors translated, settings checked
against each other, and every problem sorted into the order of the file.

The schema itself (sections, keys, types, defaults, ranges) is in ``config.py``; this module
turns what pydantic reports into one line per key a technician can act on.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import ErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    from edge_agent.config import LaneSection, MqttSection, StatusSection, WeighbridgeSection

TOKEN_MIN_CHARS = 16
_LOOPBACK_NAMES = ("localhost",)
PORTS = "1..65535"
LISTEN_FORM = f"HOST:PORT (e.g. 127.0.0.1:8787, [::1]:8787) with PORT {PORTS}"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a configuration file: the key (``section.key``, a section name, or
    "" for the file itself) and why, in plain words."""

    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.key}: {self.reason}" if self.key else self.reason


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
        return f"{_num(self.low)} {low} {key} <= {_num(self.high)} {self.unit}".rstrip()


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def problem(reason: str) -> PydanticCustomError:
    """A schema error whose message is already the plain reason."""
    return PydanticCustomError("gatelane", "{reason}", {"reason": reason})


def shown(value: object) -> str:
    """A value as the file would write it (long numbers cut short)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '..."'
    if isinstance(value, int):
        digits = str(value)
        return digits if len(digits) <= 20 else f"{digits[:12]}... ({len(digits)} digits)"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"  # TOML dates and times


def range_reason(allowed: Range, key: str, value: object, *, integer: bool = False) -> str | None:
    """Why ``value`` is not a valid ``key`` (None when it is)."""
    tail = f"; allowed: {allowed.describe(key)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a whole number" if integer else "a number"
        return f"must be {kind}, got {shown(value)}{tail}"
    if integer and not isinstance(value, int):
        return f"must be a whole number, got {shown(value)}{tail}"
    if value in allowed:
        return None
    unit = f" {allowed.unit}" if allowed.unit else ""
    if isinstance(value, float) and not math.isfinite(value):
        need = "a finite number"
    elif value > allowed.high:
        need = f"at most {_num(allowed.high)}{unit}"
    elif allowed.low_open:
        need = f"more than {_num(allowed.low)}{unit}"
    else:
        need = f"at least {_num(allowed.low)}{unit}"
    return f"must be {need}, got {shown(value)}{tail}"


# -- pydantic's errors in plain words --------------------------------------------------------

_TYPE_WORDS = {
    "string_type": "must be text in quotes",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "path_type": "must be a path in quotes",
    "missing": "is required",
}


def translate(error: ErrorDetails, section: str) -> ConfigProblem:
    """One pydantic error of ``section``'s table as a problem named ``section.key``."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join([section, *loc[:1]]) if loc else section
    kind, value = error["type"], error.get("input")
    if kind == "gatelane":
        return ConfigProblem(key, str(error["ctx"]["reason"]))
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return ConfigProblem(key, "unknown key")  # the caller adds "did you mean"
    if kind == "dataclass_type":
        return ConfigProblem(section, f"must be a section [{section}], got {shown(value)}")
    if kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", "")).replace("'", "")
        return ConfigProblem(key, f"must be one of {expected.replace(' or ', ', ')}, "
                                  f"got {shown(value)}")  # fmt: skip
    words = _TYPE_WORDS.get(kind)
    if words is None:
        return ConfigProblem(key, error["msg"][:1].lower() + error["msg"][1:])
    if kind == "missing":
        return ConfigProblem(key, words)
    return ConfigProblem(key, f"{words}, got {shown(value)}")


def closest(name: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key(problem_: ConfigProblem, known: Sequence[str]) -> ConfigProblem:
    name = problem_.key.rpartition(".")[2]
    near = closest(name, known)
    hint = f"; did you mean {near}?" if near else f"; known keys: {', '.join(known)}"
    return ConfigProblem(problem_.key, problem_.reason + hint)


def unknown_section(name: str, value: object, known: Mapping[str, Sequence[str]]) -> ConfigProblem:
    near = closest(name, known)
    if near:
        return ConfigProblem(name, f"unknown section; did you mean [{near}]?")
    homes = [section for section, keys in known.items() if name in keys]
    if homes and not isinstance(value, Mapping):
        return ConfigProblem(name, f"unknown key at the top of the file; it belongs in "
                                   f"[{homes[0]}]")  # fmt: skip
    return ConfigProblem(name, f"unknown section; known sections: {', '.join(known)}")


def in_file_order(problems: Iterable[ConfigProblem], raw: Mapping[str, Any],
                  declared: Mapping[str, Sequence[str]]) -> list[ConfigProblem]:  # fmt: skip
    """``problems`` sorted by where their key is in the file (tomllib keeps the file's order);
    keys the file leaves out come after their section's keys, in the schema's order."""
    sections = list(raw) + [name for name in declared if name not in raw]
    far = len(sections) + 1

    def position(item: ConfigProblem) -> tuple[int, int]:
        section, _, key = item.key.partition(".")
        if not item.key:
            return (-1, 0)
        where = sections.index(section) if section in sections else far
        if not key:
            return (where, -1)
        table = raw.get(section)
        given = list(table) if isinstance(table, Mapping) else []
        keys = given + [name for name in declared.get(section, ()) if name not in given]
        return (where, keys.index(key) if key in keys else len(keys))

    return sorted(problems, key=position)


# -- listen ----------------------------------------------------------------------------------


def split_listen(listen: str) -> tuple[str, str] | None:
    """``(host, port)`` of ``HOST:PORT`` or ``[V6]:PORT`` (None when it has neither form)."""
    if listen.startswith("["):
        host, bracket, port = listen[1:].partition("]:")
        if not bracket:
            return None
    else:
        # Split like the status server does: the port follows the last colon (also ::1:8787).
        host, _, port = listen.rpartition(":")
    return (host, port) if host else None


def listen_form_problem(listen: str) -> str | None:
    """Why ``listen`` is not ``HOST:PORT`` with a valid port (None when it is)."""
    parts = split_listen(listen)
    if parts is None or not (parts[1].isascii() and parts[1].isdigit()):
        return f"is not HOST:PORT, got {shown(listen)}; allowed: {LISTEN_FORM}"
    port = parts[1]
    if len(port) > 5 or not 1 <= int(port) <= 65535:  # length first: int() refuses 4300+ digits
        return f"has a port outside {PORTS}, got {shown(listen)}"
    return None


def is_loopback(listen: str) -> bool:
    parts = split_listen(listen)
    if parts is None:
        return False
    host = parts[0]
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- tables and lists ------------------------------------------------------------------------

MIN_REGION_PX = 16  # the plate engine reads nothing smaller
PLATE_ENGINES = ("hyperlpr2", "fake-plates://NAME")


def tares_problem(value: object, ranges: Mapping[str, Range]) -> str | None:
    """Why ``value`` is not ``{"PLATE" = KG}`` / ``{"PLATE" = {kg = KG, band_kg = KG}}``."""
    if not isinstance(value, Mapping):
        return f"must be a table of plate = tare, got {shown(value)}"
    seen: dict[str, str] = {}
    for plate, entry in value.items():
        where = shown(plate)
        if not plate.strip():
            return "has an empty plate"
        key = "".join(c for c in plate.upper() if c not in " .-·")  # as the tare table keys it
        if key in seen:
            return f"names one plate twice: {shown(seen[key])} and {where}"
        seen[key] = plate
        table = entry if isinstance(entry, Mapping) else {"kg": entry}
        unknown = sorted(set(table) - set(ranges))
        if unknown:
            return f"{where}: unknown key {unknown[0]!r}; a tare has {' and '.join(ranges)}"
        if "kg" not in table:
            return f"{where}: kg is required"
        for name in table:
            reason = range_reason(ranges[name], name, table[name])
            if reason:
                return f"{where}: {name} {reason}"
    return None


def region_problem(value: object) -> str | None:
    """Why ``value`` is not ``[x, y, width, height]`` of a camera's pixels (None: it is)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 4 or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return f"must be [x, y, width, height] in whole pixels, got {shown(value)}"
    x, y, width, height = value
    if x < 0 or y < 0 or width < MIN_REGION_PX or height < MIN_REGION_PX:
        return (f"must have x, y >= 0 and width, height >= {MIN_REGION_PX}, "
                f"got {list(value)}")  # fmt: skip
    return None


def plate_engine_problem(value: str) -> str | None:
    if value != PLATE_ENGINES[0] and not value.startswith("fake-plates://"):
        return f"must be one of {', '.join(PLATE_ENGINES)}, got {shown(value)}"
    return None


# -- settings checked against each other ------------------------------------------------------


def lane_problems(lane: LaneSection) -> list[ConfigProblem]:
    if lane.gate is None and not lane.any_gate:
        return [ConfigProblem("lane.gate", "is required: the gate code the passes must name; "
                              "set any_gate = true instead only if this lane accepts a pass "
                              "for any gate")]  # fmt: skip
    if lane.gate is not None and lane.any_gate:
        return [ConfigProblem("lane.any_gate", "cannot be true when gate is set; "
                              "remove one of them")]  # fmt: skip
    return []


def weighbridge_problems(scale: WeighbridgeSection) -> list[ConfigProblem]:
    # The scale refuses Max < 20 e (weighing/events.py ScaleConfig); say so before it is opened.
    if scale.e_kg > scale.max_kg / 20:
        return [ConfigProblem("weighbridge.e_kg",
                              f"must be at most max_kg / 20 = {_num(scale.max_kg / 20)} kg "
                              "(a scale has at least 20 divisions), "
                              f"got {_num(scale.e_kg)}")]  # fmt: skip
    return []


def reconnect_problems(mqtt: MqttSection) -> list[ConfigProblem]:
    out = []
    order = "needs 0 < reconnect_first_min_s <= reconnect_first_max_s <= reconnect_max_s"
    first_min, first_max, cap = (mqtt.reconnect_first_min_s, mqtt.reconnect_first_max_s,
                                 mqtt.reconnect_max_s)  # fmt: skip
    if first_min > first_max:
        out.append(ConfigProblem("mqtt.reconnect_first_min_s",
                                 f"must be at most reconnect_first_max_s = {_num(first_max)} s, "
                                 f"got {_num(first_min)}; {order}"))  # fmt: skip
    if first_max > cap:
        out.append(ConfigProblem("mqtt.reconnect_first_max_s",
                                 f"must be at most reconnect_max_s = {_num(cap)} s, "
                                 f"got {_num(first_max)}; {order}"))  # fmt: skip
    return out


def tls_problems(mqtt: MqttSection) -> list[ConfigProblem]:
    out = []
    if mqtt.broker.startswith("mqtts://"):
        for name in ("ca", "cert", "key"):
            if getattr(mqtt, name) is None:
                out.append(ConfigProblem(f"mqtt.{name}", "is required for an mqtts:// broker"))
    elif not mqtt.lab:
        out.append(ConfigProblem("mqtt.broker", f"{shown(mqtt.broker)} is plain TCP, not TLS; "
                                 "use mqtts:// with ca, cert and key, or set lab = true "
                                 "only for a lab or simulator setup"))  # fmt: skip
    elif mqtt.ca or mqtt.cert or mqtt.key:
        out.append(ConfigProblem("mqtt.broker", "ca, cert and key are set but the broker is "
                                 "plain mqtt://; use mqtts://"))  # fmt: skip
    return out


def status_problems(status: StatusSection) -> list[ConfigProblem]:
    out = []
    if status.token_file is None:
        if not is_loopback(status.listen):
            out.append(ConfigProblem("status.listen",
                                     f"{shown(status.listen)} is not a loopback address; "
                                     "set token_file so the page asks for a token, or listen "
                                     "on 127.0.0.0/8, ::1 or localhost"))  # fmt: skip
        return out
    reason = token_file_problem(status.token_file)
    if reason:
        out.append(ConfigProblem("status.token_file", reason))
    return out


# Checks across keys: (section, the keys each reads, the check). One runs whenever those keys
# are valid, even if others in the section are not, so one pass reports every problem.
ACROSS: tuple[tuple[str, frozenset[str], Callable[[Any], list[ConfigProblem]]], ...] = (
    ("lane", frozenset({"gate", "any_gate"}), lane_problems),
    ("weighbridge", frozenset({"e_kg", "max_kg"}), weighbridge_problems),
    ("mqtt", frozenset({"reconnect_first_min_s", "reconnect_first_max_s", "reconnect_max_s"}),
     reconnect_problems),
    ("mqtt", frozenset({"broker", "lab", "ca", "cert", "key"}), tls_problems),
    ("status", frozenset({"listen", "token_file"}), status_problems),
)


def token_file_problem(path: Path) -> str | None:
    """Why ``path`` does not hold a usable page token (None when it does)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return f"file not found: {path}"
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        return f"cannot be read: {path}: {why}"
    if len(token) < TOKEN_MIN_CHARS or any(char.isspace() for char in token):
        return (f"{path} must hold one word of at least {TOKEN_MIN_CHARS} characters, it holds "
                f"{len(token)} (make one with: openssl rand -hex 16 > {path})")  # fmt: skip
    return None
