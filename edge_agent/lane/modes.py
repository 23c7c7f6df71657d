"""The lane's modes: what may open the barrier, and who set the lane that way, when and why.

    in_service      normal: the policy decides; a remote release or the technician key
                    releases a held truck.
    out_of_service  the barrier stays closed: a pass shown is read and refused
                    (``lane.out_of_service``) without being marked used; nothing opens it.
    maintenance     the IO board's MAINTENANCE state (relays off, red); entered only from the
                    safe state (barrier closed, no transit, nothing at the barrier); nothing
                    opens the barrier.
    manual          the technician drives the barrier (``lanectl lane barrier open|close``,
                    the key) through the firmware, which keeps S1-S9; no automatic or remote
                    open: a pass shown holds the truck (``lane.manual``) for the technician.

Who may change what: the lane itself (the local control socket, the technician key) sets
any mode. A signed remote ``lane_mode`` only moves a lane between in_service and
out_of_service: maintenance and manual mean a person at the lane, and the backend can neither
start nor end them.

The technician key: turned while a truck is held it releases that truck (in service or
manual); turned with no held truck on a lane in service it puts the lane in manual for as
long as it stays turned, and returning it puts the lane back in service. Out of service and
maintenance ignore the key: they were set deliberately and a key must not undo them.

Sans-I/O: ``ModeBook`` holds the mode in force (``ModeRecord``) and the technician who last
took the lane; the lane machine asks it and records every change through it. Wall times are
UTC seconds given by the caller; the shell persists ``to_doc()`` (``drivers/mode_file.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from edge_agent.catalogue import Code
from edge_agent.telemetry.envelope import format_utc_ms


class LaneMode(StrEnum):
    IN_SERVICE = "in_service"
    OUT_OF_SERVICE = "out_of_service"
    MAINTENANCE = "maintenance"
    MANUAL = "manual"


MODE_NAMES = tuple(m.value for m in LaneMode)
REMOTE_MODES = frozenset({LaneMode.IN_SERVICE, LaneMode.OUT_OF_SERVICE})
# Why a truck is held in each mode but in_service; a hold for only these is decided again
# when the mode changes.
HOLD_CODE = {
    LaneMode.OUT_OF_SERVICE: Code.LANE_OUT_OF_SERVICE,
    LaneMode.MAINTENANCE: Code.LANE_MAINTENANCE,
    LaneMode.MANUAL: Code.LANE_MANUAL,
}
MODE_CODES = frozenset(HOLD_CODE.values())
HOLD_DETAIL = {
    LaneMode.OUT_OF_SERVICE: "lane out of service",
    LaneMode.MAINTENANCE: "lane in maintenance",
    LaneMode.MANUAL: "lane in manual mode: the technician drives the barrier",
}
MAX_NAME = 64
MAX_REASON = 200
UNKNOWN_TECHNICIAN = "unknown"


class Via(StrEnum):
    """Where a change came from."""

    DEFAULT = "default"  # nobody set a mode yet
    LOCAL = "local"  # lanectl on the lane's own control socket
    REMOTE = "remote"  # a signed lane_mode command
    KEY = "tech_key"  # the technician key
    STARTUP = "startup"  # the agent found its stored mode damaged


def parse_mode(text: object) -> LaneMode:
    """The mode named ``text``.

    Raises:
        ValueError: not a mode; the message lists the modes there are.
    """
    try:
        return LaneMode(str(text))
    except ValueError:
        raise ValueError(
            f"unknown lane mode {str(text)[:32]!r}: one of {', '.join(MODE_NAMES)}"
        ) from None


def text_problems(field: str, value: object, limit: int) -> list[str]:
    """Problems with a person's name or a reason: 1..limit printable characters."""
    if not isinstance(value, str) or not value.strip():
        return [f"{field} must be a non-empty text"]
    if len(value) > limit:
        return [f"{field} is longer than {limit} characters"]
    if not value.isprintable():
        return [f"{field} holds control characters"]
    return []


def policy_may_open(mode: LaneMode) -> bool:
    """A decision (pass and weight) may open the barrier."""
    return mode is LaneMode.IN_SERVICE


def remote_may_release(mode: LaneMode) -> bool:
    return mode is LaneMode.IN_SERVICE


def technician_may_release(mode: LaneMode) -> bool:
    """The technician key releases a held truck."""
    return mode in (LaneMode.IN_SERVICE, LaneMode.MANUAL)


def hand_driven(mode: LaneMode) -> bool:
    """``lanectl lane barrier open|close`` drives the barrier."""
    return mode is LaneMode.MANUAL


@dataclass(frozen=True, slots=True)
class ModeRecord:
    """A mode in force: who set it (``by``, and the peer's ``uid`` for a local change), why,
    since when (wall seconds; None when unknown) and from where."""

    mode: LaneMode = LaneMode.IN_SERVICE
    by: str = ""
    reason: str = ""
    since: float | None = None
    via: Via = Via.DEFAULT
    uid: int | None = None
    previous: LaneMode | None = None

    def to_doc(self) -> dict[str, Any]:
        return asdict(self) | {"mode": str(self.mode), "via": str(self.via),
                               "previous": None if self.previous is None else str(self.previous)}

    @classmethod
    def from_doc(cls, doc: Any) -> ModeRecord:
        """Raises ValueError naming what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("a mode record must be an object")
        since, uid, previous = doc.get("since"), doc.get("uid"), doc.get("previous")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
            raise ValueError("since must be a number of seconds")
        if uid is not None and (isinstance(uid, bool) or not isinstance(uid, int)):
            raise ValueError("uid must be an integer")
        for name in ("by", "reason"):
            if not isinstance(doc.get(name, ""), str):
                raise ValueError(f"{name} must be a text")
        return cls(
            mode=parse_mode(doc.get("mode")), by=doc.get("by", ""),
            reason=doc.get("reason", ""), since=None if since is None else float(since),
            via=Via(doc.get("via", Via.DEFAULT)), uid=uid,
            previous=None if previous is None else parse_mode(previous),
        )


def _iso(wall: float | None) -> str | None:
    return None if wall is None else format_utc_ms(round(wall * 1000))


class ModeBook:
    """The lane's mode and its technician; the lane machine owns one."""

    def __init__(self) -> None:
        self.current = ModeRecord()
        self.signed_in: str | None = None  # the last ``lanectl lane sign-in``
        self.signed_in_at: float | None = None
        self._local_by: str | None = None  # who last took the lane locally

    @property
    def mode(self) -> LaneMode:
        return self.current.mode

    def refusal(self, mode: LaneMode, via: Via, *, unsafe: str | None) -> str | None:
        """Why the lane may not go to ``mode`` now (None when it may). ``unsafe`` is why the
        lane is not in its safe state, for maintenance."""
        current = self.current
        if via is Via.REMOTE and mode not in REMOTE_MODES:
            return f"{mode} is set at the lane, not remotely"
        if via is Via.REMOTE and current.mode not in REMOTE_MODES:
            who = f" by {current.by}" if current.by else ""
            return f"the lane is in {current.mode} (set at the lane{who}): only the lane ends it"
        if mode is LaneMode.MAINTENANCE and current.mode is not mode and unsafe is not None:
            return f"maintenance is entered only from the safe state: {unsafe}"
        return None

    def change(
        self, mode: LaneMode, *, by: str, reason: str, via: Via, wall: float | None,
        uid: int | None = None,
    ) -> ModeRecord:
        """Put ``mode`` in force; returns the new record (its ``previous`` is the old mode)."""
        self.current = ModeRecord(mode, by, reason, wall, via, uid, self.current.mode)
        if via is Via.LOCAL and mode in (LaneMode.MANUAL, LaneMode.MAINTENANCE):
            self._local_by = by  # the key names nobody: it keeps whoever was named before
        return self.current

    def sign_in(self, name: str, wall: float | None) -> None:
        self.signed_in, self.signed_in_at = name, wall
        self._local_by = name

    def technician(self) -> str:
        """Who a technician release is recorded as: the technician who last took the lane
        locally (a sign-in, or the ``by`` of a local change to manual or maintenance)."""
        return self._local_by or UNKNOWN_TECHNICIAN

    def key_name(self) -> str:
        """``by`` of a change the key makes: the technician, or the key itself if unknown."""
        return self._local_by or "technician key"

    def event_data(self) -> dict[str, Any]:
        """The ``lane_mode`` event of the change just made."""
        current = self.current
        return {
            "mode": str(current.mode),
            "previous": None if current.previous is None else str(current.previous),
            "by": current.by, "uid": current.uid, "reason": current.reason,
            "since": _iso(current.since), "via": str(current.via),
            "technician": self.technician(),
        }

    def to_status(self) -> dict[str, Any]:
        """The mode as the status page and ``lanectl lane mode`` show it."""
        return self.event_data() | {"signed_in": self.signed_in,
                                    "signed_in_at": _iso(self.signed_in_at)}

    # -- persistence (the shell stores the document) ------------------------------------------
    def to_doc(self) -> dict[str, Any]:
        return {"current": self.current.to_doc(), "signed_in": self.signed_in,
                "signed_in_at": self.signed_in_at, "technician": self._local_by}

    @classmethod
    def from_doc(cls, doc: Any) -> ModeBook:
        """Raises ValueError naming what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("the mode document must be an object")
        book = cls()
        book.current = ModeRecord.from_doc(doc.get("current"))
        for name in ("signed_in", "technician"):
            value = doc.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
                raise ValueError(f"{name} must be a name of at most {MAX_NAME} characters")
        at = doc.get("signed_in_at")
        if at is not None and (isinstance(at, bool) or not isinstance(at, int | float)):
            raise ValueError("signed_in_at must be a number of seconds")
        book.signed_in, book._local_by = doc.get("signed_in"), doc.get("technician")
        book.signed_in_at = None if at is None else float(at)
        return book
