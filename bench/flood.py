"""Flood section: the agent's memory and outbox under a 60 s flood of unsigned commands at full
speed, and the decision latency of valid trucks driven through the lane during it.

The whole simulated lane runs (``SimLane``: private Mosquitto, backend simulator, the IO-board
firmware in MicroPython, weighbridge, camera, the real ``edge-agent`` process). First two valid
trucks pass with no flood (the baseline, same run); then a thread with its own MQTT v5 client
publishes unsigned garbage on the lane's command topics (``cmd/config``, ``cmd/remote_release``)
as fast as the broker takes it: small JSON-ish commands with random ``cmd_id`` and 100 KB ones
(parsed by the agent: under its 256 KiB command limit), QoS 0 and 1. At most ``WINDOW``
messages are outstanding at the flooder (QoS 1 until PUBACK, QoS 0 until written), so "full
speed" is the broker's pace and the bench's own memory stays bounded. While it runs, the
agent's RSS and outbox files are sampled every second and valid trucks drive through.

Decision latency is the agent's input timestamp to the firmware's open-relay timestamp, both
taken on the board, so the flooder sharing this process's GIL with the harness does not enter
it. Every figure is printed next to its no-flood value; nothing is asserted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from bench.common import Sampler, rss_mb, truck_figures
from edge_agent.telemetry.mqtt import make_client, parse_broker_url
from edge_agent.telemetry.topics import LaneTopics
from simulators.harness import SimLane
from simulators.lane_sim import render_table
from simulators.outcomes import TruckOutcome
from simulators.polling import wait_until
from simulators.scenarios import DEMO, TruckPlan

FLOOD_S = 60.0
BASELINE_TRUCKS = 2
FLOOD_TRUCKS = 3  # at most; a truck starts only while the flood has time left for it
FLOOD_WARMUP_S = 3.0  # the flood is at full speed before the first truck drives on
SAMPLE_S = 1.0
WINDOW = 64  # messages outstanding at the flooder
LARGE_EVERY = 10  # every 10th message is the 100 KB one
LARGE_BYTES = 100 * 1024
HEALTH_WAIT_S = 20.0  # for a health report stamped after the flood (the agent reports every 30 s)
COMMANDS = ("config", "remote_release")
MEASURES = (  # printed side by side: label, key in both windows' figures, format
    ("decision latency median (ms)", "latency_ms_median", ".1f"),
    ("decision latency max (ms)", "latency_ms_max", ".1f"),
    ("agent RSS peak, 1 s samples (MB)", "agent_rss_mb_peak", ".1f"),
    ("agent RSS high-water, VmHWM (MB)", "agent_rss_mb_hwm", ".1f"),
    ("outbox size peak, db + wal (MB)", "outbox_mb_peak", ".2f"),
    ("outbox growth in the window (MB)", "outbox_mb_growth", ".2f"),
    ("broker RSS peak (MB)", "broker_rss_mb_peak", ".1f"),
)


def _valid_plans() -> list[TruckPlan]:
    """The demo's valid trucks, without the staged broker outage of one of them."""
    plans = [
        replace(p, broker_outage=False)
        for p in DEMO.trucks
        if p.pass_kind == "valid" and p.expect_decision == "open" and p.release is None
    ]
    if not plans:
        raise RuntimeError("the demo scenario has no valid truck")
    return plans


def _outbox_mb(state_dir: Path) -> float:
    total = 0
    for name in ("outbox.sqlite", "outbox.sqlite-wal"):
        with contextlib.suppress(OSError):
            total += (state_dir / name).stat().st_size
    return total / (1024 * 1024)


def _agent_pid(lane: SimLane) -> int | None:
    agent = lane._agent  # the harness keeps the agent's Popen private
    return agent.pid if agent is not None else None


def _sampler(lane: SimLane) -> Sampler:
    """Every ``SAMPLE_S``: the agent's RSS, its outbox files, the broker's RSS."""
    agent_pid = _agent_pid(lane)
    broker_pid: int | None = getattr(lane.broker, "pid", None)
    return Sampler(
        SAMPLE_S,
        agent_rss_mb=lambda: rss_mb(agent_pid),
        outbox_mb=lambda: _outbox_mb(lane.state_dir),
        broker_rss_mb=lambda: rss_mb(broker_pid),
    )


def _window(lane: SimLane, outcomes: list[TruckOutcome], sampler: Sampler) -> dict[str, Any]:
    """The trucks of a window just ended and what ``sampler`` saw of the agent and broker
    meanwhile, with the agent's high-water RSS (VmHWM) since it started."""
    outbox = sampler.values("outbox_mb")

    def peak(key: str) -> float | None:
        values = sampler.values(key)
        return round(max(values), 2) if values else None

    return {
        **truck_figures(outcomes, "latency_ms"),
        "decisions": [o.decision for o in outcomes],
        "all_open": all(o.decision == "open" for o in outcomes),
        "problems": {o.name: o.problems for o in outcomes if o.problems},
        "agent_rss_mb_peak": peak("agent_rss_mb"),
        "agent_rss_mb_hwm": rss_mb(_agent_pid(lane), "VmHWM"),
        "outbox_mb_peak": peak("outbox_mb"),
        # what the window added: the peak over the first sample
        "outbox_mb_growth": round(max(outbox) - outbox[0], 2) if outbox else None,
        "broker_rss_mb_peak": peak("broker_rss_mb"),
    }


class _Flood:
    """A thread publishing unsigned garbage commands as fast as the broker takes them."""

    def __init__(self, broker_url: str, site: str, lane: str, *, seed: int = 7) -> None:
        topics = LaneTopics(site, lane)
        self._topics = [topics.command(name) for name in COMMANDS]
        self._site, self._lane = site, lane
        self._rng = random.Random(seed)
        self._pad = "x" * LARGE_BYTES
        self._connected = threading.Event()
        self._closing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = {"sent": 0, "small": 0, "large": 0, "qos0": 0, "qos1": 0, "bytes": 0,
                       "confirmed": 0, "not_queued": 0, "stalls": 0, "disconnects": 0}
        self.seconds = 0.0
        self.error: str | None = None
        self._address = parse_broker_url(broker_url)
        self._client: Client = make_client("bench-flood", self._address)
        self._client.on_connect = self._cb_connect
        self._client.on_disconnect = self._cb_disconnect

    # -- life ------------------------------------------------------------------------------
    def __enter__(self) -> _Flood:
        self._client.connect_async(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(10.0):
            self.close()
            raise RuntimeError("flood client could not connect to the lane's broker")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, duration_s: float) -> None:
        self._thread = threading.Thread(
            target=self._guarded, args=(duration_s,), name="flood", daemon=True
        )
        self._thread.start()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self._stop.set()
        self.join(10.0)
        self._closing = True  # our own disconnect is not one to report
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks --------------------------------------------------------------------
    def _cb_connect(
        self, client: Client, userdata: Any, flags: ConnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        if not rc.is_failure:
            self._connected.set()

    def _cb_disconnect(
        self, client: Client, userdata: Any, flags: DisconnectFlags, rc: ReasonCode, props: Any
    ) -> None:
        self._connected.clear()
        if not self._closing:
            self.counts["disconnects"] += 1

    # -- the flood -------------------------------------------------------------------------
    def _guarded(self, duration_s: float) -> None:
        try:
            self._run(duration_s)
        except Exception as exc:  # reported with the figures; the lane is still cleaned up
            self.error = repr(exc)

    def _run(self, duration_s: float) -> None:
        outstanding: deque[MQTTMessageInfo] = deque()
        counts = self.counts
        started = time.monotonic()
        deadline = started + duration_s
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            if len(outstanding) >= WINDOW:
                self._settle(outstanding.popleft())
                continue
            if not self._connected.is_set():
                self._connected.wait(0.1)
                continue
            large = n % LARGE_EVERY == LARGE_EVERY - 1
            qos = self._rng.choice((0, 1))
            payload = self._payload(large=large)
            info = self._client.publish(self._topics[n % len(self._topics)], payload, qos=qos)
            n += 1
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                counts["not_queued"] += 1
                continue
            outstanding.append(info)
            counts["sent"] += 1
            counts["large" if large else "small"] += 1
            counts[f"qos{qos}"] += 1
            counts["bytes"] += len(payload)
        self.seconds = time.monotonic() - started
        while outstanding:
            self._settle(outstanding.popleft(), timeout=1.0)

    def _settle(self, info: MQTTMessageInfo, timeout: float = 2.0) -> None:
        with contextlib.suppress(RuntimeError, ValueError):  # not queued: counted as a stall
            info.wait_for_publish(timeout)
        if info.is_published():
            self.counts["confirmed"] += 1
        else:
            self.counts["stalls"] += 1

    def _payload(self, *, large: bool) -> bytes:
        """Unsigned: a zero or random signature, or no JSON at all; always a random cmd_id."""
        rng = self._rng
        now = int(time.time())
        claims: dict[str, Any] = {
            "cmd_id": f"flood-{rng.getrandbits(64):016x}",
            "name": rng.choice(COMMANDS),
            "site": self._site,
            "lane": self._lane,
            "iat": now,
            "exp": now + 60,
            "nonce": f"{rng.getrandbits(64):016x}",
            "issuer": "flood",
            "args": {"challenge": f"{rng.getrandbits(128):032x}"},
        }
        if large:
            claims["args"]["pad"] = self._pad
        sig = base64.urlsafe_b64encode(rng.randbytes(64)).rstrip(b"=").decode()
        kid = rng.choice(("officer-console", "site-root", "intruder"))
        text = json.dumps({"claims": claims, "kid": kid, "sig": sig})
        if not large and rng.random() < 0.25:
            text = text[: rng.randrange(10, len(text))]  # truncated: not JSON
        return text.encode()


def _cmd_results(lane: SimLane) -> list[dict[str, Any]]:
    return [e for e in lane.backend.events(lane.scenario.lane) if e.get("type") == "cmd_result"]


def _latest_health(lane: SimLane, after_mono_s: float, wait_s: float) -> dict[str, Any] | None:
    """The agent's newest health report, waiting up to ``wait_s`` for one stamped after
    ``after_mono_s``; the newest one received otherwise."""
    lane_id = lane.scenario.lane

    def fresh() -> list[dict[str, Any]]:
        reports = lane.backend.health(lane_id)
        return [h for h in reports if h.get("mono_ms", 0) / 1000.0 >= after_mono_s]

    wait_until(lambda: bool(fresh()), wait_s, every=0.25)
    chosen = fresh() or lane.backend.health(lane_id)
    return chosen[-1] if chosen else None


def _health_counters(report: dict[str, Any] | None, flood_end: float) -> dict[str, Any]:
    if report is None:
        return {}
    data = report.get("data", {})
    outbox = data.get("outbox", {})
    return {
        "stamped_after_flood_end_s": round(report.get("mono_ms", 0) / 1000.0 - flood_end, 1),
        "inbox_dropped": data.get("inbox_dropped"),
        "commands_unreported": data.get("commands_unreported"),
        "faults": data.get("faults"),
        "storage": data.get("storage"),
        "outbox_events": outbox.get("events"),
        "outbox_bytes": outbox.get("bytes"),
        "outbox_disk_alarm": outbox.get("disk_alarm"),
        "state": data.get("state"),
    }


def _status(lane: SimLane) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        document = lane.status()
    except OSError as exc:
        return {"error": repr(exc)}
    return {
        "state": document.get("state"),
        "uptime_s": document.get("uptime_s"),
        "answer_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }


def _ratio(during: float | None, before: float | None) -> str:
    if during is None or before is None or before == 0:
        return "-"
    return f"{during / before:.2f}x"


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _run_lane(lane: SimLane) -> dict[str, Any]:
    plans = _valid_plans()
    site, lane_id = lane.scenario.site, lane.scenario.lane

    with _sampler(lane) as before:
        baseline = [
            lane.run_truck(replace(plans[i % len(plans)], name=f"calm-{i + 1}"))
            for i in range(BASELINE_TRUCKS)
        ]
    calm = _window(lane, baseline, before)
    results_before = len(_cmd_results(lane))

    flooder = _Flood(lane.broker.url, site, lane_id)
    during: list[TruckOutcome] = []
    typical_s = max((o.seconds for o in baseline), default=15.0)
    with flooder, _sampler(lane) as sampler:
        flood_started = time.monotonic()
        flooder.start(FLOOD_S)
        time.sleep(FLOOD_WARMUP_S)
        for i in range(FLOOD_TRUCKS):
            left = flood_started + FLOOD_S - time.monotonic()
            if not flooder.running() or (i >= 2 and left < 1.5 * typical_s) or left < 5.0:
                break
            during.append(lane.run_truck(replace(plans[i % len(plans)], name=f"flood-{i + 1}")))
        status_during = _status(lane)
        flooder.join(max(0.0, flood_started + FLOOD_S - time.monotonic()) + 15.0)
        flood_end = time.monotonic()
    flood = {**_window(lane, during, sampler), "samples": sampler.samples}
    health = _latest_health(lane, flood_end, HEALTH_WAIT_S)
    status_after = _status(lane)
    refusals = _cmd_results(lane)[results_before:]
    codes = Counter(str(event.get("data", {}).get("code")) for event in refusals)

    print(render_table(baseline + during))
    counts = dict(flooder.counts)
    seconds = flooder.seconds or FLOOD_S
    return {
        "flood_s": round(seconds, 1),
        "no_flood": calm,
        "during_flood": flood,
        "flood_messages": counts,
        "flood_messages_per_s": round(counts["sent"] / seconds),
        "flood_mb_per_s": round(counts["bytes"] / seconds / (1024 * 1024), 1),
        "flood_error": flooder.error,
        "cmd_results_stored": len(refusals),
        "cmd_result_codes": dict(codes),
        "agent_health": _health_counters(health, flood_end),
        "agent_status_during": status_during,
        "agent_status_after": status_after,
        "agent_alive": lane.agent_alive(),
    }


def _print(section: dict[str, Any]) -> None:
    calm, flood = section["no_flood"], section["during_flood"]
    print(f"\n{'measure':34} {'no flood':>10} {'during flood':>13} {'ratio':>7}")
    for label, key, spec in MEASURES:
        before, during = calm[key], flood[key]
        print(f"{label:34} {_fmt(before, spec):>10} {_fmt(during, spec):>13} "
              f"{_ratio(during, before):>7}")
    print(f"{'trucks (decisions)':34} {'/'.join(calm['decisions']) or '-':>10} "
          f"{'/'.join(flood['decisions']) or '-':>13}")
    counts = section["flood_messages"]
    print(f"\nflood: {counts['sent']} messages in {section['flood_s']} s "
          f"({section['flood_messages_per_s']}/s, {section['flood_mb_per_s']} MB/s; "
          f"{counts['small']} small, {counts['large']} of 100 KB; "
          f"QoS0 {counts['qos0']}, QoS1 {counts['qos1']}; confirmed {counts['confirmed']}, "
          f"stalled {counts['stalls']}, disconnects {counts['disconnects']})")
    if section["flood_error"]:
        print(f"flood thread error: {section['flood_error']}")
    print(f"cmd_result events stored by the backend for the flood: "
          f"{section['cmd_results_stored']} {section['cmd_result_codes']}")
    health = section["agent_health"]
    if health:
        print(f"agent health (report stamped {health['stamped_after_flood_end_s']} s after the "
              "flood ended): "
              f"inbox_dropped {health['inbox_dropped']}, commands_unreported "
              f"{health['commands_unreported']}, faults {health['faults']}, outbox "
              f"{health['outbox_events']} events / {health['outbox_bytes']} B, "
              f"storage ok {(health['storage'] or {}).get('ok')}")
    else:
        print("agent health: no report received")
    print(f"agent status during flood {section['agent_status_during']}, "
          f"after {section['agent_status_after']}; alive {section['agent_alive']}")
    if not flood["all_open"] or flood["problems"]:
        print(f"NOTE: valid trucks during the flood not opened as expected: "
              f"decisions {flood['decisions']}, problems {flood['problems']}")
    if not calm["all_open"] or calm["problems"]:
        print(f"NOTE: baseline trucks not as expected: {calm['problems']}")


def run(results: dict[str, Any]) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="gatelane-bench-flood-") as tmp,
        SimLane(DEMO, workdir=Path(tmp), log=lambda _line: None) as lane,
    ):
        section = _run_lane(lane)
    results["flood"] = section
    _print(section)
