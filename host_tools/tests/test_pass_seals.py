"""Seals on the GP1 pass: ``--seal`` on issue, the optional release key 10, old passes."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest

from edge_agent.errors import ConfigError
from edge_agent.protocols import cose, gp1
from edge_agent.protocols.base45 import b45decode
from host_tools import lanectl as lanectl_main

ISSUE = ["--release-no", "REL-1", "--enterprise", "ACME Co", "--plate", "AB123CD",
         "--gross-kg", "40000", "--site", "SITE1", "--valid-from", "2026-03-01T08:00:00Z",
         "--valid-for", "2h", "--allow-expired"]
AT = ["--at", "2026-03-01T09:00:00Z"]
ES1, ES2 = "ES-00471135", "KHH 778812"


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    assert lanectl_main.main(["pass", "keygen", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys"


def issue(keys: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = lanectl_main.main(["pass", "issue", "--key", str(keys / "issuer.key.pem"), *ISSUE,
                              *extra])
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err


def release_map(text: str) -> dict[int, object]:
    claims = cbor2.loads(cose.decode_sign1(b45decode(text[len(gp1.PREFIX):])).payload)
    return claims[gp1.CLAIM_RELEASE]  # type: ignore[no-any-return]


def test_seals_issued_on_the_command_line_verify_and_inspect(
        keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = issue(keys, capsys, "--seal", ES1, "--seal", ES2)
    assert code == 0 and release_map(text)[10] == [ES1, ES2]
    assert lanectl_main.main(["pass", "verify", text, "--trust", str(keys / "trust.json"),
                              "--site", "SITE1", *AT, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] and result["pass"]["seals"] == [ES1, ES2]
    assert lanectl_main.main(["pass", "inspect", text, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["claims"]["seals"] == [ES1, ES2]


def test_a_pass_without_seals_has_no_key_10_and_no_seals_field(
        keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = issue(keys, capsys)
    assert code == 0 and 10 not in release_map(text)
    assert lanectl_main.main(["pass", "inspect", text, "--json"]) == 0
    assert "seals" not in json.loads(capsys.readouterr().out)["claims"]


@pytest.mark.parametrize(("seals", "why"), [
    ([" ES-1"], "leading or trailing spaces"),
    (["S" * 65], "1..64 characters"),
    ([f"ES-{i}" for i in range(9)], "at most 8"),
])
def test_issue_refuses_seals_no_lane_could_match(keys: Path, capsys: pytest.CaptureFixture[str],
                                                 seals: list[str], why: str) -> None:
    code, out, err = issue(keys, capsys, *[arg for s in seals for arg in ("--seal", s)])
    assert code == 2 and out == ""
    assert why in err and "seal" in err and err.count("\n") == 1


def test_a_mistyped_seals_claim_is_bad_format(keys: Path) -> None:
    key = gp1.load_private_key(keys / "issuer.key.pem")
    text = gp1.issue_pass(key, release_no="R", enterprise="E", plates=["P1"], seals=["ES-1"],
                          declared_gross_kg=1000, site="S", valid_from=1_000, valid_for_s=3600)
    sign1 = cose.decode_sign1(b45decode(text[4:]))
    claims = cbor2.loads(sign1.payload)
    claims[gp1.CLAIM_RELEASE][10] = "ES-1"  # text, not an array of text
    with pytest.raises(ValueError, match="claim 10"):
        gp1.decode_claims(cbor2.dumps(claims))


def test_issue_pass_refuses_one_text_given_as_the_seal_list(keys: Path) -> None:
    key = gp1.load_private_key(keys / "issuer.key.pem")
    with pytest.raises(ConfigError, match="seals: expected a list"):
        gp1.issue_pass(key, release_no="R", enterprise="E", plates=["P1"], seals="ES-1",
                       declared_gross_kg=1000, site="S", valid_from=1_000, valid_for_s=3600)
