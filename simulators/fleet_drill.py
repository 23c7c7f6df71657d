"""The fleet restart drill: 200 simulated lanes, two shared ingest workers on one store, and
a private Mosquitto restarted mid-run.

    python -m simulators.fleet_drill [--lanes 200] [--rate 1] [--jitter 1:30] [--crash]

prints the reconnect figures and whether the store holds every event once (exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from backend.ingest import IngestWorker
from edge_agent.telemetry.mqtt import ReconnectJitter
from simulators.broker import MosquittoBroker
from simulators.fleet import Fleet
from simulators.polling import wait_until

_CAP_S = ReconnectJitter().max_s  # the lane's default cap, unless the window reaches past it


def restart_drill(
    workdir: Path,
    *,
    lanes: int = 200,
    rate_hz: float = 1.0,
    jitter: ReconnectJitter | None = None,
    crash: bool = False,
    seed: int = 0,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Fleet + two shared ingest workers on a private Mosquitto, restarted mid-run: the
    reconnect figures and whether the shared store holds every event once."""
    db = workdir / "ingest.db"
    with MosquittoBroker(workdir=workdir / "broker") as broker:
        workers = [
            IngestWorker(broker.url, db_path=db, client_id=f"ingest-{n}", shared_group="ingest",
                       ack_interval_s=0.2)
            for n in (1, 2)
        ]
        fleet = Fleet(broker.url, lanes=lanes, rate_hz=rate_hz, jitter=jitter,
                      resend_after_s=3.0, seed=seed)
        try:
            for worker in workers:
                worker.start()
            fleet.start(timeout=timeout_s)
            wait_until(lambda: workers[0].stats()["stored"] >= lanes // 2, timeout_s)
            outage = time.monotonic()
            if crash:
                broker.kill()
                broker.start()
            else:
                broker.restart()
            wait_until(lambda: fleet.reconnect_report(outage).reconnected == lanes, timeout_s)
            fleet.stop_producing()
            drained = wait_until(lambda: fleet.unacked() == 0, timeout_s)
            drained_s = time.monotonic() - outage
        finally:
            fleet.stop()
            for worker in workers:
                worker.close()
    produced = fleet.produced()
    with sqlite3.connect(db) as store:
        rows = store.execute("SELECT lane, seq FROM events").fetchall()
    complete = sorted(rows) == sorted((lane, s) for lane, n in produced.items()
                                      for s in range(1, n + 1))
    return {
        **fleet.reconnect_report(outage).as_dict(),
        "restart": "sigkill" if crash else "sigterm",
        "rate_hz_per_lane": rate_hz,
        "events": sum(produced.values()),
        "stored_rows": len(rows),
        "stored_every_event_once": complete,
        "drained_s": round(drained_s, 3) if drained else None,
        **{key: value for key, value in fleet.stats().items() if key != "unacked"},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the restart drill and print its figures as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m simulators.fleet_drill")
    parser.add_argument("--lanes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1.0, help="events/s per lane")
    parser.add_argument("--jitter", default="1:30", help="first reconnect delay window MIN:MAX s")
    parser.add_argument("--crash", action="store_true", help="SIGKILL instead of SIGTERM")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    low, _, high = args.jitter.partition(":")
    try:
        jitter = ReconnectJitter(float(low), float(high), max(_CAP_S, float(high)))
    except ValueError as exc:
        parser.error(f"--jitter {args.jitter!r}: {exc}")
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        figures = restart_drill(Path(tmp), lanes=args.lanes, rate_hz=args.rate, jitter=jitter,
                                crash=args.crash, seed=args.seed, timeout_s=30.0 + jitter.max_s)
    print(json.dumps(figures), flush=True)
    return 0 if figures["stored_every_event_once"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
