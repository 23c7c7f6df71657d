"""The desk's queue, truck views and lane overview, from lane events as the lanes send them."""

from __future__ import annotations

import json

from backend.console import desk
from backend.console.desk import LaneFacts, SentAction
from backend.tests.console_events import FRAMES, SITE, TRACE, LaneEvents

NOW = 1_796_325_400.0


def queue(*lanes: LaneEvents, sent: list[SentAction] | None = None,
          now: float = NOW) -> list[desk.TruckView]:  # fmt: skip
    events = [e for lane in lanes for e in lane.events]
    return desk.held_queue(events, site=SITE, sent=sent or [], now=now)


def test_a_held_truck_is_in_the_queue_with_its_reasons_numbers_evidence_pass_and_reads() -> None:
    lane = LaneEvents()
    hold = lane.hold()
    [view] = queue(lane)
    assert (view.lane, view.transit_id, view.status) == ("exit-03", hold["transit_id"], "held")
    assert view.reasons == ["weight.declared_mismatch"]
    assert view.weight_kg == 41_260.0 and view.declared_gross_kg == 36_000.0
    assert view.difference_kg == 5_258.6 and view.tolerance_kg == 300.0
    assert view.uncertainty_kg == 11.3
    assert view.evidence == [hold["data"]["snapshot"]]
    assert view.pass_read is not None and view.pass_read["release_no"] == "RL-SU-B2002-25334"
    assert view.pass_read["enterprise"] == "Demo Logistics Co."
    assert view.plates_read == ["SU-B2002"]
    assert view.trace == TRACE and view.indicator_frames == FRAMES
    assert view.hold_event_id == hold["event_id"]
    assert view.challenge == hold["data"]["challenge"]
    assert view.held_at == hold["occurred_at"] and view.held_at_s is not None


def test_the_challenge_never_leaves_the_server_in_the_json() -> None:
    lane = LaneEvents()
    hold = lane.hold()
    [view] = queue(lane)
    for detail in (False, True):
        text = json.dumps(view.to_json(NOW, detail=detail))
        assert hold["data"]["challenge"] not in text
    assert "trace" in view.to_json(NOW, detail=True)
    assert "trace" not in view.to_json(NOW)


def test_a_release_a_refusal_or_the_truck_backing_off_takes_it_out_of_the_queue() -> None:
    lane = LaneEvents()
    released = lane.hold()
    lane.release(released)
    refused = lane.hold()
    lane.add("remote_verdict", {"verdict": "refuse", "cmd_id": "refuse-1",
                                "officer": "officer-7", "reason": "overweight",
                                "instruction": "entry refused: back off the deck"},
             refused["transit_id"])
    reweigh = lane.hold()
    lane.add("remote_verdict", {"verdict": "reweigh", "cmd_id": "reweigh-1",
                                "officer": "officer-8", "reason": "",
                                "instruction": "back off the deck, then drive on again"},
             reweigh["transit_id"])
    backed_off = lane.hold()
    lane.add("transit_closed", {"outcome": "withdrawn", "duration_s": 30.0},
             backed_off["transit_id"])
    waiting = lane.hold()
    views = {v.transit_id: v for v in desk.trucks(lane.events, site=SITE, now=NOW)}
    assert views[released["transit_id"]].status == "released"
    assert views[released["transit_id"]].resolution == "released by officer-7 (remote)"
    assert views[refused["transit_id"]].status == "refused"
    assert views[refused["transit_id"]].resolution == (
        "refuse by officer-7: overweight; the driver is told: entry refused: back off the deck")
    assert views[reweigh["transit_id"]].status == "reweigh"
    assert views[backed_off["transit_id"]].status == "closed"
    assert views[backed_off["transit_id"]].resolution == "transit closed: withdrawn"
    assert [v.transit_id for v in queue(lane)] == [waiting["transit_id"]]


def test_a_refused_release_leaves_the_truck_held_with_the_lanes_answer() -> None:
    lane = LaneEvents()
    hold = lane.hold()
    lane.add("release_refused", {"cmd_id": "release-x", "accepted": False,
                                 "reason": "challenge mismatch"}, hold["transit_id"])
    [view] = queue(lane)
    assert view.held
    assert view.lane_answers[0]["text"] == "the lane refused a release: challenge mismatch"


def test_a_truck_decided_again_shows_its_latest_hold() -> None:
    lane = LaneEvents()
    first = lane.hold()
    second = lane.hold(first["transit_id"], reasons=("weight.frozen",), arrive=False)
    [view] = queue(lane)
    assert view.hold_event_id == second["event_id"] != first["event_id"]
    assert view.reasons == ["weight.frozen"] and view.holds == 2
    assert view.challenge == second["data"]["challenge"]
    assert view.pass_read is not None  # read before the first hold, still the truck's pass


def test_a_lane_that_moved_on_or_restarted_no_longer_holds_the_truck() -> None:
    lane = LaneEvents()
    old = lane.hold()
    lane.add("truck_arrived", {}, lane.transit())
    other = LaneEvents("exit-04")
    before_restart = other.hold()
    other.boot_id = 2
    other.add("barrier", {"state": "closed"})
    views = {v.transit_id: v for v in desk.trucks(lane.events + other.events, site=SITE, now=NOW)}
    assert views[old["transit_id"]].status == "superseded"
    assert views[before_restart["transit_id"]].status == "superseded"
    assert queue(lane, other) == []


def test_events_without_a_transit_do_not_end_a_hold_and_other_sites_are_not_shown() -> None:
    lane = LaneEvents()
    hold = lane.hold()
    lane.add("barrier", {"state": "closed"})
    lane.add("lane_mode", {"mode": "in_service", "by": "x", "reason": "y", "via": "remote"})
    foreign = LaneEvents("gate-1", site="XX09")
    foreign.hold()
    assert [v.transit_id for v in queue(lane, foreign)] == [hold["transit_id"]]


def test_the_queue_is_across_lanes_oldest_first() -> None:
    a, b = LaneEvents("exit-03"), LaneEvents("exit-04")
    ha, hb = a.hold(), b.hold()
    views = queue(a, b)
    assert {(v.lane, v.transit_id) for v in views} == {
        ("exit-03", ha["transit_id"]), ("exit-04", hb["transit_id"])}


def test_an_action_waits_for_the_lanes_answer_within_the_commands_lifetime() -> None:
    lane = LaneEvents()
    hold = lane.hold()
    sent = [SentAction("release", "officer-7", NOW - 5, lane.lane, hold["transit_id"],
                       "release-abc")]
    [view] = queue(lane, sent=sent)
    assert view.pending is not None and view.pending["officer"] == "officer-7"
    [late] = queue(lane, sent=sent, now=NOW + 120)
    assert late.pending is None  # never answered within its lifetime: it never will be
    lane.add("cmd_result", {"cmd_id": "release-abc", "name": "remote_release",
                            "accepted": False, "code": "cmd.precondition",
                            "detail": "no truck on the deck"})
    [answered] = queue(lane, sent=sent)
    assert answered.pending is None
    assert answered.actions[0]["answer"] == {
        "accepted": False, "code": "cmd.precondition", "detail": "no truck on the deck"}


def test_an_unweighed_hold_has_no_trace_and_no_weight_numbers() -> None:
    lane = LaneEvents()
    transit_id = lane.transit()
    lane.add("truck_arrived", {}, transit_id)
    lane.add("pass_read", {"valid": False, "reason": "pass.expired"}, transit_id)
    lane.add("decision", {"decision": "hold", "reasons": ["pass.expired"], "weight_kg": None,
                          "release_no": None, "input_at_mono": 1.0, "challenge": "c1",
                          "snapshot": "s1", "detail": "pass expired"}, transit_id)
    [view] = queue(lane)
    assert view.trace == [] and view.weight_kg is None and view.difference_kg is None
    assert view.pass_read == {"valid": False, "reason": "pass.expired", "release_no": None,
                              "enterprise": None, "plates": None, "declared_gross_kg": None,
                              "tolerance_kg": None}
    assert view.evidence == ["s1"] and view.plates_read == []


def test_the_lane_overview_has_mode_health_backlog_and_last_event() -> None:
    lane = LaneEvents()
    lane.hold()
    lane.add("lane_mode", {"mode": "out_of_service", "previous": "in_service", "by": "ops-1",
                           "reason": "deck repair", "via": "remote"})
    health = {"schema": "gate.lane_health/1", "type": "health", "seq": 4,
              "occurred_at": "2026-12-03T19:16:00.000Z",
              "data": {"state": "hold", "mode": "in_service",
                       "devices": {"io_board": {"link": "down", "faults": []},
                                   "camera": {"up": False}},
                       "outbox": {"events": 7, "next_seq": 30, "disk_alarm": True},
                       "storage": {"ok": False, "error": "disk full"}}}
    facts = {"exit-03": LaneFacts(site=SITE, watermark=20, gaps=(21, 22),
                                  state={"online": True, "boot_id": 1}, health=health,
                                  chain={"first_break": "record 5: bad signature"})}
    [view] = desk.lanes(lane.events, facts, site=SITE, now=NOW)
    assert view.mode == "out_of_service" and view.mode_by == "ops-1"  # the event, not health
    assert view.online is True and view.machine_state == "hold"
    assert view.watermark == 20 and view.highest_seq == 29 and view.backlog == 9
    assert view.missing == 2 and view.outbox_waiting == 7 and view.held == 1
    assert view.last_event_type == "lane_mode"
    assert view.health_age_s == 40.0
    assert view.last_event_at == lane.events[-1]["occurred_at"]
    assert view.problems == [
        "IO board link down", "camera down", "storage fault: disk full",
        "lane disk nearly full", "transaction log broken: record 5: bad signature",
        "2 events missing above seq 20"]


def test_a_lane_known_only_by_its_documents_is_listed_and_offline_is_a_problem() -> None:
    facts = {"exit-09": LaneFacts(site=SITE, state={"online": False, "reason": "lost"}),
             "gate-1": LaneFacts(site="XX09")}
    [view] = desk.lanes([], facts, site=SITE, now=NOW)
    assert (view.lane, view.online, view.offline_reason) == ("exit-09", False, "lost")
    assert view.mode == "unknown" and view.problems == ["offline"] and view.backlog == 0
    assert view.last_event_at is None and view.health_age_s is None
