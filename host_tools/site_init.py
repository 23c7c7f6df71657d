"""A site's MQTT security material: CA, broker and client certificates, CRL, ACL, configs.

One site = one CA. Every lane gets its own client certificate whose CN is the lane id; the
broker turns the CN into the MQTT username and client id, so the per-lane ACL (``%u``) lets a
lane speak only for itself. The backend gets its own identity. Everything is generated with
``cryptography`` (ECDSA P-256, SHA-256), no openssl binary.

Layout of a site folder::

    site.json                     what was generated: lanes, broker, issued and revoked certs
    ca/ca.crt  ca/ca.key          the site CA (the key never leaves this folder)
    broker/                       copy to the broker: mosquitto.conf, acl, ca.crt, crl.pem,
                                  server.crt, server.key
    lanes/<lane>/                 copy to the lane: agent.toml, ca.crt, <lane>.crt, <lane>.key
    backend/                      the ingest service: ca.crt, <cn>.crt, <cn>.key

Time is a parameter (``now``) so that tests can make expired certificates.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.errors import ConfigError
from edge_agent.telemetry.topics import check_segment

SITE_FORMAT = "gatelane.site/1"
BACKEND_CN = "backend-ingest"
DEFAULT_DAYS = 730
CA_MIN_DAYS = 3650
CLOCK_SLACK = timedelta(minutes=5)  # not_before in the past: a lane clock slightly behind
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


class SiteError(Exception):
    """The site material cannot be generated or changed as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A private key and the certificate that binds it to a name."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cn(self) -> str:
        return str(self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),  # services start unattended; the file mode protects it
        )


@dataclass(frozen=True, slots=True)
class ClientFiles:
    ca: Path
    cert: Path
    key: Path


# -- certificates (pure: no files) ------------------------------------------------------------


def make_ca(site: str, *, now: datetime, days: int) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatelane"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"gatelane site {site} CA"),
    ])
    cert = (
        _builder(name, name, key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Identity(key, cert)


def make_leaf(
    ca: Identity,
    cn: str,
    *,
    now: datetime,
    days: int,
    server_names: Sequence[str] = (),
) -> Identity:
    """A client certificate for ``cn``, or a server one when ``server_names`` (SAN) is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatelane"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])
    not_after = min(now + timedelta(days=days), ca.cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca.cert.subject, key.public_key(), now, days, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in server_names]), critical=False
        )
    return Identity(key, builder.sign(ca.key, hashes.SHA256()))


def make_crl(
    ca: Identity, revoked: Iterable[tuple[int, datetime]], *, now: datetime, days: int, number: int
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - CLOCK_SLACK)
        # OpenSSL refuses every client once a CRL is past next_update: keep it long.
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    days: int,
    not_after: datetime | None = None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SLACK)
        .not_valid_after(not_after or now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


# -- broker and agent configuration text ------------------------------------------------------


def acl_text(site: str, backend_cn: str) -> str:
    """Mosquitto ACL: lanes write only their upstream topics and read only their downlink."""
    return f"""\
# gatelane site {site}: least privilege per identity. %u is the client certificate's CN
# (use_identity_as_username), which is also forced as the client id.
# Every lane: publish only as itself, read only its own commands and ack watermark.
pattern write gate/v1/+/%u/evt/#
pattern write gate/v1/+/%u/cmd_result
pattern write gate/v1/+/%u/health
pattern write gate/v1/+/%u/state
pattern read gate/v1/+/%u/cmd/#
pattern read gate/v1/+/%u/ack

# Backend ingest: reads every lane, writes only commands and ack watermarks.
user {backend_cn}
topic read gate/v1/#
topic write gate/v1/+/+/cmd/#
topic write gate/v1/+/+/ack
"""


def mosquitto_conf_text(site: str, port: int, broker_dir: Path) -> str:
    """A Mosquitto 2.0 config (a conf.d snippet): one mutual-TLS listener, ACL, CRL."""
    d = broker_dir
    return f"""\
# gatelane site {site}: Mosquitto 2 broker with mutual TLS per lane.
# Files are read from {d}. Mosquitto 2.0 reads them after dropping to its own user, so
# that user must own server.key (mode 0600). SIGHUP re-reads the ACL and the CRL.
per_listener_settings false
allow_anonymous false
acl_file {d / "acl"}

listener {port}
cafile {d / "ca.crt"}
certfile {d / "server.crt"}
keyfile {d / "server.key"}
crlfile {d / "crl.pem"}
tls_version tlsv1.2
require_certificate true
use_identity_as_username true
use_username_as_clientid true
"""


def agent_toml_text(template: str, *, site: str, lane: str, broker_url: str) -> str:
    """The example agent config with this lane's identity, broker and certificate files."""
    values = {
        ("lane", "site"): site,
        ("lane", "lane"): lane,
        ("mqtt", "broker"): broker_url,
        ("mqtt", "ca"): "ca.crt",
        ("mqtt", "cert"): f"{lane}.crt",
        ("mqtt", "key"): f"{lane}.key",
    }
    found: set[tuple[str, str]] = set()
    section = ""
    lines = [f"# Generated by `lanectl site init` for lane {lane} of site {site}."]
    for line in template.splitlines():
        header = re.match(r"^\s*\[([A-Za-z0-9_]+)\]", line)
        if header:
            section = header.group(1)
        match = re.match(r'^(\s*([A-Za-z0-9_]+)\s*=\s*)("(?:[^"\\]|\\.)*"|[^#\s]+)(.*)$', line)
        if match and (section, match.group(2)) in values:
            key = (section, match.group(2))
            found.add(key)
            line = match.group(1) + json.dumps(values[key]) + match.group(4)
        elif match and (section, match.group(2)) == ("lane", "gate"):
            line = '# gate = "G1"                # set the gate code the passes name for this lane'
        elif match and (section, match.group(2)) == ("mqtt", "lab"):
            continue  # a generated site always uses TLS
        lines.append(line)
    missing = sorted(set(values) - found)
    if missing:
        names = ", ".join(f"[{s}] {k}" for s, k in missing)
        raise SiteError(f"the agent config template lacks {names}")
    text = "\n".join(lines) + "\n"
    parsed = tomllib.loads(text)
    for (sec, key), value in values.items():
        if parsed[sec][key] != value:
            raise SiteError(f"could not set [{sec}] {key} in the agent config template")
    return text


def agent_template() -> str:
    return (resources.files("edge_agent") / "deploy" / "agent.example.toml").read_text("utf-8")


# -- input checks -----------------------------------------------------------------------------


def check_ids(site: str, lanes: Sequence[str], backend_cn: str) -> list[str]:
    """Validated lane ids (topic-safe, unique, not the backend's name); raises SiteError."""
    try:
        check_segment(site, "site")
        check_segment(backend_cn, "backend identity")
        for lane in lanes:
            check_segment(lane, "lane id")
    except ConfigError as exc:
        raise SiteError(str(exc)) from None
    if not lanes:
        raise SiteError("no lanes given (e.g. --lanes exit-01,exit-02)")
    seen: set[str] = set()
    for lane in lanes:
        if lane in seen:
            raise SiteError(f"lane id {lane!r} is given twice")
        seen.add(lane)
    if backend_cn in seen:
        raise SiteError(f"lane id {backend_cn!r} is reserved for the backend identity")
    return list(lanes)


def check_broker(host: str, port: int) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not _HOST.match(host):
            raise SiteError(f"broker host {host!r} is not a host name or IP address") from None
    if not 1 <= port <= 65535:
        raise SiteError(f"broker port {port} is not in 1..65535")


# -- files ------------------------------------------------------------------------------------


def init_site(
    out: Path,
    *,
    site: str,
    lanes: Sequence[str],
    broker_host: str = "localhost",
    broker_port: int = 8883,
    days: int = DEFAULT_DAYS,
    backend_cn: str = BACKEND_CN,
    broker_dir: Path | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Generate a whole site folder; returns the ``site.json`` document."""
    lanes = check_ids(site, lanes, backend_cn)
    check_broker(broker_host, broker_port)
    if days < 1:
        raise SiteError(f"--days must be at least 1, not {days}")
    now = now or datetime.now(UTC)
    out = out.resolve()
    broker = broker_dir if broker_dir is not None else out / "broker"
    if not broker.is_absolute():
        raise SiteError(f"broker folder {broker} must be an absolute path (Mosquitto needs one)")
    template = agent_template()
    planned = [out / "site.json", out / "ca", out / "broker", out / "backend"]
    planned += [out / "lanes" / lane for lane in lanes]
    existing = [p for p in planned if p.exists()]
    if existing and not force:
        raise SiteError(f"{existing[0]} already exists (use --force to overwrite)")

    ca = make_ca(site, now=now, days=max(CA_MIN_DAYS, days + 365))
    doc: dict[str, Any] = {
        "format": SITE_FORMAT, "site": site, "days": days, "backend": backend_cn,
        "broker": {"host": broker_host, "port": broker_port, "dir": str(broker)},
        "lanes": lanes, "crl_number": 0, "certs": [],
    }
    _write(out / "ca" / "ca.crt", ca.cert_pem())
    _write(out / "ca" / "ca.key", ca.key_pem(), secret=True)

    names = list(dict.fromkeys([broker_host, "localhost", "127.0.0.1"]))
    server = make_leaf(ca, broker_host, now=now, days=days, server_names=names)
    _record(doc, server, "broker/server.crt", kind="server")
    _write(out / "broker" / "server.crt", server.cert_pem())
    _write(out / "broker" / "server.key", server.key_pem(), secret=True)
    _write(out / "broker" / "ca.crt", ca.cert_pem())
    _write(out / "broker" / "acl", acl_text(site, backend_cn).encode())
    conf = mosquitto_conf_text(site, broker_port, broker)
    _write(out / "broker" / "mosquitto.conf", conf.encode())
    _write_crl(out, doc, ca, now)
    for cn in [*lanes, backend_cn]:
        _issue_files(out, doc, ca, cn, now=now, days=days)
        if cn != backend_cn:
            _write_agent_toml(out, doc, cn, template)
    _save(out, doc)
    return doc


def issue(out: Path, cn: str, *, days: int | None = None, now: datetime | None = None) -> Path:
    """(Re-)issue the client certificate of a lane or the backend; a new lane is added."""
    doc = load_site(out)
    ca = load_ca(out)
    now = now or datetime.now(UTC)
    if cn != doc["backend"] and cn not in doc["lanes"]:
        check_ids(doc["site"], [*doc["lanes"], cn], doc["backend"])
        doc["lanes"].append(cn)
        _write_agent_toml(out, doc, cn, agent_template())
    files = _issue_files(out, doc, ca, cn, now=now, days=days or doc["days"])
    _save(out, doc)
    return files.cert


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
    """Where the CA, certificate and key of a lane (or the backend identity) are."""
    doc = load_site(out)
    folder = out / "backend" if cn == doc["backend"] else out / "lanes" / cn
    return ClientFiles(folder / "ca.crt", folder / f"{cn}.crt", folder / f"{cn}.key")


def load_site(out: Path) -> dict[str, Any]:
    path = out / "site.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path} not found: not a folder made by `lanectl site init`") from None
    except ValueError as exc:
        raise SiteError(f"{path} is not valid JSON: {exc}") from None
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
    _write(cert, identity.cert_pem())
    _write(key, identity.key_pem(), secret=True)


def _issue_files(
    out: Path, doc: dict[str, Any], ca: Identity, cn: str, *, now: datetime, days: int
) -> ClientFiles:
    folder = out / "backend" if cn == doc["backend"] else out / "lanes" / cn
    files = ClientFiles(folder / "ca.crt", folder / f"{cn}.crt", folder / f"{cn}.key")
    leaf = make_leaf(ca, cn, now=now, days=days)
    _write(files.ca, ca.cert_pem())
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
    _write(out / "broker" / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))


def _save(out: Path, doc: dict[str, Any]) -> None:
    _write(out / "site.json", (json.dumps(doc, indent=2) + "\n").encode())


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Write atomically; secrets are created 0600 and never exist with a wider mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    mode = 0o600 if secret else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)  # an old temp file may have had another mode
        file.write(data)
        file.flush()
        os.fsync(fd)
    os.replace(tmp, path)


def _write_agent_toml(out: Path, doc: dict[str, Any], lane: str, template: str) -> None:
    host, port = doc["broker"]["host"], doc["broker"]["port"]
    url = f"mqtts://{f'[{host}]' if ':' in host else host}:{port}"
    toml = agent_toml_text(template, site=doc["site"], lane=lane, broker_url=url)
    _write(out / "lanes" / lane / "agent.toml", toml.encode())
