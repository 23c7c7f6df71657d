"""``gatelane-backend``: run the site's backend services.

    gatelane-backend ingest --broker URL --store URL [--client-id ID] [--group G] [TLS]
    gatelane-backend prune --store URL --keep-days N

``ingest`` runs one worker of the shared subscription group until SIGTERM or Ctrl-C; start
as many as the load needs, each with its own client id (and certificate on a site broker).
``prune`` drops stored events older than the retention (whole day partitions on PostgreSQL).
Errors are one line on stderr and a non-zero exit; a person never sees a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from backend.errors import BackendError
from backend.ingest import IngestWorker
from backend.store_url import open_store
from edge_agent.errors import EdgeAgentError
from edge_agent.telemetry.mqtt import TlsFiles

USAGE_EXIT = 2
FAILED_EXIT = 1
STATUS_EVERY_S = 60.0
ACK_INTERVAL_S = 0.25


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gatelane-backend", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ingest = commands.add_parser(
        "ingest", help="store every lane's events and publish the acks (one worker)"
    )
    ingest.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    ingest.add_argument("--store", required=True,
                        help="postgresql://USER@HOST:PORT/DB, or a SQLite file path")
    ingest.add_argument("--client-id", default="ingest-1",
                        help="this worker's MQTT client id (its certificate's CN)")
    ingest.add_argument("--group", default="ingest",
                        help="the shared subscription group of every worker (default ingest)")
    ingest.add_argument("--ca", type=Path, help="CA file for an mqtts:// broker")
    ingest.add_argument("--cert", type=Path, help="this worker's client certificate")
    ingest.add_argument("--key", type=Path, help="this worker's private key")
    ingest.add_argument("--status-every", type=float, default=STATUS_EVERY_S, metavar="S",
                        help="print the worker's counters every S seconds (default 60)")
    prune = commands.add_parser("prune", help="drop stored events older than the retention")
    prune.add_argument("--store", required=True)
    prune.add_argument("--keep-days", type=int, required=True, metavar="N",
                       help="keep the last N days of events (N >= 1)")
    return parser


def _ingest(args: argparse.Namespace) -> int:
    tls = None
    if args.broker.startswith("mqtts://"):
        if not (args.ca and args.cert and args.key):
            raise BackendError("an mqtts:// broker needs --ca, --cert and --key")
        tls = TlsFiles(args.ca, args.cert, args.key)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Acks go out in rounds (each under the store's writer lock until the broker has them):
    # every quarter second keeps a lane's outbox moving without stalling the other workers.
    worker = IngestWorker(args.broker, store=args.store, client_id=args.client_id,
                          shared_group=args.group, tls=tls, ack_interval_s=ACK_INTERVAL_S)
    try:
        worker.start()
        print(f"ingest worker {args.client_id} ready", flush=True)
        while not stop.wait(args.status_every):
            print(json.dumps({"worker": args.client_id, **worker.stats()}), flush=True)
    finally:
        worker.close()
    print(json.dumps({"worker": args.client_id, "stopped": True, **worker.stats()}), flush=True)
    return 0


def _prune(args: argparse.Namespace) -> int:
    if args.keep_days < 1:
        raise BackendError(f"--keep-days {args.keep_days}: keep at least 1 day")
    store = open_store(args.store)
    try:
        dropped = store.prune(args.keep_days, time.time())
    finally:
        store.close()
    print(f"dropped {dropped} events older than {args.keep_days} days")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"ingest": _ingest, "prune": _prune}[args.command]
    try:
        return handler(args)
    except (BackendError, EdgeAgentError, OSError) as exc:
        print(f"gatelane-backend {args.command}: {exc}", file=sys.stderr)
        return FAILED_EXIT
