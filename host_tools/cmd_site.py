"""``lanectl site``: a site's security material (CA, certificates, ACL, CRL, command keys).

    lanectl site init --site S --lanes exit-01=G1,exit-02=G2 --out DIR [--trust FILE]
                      [--any-gate] [--broker-host H] [--broker-port 8883] [--days N]
                      [--ingest-workers 2] [--broker-dir PATH] [--force]
    lanectl site issue --dir DIR (--cn NAME | --ingest-worker) [--days N] [--gate G]
                      (re-)issue a lane's or ingest worker's certificate; a new name adds it
    lanectl site revoke --dir DIR --cn NAME               revoke it and rewrite the CRL
    lanectl site crl --dir DIR [--days N]                 re-sign the CRL before it expires

Each prints what it did (one JSON object with --json). A lane given as LANE=GATE and a
``--trust`` list make a lane folder the agent starts with; what is still missing is listed
under ``todo``. Exit codes: 0 done, 2 bad arguments or files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from host_tools import site_init
from host_tools.cli import add_json, command, emit
from host_tools.errors import SiteError, fail

RELOAD_CRL = "copy the CRL to the broker and send it SIGHUP"
RELOAD_ACL = "copy the ACL to the broker and send it SIGHUP (it re-reads the ACL)"


def parse_lanes(text: str) -> tuple[list[str], dict[str, str]]:
    """``exit-01=G1,exit-02`` -> the lane ids, and the gates of those that name one."""
    lanes, gates = [], {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        lane, sep, gate = item.partition("=")
        lanes.append(lane.strip())
        if sep:
            gates[lane.strip()] = gate.strip()
    return lanes, gates


def _init(args: argparse.Namespace) -> int:
    lanes, gates = parse_lanes(args.lanes)
    out = Path(args.out)
    try:
        doc = site_init.init_site(
            out,
            site=args.site,
            lanes=lanes,
            gates=gates,
            any_gate=args.any_gate,
            trust=Path(args.trust) if args.trust else None,
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
    todo = {lane: left for lane in doc["lanes"] if (left := site_init.todo(out, doc, lane))}
    emit(args, {
        "site": doc["site"],
        "dir": str(out),
        "lanes": {lane: str(out / "lanes" / lane) for lane in doc["lanes"]},
        "backend": str(out / "backend"),
        "ingest_workers": doc["ingest_workers"],
        "broker_config": str(out / "broker" / "mosquitto.conf"),
        "command_keys": keys,
        "secret": [str(out / "ca" / "ca.key"), *(v["key"] for v in keys.values())],
        "keep_offline": [str(out / "ca" / "ca.key"), *root_keys],
        "todo": todo,
    })
    return 0


def _issue(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    try:
        cn = site_init.next_ingest_worker(folder) if args.ingest_worker else args.cn
        issued = site_init.issue(folder, cn, days=args.days, gate=args.gate)
    except (SiteError, OSError) as exc:
        return fail("site", str(exc))
    report: dict[str, Any] = {
        "cn": issued.cn,
        "kind": "ingest_worker" if issued.ingest_worker else "lane",
        "cert": str(issued.cert),
    }
    if issued.acl_rewritten:
        report.update(acl=str(folder.resolve() / "broker" / "acl"), next=RELOAD_ACL)
    if not issued.ingest_worker:
        report["todo"] = site_init.todo(folder.resolve(), site_init.load_site(folder), cn)
    emit(args, report)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        serials = site_init.revoke(Path(args.dir), args.cn)
    except (SiteError, OSError) as exc:
        return fail("site", str(exc))
    crl = Path(args.dir).resolve() / "broker" / "crl.pem"
    emit(args, {"cn": args.cn, "revoked_serials": serials, "crl": str(crl), "next": RELOAD_CRL})
    return 0


def _crl(args: argparse.Namespace) -> int:
    try:
        next_update = site_init.refresh_crl(Path(args.dir), days=args.days)
    except (SiteError, OSError) as exc:
        return fail("site", str(exc))
    crl = Path(args.dir).resolve() / "broker" / "crl.pem"
    emit(args, {"crl": str(crl), "next_update": next_update.isoformat(), "next": RELOAD_CRL})
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
    parser = command(subparsers, "site", "make a site's TLS certificates, ACL, command keys and "
                     "configs", "lanectl site init --site BZ01 --lanes exit-03=G3 --trust "
                     "customs-trust.json --out site/")  # fmt: skip
    sub = parser.add_subparsers(dest="site_command", metavar="ACTION", required=True)

    p = command(sub, "init", "create the CA, certificates, broker config, ACL, command keys, "
                "agent configs and trust lists",
                "lanectl site init --site BZ01 --lanes exit-03=G3,exit-04=G4 --trust "
                "customs-trust.json --broker-host broker.bz01.example --out site/")  # fmt: skip
    p.add_argument("--site", required=True, help="site code (a topic level)")
    p.add_argument("--lanes", required=True, metavar="LANE=GATE,...",
                   help="comma-separated lane ids, each with the gate code its passes name, "
                   "e.g. exit-01=G1,exit-02=G2")  # fmt: skip
    p.add_argument("--any-gate", action="store_true",
                   help="lanes given without a gate accept a pass for any gate of the site")
    p.add_argument("--trust", metavar="FILE",
                   help="customs trust list (issuer keys) every lane gets as trust.json")
    p.add_argument("--out", required=True, metavar="DIR", help="the site folder to create")
    p.add_argument("--broker-host", default="localhost", help="name the lanes use for the broker")
    p.add_argument("--broker-port", type=int, default=site_init.DEFAULT_BROKER_PORT,
                   help="the broker's TLS port (default %(default)s)")
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
    add_json(p)
    p.set_defaults(func=_init)

    p = command(sub, "issue", "issue a new certificate for a lane or an ingest worker",
                "lanectl site issue --dir site/ --cn exit-05 --gate G5",
                "lanectl site issue --dir site/ --ingest-worker")
    p.add_argument("--dir", required=True, metavar="DIR", help="the site folder")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--cn", metavar="NAME",
                     help=f"a lane id, or {site_init.BACKEND_PREFIX}-<n> for an ingest worker")
    who.add_argument("--ingest-worker", action="store_true",
                     help="add the next ingest worker (the ACL changes: reload the broker)")
    p.add_argument("--gate", help="a new lane's gate code (the one its passes name)")
    p.add_argument("--days", type=_days, help="certificate validity (default: the site's)")
    add_json(p)
    p.set_defaults(func=_issue)

    p = command(sub, "revoke", "revoke a lane's or worker's certificates, rewrite the CRL",
                "lanectl site revoke --dir site/ --cn exit-03")
    p.add_argument("--dir", required=True, metavar="DIR", help="the site folder")
    p.add_argument("--cn", required=True, metavar="NAME", help="the lane or worker to revoke")
    add_json(p)
    p.set_defaults(func=_revoke)

    p = command(sub, "crl", "re-sign the CRL with a new expiry (do it before it expires)",
                "lanectl site crl --dir site/ --days 30")
    p.add_argument("--dir", required=True, metavar="DIR", help="the site folder")
    p.add_argument("--days", type=_days, help="validity of the new CRL (default: the site's)")
    add_json(p)
    p.set_defaults(func=_crl)
