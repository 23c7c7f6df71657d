"""Backend section: the reference backend's ingest workers storing a fleet into PostgreSQL.

Everything runs on this machine: a private Mosquitto, a private PostgreSQL (Debian's server,
``backend/pgserver.py``), N ingest workers as processes of their own (``python -m backend
ingest``, one shared subscription group), and the simulated fleet (``simulators/fleet.py``,
200 lanes in one process). Latency is the lane's view: from an event's first publish to the
retained ack that covers it, which the backend publishes only after the commit.

- fleet: 200 lanes at a busy hour's rate (a truck a minute per lane and its ~8 events, plus
  health: ``FLEET_RATE_HZ`` events/s each) for ``FLEET_S`` seconds, 2 workers;
- backlog: 30,000 events offered at once (150 per lane, as after a site-wide outage), drained
  with 2 and then 4 workers: events/s to the last ack.

Each run checks the store holds every produced (lane, seq) exactly once.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from backend.pgserver import PgServer
from backend.store_url import open_store
from simulators.broker import MosquittoBroker
from simulators.fleet import Fleet
from simulators.polling import wait_until

LANES = 200
FLEET_RATE_HZ = 0.2
FLEET_S = 30.0
BACKLOG = 30_000
BACKLOG_RATE_HZ = 200.0  # per lane: the whole backlog is offered within a second
TIMEOUT_S = 300.0


def _workers(stack: ExitStack, broker_url: str, store_url: str, count: int) -> None:
    """Start ``count`` ingest worker processes; return once each says it is ready."""
    for n in range(1, count + 1):
        process = subprocess.Popen(
            [sys.executable, "-m", "backend", "ingest", "--broker", broker_url,
             "--store", store_url, "--client-id", f"bench-ingest-{n}", "--group", "bench",
             "--status-every", "3600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        stack.callback(_stop, process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"ingest worker {n} did not start: {line or process.stderr}")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(15.0)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _exactly_once(store_url: str, produced: dict[str, int]) -> tuple[int, int, int]:
    """(stored rows, lost, duplicated) against what the fleet produced."""
    store = open_store(store_url)
    try:
        rows = [(e["lane"], e["seq"]) for e in store.events()]
    finally:
        store.close()
    wanted = {(lane, seq) for lane, n in produced.items() for seq in range(1, n + 1)}
    return len(rows), len(wanted - set(rows)), len(rows) - len(set(rows))


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)


def _run(
    workdir: Path, *, workers: int, rate_hz: float, events_per_lane: int | None,
    duration_s: float | None,
) -> dict[str, Any]:
    with ExitStack() as stack:
        broker = stack.enter_context(MosquittoBroker(workdir=workdir / "broker"))
        pg = stack.enter_context(PgServer(workdir / "pg"))
        _workers(stack, broker.url, pg.url, workers)
        fleet = Fleet(broker.url, lanes=LANES, rate_hz=rate_hz, resend_after_s=30.0, seed=7,
                      events_per_lane=events_per_lane)
        stack.callback(fleet.stop)
        fleet.start(timeout=60.0)
        started = time.monotonic()
        if duration_s is not None:
            time.sleep(duration_s)
        else:
            wait_until(lambda: sum(fleet.produced().values()) >= LANES * (events_per_lane or 0),
                       TIMEOUT_S)
        fleet.stop_producing()
        drained = wait_until(lambda: fleet.unacked() == 0, TIMEOUT_S)
        elapsed = time.monotonic() - started
        produced = fleet.produced()
        latencies = fleet.ack_latencies()
        stats = fleet.stats()
        fleet.stop()
        stored, lost, duplicated = _exactly_once(pg.url, produced)
    total = sum(produced.values())
    return {
        "workers": workers,
        "events": total,
        "events_per_s": round(total / elapsed, 1) if drained else None,
        "commit_latency_ms": {"p50": _percentile(latencies, 0.5),
                              "p99": _percentile(latencies, 0.99),
                              "mean": round(statistics.fmean(latencies) * 1000, 1)
                              if latencies else None},
        "stored": stored, "lost": lost, "duplicated": duplicated,
        "resent": stats["resent"], "drained": drained,
    }


def run(results: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        root = Path(tmp)
        figures: dict[str, Any] = {
            "fleet": _run(root / "fleet", workers=2, rate_hz=FLEET_RATE_HZ,
                          events_per_lane=None, duration_s=FLEET_S),
            "backlog": [
                _run(root / f"backlog-{n}", workers=n, rate_hz=BACKLOG_RATE_HZ,
                     events_per_lane=BACKLOG // LANES, duration_s=None)
                for n in (2, 4)
            ],
        }
    results["backend"] = figures
    fleet = figures["fleet"]
    print(f"{'backend into PostgreSQL':34} {'workers':>7} {'events':>7} {'events/s':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'lost':>5} {'dup':>4}")
    rows = [(f"fleet {LANES} lanes x {FLEET_RATE_HZ} ev/s", fleet)] + [
        (f"backlog {BACKLOG:,}", run) for run in figures["backlog"]
    ]
    for label, row in rows:
        latency = row["commit_latency_ms"]
        print(f"{label:34} {row['workers']:>7} {row['events']:>7} {row['events_per_s']!s:>9} "
              f"{latency['p50']!s:>7} {latency['p99']!s:>7} {row['lost']:>5} "
              f"{row['duplicated']:>4}")
    two, four = figures["backlog"]
    if two["events_per_s"] and four["events_per_s"]:
        print(f"4 workers / 2 workers: {four['events_per_s'] / two['events_per_s']:.2f}x")
