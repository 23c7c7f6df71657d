"""``lanectl site``: a site's security material (CA, certificates, ACL, CRL, command keys).

    lanectl site init --site S --lanes exit-01,exit-02 --out DIR [--broker-host H]
                      [--broker-port 8883] [--days N] [--ingest-workers 2]
                      [--broker-dir PATH] [--force]
    lanectl site issue --dir DIR (--cn NAME | --ingest-worker) [--days N]
                      (re-)issue a lane's or ingest worker's certificate; a new name adds it
    lanectl site revoke --dir DIR --cn NAME               revoke it and rewrite the CRL
    lanectl site crl --dir DIR [--days N]                 re-sign the CRL before it expires

Each prints one JSON object. Exit codes: 0 done, 2 bad arguments or files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from host_tools import site_init
from host_tools.errors import SiteError, fail

RELOAD_CRL = "copy the CRL to the broker and send it SIGHUP"
RELOAD_ACL = "copy the ACL to the broker and send it SIGHUP (it re-reads the ACL)"


def _init(args: argparse.Namespace) -> int:
    lanes = [lane.strip() for lane in args.lanes.split(",") if lane.strip()]
    out = Path(args.out)
    try:
        doc = site_init.init_site(
            out,
            site=args.site,
            lanes=lanes,
            broker_host=args.broker_host,
            broker_port=args.broker_port,
            days=args.days,
            ingest_workers=args.ingest_workers,
            broker_dir=Path(args.broker_dir) if args.broker_dir else None,
            force=args.force,
        )
    except (SiteError, OSError) as exc:
        return fail("site", str(exc))
    out = out.resolve()
    keys = {entry["kid"]: {"role": entry["role"], "key": str(out / entry["file"])}
            for entry in doc["command_keys"]}
    root_keys = [str(out / e["file"]) for e in doc["command_keys"] if e["role"] == "root"]
    print(json.dumps({
        "site": doc["site"],
        "dir": str(out),
        "lanes": {lane: str(out / "lanes" / lane) for lane in doc["lanes"]},
        "backend": str(out / "backend"),
        "ingest_workers": doc["ingest_workers"],
        "broker_config": str(out / "broker" / "mosquitto.conf"),
        "command_keys": keys,
        "secret": [str(out / "ca" / "ca.key"), *(v["key"] for v in keys.values())],
        "keep_offline": [str(out / "ca" / "ca.key"), *root_keys],
    }))
    return 0


def _issue(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    try:
        cn = site_init.next_ingest_worker(folder) if args.ingest_worker else args.cn
        issued = site_init.issue(folder, cn, days=args.days)
    except (SiteError, OSError) as exc:
        return fail("site", str(exc))
    report: dict[str, Any] = {
        "cn": issued.cn,
        "kind": "ingest_worker" if issued.ingest_worker else "lane",
        "cert": str(issued.cert),
    }
    if issued.acl_rewritten:
        report.update(acl=str(folder.resolve() / "broker" / "acl"), next=RELOAD_ACL)
    print(json.dumps(report))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        serials = site_init.revoke(Path(args.dir), args.cn)
    except (SiteError, OSError) as exc:
        return fail("site", str(exc))
    crl = Path(args.dir).resolve() / "broker" / "crl.pem"
    print(json.dumps({"cn": args.cn, "revoked_serials": serials, "crl": str(crl),
                      "next": RELOAD_CRL}))
    return 0


def _crl(args: argparse.Namespace) -> int:
    try:
        next_update = site_init.refresh_crl(Path(args.dir), days=args.days)
    except (SiteError, OSError) as exc:
        return fail("site", str(exc))
    crl = Path(args.dir).resolve() / "broker" / "crl.pem"
    print(json.dumps({"crl": str(crl), "next_update": next_update.isoformat(),
                      "next": RELOAD_CRL}))
    return 0


def _positive(what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be at least 1")
        return value

    return parse


_days = _positive("--days")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "site", help="make a site's TLS certificates, ACL, command keys and configs"
    )
    sub = parser.add_subparsers(dest="site_command", metavar="ACTION", required=True)

    p = sub.add_parser("init", help="create the CA, certificates, broker config, ACL, command "
                                    "keys, agent TOMLs")
    p.add_argument("--site", required=True, help="site code (a topic level)")
    p.add_argument("--lanes", required=True, help="comma-separated lane ids, e.g. exit-01,exit-02")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--broker-host", default="localhost", help="name the lanes use for the broker")
    p.add_argument("--broker-port", type=int, default=site_init.DEFAULT_BROKER_PORT)
    p.add_argument("--days", type=_days, default=site_init.DEFAULT_DAYS,
                   help="validity of the broker and client certificates and of the CRL")
    p.add_argument("--ingest-workers", type=_positive("--ingest-workers"), metavar="N",
                   default=site_init.DEFAULT_INGEST_WORKERS,
                   help="backend ingest workers, each with its own certificate "
                        f"{site_init.BACKEND_PREFIX}-1..N (default %(default)s)")
    p.add_argument("--broker-dir", metavar="PATH",
                   help="absolute folder the broker files will live in on the broker host "
                        "(default: DIR/broker)")
    p.add_argument("--force", action="store_true", help="overwrite an existing site folder")
    p.set_defaults(func=_init)

    p = sub.add_parser("issue", help="issue a new certificate for a lane or an ingest worker")
    p.add_argument("--dir", required=True, metavar="DIR")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--cn", metavar="NAME",
                     help=f"a lane id, or {site_init.BACKEND_PREFIX}-<n> for an ingest worker")
    who.add_argument("--ingest-worker", action="store_true",
                     help="add the next ingest worker (the ACL changes: reload the broker)")
    p.add_argument("--days", type=_days)
    p.set_defaults(func=_issue)

    p = sub.add_parser("revoke", help="revoke a lane's or worker's certificates, rewrite the CRL")
    p.add_argument("--dir", required=True, metavar="DIR")
    p.add_argument("--cn", required=True, metavar="NAME")
    p.set_defaults(func=_revoke)

    p = sub.add_parser("crl", help="re-sign the CRL with a new expiry (do it before it expires)")
    p.add_argument("--dir", required=True, metavar="DIR")
    p.add_argument("--days", type=_days, help="validity of the new CRL (default: the site's)")
    p.set_defaults(func=_crl)
