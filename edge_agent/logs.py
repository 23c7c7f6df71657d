"""The agent's log: journald's native protocol under systemd, readable text on a terminal.

Under systemd every record goes to journald as one entry with its ``PRIORITY`` and fields a
technician can filter on (``journalctl -u gatelane-agent TRANSIT_ID=...``, ``CODE=...``):
``LANE`` and ``SITE`` on every entry, and whatever of ``FIELDS`` the call passed in
``extra=`` (or a ``LoggerAdapter`` adds). On a terminal the same records are one text line
each, the fields a record carries shown at its end.

journald is recognised the way systemd documents it: ``JOURNAL_STREAM`` names the device and
inode of the stream stderr is connected to; ``INVOCATION_ID`` (set for every unit) counts
too when stderr is not a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from cysystemd import journal

IDENTIFIER = "edge-agent"
LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Record attributes sent as journal fields (upper-cased), when the record carries them.
FIELDS = ("lane", "site", "transit_id", "code", "event_type", "seq", "cmd_id", "stage", "device")
_SHOWN = ("transit_id", "code", "event_type")  # the ones worth the space on a terminal line
_PRIORITY = {
    logging.DEBUG: journal.Priority.DEBUG,
    logging.INFO: journal.Priority.INFO,
    logging.WARNING: journal.Priority.WARNING,
    logging.ERROR: journal.Priority.ERROR,
    logging.CRITICAL: journal.Priority.CRITICAL,
}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_level(text: str) -> int:
    """``debug`` | ``info`` | ``warning`` | ``error`` (any case) -> a logging level."""
    level = LEVELS.get(text.strip().lower())
    if level is None:
        raise ValueError(f"log level {text!r} is not one of {', '.join(LEVELS)}")
    return level


def under_journald(env: Mapping[str, str], stderr: IO[Any] | None = None) -> bool:
    """True when stderr is systemd's journal stream (or we run as a unit without a tty)."""
    stderr = sys.stderr if stderr is None else stderr
    try:
        fd = stderr.fileno()
        info = os.fstat(fd)
        tty = os.isatty(fd)
    except (OSError, ValueError, AttributeError):
        return False
    stream = env.get("JOURNAL_STREAM", "")
    if stream:
        return stream == f"{info.st_dev}:{info.st_ino}"
    return bool(env.get("INVOCATION_ID")) and not tty


class LaneFields(logging.Filter):
    """Puts the lane's ``site`` and ``lane`` on every record that does not carry its own."""

    def __init__(self) -> None:
        super().__init__()
        self.site: str | None = None
        self.lane: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        for name in ("site", "lane"):
            if getattr(record, name, None) is None and getattr(self, name) is not None:
                setattr(record, name, getattr(self, name))
        return True


class JournalHandler(logging.Handler):
    """One journal entry per record, by the native protocol (libsystemd's sd_journal_send)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {
                "message": self.format(record),
                "priority": int(_PRIORITY.get(record.levelno, journal.Priority.INFO)),
                "syslog_identifier": IDENTIFIER,
                "logger": record.name,
                "thread_name": record.threadName,
            }
            fields.update(record_fields(record))
            journal.send(**fields)
        except Exception:  # logging must never take the lane down
            self.handleError(record)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        shown = [f"{name}={getattr(record, name)}" for name in _SHOWN
                 if getattr(record, name, None) is not None]
        return f"{text} [{' '.join(shown)}]" if shown else text


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    """The ``FIELDS`` a record carries, as journal fields."""
    return {name: str(getattr(record, name)) for name in FIELDS
            if getattr(record, name, None) is not None}


class Logs:
    """The configured root logger; ``level`` can change while running (SIGHUP)."""

    def __init__(self, level: int, *, journald: bool, stream: IO[str] | None = None) -> None:
        self.journald = journald
        self.fields = LaneFields()
        handler: logging.Handler
        if journald:
            handler = JournalHandler()
        else:
            handler = logging.StreamHandler(sys.stdout if stream is None else stream)
            handler.setFormatter(TextFormatter())
        handler.addFilter(self.fields)
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        self.handler = handler
        self.set_level(level)

    @property
    def level(self) -> int:
        return logging.getLogger().level

    def set_level(self, level: int) -> None:
        logging.getLogger().setLevel(level)

    def for_lane(self, site: str, lane: str) -> None:
        self.fields.site, self.fields.lane = site, lane


def setup(level: int, env: Mapping[str, str] | None = None) -> Logs:
    """Log to journald when systemd connected us to it, else text on stdout."""
    return Logs(level, journald=under_journald(os.environ if env is None else env))


def event_fields(
    event_type: str, transit_id: str | None, data: Mapping[str, Any], seq: object = None
) -> dict[str, Any]:
    """``extra=`` for the log line of a lane event: its type, transit, reason code and seq
    (a decision's first reason is its code)."""
    reasons = data.get("reasons")
    code = data.get("code") or (reasons[0] if isinstance(reasons, list) and reasons else None)
    return {"event_type": str(event_type), "transit_id": transit_id, "code": code, "seq": seq}
