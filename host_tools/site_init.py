"""A site's security material: CA, broker and client certificates, CRL, ACL, command keys.

One site = one CA. Every lane gets its own client certificate whose CN is the lane id; the
broker turns the CN into the MQTT username and client id, so the per-lane ACL (``%u``) lets a
lane speak only for itself. Every backend ingest worker gets its own identity too
(``backend-ingest-1``, ``-2``, ...): workers in one shared subscription group that shared a
certificate would share a client id and kick each other off. Two Ed25519 keys sign commands
to the lanes: ``root`` (trust_update, revocations; kept offline) and ``officer-console``
(remote_release, config); every lane gets their public keys.

Layout of a site folder::

    site.json                     the record: lanes, workers, broker, command keys, every
                                  certificate issued or revoked
    ca/ca.crt  ca/ca.key          the site CA (the key never leaves this folder)
    keys/root.key.pem             command key, root tier (move it offline)
    keys/officer-console.key.pem  command key, command tier (the backend's signing service)
    broker/                       copy to the broker: mosquitto.conf, acl, ca.crt, crl.pem,
                                  server.crt, server.key
    trust.json                    the customs issuer keys given with --trust (passes)
    lanes/<lane>/                 copy to the lane: agent.toml, command_keys.json, trust.json,
                                  ca.crt, <lane>.crt, <lane>.key
    backend/                      the ingest workers: ca.crt, <cn>.crt, <cn>.key each

Time is a parameter (``now``) so that tests can make expired certificates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge_agent.errors import ConfigError
from edge_agent.protocols import gp1
from edge_agent.telemetry.commands import KeyRole
from edge_agent.telemetry.mqtt import DEFAULT_PORTS, TlsFiles
from edge_agent.telemetry.topics import check_segment
from host_tools.errors import SiteError
from host_tools.site_files import (
    COMMAND_KEYS_FILE,
    acl_text,
    agent_template,
    agent_toml_text,
    check_broker,
    check_gate,
    check_ids,
    command_keys_text,
    ingest_worker_cn,
    is_ingest_worker_cn,
    mosquitto_conf_text,
    write_file,
)
from host_tools.site_pki import (
    CLOCK_SLACK,
    Identity,
    make_ca,
    make_command_key,
    make_crl,
    make_leaf,
)

__all__ = [
    "BACKEND_CN", "BACKEND_PREFIX", "CA_MIN_DAYS", "CLOCK_SLACK", "COMMAND_KEYS",
    "DEFAULT_DAYS", "DEFAULT_INGEST_WORKERS", "MAX_INGEST_WORKERS", "SITE_FORMAT",
    "ClientFiles", "Identity", "Issued", "SiteError", "acl_text", "agent_template",
    "agent_toml_text", "check_broker", "check_ids", "client_files", "init_site", "issue",
    "load_ca", "load_site", "make_ca", "make_crl", "make_leaf", "mosquitto_conf_text",
    "next_ingest_worker", "refresh_crl", "revoke", "write_identity",
]

SITE_FORMAT = "gatelane.site/2"
_OLD_FORMAT = "gatelane.site/1"  # one backend identity, no command keys
BACKEND_PREFIX = "backend-ingest"
BACKEND_CN = ingest_worker_cn(BACKEND_PREFIX, 1)  # the identity a single ingest process uses
DEFAULT_INGEST_WORKERS = 2
DEFAULT_BROKER_PORT = DEFAULT_PORTS["mqtts"]
MAX_INGEST_WORKERS = 100
COMMAND_KEYS = {"root": KeyRole.ROOT, "officer-console": KeyRole.COMMAND}
TRUST_FILE = "trust.json"  # the name the agent config template gives [passes] trust_list
DEFAULT_DAYS = 730
CA_MIN_DAYS = 3650


@dataclass(frozen=True, slots=True)
class ClientFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Issued:
    """What ``issue`` did: the files, and whether the broker must re-read its ACL."""

    cn: str
    files: ClientFiles
    ingest_worker: bool
    acl_rewritten: bool

    @property
    def cert(self) -> Path:
        return self.files.cert


def init_site(
    out: Path,
    *,
    site: str,
    lanes: Sequence[str],
    broker_host: str = "localhost",
    broker_port: int = DEFAULT_BROKER_PORT,
    days: int = DEFAULT_DAYS,
    ingest_workers: int = DEFAULT_INGEST_WORKERS,
    backend_prefix: str = BACKEND_PREFIX,
    broker_dir: Path | None = None,
    force: bool = False,
    now: datetime | None = None,
    gates: Mapping[str, str] | None = None,
    any_gate: bool = False,
    trust: Path | None = None,
) -> dict[str, Any]:
    """Generate a whole site folder; returns the ``site.json`` document.

    ``gates`` maps lanes to the gate code their passes name; ``any_gate`` lets the lanes
    without one accept a pass for any gate. ``trust`` is the customs trust list (issuer
    keys) every lane gets. A lane without a gate or without a trust list gets a config the
    agent refuses until the technician adds it (``todo`` in the returned document).
    """
    lanes = check_ids(site, lanes, backend_prefix)
    gates = {lane: check_gate(lane, gate) for lane, gate in (gates or {}).items()}
    unknown = sorted(set(gates) - set(lanes))
    if unknown:
        raise SiteError(f"a gate is given for {', '.join(unknown)}, which is not in the lanes")
    trust_doc = _read_trust(trust) if trust is not None else None
    check_broker(broker_host, broker_port)
    if days < 1:
        raise SiteError(f"--days must be at least 1, not {days}")
    if not 1 <= ingest_workers <= MAX_INGEST_WORKERS:
        raise SiteError(
            f"--ingest-workers must be in 1..{MAX_INGEST_WORKERS}, not {ingest_workers}"
        )
    now = now or datetime.now(UTC)
    out = out.resolve()
    broker = broker_dir if broker_dir is not None else out / "broker"
    if not broker.is_absolute():
        raise SiteError(f"broker folder {broker} must be an absolute path (Mosquitto needs one)")
    template = agent_template()
    planned = [out / "site.json", out / "ca", out / "keys", out / "broker", out / "backend",
               out / TRUST_FILE]
    planned += [out / "lanes" / lane for lane in lanes]
    existing = [p for p in planned if p.exists()]
    if existing and not force:
        raise SiteError(f"{existing[0]} already exists (use --force to overwrite)")

    workers = [ingest_worker_cn(backend_prefix, n) for n in range(1, ingest_workers + 1)]
    ca = make_ca(site, now=now, days=max(CA_MIN_DAYS, days + 365))
    doc: dict[str, Any] = {
        "format": SITE_FORMAT, "site": site, "days": days,
        "backend": backend_prefix, "ingest_workers": workers,
        "broker": {"host": broker_host, "port": broker_port, "dir": str(broker)},
        "lanes": lanes, "command_keys": [], "crl_number": 0, "certs": [],
        "gates": gates, "any_gate": any_gate,
    }
    if trust_doc is not None:
        write_file(out / TRUST_FILE, trust_doc)
    write_file(out / "ca" / "ca.crt", ca.cert_pem())
    write_file(out / "ca" / "ca.key", ca.key_pem(), secret=True)
    for name, role in COMMAND_KEYS.items():
        key = make_command_key(name, role)
        file = f"keys/{name}.key.pem"
        write_file(out / file, key.key_pem(), secret=True)
        doc["command_keys"].append({**key.public_entry(), "file": file})

    names = list(dict.fromkeys([broker_host, "localhost", "127.0.0.1"]))
    server = make_leaf(ca, broker_host, now=now, days=days, server_names=names)
    _record(doc, server, "broker/server.crt", kind="server")
    write_file(out / "broker" / "server.crt", server.cert_pem())
    write_file(out / "broker" / "server.key", server.key_pem(), secret=True)
    write_file(out / "broker" / "ca.crt", ca.cert_pem())
    _write_acl(out, doc)
    conf = mosquitto_conf_text(site, broker_port, broker)
    write_file(out / "broker" / "mosquitto.conf", conf.encode())
    _write_crl(out, doc, ca, now)
    for cn in [*lanes, *workers]:
        _issue_files(out, doc, ca, cn, now=now, days=days)
    for lane in lanes:
        _write_lane_config(out, doc, lane, template)
    _save(out, doc)
    return doc


def todo(out: Path, doc: Mapping[str, Any], lane: str) -> list[str]:
    """What the technician must still do before the lane's agent starts (empty: nothing)."""
    left = []
    if lane not in doc.get("gates", {}) and not doc.get("any_gate"):
        left.append(f"set [lane] gate in {out / 'lanes' / lane / 'agent.toml'} (give the lane "
                    f"as {lane}=GATE next time, or --any-gate)")  # fmt: skip
    if not (out / "lanes" / lane / TRUST_FILE).exists():
        left.append(f"copy the customs trust list to {out / 'lanes' / lane / TRUST_FILE} (or "
                    "give --trust FILE)")  # fmt: skip
    return left


def _read_trust(path: Path) -> bytes:
    """The trust list's bytes once the agent's own loader accepted them; raises SiteError."""
    try:
        gp1.TrustList.load(path)
        return path.read_bytes()
    except (ConfigError, OSError) as exc:
        raise SiteError(f"--trust {path}: {exc}") from None


def issue(out: Path, cn: str, *, days: int | None = None, now: datetime | None = None,
          gate: str | None = None) -> Issued:  # fmt: skip
    """(Re-)issue the client certificate of a lane or an ingest worker.

    A new lane gets its agent config (with ``gate``), command keys and the site's trust
    list; a new ingest worker (named
    ``<backend>-<n>``) gets its own ``user`` block in the ACL, which the broker must re-read.
    """
    doc = load_site(out)
    ca = load_ca(out)
    now = now or datetime.now(UTC)
    worker = cn in doc["ingest_workers"] or is_ingest_worker_cn(doc["backend"], cn)
    acl_rewritten = False
    if worker and cn not in doc["ingest_workers"]:
        doc["ingest_workers"].append(cn)
        _write_acl(out, doc)
        acl_rewritten = True
    elif not worker and cn not in doc["lanes"]:
        check_ids(doc["site"], [*doc["lanes"], cn], doc["backend"])
        doc["lanes"].append(cn)
        if gate is not None:
            doc.setdefault("gates", {})[cn] = check_gate(cn, gate)
        _write_lane_config(out, doc, cn, agent_template())
    files = _issue_files(out, doc, ca, cn, now=now, days=days or doc["days"])
    _save(out, doc)
    return Issued(cn, files, worker, acl_rewritten)


def next_ingest_worker(out: Path) -> str:
    """The name the next ingest worker of this site gets (one above the highest so far)."""
    doc = load_site(out)
    prefix = doc["backend"]
    numbers = [int(cn.rsplit("-", 1)[1]) for cn in doc["ingest_workers"]
               if is_ingest_worker_cn(prefix, cn)]
    return ingest_worker_cn(prefix, max(numbers, default=0) + 1)


def revoke(out: Path, cn: str, *, now: datetime | None = None) -> list[str]:
    """Revoke every valid certificate issued to ``cn`` and rewrite the CRL; returns serials."""
    doc = load_site(out)
    ca = load_ca(out)
    now = now or datetime.now(UTC)
    serials = []
    for entry in doc["certs"]:
        if entry["cn"] == cn and entry["kind"] == "client" and entry["revoked_at"] is None:
            entry["revoked_at"] = now.isoformat()
            serials.append(entry["serial"])
    if not serials:
        raise SiteError(f"no unrevoked client certificate for CN {cn!r} in {out}")
    _write_crl(out, doc, ca, now)
    _save(out, doc)
    return serials


def refresh_crl(out: Path, *, days: int | None = None, now: datetime | None = None) -> datetime:
    """Sign the CRL again with a new next_update (an expired CRL locks out every lane)."""
    doc = load_site(out)
    ca = load_ca(out)
    now = now or datetime.now(UTC)
    if days is not None:
        doc["days"] = days
    _write_crl(out, doc, ca, now)
    _save(out, doc)
    return now + timedelta(days=doc["days"])


def client_files(out: Path, cn: str) -> ClientFiles:
    """Where the CA, certificate and key of a lane (or an ingest worker) are."""
    return _client_files(out, load_site(out), cn)


def tls_files(out: Path, cn: str) -> TlsFiles:
    """The same files as the MQTT client's ``TlsFiles`` (for tools and tests that connect)."""
    files = client_files(out, cn)
    return TlsFiles(files.ca, files.cert, files.key)


def load_site(out: Path) -> dict[str, Any]:
    """The ``site.json`` record; one written by an older version is read as the current one."""
    path = out / "site.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path} not found: not a folder made by `lanectl site init`") from None
    except ValueError as exc:
        raise SiteError(f"{path} is not valid JSON: {exc}") from None
    if doc.get("format") == _OLD_FORMAT:
        # Its single backend identity is its only worker; it has no command keys.
        doc.update(format=SITE_FORMAT, ingest_workers=[doc["backend"]], command_keys=[])
    if doc.get("format") != SITE_FORMAT:
        raise SiteError(f"{path}: unknown format {doc.get('format')!r}")
    return doc


def load_ca(out: Path) -> Identity:
    try:
        cert = x509.load_pem_x509_certificate((out / "ca" / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((out / "ca" / "ca.key").read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise SiteError(f"cannot load the site CA from {out / 'ca'}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SiteError(f"{out / 'ca' / 'ca.key'} is not an EC private key")
    return Identity(key, cert)


def write_identity(identity: Identity, cert: Path, key: Path) -> None:
    write_file(cert, identity.cert_pem())
    write_file(key, identity.key_pem(), secret=True)


def _client_files(out: Path, doc: dict[str, Any], cn: str) -> ClientFiles:
    folder = out / "backend" if cn in doc["ingest_workers"] else out / "lanes" / cn
    return ClientFiles(folder / "ca.crt", folder / f"{cn}.crt", folder / f"{cn}.key")


def _issue_files(
    out: Path, doc: dict[str, Any], ca: Identity, cn: str, *, now: datetime, days: int
) -> ClientFiles:
    try:
        check_segment(cn, "identity")  # the CN is the MQTT username and a topic level
    except ConfigError as exc:
        raise SiteError(str(exc)) from None
    files = _client_files(out, doc, cn)
    leaf = make_leaf(ca, cn, now=now, days=days)
    write_file(files.ca, ca.cert_pem())
    write_identity(leaf, files.cert, files.key)
    _record(doc, leaf, str(files.cert.relative_to(out)), kind="client")
    return files


def _record(doc: dict[str, Any], identity: Identity, file: str, *, kind: str) -> None:
    doc["certs"].append({
        "cn": identity.cn,
        "kind": kind,
        "serial": format(identity.cert.serial_number, "x"),
        "not_after": identity.cert.not_valid_after_utc.isoformat(),
        "file": file,
        "revoked_at": None,
    })


def _write_crl(out: Path, doc: dict[str, Any], ca: Identity, now: datetime) -> None:
    doc["crl_number"] += 1
    revoked = [
        (int(e["serial"], 16), datetime.fromisoformat(e["revoked_at"]))
        for e in doc["certs"]
        if e["revoked_at"] is not None
    ]
    crl = make_crl(ca, revoked, now=now, days=doc["days"], number=doc["crl_number"])
    write_file(out / "broker" / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))


def _write_acl(out: Path, doc: dict[str, Any]) -> None:
    write_file(out / "broker" / "acl", acl_text(doc["site"], doc["ingest_workers"]).encode())


def _save(out: Path, doc: dict[str, Any]) -> None:
    write_file(out / "site.json", (json.dumps(doc, indent=2) + "\n").encode())


def _write_lane_config(out: Path, doc: dict[str, Any], lane: str, template: str) -> None:
    """The lane's agent.toml and, when the site has command keys, its command_keys.json."""
    host, port = doc["broker"]["host"], doc["broker"]["port"]
    url = f"mqtts://{f'[{host}]' if ':' in host else host}:{port}"
    keys = doc["command_keys"]
    toml = agent_toml_text(template, site=doc["site"], lane=lane, broker_url=url,
                           command_keys=COMMAND_KEYS_FILE if keys else None,
                           gate=doc.get("gates", {}).get(lane),
                           any_gate=bool(doc.get("any_gate")))  # fmt: skip
    if (out / TRUST_FILE).exists():
        write_file(out / "lanes" / lane / TRUST_FILE, (out / TRUST_FILE).read_bytes())
    if keys:
        write_file(out / "lanes" / lane / COMMAND_KEYS_FILE, command_keys_text(keys).encode())
    write_file(out / "lanes" / lane / "agent.toml", toml.encode())
