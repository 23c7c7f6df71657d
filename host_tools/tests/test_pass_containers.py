"""`lanectl pass issue` refuses a bad ISO 6346 container; `verify` says pass.bad_container."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.protocols import gp1
from host_tools import lanectl as lanectl_main

ISSUE = ["--release-no", "REL-1", "--enterprise", "ACME Co", "--plate", "AB123CD",
         "--gross-kg", "40000", "--site", "SITE1", "--valid-from", "2026-03-01T08:00:00Z",
         "--valid-for", "2h", "--allow-expired"]
AT = ["--at", "2026-03-01T09:00:00Z"]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    assert lanectl_main.main(["pass", "keygen", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys"


def issue(keys: Path, *extra: str) -> int:
    return lanectl_main.main(["pass", "issue", "--key", str(keys / "issuer.key.pem"),
                              *ISSUE, *extra])


def test_issue_refuses_a_wrong_check_digit(keys: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert issue(keys, "--container", "CSQU3054383", "--container", "MSCU1234565") != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "MSCU1234565" in captured.err and "check digit" in captured.err
    assert "issue the pass again" in captured.err and "\n" not in captured.err.strip()


def test_issue_accepts_good_containers(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert issue(keys, "--container", "CSQU3054383", "--container", "MSKU 907032-3") == 0


def test_verify_reports_bad_container(keys: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # an issuer that does not check (not ours)
        m.setattr(gp1, "validate_container", lambda number: None)
        assert issue(keys, "--container", "MSCU1234565") == 0
    text = capsys.readouterr().out.strip()
    code = lanectl_main.main(["pass", "verify", text, "--trust", str(keys / "trust.json"),
                              "--site", "SITE1", *AT, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["valid"] is False
    assert result["reason"] == gp1.BAD_CONTAINER == "pass.bad_container"
    assert "MSCU1234565" in result["detail"]


def test_bad_container_is_refused_before_the_ledger_records_a_use(
        keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agent.drivers.pass_ledger import PassLedger

    key = gp1.load_private_key(keys / "issuer.key.pem")
    monkeypatch.setattr(gp1, "validate_container", lambda number: None)
    text = gp1.issue_pass(key, release_no="R", enterprise="E", plates=["P1"],
                          containers=["MSCU1234565"], declared_gross_kg=1000, site="S",
                          valid_from=1_000, valid_for_s=3600)
    monkeypatch.undo()
    trust = gp1.TrustList.load(keys / "trust.json")
    with PassLedger(tmp_path / "ledger.db") as ledger:
        for _ in range(2):
            verdict = gp1.verify_pass(text, trust=trust, site="S", gate=None,
                                      direction="exit", now=2_000, ledger=ledger)
            assert verdict.reason == "pass.bad_container"
