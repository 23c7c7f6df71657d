"""The MQTT topic tree of a lane (DESIGN.md 4.4).

    gate/v1/{site}/{lane}/evt/{type}   up    QoS1  events through the outbox, never dropped
    gate/v1/{site}/{lane}/cmd_result   up    QoS1  through the outbox, correlation = cmd_id
    gate/v1/{site}/{lane}/health       up    QoS1  sheddable, message expiry 300 s
    gate/v1/{site}/{lane}/state        up    QoS1 retained  birth / last will
    gate/v1/{site}/{lane}/cmd/{name}   down  QoS1  signed commands
    gate/v1/{site}/{lane}/ack          down  QoS1 retained  {upto_seq, boot_id}

Pure string functions: no client, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from edge_agent.errors import ConfigError

PREFIX = "gate/v1"

# A topic level we generate must never contain MQTT wildcards, separators or NUL.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TopicKind(Enum):
    EVENT = "evt"
    CMD_RESULT = "cmd_result"
    HEALTH = "health"
    STATE = "state"
    COMMAND = "cmd"
    ACK = "ack"


def check_segment(value: str, what: str) -> str:
    """Return ``value`` if it is a safe topic level, else raise ConfigError naming ``what``."""
    if not isinstance(value, str) or not _SEGMENT.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a valid topic level "
            "(1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
        )
    return value


@dataclass(frozen=True, slots=True)
class LaneTopics:
    """Every topic one lane publishes to or subscribes to."""

    site: str
    lane: str

    def __post_init__(self) -> None:
        check_segment(self.site, "site")
        check_segment(self.lane, "lane")

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.site}/{self.lane}"

    def event(self, type: str) -> str:
        return f"{self.base}/evt/{check_segment(type, 'event type')}"

    @property
    def cmd_result(self) -> str:
        return f"{self.base}/cmd_result"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{check_segment(name, 'command name')}"

    @property
    def commands(self) -> str:
        """Subscription filter for every command addressed to this lane."""
        return f"{self.base}/cmd/+"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    site: str
    lane: str
    kind: TopicKind
    name: str | None  # event type or command name, else None


def parse_topic(topic: str) -> ParsedTopic | None:
    """Split a gate/v1 topic into its parts; None if it is not one of ours."""
    parts = topic.split("/")
    if len(parts) < 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
        return None
    site, lane, kind_text, rest = parts[2], parts[3], parts[4], parts[5:]
    if not (_SEGMENT.match(site) and _SEGMENT.match(lane)):
        return None
    try:
        kind = TopicKind(kind_text)
    except ValueError:
        return None
    if kind in (TopicKind.EVENT, TopicKind.COMMAND):
        if len(rest) != 1 or not _SEGMENT.match(rest[0]):
            return None
        return ParsedTopic(site, lane, kind, rest[0])
    if rest:
        return None
    return ParsedTopic(site, lane, kind, None)


# Subscription filters used by backend ingest (optionally behind `$share/<group>/`).
INGEST_FILTERS = (
    f"{PREFIX}/+/+/evt/+",
    f"{PREFIX}/+/+/cmd_result",
    f"{PREFIX}/+/+/health",
    f"{PREFIX}/+/+/state",
)
ACK_FILTER = f"{PREFIX}/+/+/ack"


def shared(filter: str, group: str) -> str:
    """The MQTT v5 shared-subscription form of ``filter``."""
    return f"$share/{check_segment(group, 'share group')}/{filter}"
