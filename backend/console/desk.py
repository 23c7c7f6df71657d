"""What the officer's desk shows, from the store's events alone: the queue of held trucks across
the site's lanes, one truck's whole story, and each lane's overview. Pure: no store, no clock.

A truck is *held* from its lane's last ``decision`` with outcome ``hold`` in its transit until
something resolves that hold: a later ``decision`` open (released remotely or by the
technician), a ``released``, a ``remote_verdict`` (the officer refused it or asked for a
re-weigh), the transit's ``transit_closed`` (it backed off), or the lane moving on (an event
of another transit, or a new boot of the agent: the lane no longer knows that hold). A
``release_refused`` does not resolve it: the lane said no, and the truck is still there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from backend.commands import COMMAND_LIFETIME_S
from edge_agent.records.bodies import identity_reads

# What the desk reads of the store; evidence chunks and transaction records stay out (large).
DESK_TYPES = ("truck_arrived", "pass_read", "decision", "released", "release_refused",
              "remote_verdict", "transit_closed", "lane_mode", "cmd_result", "barrier",
              "lane_offline")
VERBS = {"release": "remote_release", "refuse": "remote_refuse", "reweigh": "remote_reweigh"}
_RESOLVED = {"released": "released", "refuse": "refused", "reweigh": "reweigh"}


@dataclass(frozen=True, slots=True)
class SentAction:
    """An officer's action as the audit keeps it: what, who, when, for which truck."""

    action: str  # release | refuse | reweigh
    officer: str
    at: float
    lane: str
    transit_id: str
    cmd_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LaneFacts:
    """What the store knows of a lane beside its events."""

    site: str | None = None
    watermark: int = 0
    gaps: tuple[int, ...] = ()
    state: Mapping[str, Any] | None = None  # the retained birth or will
    health: Mapping[str, Any] | None = None  # the last health report (an envelope)
    chain: Mapping[str, Any] | None = None  # the transaction log as followed


@dataclass(slots=True)
class TruckView:
    """One transit that was held, as the officer sees it."""

    site: str
    lane: str
    transit_id: str
    status: str  # held | released | refused | reweigh | closed | superseded
    resolution: str
    hold_event_id: str
    hold_seq: int
    challenge: str  # what a command must echo: stays on the server, never in the JSON
    held_at: str | None
    held_at_s: float | None
    clock_synced: bool
    reasons: list[str]
    flags: list[str]
    detail: str
    weight_kg: float | None
    uncertainty_kg: float | None
    declared_gross_kg: float | None
    difference_kg: float | None
    tolerance_kg: float | None
    weight_rules: list[dict[str, Any]]
    identity: list[dict[str, Any]]
    plates_read: list[str]
    containers_read: list[str]
    pass_read: dict[str, Any] | None
    evidence: list[str]
    trace: list[list[float]]
    indicator_frames: list[dict[str, Any]]
    holds: int  # how many times the lane held this transit (a re-decision holds again)
    lane_answers: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return self.status == "held"

    def to_json(self, now: float, *, detail: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "site": self.site, "lane": self.lane, "transit_id": self.transit_id,
            "status": self.status, "resolution": self.resolution,
            "hold_event_id": self.hold_event_id, "held_at": self.held_at,
            "held_for_s": None if self.held_at_s is None else round(now - self.held_at_s, 1),
            "clock_synced": self.clock_synced, "reasons": self.reasons, "flags": self.flags,
            "detail": self.detail, "weight_kg": self.weight_kg,
            "uncertainty_kg": self.uncertainty_kg, "declared_gross_kg": self.declared_gross_kg,
            "difference_kg": self.difference_kg, "tolerance_kg": self.tolerance_kg,
            "plates_read": self.plates_read, "containers_read": self.containers_read,
            "pass": self.pass_read, "evidence": self.evidence, "holds": self.holds,
            "lane_answers": self.lane_answers, "actions": self.actions, "pending": self.pending,
        }
        if detail:
            doc.update(trace=self.trace, indicator_frames=self.indicator_frames,
                       weight_rules=self.weight_rules, identity=self.identity)
        return doc


@dataclass(slots=True)
class LaneView:
    """One lane at a glance."""

    site: str
    lane: str
    online: bool | None
    offline_reason: str | None
    mode: str
    mode_by: str | None
    mode_reason: str | None
    machine_state: str | None
    problems: list[str]
    watermark: int
    highest_seq: int
    backlog: int
    missing: int
    outbox_waiting: int | None
    last_event_at: str | None
    last_event_type: str | None
    last_health_at: str | None
    health_age_s: float | None  # how old the lane's last health report is (lane clock)
    held: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Transit:
    site: str
    lane: str
    transit_id: str
    boot_id: Any
    events: list[Mapping[str, Any]] = field(default_factory=list)
    moved_on: bool = False  # the lane went on to another transit or a new boot


def _transits(events: Iterable[Mapping[str, Any]], site: str) -> list[_Transit]:
    """The site's transits in the order they started, each with its own events; a transit
    is marked moved-on once its lane publishes for another transit or from another boot."""
    ordered: list[_Transit] = []
    by_key: dict[tuple[str, str], _Transit] = {}
    current: dict[str, _Transit] = {}
    for event in events:
        if event.get("site") != site:
            continue
        lane = str(event.get("lane"))
        transit_id = event.get("transit_id")
        last = current.get(lane)
        if last is not None and (event.get("boot_id") != last.boot_id or (
                transit_id is not None and transit_id != last.transit_id)):
            last.moved_on = True
            del current[lane]
        if not isinstance(transit_id, str):
            continue
        key = (lane, transit_id)
        transit = by_key.get(key)
        if transit is None:
            transit = by_key[key] = _Transit(site, lane, transit_id, event.get("boot_id"))
            ordered.append(transit)
        transit.events.append(event)
        current[lane] = transit
    return ordered


def _results(events: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """cmd_id -> the lane's cmd_result data."""
    return {str(e["data"].get("cmd_id")): e["data"] for e in events
            if e.get("type") == "cmd_result" and isinstance(e.get("data"), Mapping)}


def trucks(
    events: Iterable[Mapping[str, Any]], *, site: str, sent: Iterable[SentAction] = (),
    now: float,
) -> list[TruckView]:
    """Every held transit of ``site`` (resolved or not), oldest first; ``events`` in the
    store's order (per lane by seq), ``sent`` the officers' actions from the audit."""
    events = list(events)
    results = _results(events)
    actions: dict[tuple[str, str], list[SentAction]] = {}
    for action in sent:
        actions.setdefault((action.lane, action.transit_id), []).append(action)
    views = []
    for transit in _transits(events, site):
        view = _view(transit, results, actions.get((transit.lane, transit.transit_id), []), now)
        if view is not None:
            views.append(view)
    return views


def held_queue(
    events: Iterable[Mapping[str, Any]], *, site: str, sent: Iterable[SentAction] = (),
    now: float,
) -> list[TruckView]:
    """The trucks waiting for an officer now, longest waiting first."""
    return [view for view in trucks(events, site=site, sent=sent, now=now) if view.held]


def truck(
    events: Iterable[Mapping[str, Any]], lane: str, transit_id: str, *, site: str,
    sent: Iterable[SentAction] = (), now: float,
) -> TruckView | None:
    """One held transit's view (held or since resolved); None if it was never held."""
    for view in trucks(events, site=site, sent=sent, now=now):
        if view.lane == lane and view.transit_id == transit_id:
            return view
    return None


def _view(
    transit: _Transit, results: Mapping[str, Mapping[str, Any]], sent: list[SentAction],
    now: float,
) -> TruckView | None:
    holds = [i for i, e in enumerate(transit.events)
             if e.get("type") == "decision" and _data(e).get("decision") == "hold"]
    if not holds:
        return None
    hold = transit.events[holds[-1]]
    data = _data(hold)
    after = transit.events[holds[-1] + 1:]
    status, resolution = _resolution(after, transit.moved_on)
    pass_read = next((_data(e) for e in reversed(transit.events[:holds[-1]])
                      if e.get("type") == "pass_read"), None)
    rule = next((r for r in data.get("weight_rules") or []
                 if isinstance(r, Mapping) and r.get("rule") == "pass"), {})
    answers = [{"at": e.get("occurred_at"), "text": f"the lane refused a release: "
                f"{_data(e).get('reason')}", "cmd_id": _data(e).get("cmd_id")}
               for e in after if e.get("type") == "release_refused"]
    done, pending = _actions(sent, results, now)
    held_at = hold.get("occurred_at")
    return TruckView(
        site=transit.site, lane=transit.lane, transit_id=transit.transit_id, status=status,
        resolution=resolution, hold_event_id=str(hold.get("event_id")),
        hold_seq=int(hold.get("seq") or 0), challenge=str(data.get("challenge") or ""),
        held_at=held_at if isinstance(held_at, str) else None,
        held_at_s=_seconds(held_at), clock_synced=bool((hold.get("clock") or {}).get("synced")),
        reasons=[str(r) for r in data.get("reasons") or []],
        flags=[str(f) for f in data.get("flags") or []], detail=str(data.get("detail") or ""),
        weight_kg=_number(data.get("weight_kg")),
        uncertainty_kg=_number(data.get("uncertainty_kg")),
        declared_gross_kg=_number(data.get("declared_gross_kg")),
        difference_kg=_number(rule.get("difference_kg")),
        tolerance_kg=_number(rule.get("tolerance_kg"))
        if rule else _number((pass_read or {}).get("tolerance_kg")),
        weight_rules=[dict(r) for r in data.get("weight_rules") or [] if isinstance(r, Mapping)],
        identity=[dict(f) for f in data.get("identity") or [] if isinstance(f, Mapping)],
        plates_read=identity_reads(data, "plate"),
        containers_read=identity_reads(data, "container"),
        pass_read=None if pass_read is None else _pass(pass_read),
        evidence=_evidence(transit.events[:holds[-1] + 1]),
        trace=[[float(t), float(kg)] for t, kg in _pairs(data.get("trace"))],
        indicator_frames=[dict(f) for f in data.get("indicator_frames") or []
                          if isinstance(f, Mapping)],
        holds=len(holds), lane_answers=answers, actions=done,
        pending=pending if status == "held" else None,
    )


def _resolution(after: list[Mapping[str, Any]], moved_on: bool) -> tuple[str, str]:
    """(status, what resolved it) from the transit's events after its last hold; the lane's
    ``released`` (it names the officer) before the ``decision`` open it follows."""
    def first(kind: str) -> Mapping[str, Any] | None:
        return next((_data(e) for e in after if e.get("type") == kind), None)

    released, verdict = first("released"), first("remote_verdict")
    if released is not None:
        who = released.get("officer") or released.get("technician") or released.get("by")
        return "released", f"released by {who} ({released.get('by')})"
    if verdict is not None:
        kind = str(verdict.get("verdict"))
        why = f": {verdict['reason']}" if verdict.get("reason") else ""
        return _RESOLVED.get(kind, kind), (f"{kind} by {verdict.get('officer')}{why}; the "
                                           f"driver is told: {verdict.get('instruction')}")
    opened = next((_data(e) for e in after if e.get("type") == "decision"
                   and _data(e).get("decision") == "open"), None)
    if opened is not None:
        return "released", f"opened by {opened.get('by') or 'the lane'}"
    closed = first("transit_closed")
    if closed is not None:
        return "closed", f"transit closed: {closed.get('outcome')}"
    if moved_on:
        return "superseded", "the lane has moved on (another truck, or the agent restarted)"
    return "held", "waiting for an officer"


def _actions(
    sent: list[SentAction], results: Mapping[str, Mapping[str, Any]], now: float
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The officers' actions on this truck with the lane's answer to each, and the one
    still waiting for an answer within the command's lifetime (None if none)."""
    done, pending = [], None
    for action in sorted(sent, key=lambda a: a.at):
        answer = results.get(action.cmd_id)
        entry = {"action": action.action, "officer": action.officer, "at": action.at,
                 "cmd_id": action.cmd_id, "reason": action.reason,
                 "answer": None if answer is None else {
                     "accepted": bool(answer.get("accepted")), "code": answer.get("code"),
                     "detail": answer.get("detail")}}
        done.append(entry)
        if answer is None and now - action.at < COMMAND_LIFETIME_S:
            pending = entry
    return done, pending


def lanes(
    events: Iterable[Mapping[str, Any]], facts: Mapping[str, LaneFacts], *, site: str,
    now: float,
) -> list[LaneView]:
    """Every lane of ``site`` the store knows (from events or documents), by name."""
    events = [e for e in events if e.get("site") == site]
    by_lane: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_lane.setdefault(str(event.get("lane")), []).append(event)
    held: dict[str, int] = {}
    for view in held_queue(events, site=site, now=now):
        held[view.lane] = held.get(view.lane, 0) + 1
    names = sorted(set(by_lane) | {lane for lane, f in facts.items() if f.site in (None, site)})
    return [_lane(site, name, by_lane.get(name, []), facts.get(name, LaneFacts()),
                  held.get(name, 0), now) for name in names]


def _lane(
    site: str, lane: str, events: list[Mapping[str, Any]], facts: LaneFacts, held: int,
    now: float,
) -> LaneView:
    health = facts.health or {}
    report = _data(health)
    outbox = _mapping(report.get("outbox"))
    modes = [e for e in events if e.get("type") == "lane_mode"]
    mode_data = _data(modes[-1]) if modes else {}
    mode = str(mode_data.get("mode") or report.get("mode") or "unknown")
    state = facts.state or {}
    online = state.get("online") if isinstance(state.get("online"), bool) else None
    seqs = [int(e["seq"]) for e in events if isinstance(e.get("seq"), int)]
    issued = outbox.get("next_seq")
    highest = max([facts.watermark, *seqs, *(g + 1 for g in facts.gaps),
                   *([int(issued) - 1] if isinstance(issued, int) else [])])
    waiting = outbox.get("events")
    last = events[-1] if events else None
    reported = _seconds(health.get("occurred_at"))
    return LaneView(
        site=site, lane=lane, online=online,
        offline_reason=None if online is not False else str(state.get("reason") or "lost"),
        mode=mode, mode_by=_text(mode_data.get("by")), mode_reason=_text(mode_data.get("reason")),
        machine_state=_text(report.get("state")), problems=_problems(report, facts, online),
        watermark=facts.watermark, highest_seq=highest, backlog=highest - facts.watermark,
        missing=len(facts.gaps), outbox_waiting=waiting if isinstance(waiting, int) else None,
        last_event_at=_text(last.get("occurred_at")) if last else None,
        last_event_type=_text(last.get("type")) if last else None,
        last_health_at=_text(health.get("occurred_at")),
        health_age_s=None if reported is None else round(now - reported, 1), held=held,
    )


def _problems(report: Mapping[str, Any], facts: LaneFacts, online: bool | None) -> list[str]:
    """What is wrong with the lane, one line each, as far as its reports and the store say."""
    problems = []
    if online is False:
        problems.append("offline")
    devices = _mapping(report.get("devices"))
    io_board = _mapping(devices.get("io_board"))
    if io_board:
        if io_board.get("link") == "down":
            problems.append("IO board link down")
        if io_board.get("faults"):
            problems.append(f"IO board faults: {', '.join(map(str, io_board['faults']))}")
    if _mapping(devices.get("camera")).get("up") is False:
        problems.append("camera down")
    storage = report.get("storage") or {}
    if isinstance(storage, Mapping) and storage.get("ok") is False:
        problems.append(f"storage fault: {storage.get('error') or 'not writable'}")
    outbox = report.get("outbox") or {}
    if isinstance(outbox, Mapping) and outbox.get("disk_alarm"):
        problems.append("lane disk nearly full")
    chain = facts.chain or {}
    if chain.get("first_break"):
        problems.append(f"transaction log broken: {chain['first_break']}")
    if facts.gaps:
        problems.append(f"{len(facts.gaps)} events missing above seq {facts.watermark}")
    return problems


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(event.get("data"))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _pass(data: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("valid", "reason", "release_no", "enterprise", "plates", "declared_gross_kg",
            "tolerance_kg")
    return {key: data.get(key) for key in keys}


def _evidence(events: list[Mapping[str, Any]]) -> list[str]:
    """The transit's evidence refs up to its hold, the hold's own snapshot first."""
    refs: list[str] = []
    for event in reversed(events):
        ref = _data(event).get("snapshot") if event.get("type") in ("decision", "pass_read") \
            else None
        if isinstance(ref, str) and ref and ref not in refs:
            refs.append(ref)
    return refs


def _pairs(value: Any) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        return []
    return [(p[0], p[1]) for p in value if isinstance(p, list | tuple) and len(p) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in p)]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _seconds(stamp: Any) -> float | None:
    """Epoch seconds of an envelope's ``occurred_at`` (None if unreadable)."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
