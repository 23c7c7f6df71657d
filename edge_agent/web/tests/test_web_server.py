"""The lane page's server on a real loopback socket, fed by the real agent on the fakes.

The trucks run in virtual time (milliseconds); what the page would see is read over HTTP.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config import load_config, parse_config
from edge_agent.drivers.weighbridge import IndicatorArrival
from edge_agent.errors import ConfigError, DeviceError
from edge_agent.lane.inputs import CameraChanged
from edge_agent.protocols.indicators.base import IndicatorReading
from edge_agent.status import TRACE_S, StatusBoard
from edge_agent.web.auth import read_token
from edge_agent.web.frames import FrameCache
from edge_agent.web.server import serve_page
from edge_agent.web.tests.page_rig import MISMATCH, VALID, PageRig
from simulators.virtual_lane import QR_OUTLINE

TOKEN = "lane-token-0123456789abcdef"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[PageRig]:
    with closing(PageRig(tmp_path)) as page:
        yield page


def _status(url: str, headers: dict[str, str] | None = None, data: bytes | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_status_keeps_the_document_lanectl_status_reads(rig: PageRig) -> None:
    assert rig.lane.run_truck(VALID).ok
    rig.lane.run_for(0.5)  # the board takes the lane's state four times a second
    doc = rig.get("/status")
    for key in ("site", "lane", "agent_version", "state", "transit", "recent_events",
                "devices", "uptime_s"):
        assert key in doc
    assert (doc["site"], doc["lane"], doc["state"]) == ("BZ01", "exit-03", "idle")
    assert {"io_board", "weighbridge", "camera", "telemetry", "host"} <= set(doc["devices"])
    assert doc["devices"]["io_board"]["firmware"] == doc["versions"]["firmware"] is not None
    assert len(doc["versions"]["config_sha256"]) == 16
    assert doc["devices"]["host"]["disk_free_bytes"] > 0
    assert doc["devices"]["host"]["outbox_events"] > 0  # no broker: everything waits
    assert doc["devices"]["host"]["outbox_oldest_age_s"] > 0


def test_the_live_document_carries_the_trucks_weights_and_its_decision_with_reasons(
    rig: PageRig,
) -> None:
    outcome = rig.lane.run_truck(MISMATCH)
    doc = rig.get("/api/live")
    weights = doc["weights"]["samples"]
    assert max(kg for _seq, _t, kg, _stable in weights) > 40_000  # the truck was weighed
    assert all(doc["now"] - TRACE_S <= t <= doc["now"] for _seq, t, _kg, _stable in weights)
    hold = next(d for d in doc["decisions"] if d["decision"] == "hold")
    assert hold["transit_id"] == outcome.transit_id
    assert hold["reasons"] == ["weight.declared_mismatch"]
    assert hold["weight_kg"] > 40_000 and hold["declared_gross_kg"] == 36_000
    assert hold["latency_ms"] >= 0
    # The next poll asks only for what is new.
    rig.lane.run_for(1.0)
    newer = rig.get(f"/api/live?after={doc['weights']['last_seq']}")["weights"]["samples"]
    assert newer and all(seq > doc["weights"]["last_seq"] for seq, *_ in newer)


def test_the_config_hash_follows_a_reload(rig: PageRig) -> None:
    board, source = rig.board, rig.lane.config.source
    assert source is not None
    before = board.document()["versions"]["config_sha256"]
    assert before == hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    source.write_text(source.read_text() + "# retuned\n")
    board.config_loaded(load_config(source))
    after = board.document()["versions"]["config_sha256"]
    assert after == hashlib.sha256(source.read_bytes()).hexdigest()[:16] != before


def test_the_weight_trace_keeps_the_last_two_minutes(tmp_path: Path) -> None:
    board = StatusBoard(_config(tmp_path))
    for i in range(3000):  # 300 s at 10 Hz
        board.observe(IndicatorArrival(i / 10, IndicatorReading(kg=float(i), motion=i % 2 == 0)))
    samples = board.live()["weights"]["samples"]
    assert samples[-1][1:] == [299.9, 2999.0, True]
    assert samples[0][1] >= 299.9 - TRACE_S and len(samples) == TRACE_S * 10 + 1


def test_the_frame_is_a_small_jpeg_and_the_outline_stays_in_frame_coordinates(
    rig: PageRig,
) -> None:
    rig.send(VALID)
    assert rig.run_until(rig.outlined)
    meta = rig.get("/api/live")["frame"]
    assert (meta["width"], meta["height"]) == (1280, 720)
    assert meta["polygons"] == [[list(p) for p in QR_OUTLINE]]
    image = Image.open(io.BytesIO(rig.get("/frame.jpg")))
    assert (image.format, image.size) == ("JPEG", (640, 360))
    # The code is in the picture where the outline says: dark and light modules inside it.
    x0, y0 = QR_OUTLINE[0][0] // 2, QR_OUTLINE[0][1] // 2
    darkest, lightest = image.crop((x0, y0, x0 + 60, y0 + 60)).getextrema()
    assert darkest < 80 and lightest > 180


def test_frames_are_encoded_at_most_a_few_times_a_second() -> None:
    now = [0.0]
    shown = [(Image.new("L", (64, 48), 0), 0.0)]

    def source() -> Any:
        image, at = shown[-1]
        return np.asarray(image), at, ()

    cache = FrameCache(source, lambda: now[0], every_s=0.25)
    first = cache.current()
    assert first is not None and first.seq == 1
    shown.append((Image.new("L", (64, 48), 255), 0.1))
    now[0] = 0.1
    assert cache.current() is first  # a newer frame waits for its turn
    now[0] = 0.3
    second = cache.current()
    assert second is not None and second.seq == 2 and second.at == 0.1


def test_metrics_parse_and_name_the_lanes_families(rig: PageRig) -> None:
    assert rig.lane.run_truck(VALID).ok
    now = rig.lane.clock()
    rig.lane.agent.handle(CameraChanged(now, False, "unplugged"), now)
    status, headers, body = _status(rig.url("/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    latency = families["gatelane_decision_latency_seconds"]
    count = [s for s in latency.samples if s.name.endswith("_count")]
    assert count and count[0].labels == {"decision": "open"} and count[0].value == 1
    abnormal = {s.labels["code"]: s.value for s in families["gatelane_abnormalities"].samples
                if s.name.endswith("_total")}
    assert abnormal == {"lane.camera_lost": 1}
    up = {s.labels["device"]: s.value for s in families["gatelane_device_up"].samples}
    assert up == {"io_board": 1, "indicator": 1, "camera": 0, "broker": 0}
    for name in ("gatelane_outbox_events", "gatelane_outbox_oldest_age_seconds",
                 "gatelane_state_disk_free_bytes", "gatelane_broker_connects",
                 "gatelane_broker_losses", "gatelane_io_link_frames", "gatelane_camera_frames",
                 "gatelane_qr_reads", "gatelane_qr_decode_failures"):
        assert name in families, name
    assert families["gatelane_qr_reads"].samples[0].value == 1
    assert families["gatelane_outbox_events"].samples[0].value > 0

    status, headers, body = _status(
        rig.url("/metrics"), {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    open_families = {f.name: f for f in openmetrics_families(body.decode())}
    assert open_families["gatelane_decision_latency_seconds"].type == "histogram"
    assert open_families["gatelane_build"].type == "info"


def test_probes_answer_ok_or_503_with_the_reasons(rig: PageRig, tmp_path: Path) -> None:
    # The agent itself: attached but its loop not running yet.
    status, _headers, body = _status(rig.url("/readyz"))
    assert status == 503 and b"lane starting" in body
    board = StatusBoard(_config(tmp_path))
    server = serve_page("127.0.0.1:0", board, liveness=list,
                        readiness=lambda: ["io board link down", "outbox not open"])
    try:
        port = server.server_address[1]
        assert _status(f"http://127.0.0.1:{port}/healthz")[::2] == (200, b"ok\n")
        assert _status(f"http://127.0.0.1:{port}/readyz")[::2] == (
            503, b"io board link down\noutbox not open\n")
    finally:
        server.shutdown()
        server.server_close()


def test_with_a_token_every_request_needs_it(tmp_path: Path) -> None:
    rig = PageRig(tmp_path, token=TOKEN)
    try:
        for path in ("/", "/status", "/api/live", "/metrics", "/frame.jpg", "/healthz"):
            assert _status(rig.url(path))[0] == 401, path
        assert _status(rig.url("/status"), {"Authorization": "Bearer wrong-token-000000"}
                       )[0] == 401
        status, _headers, body = _status(rig.url("/status"),
                                         {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["lane"] == "exit-03"
        # A browser gets the login form; the right token sets an HttpOnly session cookie.
        status, _headers, body = _status(rig.url("/"), {"Accept": "text/html"})
        assert status == 401 and b'name="token"' in body
        assert _status(rig.url("/login"), data=b"token=nope")[0] == 401
        assert _status(rig.url("/login"), data=b"token=" + b"x" * 5000)[0] == 413
        status, headers, _body = _status(rig.url("/login"), data=f"token={TOKEN}".encode())
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        session = cookie.split(";")[0]
        assert _status(rig.url("/api/live"), {"Cookie": session})[0] == 200
        assert _status(rig.url("/api/live"), {"Cookie": session[:-1] + "0"})[0] == 401
    finally:
        rig.close()


def test_the_page_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    board = StatusBoard(_config(tmp_path))
    with pytest.raises(ConfigError, match=r"token_file"):
        serve_page("0.0.0.0:8787", board)
    with pytest.raises(ConfigError, match=r"expected host:port"):
        serve_page("8787", board)


def test_an_unusable_token_file_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"token_file.*cannot read it"):
        read_token(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match=r"at least 16 characters.*openssl rand"):
        read_token(short)
    good = tmp_path / "good"
    good.write_text(f"{TOKEN}\n")
    assert read_token(good) == TOKEN and read_token(None) is None


def test_only_the_pages_own_files_are_served(rig: PageRig) -> None:
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/etc/passwd",
                 "/static/vendor/uplot/../../../auth.py"):
        assert _status(rig.url(path))[0] == 404, path
    status, headers, body = _status(rig.url("/static/vendor/uplot/uPlot.iife.min.js"))
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"uPlot" in body
    page = rig.get("/")
    assert b"/static/page.js" in page and b"https://" not in page


def test_the_page_is_served_on_ipv6_loopback(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    server = serve_page("[::1]:0", StatusBoard(_config(tmp_path)))
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://[::1]:{port}/status", timeout=5) as response:
            assert json.loads(response.read())["lane"] == "exit-03"
    finally:
        server.shutdown()
        server.server_close()


def test_a_busy_port_is_a_device_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DeviceError, match=r"\[status\] listen"):
            serve_page(f"127.0.0.1:{port}", StatusBoard(_config(tmp_path)))


def _config(tmp_path: Path) -> Any:
    raw = {
        "lane": {"site": "BZ01", "lane": "exit-03", "gate": "G1"},
        "io_board": {"url": "/dev/null"},
        "weighbridge": {"url": "/dev/null"},
        "camera": {"source": "dir:///tmp"},
        "passes": {"trust_list": "trust.json"},
        "mqtt": {"broker": "mqtt://127.0.0.1:1", "lab": True},
    }
    return parse_config(raw, tmp_path / "agent.toml")
