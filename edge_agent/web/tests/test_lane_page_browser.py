"""The lane page in a real headless Chromium (Debian's), watching the real agent run a truck,
and served by a real ``edge-agent`` process.

The lane is the real ``LaneAgent`` on the fakes, stepped in real time (three times faster) by
a thread; the page is served by the agent's page server on loopback and polls it as it does
at the lane. Nothing the page asks for may leave 127.0.0.1: it must work with no network.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from edge_agent.web.tests.page_rig import VALID, PageRig
from simulators.scenarios import DEMO
from simulators.virtual_lane import QR_OUTLINE, VirtualLane

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOWN_WITHIN_S = 1.0  # the technician sees the decision within a second of the agent
TOKEN = "lane-token-0123456789abcdef"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (tools/setup-system.sh installs it)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watched:
    """What the browser saw of one truck."""

    rig: PageRig
    page: Page
    decision: dict[str, Any]
    shown_after_s: float
    screenshot: Path
    hosts: set[str] = field(default_factory=set)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def watched(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    """A valid truck through the lane while the page is open. The lane stops at its decision
    and goes on only until the camera's frame has the pass's outline: the driver still holds
    the pass up, and the page shows that moment for the checks."""
    workdir = tmp_path_factory.mktemp("lane-page")
    rig = PageRig(workdir)
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    hosts: set[str] = set()
    errors: list[str] = []
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname or "?"))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400
            else None)
    try:
        rig.run_for(1.0)  # an empty lane, settled
        page.goto(rig.url("/"))
        expect(page.locator("#state")).to_have_text("idle", timeout=10_000)
        rig.send(VALID)
        rig.run_real_time(speed=3.0, until_decision=True)
        assert rig.decided.wait(60), "the lane took no decision"
        assert rig.error is None, rig.error
        decision = rig.board.decisions()[0]
        assert rig.decided_at is not None
        row = page.locator("#decisions tbody tr", has_text=decision["transit_id"])
        expect(row).to_be_visible(timeout=SHOWN_WITHIN_S * 1000)
        shown_after = time.perf_counter() - rig.decided_at
        print(f"\nlane page showed the decision {shown_after * 1000:.0f} ms after the agent "
              f"took it (bound {SHOWN_WITHIN_S * 1000:.0f} ms)")
        rig.pause()
        rig.run_for(0.3)  # the board's next look at the lane; the barrier is not up yet
        assert rig.run_until(rig.outlined, timeout_s=0.5)
        expect(page.locator("#outline polygon")).to_have_count(1, timeout=10_000)
        expect(page.locator("#frame")).to_have_js_property("complete", True)
        page.wait_for_timeout(600)  # two more polls: the page is settled on the stopped lane
        shot = workdir / "lane-page.png"
        page.screenshot(path=str(shot), full_page=True)
        yield Watched(rig, page, decision, shown_after, shot, hosts, errors)
    finally:
        page.close()
        rig.close()


def test_the_page_shows_the_trucks_weight_and_decision(watched: Watched) -> None:
    page, decision = watched.page, watched.decision
    assert decision["decision"] == "open" and decision["weight_kg"] > 30_000
    row = page.locator("#decisions tbody tr", has_text=decision["transit_id"])
    cells = row.locator("td").all_inner_texts()
    weight = f"{round(decision['weight_kg']):,} kg"
    assert cells[2] == "open" and cells[4] == weight
    assert cells[5] == f"{decision['declared_gross_kg']:,} kg"
    assert page.locator("#kg").inner_text().endswith(" kg")
    assert page.locator("#lane-name").inner_text() == "Lane BZ01/exit-03"
    assert page.locator("#t-pass").inner_text() == decision["release_no"]
    assert page.locator("#link").inner_text() == "live"
    assert page.locator("#state").inner_text().lower() == "opening"
    assert page.locator("#t-weight").inner_text() == weight
    assert watched.shown_after_s > 0


def test_the_screenshot_shows_the_plot_and_the_frame_with_its_outline(watched: Watched) -> None:
    page = watched.page
    image = Image.open(watched.screenshot).convert("RGB")
    assert image.size[0] == 1280 and image.size[1] >= 1000
    assert len(image.getcolors(1 << 20) or []) > 200  # not blank: text, plot, photo
    # The plot's canvas has the weight trace drawn on it (its line colour, many pixels).
    box = page.locator("#plot canvas").bounding_box()
    assert box is not None and box["width"] > 300
    plot = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
                       int(box["y"] + box["height"])))
    line = sum(n for n, (r, g, b) in plot.getcolors(1 << 20) or []
               if abs(r - 0x2F) < 40 and abs(g - 0x6F) < 40 and abs(b - 0xB5) < 40)
    assert line > 100, f"{line} trace pixels in the plot"
    # The camera frame is rendered, and the outline drawn over it where the code is.
    frame = page.locator("#frame")
    assert frame.evaluate("img => img.naturalWidth") == 640
    points = page.locator("#outline polygon").first.get_attribute("points")
    assert points == " ".join(f"{x},{y}" for x, y in QR_OUTLINE)
    frame_box = frame.bounding_box()
    assert frame_box is not None
    scale = frame_box["width"] / 1280
    (x0, y0), (x1, y1) = QR_OUTLINE[0], QR_OUTLINE[2]
    code = image.crop((int(frame_box["x"] + x0 * scale) + 3, int(frame_box["y"] + y0 * scale) + 3,
                       int(frame_box["x"] + x1 * scale) - 3, int(frame_box["y"] + y1 * scale) - 3))
    darkest, lightest = code.convert("L").getextrema()
    assert darkest < 90 and lightest > 170  # the code's dark and light modules


def test_the_page_needs_no_network(watched: Watched) -> None:
    assert watched.hosts == {"127.0.0.1"}
    assert watched.console_errors == []


def test_a_lan_page_asks_for_the_token_and_then_shows_the_lane(
    browser: Browser, tmp_path: Path,
) -> None:
    rig = PageRig(tmp_path, token=TOKEN)
    context = browser.new_context()
    page = context.new_page()
    try:
        response = page.goto(rig.url("/"))
        assert response is not None and response.status == 401
        page.fill("input[name=token]", "not-the-token-0000")
        page.click("button[type=submit]")
        assert page.locator(".error").inner_text().startswith("That token is not")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("#link")).to_have_text("live", timeout=10_000)
        assert page.locator("#lane-name").inner_text() == "Lane BZ01/exit-03"
        assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts never see it
        cookies = context.cookies()
        assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
            ("gatelane_session", True, "Strict")]
        page.click("#logout button")
        expect(page.locator("input[name=token]")).to_be_visible()
        assert context.cookies() == []
        after = page.goto(rig.url("/api/live"))
        assert after is not None and after.status == 401
    finally:
        context.close()
        rig.close()


def test_the_agent_process_serves_its_page_with_the_token_and_its_probes(
    tmp_path: Path,
) -> None:
    config, port = _agent_config(tmp_path)
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config",
                                  str(config)], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        deadline = time.monotonic() + 30
        while _get(f"{base}/healthz", bearer)[0] != 200:
            assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert _get(f"{base}/status")[0] == 401
        status, body = _get(f"{base}/status", bearer)
        assert status == 200 and json.loads(body)["lane"] == "exit-03"
        status, body = _get(f"{base}/readyz", bearer)
        assert (status, body) == (200, b"ok\n") or (status == 503 and body.strip()), body
        status, body = _get(f"{base}/metrics", bearer)
        assert status == 200 and b'gatelane_device_up{device="io_board"}' in body
        status, body = _get(f"{base}/", bearer)
        assert status == 200 and b"/static/page.js" in body
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)


def _agent_config(tmp_path: Path) -> tuple[Path, int]:
    """The virtual lane's config (keys, trust list, fakes by URL) for a real agent process:
    its own fakes on the wall clock, the page on a free loopback port with a token."""
    VirtualLane(tmp_path, DEMO).close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    token = tmp_path / "page-token"
    token.write_text(TOKEN + "\n")
    config = tmp_path / "agent.toml"
    config.write_text(config.read_text() + f"""
[status]
listen = "127.0.0.1:{port}"
token_file = "{token}"

[control]
socket = "{tmp_path / 'control.sock'}"
""")
    return config, port


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""  # not listening yet
