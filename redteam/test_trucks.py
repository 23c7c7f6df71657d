"""Red-team findings reproduced through the running lane (``simulators.harness.SimLane``).

Each test stages what the red team found (a damaged ledger page, an indicator left in NET mode
or zeroed with a load on it, a flood of unsigned commands, a stale wall clock) in a whole
simulated lane — broker, backend, IO-board firmware, weighbridge, camera and the real
``edge-agent`` — drives trucks through it and asserts the fixed behaviour. One lane per
finding, started and stopped by that finding's fixture, so no two lanes compete for the CPU.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.clock import wall_clock_status
from edge_agent.drivers.pass_ledger import PassLedger
from edge_agent.protocols import gp1
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from edge_agent.telemetry.topics import LaneTopics
from simulators.harness import SimLane, TruckOutcome
from simulators.polling import wait_until
from simulators.scenarios import Scenario, TruckPlan
from simulators.world import Phase, TruckSpec

pytestmark = pytest.mark.slow

TRUE_GROSS_KG = 32_480
DECLARED_LOW_KG = 31_480  # 1,000 kg under the truth: what a NET or mis-zeroed display shows
TOLERANCE_KG = 300
# A driver held by the lane backs off once the hold is announced (plans expecting a hold);
# this is only his patience if the lane wrongly holds a truck the test expects to open.
PATIENCE_S = 20.0
LEDGER_ROWS = 2_000
FLOOD_COUNT = 30_000
FLOOD_RESULTS_MAX = 100
WEIGHT_FAULT_CODES = {"weight.net_reading", "weight.negative", "weight.zero_out_of_band"}

PrepareState = Callable[[Path], None]


# -- lanes ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_lane(
    tmp_path: Path, name: str, *, protocol: str = "yaohua-tf0",
    prepare_state: PrepareState | None = None,
) -> Iterator[SimLane]:
    scenario = Scenario(name=name, description=f"red team: {name}", trucks=())
    lines: list[str] = []
    with SimLane(scenario, workdir=tmp_path / name, log=lines.append, protocol=protocol,
                 prepare_state=prepare_state) as lane:
        yield lane


def truck(plate: str, gross_kg: float = TRUE_GROSS_KG) -> TruckSpec:
    return TruckSpec(plate=plate, gross_kg=gross_kg, back_off_after_s=PATIENCE_S)


def held_plan(name: str, spec: TruckSpec, **kwargs: Any) -> TruckPlan:
    """A truck the lane must hold: the harness backs it off once the hold is announced."""
    return TruckPlan(name, spec, expect_decision="hold", **kwargs)


def transit_events(lane: SimLane, outcome: TruckOutcome) -> list[dict[str, Any]]:
    assert outcome.transit_id is not None, (outcome.problems, lane.agent_log())
    return [e for e in lane.backend.events(lane.scenario.lane)
            if e.get("transit_id") == outcome.transit_id]


def abnormality_codes(events: list[dict[str, Any]]) -> set[str]:
    return {str(e["data"].get("code")) for e in events if e["type"] == "abnormality"}


def lane_abnormalities(lane: SimLane, codes: set[str]) -> list[dict[str, Any]]:
    """Abnormalities outside any transit (the empty deck, the agent's start) with ``codes``."""
    return [e for e in lane.backend.events(lane.scenario.lane)
            if e["type"] == "abnormality" and e.get("transit_id") is None
            and e["data"].get("code") in codes]


def explain(lane: SimLane, outcome: TruckOutcome) -> str:
    return (f"{outcome.name}: decision {outcome.decision} {outcome.reasons}, pass "
            f"{outcome.pass_verdict}, barrier {outcome.barrier}, events {outcome.events}, "
            f"problems {outcome.problems}\nagent log:\n{lane.agent_log()}")


def weighbridge_frames(lane: SimLane) -> int:
    return int(lane.status().get("devices", {}).get("weighbridge", {}).get("frames", 0))


def let_lane_watch_the_empty_deck(lane: SimLane, seconds: float = 3.0) -> None:
    """Wait until the agent has decoded ``seconds`` more frames (10 Hz) of the empty deck."""
    assert lane.world.deck_load_kg() == 0.0
    start = weighbridge_frames(lane)
    assert wait_until(lambda: weighbridge_frames(lane) >= start + 10 * seconds, timeout=30.0), (
        f"the agent decoded no indicator frames:\n{lane.agent_log()}")


# -- 1. the single-use ledger fails open on a damaged page -------------------------------------
def damage_ledger(state_dir: Path) -> None:
    """A ledger of 2,000 used passes over many pages, one page in the middle overwritten."""
    path = state_dir / "passes.sqlite"
    PassLedger(path).close()  # the product's own schema and pragmas (WAL)
    rng = random.Random(20_240_611)
    now = time.time()
    rows = [(rng.randbytes(16), int(now) + 86_400, now, "exit-03") for _ in range(LEDGER_ROWS)]
    with contextlib.closing(sqlite3.connect(path)) as db:
        with db:
            db.executemany("INSERT INTO used_pass (cti, exp, used_at, lane) VALUES (?, ?, ?, ?)",
                           rows)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    assert pages >= 10, f"only {pages} pages: the ledger must span several"
    with contextlib.suppress(FileNotFoundError):  # checkpointed: nothing left in the WAL
        assert (state_dir / "passes.sqlite-wal").stat().st_size == 0
    victim = pages // 2  # 1-based page number, inside the table or its primary-key index
    with path.open("r+b") as ledger_file:
        ledger_file.seek((victim - 1) * page_size)
        ledger_file.write(rng.randbytes(page_size))
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            check = [str(row[0]) for row in db.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            check = [str(exc)]
    assert check != ["ok"], "the overwritten page was not seen as damage: staging failed"


@pytest.fixture
def damaged_ledger_lane(tmp_path: Path) -> Iterator[SimLane]:
    with running_lane(tmp_path, "damaged-ledger", prepare_state=damage_ledger) as lane:
        yield lane


def test_a_damaged_ledger_is_quarantined_and_a_pass_still_opens_at_most_once(
    damaged_ledger_lane: SimLane,
) -> None:
    lane = damaged_ledger_lane
    spec = truck("SU-L1001")
    first = held_plan("same-pass-1", spec)  # backs off if held; drives on if the lane opens
    text = lane.issue_pass(first)
    assert text is not None
    outcomes = [lane.run_truck(first, pass_text=text)]
    outcomes += [lane.run_truck(held_plan(f"same-pass-{n}", spec), pass_text=text)
                 for n in (2, 3)]
    report = "\n\n".join(explain(lane, o) for o in outcomes)
    assert lane.agent_alive(), report
    opened = [o.decision == "open" or "open" in o.barrier for o in outcomes]
    assert sum(opened) <= 1, f"one pass opened the barrier {sum(opened)} times:\n{report}"
    for outcome, was_opened in zip(outcomes, opened, strict=True):
        if was_opened:
            continue
        assert outcome.decision == "hold", report
        assert {"pass.already_used", "lane.storage_fault"} & set(outcome.reasons), report
    quarantined = lane_abnormalities(lane, {"lane.state_quarantined"})
    assert any("passes.sqlite" in str(e["data"].get("detail")) for e in quarantined), (
        f"no lane.state_quarantined abnormality for the ledger: {quarantined}\n"
        + lane.agent_log())
    kept = sorted(p.name for p in lane.state_dir.glob("passes.sqlite.corrupt-*"))
    assert any(not name.endswith(("-wal", "-shm")) for name in kept), (
        f"damaged ledger not kept for analysis; state dir: "
        f"{sorted(p.name for p in lane.state_dir.iterdir())}")


# -- 2. an overweight truck passes when the indicator shows NET or its zero is off -------------
@pytest.fixture
def toledo_lane(tmp_path: Path) -> Iterator[SimLane]:
    with running_lane(tmp_path, "toledo-net", protocol="toledo") as lane:
        yield lane


@pytest.fixture
def yaohua_lane(tmp_path: Path) -> Iterator[SimLane]:
    with running_lane(tmp_path, "yaohua-zero") as lane:
        yield lane


def overweight_plan(name: str, plate: str) -> TruckPlan:
    """True gross 32,480 kg declared as 31,480: only a display 1,000 kg low makes it fit."""
    return held_plan(name, truck(plate), declared_kg=DECLARED_LOW_KG, tolerance_kg=TOLERANCE_KG)


def switch_fault_on_empty_deck(lane: SimLane, fault: str, codes: set[str]) -> None:
    """Switch ``fault`` on while the deck is empty; wait until the lane reported one of
    ``codes`` for the empty deck, and has watched it a few seconds more."""
    lane.weighbridge.set_fault(fault, True)
    assert wait_until(lambda: bool(lane_abnormalities(lane, codes)), timeout=15.0), (
        f"{fault} on the empty deck raised none of {sorted(codes)}:\n{lane.agent_log()}")
    let_lane_watch_the_empty_deck(lane)


def test_an_indicator_left_in_net_mode_holds_an_overweight_truck(toledo_lane: SimLane) -> None:
    lane = toledo_lane
    try:
        switch_fault_on_empty_deck(lane, "net_mode", {"weight.net_reading"})
        outcome = lane.run_truck(overweight_plan("net-mode", "SU-N2001"))
    finally:
        lane.weighbridge.set_fault("net_mode", False)
    report = explain(lane, outcome)
    assert outcome.decision == "hold", report
    assert "open" not in outcome.barrier, report
    assert WEIGHT_FAULT_CODES & set(outcome.reasons), report
    assert outcome.ok, report


def test_a_zero_offset_holds_an_overweight_truck_and_a_clean_zero_opens_again(
    yaohua_lane: SimLane,
) -> None:
    lane = yaohua_lane
    codes = {"weight.zero_out_of_band", "weight.negative"}
    try:
        switch_fault_on_empty_deck(lane, "zero_offset_1000", codes)
        held = lane.run_truck(overweight_plan("zero-offset", "SU-Z3001"))
    finally:
        lane.weighbridge.set_fault("zero_offset_1000", False)
    report = explain(lane, held)
    assert held.decision == "hold", report
    assert "open" not in held.barrier, report
    assert codes & set(held.reasons), report
    assert held.ok, report

    # Fault cleared: the display returns to a clean zero, the lane sees it, a truck opens.
    def clean_zero() -> bool:
        kg = lane.status().get("devices", {}).get("weighbridge", {}).get("kg")
        return kg is not None and abs(float(kg)) <= 20.0

    assert wait_until(clean_zero, timeout=15.0), lane.agent_log()
    let_lane_watch_the_empty_deck(lane)
    honest = TruckPlan("clean-zero", truck("SU-Z3002"), tolerance_kg=TOLERANCE_KG)
    opened = lane.run_truck(honest)
    assert opened.decision == "open" and opened.ok, explain(lane, opened)


# -- 3. a flood of unsigned commands holds valid trucks ------------------------------------------
class CommandFlood:
    """Publishes ``count`` unsigned garbage commands (~200 bytes) on the lane's ``cmd/config``
    from its own MQTT v5 client, as fast as paho goes, once ``start_when()`` holds."""

    def __init__(self, lane: SimLane, count: int, start_when: Callable[[], bool]) -> None:
        self._lane, self._count, self._start_when = lane, count, start_when
        self._thread = threading.Thread(target=self._run, name="command-flood", daemon=True)
        self.sent = 0
        self.errors: list[str] = []
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flood did not finish"

    def _payload(self, n: int, now: int) -> bytes:
        if n % 2:
            return os.urandom(200)  # not even JSON
        scenario = self._lane.scenario
        forged: dict[str, Any] = {
            "claims": {"cmd_id": f"flood-{n}", "name": "config", "site": scenario.site,
                       "lane": scenario.lane, "iat": now, "exp": now + 60, "nonce": f"{n:x}",
                       "args": {"version": n + 1, "settings": {}}},
            "kid": "officer-console",
            "sig": base64.urlsafe_b64encode(os.urandom(64)).rstrip(b"=").decode(),
        }
        return json.dumps(forged, separators=(",", ":")).encode()

    def _run(self) -> None:
        try:
            self._flood()
        except Exception as exc:  # reported by the test, not lost in a thread
            self.errors.append(repr(exc))

    def _flood(self) -> None:
        lane = self._lane
        address = parse_broker_url(lane.broker.url)
        client = make_client(f"flood-{os.getpid()}", address)
        connected = threading.Event()
        client.on_connect = lambda *_args: connected.set()
        client.max_queued_messages_set(0)  # unlimited: nothing held back on our side
        client.connect(address.host, address.port, keepalive=30)
        client.loop_start()
        try:
            if not connected.wait(10.0):
                self.errors.append("flood client did not connect")
                return
            if not wait_until(self._start_when, timeout=30.0):
                self.errors.append("the truck never stopped on the deck")
                return
            topic = LaneTopics(lane.scenario.site, lane.scenario.lane).command("config")
            now = int(time.time())
            self.started_at = time.monotonic()
            last = None
            for n in range(self._count):
                last = client.publish(topic, self._payload(n, now), qos=0)
                if last.rc == 0:
                    self.sent += 1
                else:
                    self.errors.append(f"publish {n}: rc {last.rc}")
            if last is not None:
                last.wait_for_publish(timeout=60.0)
            self.finished_at = time.monotonic()
        finally:
            client.disconnect()
            client.loop_stop()


@pytest.fixture
def flood_lane(tmp_path: Path) -> Iterator[SimLane]:
    with running_lane(tmp_path, "command-flood") as lane:
        yield lane


def test_an_unsigned_command_flood_neither_holds_a_valid_truck_nor_floods_the_backend(
    flood_lane: SimLane,
) -> None:
    lane = flood_lane
    lane_id = lane.scenario.lane

    def truck_on_deck() -> bool:
        state = lane.world.truck
        return state is not None and state.phase is Phase.STOPPED

    flood = CommandFlood(lane, FLOOD_COUNT, truck_on_deck)
    flood.start()
    outcome = lane.run_truck(TruckPlan("flooded", truck("SU-F4001")))
    flood.join(timeout=120.0)
    assert not flood.errors and flood.sent == FLOOD_COUNT, (flood.sent, flood.errors[:5])
    assert flood.started_at is not None and flood.finished_at is not None
    report = explain(lane, outcome) + (
        f"\nflood of {flood.sent} took {flood.finished_at - flood.started_at:.1f} s")
    assert lane.agent_alive(), report
    assert outcome.decision == "open" and outcome.ok, report
    lost = {"weight.comm_loss", "weight.unstable_timeout"} & abnormality_codes(
        transit_events(lane, outcome))
    assert not lost, report

    # A signed command sent after the flood: once answered, the flood is behind the agent.
    sentinel = lane.console.config(lane_id, 1, {"mqtt.health_interval_s": 5})
    answer = lane.console.result(lane_id, sentinel, timeout_s=60.0)
    assert answer is not None and answer["accepted"] is True, (answer, lane.agent_log())
    assert lane.status().get("lane") == lane_id  # the agent answers its status page too
    refusals = [e for e in lane.backend.events(lane_id)
                if e["type"] == "cmd_result" and e["data"].get("cmd_id") != sentinel]
    assert len(refusals) <= FLOOD_RESULTS_MAX, (
        f"{len(refusals)} cmd_result events stored for {flood.sent} unsigned commands")
    assert all(e["data"].get("accepted") is False for e in refusals), refusals[:3]


# -- 4. passes checked against an unsynced wall clock -------------------------------------------
FLOOR_AHEAD_S = 3 * 86_400


def floor_three_days_ahead(state_dir: Path) -> None:
    """The lane knew (before a power cut) that real time is 3 days past this clock."""
    floor = int(time.time()) + FLOOR_AHEAD_S
    (state_dir / "time_floor.json").write_text(json.dumps({"floor": floor}), encoding="utf-8")


@pytest.fixture
def stale_clock_lane(tmp_path: Path) -> Iterator[SimLane]:
    if wall_clock_status()[0]:
        pytest.skip("this host's clock is synced (timesyncd/chrony): the agent rightly "
                    "trusts it over the floor, so an unsynced Pi cannot be staged here")
    with running_lane(tmp_path, "stale-clock", prepare_state=floor_three_days_ahead) as lane:
        yield lane


def test_a_pass_expired_by_the_time_floor_is_held_despite_a_stale_wall_clock(
    stale_clock_lane: SimLane,
) -> None:
    lane = stale_clock_lane
    scenario = lane.scenario
    plan = held_plan("stale-clock", truck("SU-T5001"), expect_reason="pass.expired")
    now = datetime.now(UTC)
    text = gp1.issue_pass(
        lane.issuer_key, release_no="RL-SU-T5001-FLOOR", enterprise="Demo Logistics Co.",
        plates=(plan.truck.plate,), declared_gross_kg=plan.declared, tolerance_kg=TOLERANCE_KG,
        site=scenario.site, gates=(scenario.gate,), direction="exit",
        valid_from=now - timedelta(hours=1), valid_for_s=2 * 86_400,
    )
    # Control: by this machine's clock the pass is good; only the floor makes it expired.
    trust = gp1.TrustList.load(lane.trust_path)
    assert gp1.verify_pass(text, trust=trust, site=scenario.site, gate=scenario.gate,
                           direction="exit", now=time.time()).valid
    outcome = lane.run_truck(plan, pass_text=text)
    report = explain(lane, outcome)
    assert outcome.decision == "hold", report
    assert "open" not in outcome.barrier, report
    assert "pass.expired" in outcome.reasons, report
    assert outcome.ok, report
