"""Telemetry section: draining a 30,000-event backlog through the outbox vs a naive paho loop,
end-to-end latency while online, and the agent's memory during the drain.

Everything runs against one private Mosquitto (defaults, as shipped) on loopback. The backend
simulator runs as its own process, as the real backend is another machine; it stamps arrival
with the system-wide monotonic clock, which the envelope's ``mono_ms`` also uses.

- outbox drain: the backlog is committed while no publisher runs (the broker outage case),
  then the publisher starts; the time is until the backend's ack watermark covers every seq,
  i.e. stored, not merely PUBACKed.
- naive paho: ``publish(qos=1)`` of the same number of messages in a loop, timed until the
  last PUBACK; the backend then reports how many it actually received (Mosquitto drops
  what exceeds a subscriber's queue, ``max_queued_messages`` 1000, after PUBACKing it).
- fleet restart: 200 simulated lanes and two shared ingest workers; the broker restarts
  mid-run; how spread out the lanes' first reconnect attempts are, with a jittered window
  and with the narrow 1-2 s floor, and whether the store holds every event once.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Sampler, rss_mb
from edge_agent.telemetry.envelope import build_envelope, encode, uuid7
from edge_agent.telemetry.mqtt import ReconnectJitter, make_client, parse_broker_url
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher
from edge_agent.telemetry.topics import LaneTopics
from simulators.broker import FaultProxy, MosquittoBroker
from simulators.fleet_drill import restart_drill

BACKLOG = 30_000
LATENCY_EVENTS = 1_000
LATENCY_RATE_HZ = 200.0
TARGET_DRAIN_PER_S = 2_000.0
KEEPALIVE_S = 5
SITE = "bench"
FLEET_LANES = 200
FLEET_JITTERED = ReconnectJitter(first_min_s=0.5, first_max_s=10.0, max_s=20.0)
FLEET_NARROW = ReconnectJitter(first_min_s=1.0, first_max_s=2.0, max_s=60.0)
DATA = {"plate": "AB-123-CD", "gross_kg": 31_240, "decision": "ok", "pass": "R-2024-000123"}


class _Backend:
    """The backend simulator in a child process, reporting when the lane is complete."""

    def __init__(self, url: str, lane: str, expect: int, idle_timeout: float = 5.0) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "simulators.backend_cli", "--broker", url, "--lane", lane,
             "--expect", str(expect), "--idle-timeout", str(idle_timeout),
             "--client-id", f"bench-backend-{lane}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("backend simulator did not start")

    def report(self, timeout: float = 300.0) -> dict[str, Any]:
        out, _ = self._process.communicate(timeout=timeout)
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "max": round(ordered[-1], 2),
    }


def _outbox_drain(broker: MosquittoBroker, workdir: Path) -> dict[str, Any]:
    lane = "drain-outbox"
    outbox = Outbox(workdir / "drain.db", site=SITE, lane=lane, agent_version="bench")
    started = time.perf_counter()
    for n in range(BACKLOG):
        outbox.add_event(
            "vehicle_passed", {**DATA, "n": n}, transit_id=f"t-{n}",
            mono_ms=int(time.monotonic() * 1000), wall_ms=int(time.time() * 1000),
            clock_synced=True,
        )
    commit_rate = BACKLOG / (time.perf_counter() - started)
    backend = _Backend(broker.url, lane, BACKLOG)
    rss_before = rss_mb() or 0.0
    publisher = Publisher(outbox, broker_url=broker.url, site=SITE, lane=lane)
    with Sampler(0.1, rss_mb=rss_mb) as rss:
        started = time.perf_counter()
        publisher.start()
        deadline = started + 300
        while publisher.status()["acked_upto"] < BACKLOG and time.perf_counter() < deadline:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
    status = publisher.status()
    publisher.stop()
    outbox.close()
    report = backend.report()
    return {
        "events": BACKLOG,
        "outbox_commits_per_s": round(commit_rate),
        "drain_s": round(elapsed, 2),
        "events_per_s": round(BACKLOG / elapsed),
        "stored_by_backend": report["lane_events"],
        "seq_contiguous": report["seq_contiguous"],
        "duplicates_at_backend": report["duplicates"],
        "resent": status["resent"],
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_peak": round(max(rss.values("rss_mb"), default=rss_before), 1),
        "target_events_per_s": TARGET_DRAIN_PER_S,
        "target_met": BACKLOG / elapsed >= TARGET_DRAIN_PER_S and report["seq_contiguous"],
    }


def _naive_paho(broker: MosquittoBroker) -> dict[str, Any]:
    lane = "drain-naive"
    topics = LaneTopics(SITE, lane)
    backend = _Backend(broker.url, lane, BACKLOG, idle_timeout=3.0)
    address = parse_broker_url(broker.url)
    client = make_client(lane, address)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *args: acked.release()
    client.connect(address.host, address.port)
    client.loop_start()
    payloads = [
        encode(build_envelope(
            event_id=uuid7(int(time.time() * 1000)), site=SITE, lane=lane, seq=n + 1, boot_id=1,
            type="vehicle_passed", wall_ms=int(time.time() * 1000),
            mono_ms=int(time.monotonic() * 1000), clock_synced=True, clock_source="system",
            transit_id=f"t-{n}", agent_version="naive", data={**DATA, "n": n},
        ))
        for n in range(BACKLOG)
    ]
    rss_before = rss_mb() or 0.0
    with Sampler(0.1, rss_mb=rss_mb) as rss:
        started = time.perf_counter()
        for payload in payloads:
            client.publish(topics.event("vehicle_passed"), payload, qos=1)
        for _ in range(BACKLOG):
            if not acked.acquire(timeout=60):
                break
        elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    report = backend.report()
    return {
        "events": BACKLOG,
        "pubacked_s": round(elapsed, 2),
        "pubacks_per_s": round(BACKLOG / elapsed),
        "stored_by_backend": report["lane_events"],
        "lost_after_puback": BACKLOG - report["lane_events"],
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_peak": round(max(rss.values("rss_mb"), default=rss_before), 1),
    }


def _latency_online(broker: MosquittoBroker, workdir: Path) -> dict[str, Any]:
    lane = "latency"
    backend = _Backend(broker.url, lane, LATENCY_EVENTS)
    outbox = Outbox(workdir / "latency.db", site=SITE, lane=lane, agent_version="bench")
    publisher = Publisher(outbox, broker_url=broker.url, site=SITE, lane=lane)
    publisher.start()
    deadline = time.monotonic() + 30
    while not publisher.status()["connected"] and time.monotonic() < deadline:
        time.sleep(0.01)
    produced: dict[int, float] = {}
    acked_after: list[float] = []
    done = threading.Event()

    def watch_acks() -> None:
        seen = 0
        while seen < LATENCY_EVENTS and not done.is_set():
            upto = publisher.status()["acked_upto"]
            now = time.monotonic()
            acked_after.extend((now - produced[s]) * 1000 for s in range(seen + 1, upto + 1))
            seen = max(seen, upto)
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch_acks, daemon=True)
    watcher.start()
    start = time.monotonic()
    for n in range(LATENCY_EVENTS):
        time.sleep(max(0.0, start + n / LATENCY_RATE_HZ - time.monotonic()))
        now = time.monotonic()
        envelope = outbox.add_event(
            "vehicle_passed", {**DATA, "n": n}, transit_id=None, mono_ms=int(now * 1000),
            wall_ms=int(time.time() * 1000), clock_synced=True,
        )
        if envelope is None:  # only a sheddable event may be refused for space
            raise RuntimeError("the outbox refused an event that matters")
        produced[envelope["seq"]] = now
        publisher.wake()
    watcher.join(30)
    done.set()
    publisher.stop()
    outbox.close()
    report = backend.report()
    return {
        "events": LATENCY_EVENTS,
        "rate_hz": LATENCY_RATE_HZ,
        "to_backend_ms": _percentiles(report["latencies_ms"]),
        "to_ack_at_lane_ms": _percentiles(acked_after),
        "stored_by_backend": report["lane_events"],
    }


def _silent_drop(broker: MosquittoBroker, workdir: Path, *, traffic: bool) -> float | None:
    """Seconds from a silent blackhole to the publisher noticing (None: not within 6 x K)."""
    lane = "drop-traffic" if traffic else "drop-idle"
    proxy = FaultProxy(broker.port)
    outbox = Outbox(workdir / f"{lane}.db", site=SITE, lane=lane, agent_version="bench")
    publisher = Publisher(
        outbox, broker_url=proxy.url, site=SITE, lane=lane, keepalive_s=KEEPALIVE_S
    )
    publisher.start()
    try:
        deadline = time.monotonic() + 10
        while not publisher.status()["connected"] and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(KEEPALIVE_S * 0.3)  # drop at an arbitrary point of the keepalive cycle
        proxy.set_mode("blackhole")
        dropped_at = time.monotonic()
        give_up = dropped_at + 6 * KEEPALIVE_S
        while publisher.status()["connected"] and time.monotonic() < give_up:
            if traffic:  # a lane keeps producing: 10 events/s
                outbox.add_event(
                    "vehicle_passed", DATA, transit_id=None, mono_ms=0,
                    wall_ms=int(time.time() * 1000), clock_synced=True,
                )
                publisher.wake()
            time.sleep(0.1)
        detected = time.monotonic() - dropped_at
        return None if publisher.status()["connected"] else round(detected, 2)
    finally:
        proxy.close()
        publisher.stop(timeout=1.0)
        outbox.close()


def run(results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp, MosquittoBroker(
        workdir=Path(tmp) / "broker"
    ) as broker:
        figures = {
            "outbox_drain": _outbox_drain(broker, Path(tmp)),
            "naive_paho": _naive_paho(broker),
            "latency_online": _latency_online(broker, Path(tmp)),
            "silent_drop": {
                "keepalive_s": KEEPALIVE_S,
                "target_s": 1.5 * KEEPALIVE_S + 1,
                "detected_with_traffic_s": _silent_drop(broker, Path(tmp), traffic=True),
                "detected_idle_s": _silent_drop(broker, Path(tmp), traffic=False),
            },
        }
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        figures["fleet_restart"] = {
            name: restart_drill(Path(tmp) / name, lanes=FLEET_LANES, jitter=jitter, seed=1)
            for name, jitter in (("jittered", FLEET_JITTERED), ("narrow", FLEET_NARROW))
        }
    results["telemetry"] = figures
    drain, naive = figures["outbox_drain"], figures["naive_paho"]
    latency = figures["latency_online"]
    print(f"{'telemetry (30,000-event backlog)':36} {'events/s':>9} {'stored':>7} "
          f"{'lost':>6} {'RSS peak MB':>12}")
    print(f"{'outbox + publisher (to backend ack)':36} {drain['events_per_s']:>9} "
          f"{drain['stored_by_backend']:>7} {BACKLOG - drain['stored_by_backend']:>6} "
          f"{drain['rss_mb_peak']:>12}")
    print(f"{'naive paho loop (to PUBACK)':36} {naive['pubacks_per_s']:>9} "
          f"{naive['stored_by_backend']:>7} {naive['lost_after_puback']:>6} "
          f"{naive['rss_mb_peak']:>12}")
    print(f"target drain >= {TARGET_DRAIN_PER_S:.0f} events/s: "
          f"{'met' if drain['target_met'] else 'NOT met'}; outbox commits/s "
          f"{drain['outbox_commits_per_s']}")
    to_backend, to_ack = latency["to_backend_ms"], latency["to_ack_at_lane_ms"]
    print(f"online latency at {LATENCY_RATE_HZ:.0f} events/s: to backend p50 "
          f"{to_backend.get('p50')} ms p99 {to_backend.get('p99')} ms; ack back at the lane "
          f"p50 {to_ack.get('p50')} ms p99 {to_ack.get('p99')} ms")
    drop = figures["silent_drop"]
    print(f"silent drop (keepalive {KEEPALIVE_S} s, target <= {drop['target_s']} s): detected "
          f"after {drop['detected_with_traffic_s']} s with traffic, "
          f"{drop['detected_idle_s']} s idle")
    print(f"fleet of {FLEET_LANES} lanes, broker restarted: first reconnects spread / busiest 1 s "
          "/ all back / stored once")
    for name, fleet in figures["fleet_restart"].items():
        window = FLEET_JITTERED if name == "jittered" else FLEET_NARROW
        print(f"  window {window.first_min_s}-{window.first_max_s} s: "
              f"{fleet['first_attempt_spread_s']} s / {fleet['busiest_1s_window']} lanes / "
              f"{fleet['all_reconnected_s']} s / {fleet['stored_every_event_once']}")
