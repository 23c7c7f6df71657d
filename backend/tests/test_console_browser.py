"""The officer console in a real headless Chromium (Debian's), in front of the real simulated
lane: Mosquitto, the ingest worker, the IO board firmware, the weighbridge, the camera and the
``edge-agent`` process (``simulators/harness.py``), with the console as its own process
(``python -m backend.console serve``) reading the backend's store and sending through the
broker.

While the demo's mismatch truck waits on the deck, a logged-out visitor and a view-tier
officer try to release it (refused, nothing reaches the lane's command topics), then a
command-tier officer finds it in the queue, looks at its snapshot, reasons and weight trace,
and releases it: the lane's barrier opens. A second truck is refused from the console and a
third asked to be weighed again: the lane tells each driver to back off and the barrier stays
down. The console's update latency
after a hold (stored by the ingest worker -> shown in the browser's queue) is printed.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from paho.mqtt.client import Client, MQTTMessage
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from edge_agent.web.tests.test_lane_page_browser import ARGS, CHROMIUM
from simulators.harness import SimLane, TruckOutcome
from simulators.scenarios import DEMO, TruckPlan
from simulators.world import TruckSpec

pytestmark = [pytest.mark.process, pytest.mark.broker]

MISMATCH = next(p for p in DEMO.trucks if p.name == "mismatch")
REFUSED = TruckPlan("refused-from-desk", TruckSpec(plate="SU-R7007", gross_kg=39_800),
                    declared_kg=33_000, expect_decision="hold",
                    expect_reason="weight.declared_mismatch", release="remote")
REWEIGH = replace(REFUSED, name="reweigh-from-desk",
                  truck=TruckSpec(plate="SU-W8008", gross_kg=28_400), declared_kg=25_000)
SCENARIO = replace(DEMO, name="desk", trucks=(MISMATCH, REFUSED, REWEIGH))
PASSWORDS = {"officer-7": "officer seven's long password", "clerk-1": "clerk one long password"}
REFUSAL = "declared weight does not match: come back with a new declaration"
BLUE = (0x2F, 0x6F, 0xB5)


@dataclass
class Seen:
    """What the test saw while the trucks were held."""

    latency_s: list[float] = field(default_factory=list)
    queue_cells: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    snapshot_width: int = 0
    evidence_width: int = 0
    trace_pixels: int = 0
    stranger: list[int] = field(default_factory=list)
    clerk: list[int] = field(default_factory=list)
    clerk_buttons: int = -1
    lane_cells: list[str] = field(default_factory=list)
    sent_before_release: int = -1
    lane_state_before_release: str = ""
    after_release_page: str = ""
    hosts: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


@dataclass
class DeskRun:
    lane: SimLane
    seen: Seen
    released: TruckOutcome
    refused: TruckOutcome
    reweighed: TruckOutcome
    commands: list[MQTTMessage]
    audit: list[str]
    final_status: str
    queue_rows_after: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.console", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def _command_spy(url: str, into: list[MQTTMessage]) -> Client:
    subscribed = threading.Event()
    client = make_client("desk-command-spy", parse_broker_url(url))
    client.on_message = lambda _c, _u, message: into.append(message)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe("gate/v1/+/+/cmd/#", qos=1)
    address = parse_broker_url(url)
    client.connect(address.host, address.port)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def _watch(page: Page, seen: Seen) -> None:
    page.on("request", lambda request: seen.hosts.add(urlsplit(request.url).hostname or "?"))
    page.on("console", lambda msg: seen.errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: seen.errors.append(f"{r.status} {r.url}")
            if r.status >= 400 else None)


def _login(context: BrowserContext, base: str, name: str) -> Page:
    page = context.new_page()
    page.goto(f"{base}/queue")
    expect(page.locator("input[name=name]")).to_be_visible()
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("form.login button[type=submit]")
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)
    return page


def _blue_pixels(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(n for n, (r, g, b) in image.getcolors(1 << 20) or []
               if abs(r - BLUE[0]) < 40 and abs(g - BLUE[1]) < 40 and abs(b - BLUE[2]) < 40)


@pytest.fixture(scope="module")
def desk_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeskRun]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (tools/setup-system.sh installs it)")
    workdir = tmp_path_factory.mktemp("desk")
    lines: list[str] = []
    with SimLane(SCENARIO, workdir=workdir, log=lines.append) as lane, \
            sync_playwright() as playwright:
        yield _run(lane, workdir, playwright.chromium.launch(executable_path=CHROMIUM,
                                                              args=ARGS))


def _run(lane: SimLane, workdir: Path, browser: Browser) -> DeskRun:
    site, lane_id = SCENARIO.site, SCENARIO.lane
    users = workdir / "console" / "users.json"
    for name, tier in (("officer-7", "command"), ("clerk-1", "view")):
        added = _cli("add-user", name, "--tier", tier, "--users", str(users),
                     stdin=PASSWORDS[name] + "\n")
        assert added.returncode == 0, added.stderr
    key_file = workdir / "console" / "officer-console.key.pem"
    key_file.write_bytes(lane.officer_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_file.chmod(0o600)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (workdir / "console.log").open("wb")
    console = subprocess.Popen(
        [sys.executable, "-m", "backend.console", "serve", "--store",
         str(workdir / "backend.sqlite"), "--broker", lane.broker.url, "--site", site,
         "--officer-key", str(key_file), "--kid", "officer-console", "--users", str(users),
         "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    commands: list[MQTTMessage] = []
    spy = _command_spy(lane.broker.url, commands)
    seen = Seen()
    try:
        _wait_healthy(base, console, workdir / "console.log")
        officer_context = browser.new_context(viewport={"width": 1280, "height": 1400})
        officer = _login(officer_context, base, "officer-7")
        _watch(officer, seen)

        def on_mismatch_hold(hold: dict[str, Any]) -> None:
            transit = hold["transit_id"]
            stored_at = lane.backend.arrival_times(lane_id)[hold["seq"]]
            row = officer.locator(f'#queue tbody tr[data-transit="{transit}"]')
            expect(row).to_be_visible(timeout=15_000)
            seen.latency_s.append(time.monotonic() - stored_at)
            seen.queue_cells = row.locator("td").all_inner_texts()
            seen.lane_cells = officer.locator(
                f'#lanes tbody tr[data-lane="{lane_id}"] td').all_inner_texts()
            truck_url = f"{base}/truck/{lane_id}/{transit}"
            _intruders(browser, base, truck_url, hold, seen)
            time.sleep(0.5)  # a command sent by them would be at the spy by now
            seen.sent_before_release = len(commands)
            seen.lane_state_before_release = str(lane.status().get("state"))
            row.locator("a").click()
            expect(officer.locator("#status")).to_have_text("held")
            seen.reasons = officer.locator("#reasons code").all_inner_texts()
            snapshot = officer.locator("img.snapshot").first
            expect(snapshot).to_have_js_property("complete", True)
            seen.snapshot_width = snapshot.evaluate("img => img.naturalWidth")
            evidence = lane.backend.evidence(lane_id, hold["data"]["snapshot"])
            assert evidence is not None
            seen.evidence_width = Image.open(io.BytesIO(evidence[1])).size[0]
            canvas = officer.locator("#plot canvas")
            expect(canvas).to_be_visible()
            officer.wait_for_timeout(300)  # uPlot draws on the next frame
            seen.trace_pixels = _blue_pixels(canvas.screenshot())
            officer.click("#release")
            expect(officer.locator("#pending")).to_be_visible(timeout=10_000)

        released = lane.run_truck(MISMATCH, on_hold=on_mismatch_hold, timeout_s=120)
        expect(officer.locator("#status")).to_have_text("released", timeout=15_000)
        seen.after_release_page = officer.locator("#resolution").inner_text()

        def verdict_from_desk(verb: str, reason: str) -> Any:
            def on_hold(hold: dict[str, Any]) -> None:
                transit = hold["transit_id"]
                officer.goto(f"{base}/queue")
                stored_at = lane.backend.arrival_times(lane_id)[hold["seq"]]
                row = officer.locator(f'#queue tbody tr[data-transit="{transit}"]')
                expect(row).to_be_visible(timeout=15_000)
                seen.latency_s.append(time.monotonic() - stored_at)
                row.locator("a").click()
                if reason:
                    officer.fill(f"form[action$='/{verb}'] input[name=reason]", reason)
                officer.click(f"#{verb}")
                told = lane.backend.wait_for(lambda events: any(
                    e["type"] == "remote_verdict" and e["transit_id"] == transit
                    for e in events), timeout=20)
                assert told, "the lane did not tell the driver"
                lane.world.back_off()  # the driver reads the sign and reverses off the deck
            return on_hold

        refused = lane.run_truck(REFUSED, on_hold=verdict_from_desk("refuse", REFUSAL),
                                 timeout_s=120)
        expect(officer.locator("#status")).to_have_text("refused", timeout=15_000)
        final_status = officer.locator("#status").text_content() or ""
        reweighed = lane.run_truck(REWEIGH, on_hold=verdict_from_desk("reweigh", ""),
                                   timeout_s=120)
        expect(officer.locator("#status")).to_have_text("re-weigh asked", timeout=15_000)
        officer.goto(f"{base}/queue")
        expect(officer.locator("#empty")).to_be_visible(timeout=10_000)
        rows = officer.locator("#queue tbody tr").count()
        audit_page = officer_context.new_page()
        audit_page.goto(f"{base}/audit")
        audit = audit_page.locator("#audit tbody tr").all_inner_texts()
        officer_context.close()
        print(f"\nconsole update latency after a hold (stored -> in the browser's queue): "
              f"{', '.join(f'{s * 1000:.0f} ms' for s in seen.latency_s)}")
        return DeskRun(lane, seen, released, refused, reweighed, list(commands), audit,
                       final_status, rows)
    finally:
        spy.disconnect()
        spy.loop_stop()
        browser.close()
        console.send_signal(signal.SIGTERM)
        try:
            console.wait(timeout=20)
        except subprocess.TimeoutExpired:
            console.kill()
            console.wait()
        log.close()


def _wait_healthy(base: str, console: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert console.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _intruders(browser: Browser, base: str, truck_url: str, hold: dict[str, Any],
               seen: Seen) -> None:  # fmt: skip
    """A logged-out visitor and a view-tier officer try to release the held truck."""
    form = {"hold": hold["event_id"], "csrf": "guessed"}
    stranger = browser.new_context()
    try:
        response = stranger.request.post(f"{truck_url}/release", form=form, max_redirects=0)
        seen.stranger.append(response.status)
        page = stranger.new_page()
        page.goto(truck_url)
        seen.stranger.append(200 if page.url.endswith("/login") else 0)
    finally:
        stranger.close()
    clerk_context = browser.new_context()
    try:
        clerk = _login(clerk_context, base, "clerk-1")
        clerk.goto(truck_url)
        expect(clerk.locator("#status")).to_have_text("held")
        seen.clerk_buttons = clerk.locator("#release, #refuse, #reweigh").count()
        csrf = clerk.locator("header input[name=csrf]").get_attribute("value") or ""
        for verb in ("release", "refuse", "reweigh"):
            response = clerk.request.post(
                f"{truck_url}/{verb}", form={**form, "csrf": csrf, "reason": "let me"},
                headers={"Origin": base}, max_redirects=0)
            seen.clerk.append(response.status)
    finally:
        clerk_context.close()


def test_the_officer_sees_the_mismatch_truck_with_its_evidence(desk_run: DeskRun) -> None:
    seen = desk_run.seen
    lane, transit, held_for, codes, weight, declared, plate, pass_no, status = seen.queue_cells
    assert lane == SCENARIO.lane and codes == "weight.declared_mismatch"
    assert transit == desk_run.released.transit_id and held_for.endswith(" s")
    assert weight.endswith(" kg") and declared.startswith("36,000 kg (+")
    assert pass_no.startswith("RL-SU-B2002") and status == "waiting"
    assert seen.reasons == ["weight.declared_mismatch"]
    assert seen.snapshot_width == seen.evidence_width > 0
    assert seen.trace_pixels > 100, f"{seen.trace_pixels} trace pixels in the plot"
    assert seen.latency_s and all(s > 0 for s in seen.latency_s)
    assert plate == "none"  # the simulated lane has no plate camera


def test_the_release_opens_the_simulated_lanes_barrier(desk_run: DeskRun) -> None:
    outcome = desk_run.released
    assert outcome.ok, outcome.problems
    assert outcome.barrier[:2] == ["open", "close"]
    events = desk_run.lane.backend.events(SCENARIO.lane)
    [released] = [e for e in events if e["type"] == "released"
                  and e["transit_id"] == outcome.transit_id]
    assert released["data"]["officer"] == "officer-7" and released["data"]["by"] == "remote"
    [result] = [e["data"] for e in events if e["type"] == "cmd_result"
                and e["data"]["cmd_id"] == released["data"]["cmd_id"]]
    assert result["accepted"] is True and result["detail"] == "barrier opened"
    assert desk_run.seen.after_release_page.startswith("released by officer-7")


def test_logged_out_and_view_tier_users_cannot_release(desk_run: DeskRun) -> None:
    seen = desk_run.seen
    assert seen.stranger == [401, 200]  # refused; the page itself sends them to the login
    assert seen.clerk_buttons == 0
    assert seen.clerk == [403, 403, 403]
    assert seen.sent_before_release == 0  # nothing reached any lane's command topic
    assert seen.lane_state_before_release == "hold"
    assert any("clerk-1" in row and "denied" in row for row in desk_run.audit)


def test_exactly_the_officers_commands_reached_the_lane(desk_run: DeskRun) -> None:
    topics = [m.topic.rsplit("/", 1)[1] for m in desk_run.commands]
    assert topics == ["remote_release", "remote_refuse", "remote_reweigh"]
    sent = [row for row in desk_run.audit if "\tsent\t" in row]
    assert len(sent) == 3 and all("officer-7\tcommand" in row for row in sent)


def test_a_refusal_from_the_desk_keeps_the_arm_down_and_sends_the_truck_back(
    desk_run: DeskRun,
) -> None:
    outcome = desk_run.refused
    assert outcome.decision == "hold" and "open" not in outcome.barrier
    events = [e for e in desk_run.lane.backend.events(SCENARIO.lane)
              if e["transit_id"] == outcome.transit_id]
    [verdict] = [e["data"] for e in events if e["type"] == "remote_verdict"]
    assert verdict["verdict"] == "refuse" and verdict["officer"] == "officer-7"
    assert verdict["reason"] == REFUSAL
    [closed] = [e["data"] for e in events if e["type"] == "transit_closed"]
    assert closed["outcome"] == "refused"
    assert desk_run.final_status == "refused" and desk_run.queue_rows_after == 0


def test_a_reweigh_asked_from_the_desk_sends_the_truck_back_with_its_pass_unused(
    desk_run: DeskRun,
) -> None:
    outcome = desk_run.reweighed
    assert outcome.decision == "hold" and "open" not in outcome.barrier
    events = [e for e in desk_run.lane.backend.events(SCENARIO.lane)
              if e["transit_id"] == outcome.transit_id]
    [verdict] = [e["data"] for e in events if e["type"] == "remote_verdict"]
    assert verdict["verdict"] == "reweigh" and verdict["officer"] == "officer-7"
    [closed] = [e["data"] for e in events if e["type"] == "transit_closed"]
    assert closed["outcome"] == "reweigh"
    assert not any(e["type"] == "pass_used" for e in events)


def test_the_queue_shows_the_lane_online_with_its_held_truck(desk_run: DeskRun) -> None:
    lane, link, mode, state, held, backlog, last, problems = desk_run.seen.lane_cells
    assert (lane, link, mode, held, problems) == (SCENARIO.lane, "online", "in_service", "1",
                                                  "none")
    assert "report" in state and backlog.startswith("0")  # the hold is stored: nothing behind
    assert last.startswith("decision at ")


def test_the_console_needs_no_network(desk_run: DeskRun) -> None:
    assert desk_run.seen.hosts == {"127.0.0.1"}
    assert desk_run.seen.errors == []


def test_the_console_stops_cleanly_on_sigterm(desk_run: DeskRun) -> None:
    # The fixture stopped it; its log says so and holds no traceback.
    log = (Path(desk_run.lane.state_dir).parent / "console.log").read_text()
    assert "ready on http://127.0.0.1:" in log and "console stopped" in log
    assert "Traceback" not in log
    assert os.path.exists(Path(desk_run.lane.state_dir).parent / "console" / "audit.sqlite")
