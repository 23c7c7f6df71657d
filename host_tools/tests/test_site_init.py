"""``lanectl site``: the files it writes, what they say, and its refusals of bad input.

The broker-side proof (a real Mosquitto running these files) is in
edge_agent/tests/test_telemetry_tls.py and host_tools/tests/test_site_broker.py; ingest
workers and command keys in host_tools/tests/test_site_keys.py.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.config import check_config, load_config
from edge_agent.protocols import gp1
from edge_agent.telemetry.mqtt import TlsFiles, make_client, parse_broker_url
from host_tools import site_init
from host_tools.lanectl import main as lanectl

LANES = "exit-01=G1,exit-02=G2"
PEM = Encoding.PEM


def init(out: Path, *extra: str) -> int:
    return lanectl(["site", "init", "--site", "BZ01", "--lanes", LANES, "--out", str(out),
                    "--broker-host", "broker.bz01.example", *extra])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "BZ01"
    assert init(out) == 0
    return out


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def usages(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_init_prints_where_everything_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(tmp_path / "s", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["lanes"]) == {"exit-01", "exit-02"}
    assert Path(summary["broker_config"]).is_file()
    assert summary["ingest_workers"] == ["backend-ingest-1", "backend-ingest-2"]
    folder = (tmp_path / "s").resolve()
    ca_key = str(folder / "ca" / "ca.key")
    root_key = str(folder / "keys" / "root.key.pem")
    officer_key = str(folder / "keys" / "officer-console.key.pem")
    assert summary["secret"] == [ca_key, root_key, officer_key]
    assert summary["keep_offline"] == [ca_key, root_key]
    roles = {entry["key"]: entry["role"] for entry in summary["command_keys"].values()}
    assert roles == {root_key: "root", officer_key: "command"}


def test_every_lane_gets_its_own_client_certificate_from_the_site_ca(site: Path) -> None:
    ca = cert(site / "ca" / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    serials = set()
    for lane in ("exit-01", "exit-02"):
        leaf = cert(site / "lanes" / lane / f"{lane}.crt")
        leaf.verify_directly_issued_by(ca)
        assert cn(leaf) == lane
        assert usages(leaf) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert (site / "lanes" / lane / "ca.crt").read_bytes() == ca.public_bytes(PEM)
        serials.add(leaf.serial_number)
    for worker in ("backend-ingest-1", "backend-ingest-2"):  # one identity per ingest worker
        leaf = cert(site / "backend" / f"{worker}.crt")
        leaf.verify_directly_issued_by(ca)
        assert cn(leaf) == worker
        assert usages(leaf) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        serials.add(leaf.serial_number)
    assert len(serials) == 4
    assert site_init.client_files(site, site_init.BACKEND_CN).cert == (
        site / "backend" / "backend-ingest-1.crt")


def test_the_broker_certificate_names_the_broker_and_loopback(site: Path) -> None:
    server = cert(site / "broker" / "server.crt")
    server.verify_directly_issued_by(cert(site / "ca" / "ca.crt"))
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.bz01.example", "localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert usages(server) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_private_keys_are_readable_by_their_owner_only(site: Path) -> None:
    keys = sorted([*site.rglob("*.key"), *site.rglob("*.key.pem")])
    assert {k.name for k in keys} == {"ca.key", "server.key", "exit-01.key", "exit-02.key",
                                      "backend-ingest-1.key", "backend-ingest-2.key",
                                      "root.key.pem", "officer-console.key.pem"}
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((site / "broker" / "acl").stat().st_mode) == 0o644


def test_the_validity_follows_days(tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    site_init.init_site(tmp_path, site="BZ01", lanes=["exit-01"], days=30, now=now)
    leaf = cert(tmp_path / "lanes" / "exit-01" / "exit-01.crt")
    assert leaf.not_valid_after_utc == now + timedelta(days=30)
    assert leaf.not_valid_before_utc < now  # a little slack for a lane clock behind
    crl = x509.load_pem_x509_crl((tmp_path / "broker" / "crl.pem").read_bytes())
    assert crl.next_update_utc == now + timedelta(days=30)
    assert cert(tmp_path / "ca" / "ca.crt").not_valid_after_utc > leaf.not_valid_after_utc


def test_the_mosquitto_config_requires_client_certificates(site: Path) -> None:
    lines = (site / "broker" / "mosquitto.conf").read_text().splitlines()
    broker = (site / "broker").resolve()
    for expected in ("allow_anonymous false", "listener 8883", "require_certificate true",
                     "use_identity_as_username true", "use_username_as_clientid true",
                     "tls_version tlsv1.2", f"crlfile {broker / 'crl.pem'}",
                     f"acl_file {broker / 'acl'}", f"cafile {broker / 'ca.crt'}",
                     f"certfile {broker / 'server.crt'}", f"keyfile {broker / 'server.key'}"):
        assert expected in lines
    assert not any(line.startswith("password_file") for line in lines)


def test_the_acl_gives_each_lane_only_its_own_topics(site: Path) -> None:
    rules = [line for line in (site / "broker" / "acl").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules == [
        "pattern write gate/v1/+/%u/evt/#",
        "pattern write gate/v1/+/%u/cmd_result",
        "pattern write gate/v1/+/%u/health",
        "pattern write gate/v1/+/%u/state",
        "pattern read gate/v1/+/%u/cmd/#",
        "pattern read gate/v1/+/%u/ack",
        *[line
          for worker in ("backend-ingest-1", "backend-ingest-2")
          for line in (f"user {worker}", "topic read gate/v1/#",
                       "topic write gate/v1/+/+/cmd/#", "topic write gate/v1/+/+/ack")],
    ]


def test_the_lane_config_loads_and_points_at_the_lane_certificate(site: Path) -> None:
    config = load_config(site / "lanes" / "exit-02" / "agent.toml")
    assert (config.lane.site, config.lane.lane) == ("BZ01", "exit-02")
    assert config.mqtt.broker == "mqtts://broker.bz01.example:8883"
    assert config.mqtt.lab is False
    assert config.mqtt.cert == site / "lanes" / "exit-02" / "exit-02.crt"
    assert config.mqtt.key == site / "lanes" / "exit-02" / "exit-02.key"
    assert config.mqtt.ca == site / "lanes" / "exit-02" / "ca.crt"
    assert config.lane.gate == "G2"  # the example's gate belongs to another lane
    assert config.mqtt.command_keys == site / "lanes" / "exit-02" / "command_keys.json"
    # The agent can build its TLS client from these files (key matches cert, CA parses).
    make_client("exit-02", parse_broker_url(config.mqtt.broker),
                TlsFiles(config.mqtt.ca, config.mqtt.cert, config.mqtt.key))


def test_the_agent_template_must_have_the_keys_we_set() -> None:
    template = site_init.agent_template().replace("cert =", "certificate =")
    with pytest.raises(site_init.SiteError, match=r"\[mqtt\] cert"):
        site_init.agent_toml_text(template, site="BZ01", lane="exit-01", broker_url="mqtts://h")
    without = "\n".join(line for line in site_init.agent_template().splitlines()
                        if not line.startswith("command_keys"))
    with pytest.raises(site_init.SiteError, match=r"\[mqtt\] command_keys"):
        site_init.agent_toml_text(without, site="BZ01", lane="exit-01", broker_url="mqtts://h",
                                  command_keys="command_keys.json")


@pytest.mark.parametrize(
    ("lanes", "message"),
    [
        ("exit-01,exit-01", "given twice"),
        ("exit-01,exit/02", "not a valid topic level"),
        ("exit-+", "not a valid topic level"),
        ("lane#1", "not a valid topic level"),
        (",", "no lanes given"),
        (f"exit-01,{site_init.BACKEND_CN}", "reserved for the backend"),
        ("backend-ingest", "reserved for the backend"),
    ],
)
def test_bad_lane_ids_are_refused_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lanes: str, message: str
) -> None:
    code = lanectl(["site", "init", "--site", "BZ01", "--lanes", lanes, "--out",
                    str(tmp_path / "s")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--broker-host", "bad host"], "not a host name"),
        (["--broker-port", "70000"], "not in 1..65535"),
        (["--broker-dir", "relative/dir"], "absolute path"),
    ],
)
def test_bad_broker_settings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code = lanectl(["site", "init", "--site", "BZ01", "--lanes", "exit-01", "--out",
                    str(tmp_path / "s"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_bad_site_code_and_days_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lanectl(["site", "init", "--site", "B Z", "--lanes", "exit-01", "--out",
                    str(tmp_path)]) == 2
    assert "site 'B Z'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        lanectl(["site", "init", "--site", "BZ01", "--lanes", "exit-01", "--out", str(tmp_path),
                 "--days", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_existing_files_need_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(tmp_path / "s") == 0
    before = (tmp_path / "s" / "ca" / "ca.crt").read_bytes()
    assert init(tmp_path / "s") == 2
    assert "already exists (use --force" in capsys.readouterr().err
    assert (tmp_path / "s" / "ca" / "ca.crt").read_bytes() == before
    assert init(tmp_path / "s", "--force") == 0
    assert (tmp_path / "s" / "ca" / "ca.crt").read_bytes() != before


def test_revoke_lists_the_lane_certificate_in_a_signed_crl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(tmp_path) == 0
    capsys.readouterr()
    ca = cert(tmp_path / "ca" / "ca.crt")
    empty = x509.load_pem_x509_crl((tmp_path / "broker" / "crl.pem").read_bytes())
    assert empty.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert len(empty) == 0
    revoked = cert(tmp_path / "lanes" / "exit-02" / "exit-02.crt")

    assert lanectl(["site", "revoke", "--json", "--dir", str(tmp_path), "--cn", "exit-02"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_serials"] == [
        format(revoked.serial_number, "x")]
    crl = x509.load_pem_x509_crl((tmp_path / "broker" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert [entry.serial_number for entry in crl] == [revoked.serial_number]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2

    assert lanectl(["site", "revoke", "--dir", str(tmp_path), "--cn", "exit-02"]) == 2
    assert "no unrevoked client certificate" in capsys.readouterr().err
    assert lanectl(["site", "revoke", "--dir", str(tmp_path), "--cn", "exit-09"]) == 2
    assert lanectl(["site", "revoke", "--dir", str(tmp_path / "nowhere"), "--cn", "x"]) == 2
    assert "site.json" in capsys.readouterr().err


def test_issue_replaces_a_lane_certificate_and_adds_new_lanes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(tmp_path) == 0
    old = cert(tmp_path / "lanes" / "exit-01" / "exit-01.crt")
    assert lanectl(["site", "revoke", "--json", "--dir", str(tmp_path), "--cn", "exit-01"]) == 0
    assert lanectl(["site", "issue", "--json", "--dir", str(tmp_path), "--cn", "exit-01"]) == 0
    new = cert(tmp_path / "lanes" / "exit-01" / "exit-01.crt")
    assert new.serial_number != old.serial_number and cn(new) == "exit-01"
    crl = x509.load_pem_x509_crl((tmp_path / "broker" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(new.serial_number) is None

    assert lanectl(["site", "issue", "--json", "--dir", str(tmp_path), "--cn", "entry-01",
                    "--gate", "E1"]) == 0
    assert load_config(tmp_path / "lanes" / "entry-01" / "agent.toml").lane.lane == "entry-01"
    assert "entry-01" in json.loads((tmp_path / "site.json").read_text())["lanes"]
    capsys.readouterr()
    assert lanectl(["site", "issue", "--dir", str(tmp_path), "--cn", "bad/lane"]) == 2
    assert "not a valid topic level" in capsys.readouterr().err


def test_crl_is_signed_again_with_a_new_expiry_and_keeps_revocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    site_init.init_site(tmp_path, site="BZ01", lanes=["exit-01"], days=30, now=now)
    site_init.revoke(tmp_path, "exit-01", now=now)
    later = now + timedelta(days=25)
    assert site_init.refresh_crl(tmp_path, now=later) == later + timedelta(days=30)
    crl = x509.load_pem_x509_crl((tmp_path / "broker" / "crl.pem").read_bytes())
    assert crl.next_update_utc == later + timedelta(days=30)
    assert len(crl) == 1
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    capsys.readouterr()
    assert lanectl(["site", "crl", "--json", "--dir", str(tmp_path), "--days", "7"]) == 0
    next_update = datetime.fromisoformat(json.loads(capsys.readouterr().out)["next_update"])
    assert timedelta(days=6) < next_update - datetime.now(UTC) <= timedelta(days=7)


# -- a lane folder the agent starts with ---------------------------------------------------------


@pytest.fixture
def customs_trust(tmp_path: Path) -> Path:
    _, trust = gp1.write_keypair(tmp_path / "customs")
    return trust


def test_a_lane_with_gate_and_trust_list_passes_the_agents_config_check(
    tmp_path: Path, customs_trust: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(tmp_path / "s", "--trust", str(customs_trust), "--json") == 0
    assert json.loads(capsys.readouterr().out)["todo"] == {}
    for lane, gate in (("exit-01", "G1"), ("exit-02", "G2")):
        path = tmp_path / "s" / "lanes" / lane / "agent.toml"
        assert check_config(path) == []
        config = load_config(path)
        assert (config.lane.gate, config.lane.any_gate) == (gate, False)
        # What the agent loads at start: the trust list, the same keys as given.
        trust = gp1.TrustList.load(config.passes.trust_list)
        assert config.passes.trust_list == path.parent / "trust.json"
        assert trust.to_json() == gp1.TrustList.load(customs_trust).to_json()


def test_any_gate_lanes_pass_the_check_too(tmp_path: Path, customs_trust: Path) -> None:
    assert lanectl(["site", "init", "--site", "BZ01", "--lanes", "exit-01,exit-02=G2",
                    "--any-gate", "--trust", str(customs_trust), "--out", str(tmp_path)]) == 0
    first = tmp_path / "lanes" / "exit-01" / "agent.toml"
    assert check_config(first) == []
    assert load_config(first).lane.any_gate is True and load_config(first).lane.gate is None
    assert load_config(tmp_path / "lanes" / "exit-02" / "agent.toml").lane.gate == "G2"


def test_what_is_missing_is_listed_and_the_check_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lanectl(["site", "init", "--site", "BZ01", "--lanes", "exit-01", "--out",
                    str(tmp_path), "--json"]) == 0
    todo = json.loads(capsys.readouterr().out)["todo"]["exit-01"]
    assert any("[lane] gate" in item and "exit-01=GATE" in item for item in todo)
    assert any("trust list" in item and "--trust FILE" in item for item in todo)
    problems = [str(p) for p in check_config(tmp_path / "lanes" / "exit-01" / "agent.toml")]
    assert [p.split(":")[0] for p in problems] == ["lane.gate"]
    # Later, the lane's gate on a new lane: it passes once the trust list is there.
    assert lanectl(["site", "issue", "--dir", str(tmp_path), "--cn", "entry-01", "--gate",
                    "E1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["todo"] == [
        f"copy the customs trust list to {tmp_path.resolve() / 'lanes' / 'entry-01' / 'trust.json'}"
        " (or give --trust FILE)"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--lanes", "exit-01=G 1"], "gate 'G 1' of lane 'exit-01'"),
    (["--lanes", "exit-01=G1", "--trust", "/nonexistent/trust.json"], "--trust"),
])
def test_bad_gates_and_trust_lists_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert lanectl(["site", "init", "--site", "BZ01", "--out", str(tmp_path), *extra]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert message in line and "Traceback" not in captured.err
    assert not (tmp_path / "site.json").exists()
