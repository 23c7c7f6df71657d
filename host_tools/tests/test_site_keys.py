"""``lanectl site``: ingest worker identities and command signing keys (files and records).

What a real broker makes of the worker identities is in test_site_broker.py.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from edge_agent.assembly import load_command_keys
from edge_agent.config import load_config
from edge_agent.telemetry.commands import (
    Command,
    CommandVerifier,
    KeyRole,
    Rejection,
    sign_command,
)
from edge_agent.telemetry.topics import LaneTopics
from host_tools import site_init
from host_tools.lanectl import main as lanectl

SITE = "BZ01"


def init(out: Path, *extra: str) -> int:
    return lanectl(["site", "init", "--site", SITE, "--lanes", "exit-01=G1,exit-02=G2", "--out",
                    str(out), *extra])


def record(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "site.json").read_text()))


def acl_users(out: Path) -> list[str]:
    lines = (out / "broker" / "acl").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("user ")]


def private_key(out: Path, role: str) -> tuple[str, Ed25519PrivateKey]:
    entry = next(e for e in record(out)["command_keys"] if e["role"] == role)
    key = load_pem_private_key((out / entry["file"]).read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return entry["kid"], key


def release(kid: str, key: Ed25519PrivateKey, lane: str, name: str = "remote_release") -> bytes:
    now = int(time.time())
    claims = {"cmd_id": f"cmd-{lane}-{name}", "name": name, "site": SITE, "lane": lane,
              "iat": now, "exp": now + 60, "nonce": f"n-{lane}-{name}", "issuer": "officer-7",
              "args": {"challenge": "ch-1", "reason_ref": "evt-1"}}
    return sign_command(key, kid, claims)


# -- ingest workers ---------------------------------------------------------------------------


def test_init_makes_one_identity_per_ingest_worker(tmp_path: Path) -> None:
    assert init(tmp_path, "--ingest-workers", "3") == 0
    workers = ["backend-ingest-1", "backend-ingest-2", "backend-ingest-3"]
    assert record(tmp_path)["ingest_workers"] == workers
    assert acl_users(tmp_path) == workers
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    for worker in workers:
        files = site_init.client_files(tmp_path, worker)
        assert files.cert == tmp_path / "backend" / f"{worker}.crt"
        leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
        leaf.verify_directly_issued_by(ca)
        assert leaf.subject.rfc4514_string() == f"CN={worker},O=gatelane"


def test_a_bad_worker_count_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        init(tmp_path / "a", "--ingest-workers", "0")
    assert "--ingest-workers must be at least 1" in capsys.readouterr().err
    assert init(tmp_path / "b", "--ingest-workers", "101") == 2
    assert "1..100" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_issue_adds_a_worker_and_says_the_broker_must_reload_its_acl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(tmp_path) == 0
    capsys.readouterr()
    assert lanectl(["site", "issue", "--json", "--dir", str(tmp_path), "--ingest-worker"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["cn"] == "backend-ingest-3" and added["kind"] == "ingest_worker"
    assert added["cert"] == str(tmp_path / "backend" / "backend-ingest-3.crt")
    assert added["acl"] == str(tmp_path / "broker" / "acl") and "SIGHUP" in added["next"]
    assert acl_users(tmp_path) == ["backend-ingest-1", "backend-ingest-2", "backend-ingest-3"]

    # By name, with a gap; the next automatic one continues above the highest.
    assert lanectl(["site", "issue", "--json", "--dir", str(tmp_path), "--cn",
                    "backend-ingest-7"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "ingest_worker"
    assert site_init.next_ingest_worker(tmp_path) == "backend-ingest-8"
    assert record(tmp_path)["ingest_workers"][-1] == "backend-ingest-7"
    assert record(tmp_path)["lanes"] == ["exit-01", "exit-02"]

    # Re-issuing a known worker leaves the ACL alone.
    acl = (tmp_path / "broker" / "acl").read_bytes()
    assert lanectl(["site", "issue", "--json", "--dir", str(tmp_path), "--cn",
                    "backend-ingest-1"]) == 0
    assert "acl" not in json.loads(capsys.readouterr().out)
    assert (tmp_path / "broker" / "acl").read_bytes() == acl


def test_issue_needs_exactly_one_of_cn_and_ingest_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(tmp_path) == 0
    for extra in ([], ["--cn", "exit-03", "--ingest-worker"]):
        with pytest.raises(SystemExit):
            lanectl(["site", "issue", "--dir", str(tmp_path), *extra])
    assert "--cn" in capsys.readouterr().err
    assert lanectl(["site", "issue", "--dir", str(tmp_path), "--cn", "backend-ingest"]) == 2
    assert "reserved for the backend" in capsys.readouterr().err


# -- command keys -----------------------------------------------------------------------------


def test_the_command_keys_are_secret_files_and_the_record_holds_their_public_half(
    tmp_path: Path,
) -> None:
    site_init.init_site(tmp_path, site=SITE, lanes=["exit-01"])
    entries = record(tmp_path)["command_keys"]
    assert [(e["role"], e["file"]) for e in entries] == [
        ("root", "keys/root.key.pem"), ("command", "keys/officer-console.key.pem")]
    for entry in entries:
        assert stat.S_IMODE((tmp_path / entry["file"]).stat().st_mode) == 0o600
        assert entry["kid"].startswith(Path(entry["file"]).name.removesuffix(".key.pem") + "-")
    lane_keys = json.loads((tmp_path / "lanes" / "exit-01" / "command_keys.json").read_text())
    assert lane_keys == {"keys": [{k: e[k] for k in ("kid", "role", "public_key")}
                                  for e in entries]}
    assert "PRIVATE" not in (tmp_path / "lanes" / "exit-01" / "command_keys.json").read_text()


def test_every_lane_accepts_the_officer_key_and_keeps_each_key_in_its_tier(
    tmp_path: Path,
) -> None:
    site_init.init_site(tmp_path, site=SITE, lanes=["exit-01", "exit-02"], any_gate=True)
    officer_kid, officer = private_key(tmp_path, "command")
    root_kid, root = private_key(tmp_path, "root")
    for lane in ("exit-01", "exit-02"):
        config = load_config(tmp_path / "lanes" / lane / "agent.toml")
        assert config.mqtt.command_keys is not None
        trusted = load_command_keys(config.mqtt.command_keys)
        assert {key.kid: key.role for key in trusted} == {
            officer_kid: KeyRole.COMMAND, root_kid: KeyRole.ROOT}
        verifier = CommandVerifier(tmp_path / f"{lane}.db", site=SITE, lane=lane, trusted=trusted)
        try:
            topics = LaneTopics(SITE, lane)
            accepted = verifier.verify(topics.command("remote_release"),
                                       release(officer_kid, officer, lane), time.time())
            assert isinstance(accepted, Command) and accepted.kid == officer_kid
            # The root key is not an officer's key, and an officer's key is not the root.
            for kid, key, name in ((root_kid, root, "remote_release"),
                                   (officer_kid, officer, "revocations")):
                refused = verifier.verify(topics.command(name), release(kid, key, lane, name),
                                          time.time())
                assert isinstance(refused, Rejection) and refused.code == "cmd.key_not_allowed"
        finally:
            verifier.close()


def test_a_lane_added_later_gets_the_keys_while_the_root_key_is_offline(tmp_path: Path) -> None:
    site_init.init_site(tmp_path, site=SITE, lanes=["exit-01"], gates={"exit-01": "G1"})
    (tmp_path / "keys" / "root.key.pem").unlink()  # moved to the offline safe
    site_init.issue(tmp_path, "entry-01", gate="E1")
    lanes = tmp_path / "lanes"
    assert (lanes / "entry-01" / "command_keys.json").read_bytes() == (
        lanes / "exit-01" / "command_keys.json").read_bytes()
    config = load_config(lanes / "entry-01" / "agent.toml")
    assert config.mqtt.command_keys == lanes / "entry-01" / "command_keys.json"


# -- a site made before workers and command keys ----------------------------------------------


def test_an_older_site_record_still_works_and_can_grow(tmp_path: Path) -> None:
    site_init.init_site(tmp_path, site=SITE, lanes=["exit-01"], ingest_workers=1)
    old = record(tmp_path)
    for name in ("ingest_workers", "command_keys"):
        del old[name]
    old.update(format="gatelane.site/1", backend="backend-ingest")
    (tmp_path / "site.json").write_text(json.dumps(old))

    assert site_init.client_files(tmp_path, "backend-ingest").cert == (
        tmp_path / "backend" / "backend-ingest.crt")
    site_init.issue(tmp_path, "backend-ingest")  # its one backend identity, renewed
    assert (tmp_path / "backend" / "backend-ingest.crt").is_file()
    added = site_init.issue(tmp_path, site_init.next_ingest_worker(tmp_path))
    assert (added.cn, added.ingest_worker, added.acl_rewritten) == ("backend-ingest-1", True, True)
    assert acl_users(tmp_path) == ["backend-ingest", "backend-ingest-1"]
    # A new lane: no command keys in this site, so its config names none.
    site_init.issue(tmp_path, "exit-02", gate="G2")
    assert load_config(tmp_path / "lanes" / "exit-02" / "agent.toml").mqtt.command_keys is None
    assert not (tmp_path / "lanes" / "exit-02" / "command_keys.json").exists()
    assert record(tmp_path)["format"] == site_init.SITE_FORMAT
