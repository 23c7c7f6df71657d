"""``python -m simulators.backend_cli``: one backend worker until a lane's events are in.

The telemetry benchmark runs it as a child process and reads its JSON report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from backend.ingest import IngestWorker
from edge_agent.telemetry.mqtt import TlsFiles


def main(argv: list[str] | None = None) -> int:
    """Run the backend until a lane's events are complete (or stall); print a JSON report.

    ``python -m simulators.backend_cli --broker URL --lane L --expect N [--idle-timeout S]``.
    Prints ``ready`` once subscribed. Latencies use the system-wide monotonic clock, which
    the envelope's ``mono_ms`` also uses when the producer runs on the same machine.
    """
    parser = argparse.ArgumentParser(prog="python -m simulators.backend_cli")
    parser.add_argument("--broker", required=True)
    parser.add_argument("--lane", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    parser.add_argument("--client-id", default="backend-sim")
    parser.add_argument("--ca", type=Path, help="CA file for an mqtts:// broker")
    parser.add_argument("--cert", type=Path, help="the backend's client certificate")
    parser.add_argument("--key", type=Path, help="the backend's private key")
    args = parser.parse_args(argv)
    tls = TlsFiles(args.ca, args.cert, args.key) if args.broker.startswith("mqtts://") else None
    backend = IngestWorker(args.broker, client_id=args.client_id, tls=tls)
    backend.start()
    print("ready", flush=True)
    last_count, last_change = -1, time.monotonic()
    while True:
        count = len(backend.events(args.lane))
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        if count >= args.expect or time.monotonic() - last_change > args.idle_timeout:
            break
        time.sleep(0.02)
    events = backend.events(args.lane)
    arrival = backend.arrival_times(args.lane)
    latencies = [arrival[e["seq"]] * 1000 - e["mono_ms"] for e in events if e["seq"] in arrival]
    report = {
        **backend.stats(),
        "lane_events": len(events),
        "seq_contiguous": [e["seq"] for e in events] == list(range(1, len(events) + 1)),
        "gaps": len(backend.gaps(args.lane)),
        "first_arrival": min(arrival.values(), default=None),
        "last_arrival": max(arrival.values(), default=None),
        "latencies_ms": latencies,
    }
    backend.close()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
