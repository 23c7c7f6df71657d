"""A telemetry-only lane for soak tests: fills the outbox up to a seq and drains it to a broker.

    python -m edge_agent.telemetry.loadgen --outbox PATH --broker mqtt://127.0.0.1:1883 \\
        --site S --lane L --until-seq 10000 [--rate 0] [--drain]

Runs may be killed at any moment and started again on the same outbox: production continues
from the outbox's next seq, so across any number of crashes exactly ``until-seq`` events are
accepted, and the publisher resends whatever the backend has not acknowledged.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edge_agent.telemetry.mqtt import ReconnectJitter
from edge_agent.telemetry.outbox import Outbox
from edge_agent.telemetry.publisher import Publisher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_agent.telemetry.loadgen")
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--site", default="site-1")
    parser.add_argument("--lane", default="lane-01")
    parser.add_argument("--until-seq", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s, 0 = as fast as possible")
    parser.add_argument("--drain", action="store_true", help="wait until the backend acked all")
    parser.add_argument("--resend-after", type=float, default=2.0)
    args = parser.parse_args(argv)

    outbox = Outbox(Path(args.outbox), site=args.site, lane=args.lane, agent_version="loadgen")
    publisher = Publisher(
        outbox,
        broker_url=args.broker,
        site=args.site,
        lane=args.lane,
        resend_after_s=args.resend_after,
        reconnect=ReconnectJitter(first_min_s=0.1, first_max_s=0.3, max_s=1.0),
    )
    publisher.start()
    started = time.monotonic()
    produced = 0
    while outbox.stats()["next_seq"] <= args.until_seq:
        now = time.monotonic()
        if args.rate > 0 and produced > (now - started) * args.rate:
            time.sleep(min(0.01, 1.0 / args.rate))
            continue
        outbox.add_event(
            "vehicle_passed",
            {"plate": "LOAD-GEN", "n": produced, "gross_kg": 31_240},
            transit_id=f"t-{produced}",
            mono_ms=int(now * 1000),
            wall_ms=int(time.time() * 1000),
            clock_synced=True,
        )
        publisher.wake()
        produced += 1
    print(f"produced {produced} (boot {outbox.boot_id})", flush=True)
    if args.drain:
        while publisher.status()["acked_upto"] < args.until_seq:
            time.sleep(0.02)
        print("drained", flush=True)
    publisher.stop()
    outbox.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
