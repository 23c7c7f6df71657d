"""``lanectl pass`` contracts: keygen, issue, verify (text and image), inspect."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.protocols import gp1
from host_tools import cmd_pass
from host_tools import lanectl as lanectl_main


def lanectl(*argv: str) -> int:
    return lanectl_main.main(list(argv))


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    assert lanectl("pass", "keygen", "--out", str(tmp_path / "keys")) == 0
    return tmp_path / "keys"


ISSUE = ["--release-no", "REL-1", "--enterprise", "ACME Co", "--plate", "AB123CD",
         "--plate", "TR77", "--container", "MSCU1234566", "--gross-kg", "40000",
         "--tolerance-kg", "200", "--site", "SITE1", "--gate", "G1",
         "--valid-from", "2026-03-01T08:00:00Z", "--valid-for", "2h", "--allow-expired"]


def issue(keys: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert lanectl("pass", "issue", "--key", str(keys / "issuer.key.pem"), *ISSUE, *extra) == 0
    return capsys.readouterr().out.strip()


def verify_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = lanectl("pass", "verify", *argv, "--json")
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("alg", ["ed25519", "es256"])
def test_keygen_writes_key_and_trust(tmp_path: Path, alg: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert lanectl("pass", "keygen", "--out", str(tmp_path), "--alg", alg, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert (tmp_path / "issuer.key.pem").is_file()
    trust = gp1.TrustList.load(tmp_path / "trust.json")
    assert out["kid"] == trust.entries[0].kid.hex()


def test_issue_then_verify(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = issue(keys, capsys)
    assert text.startswith("GP1:")
    code, result = verify_json(capsys, text, "--trust", str(keys / "trust.json"), "--site",
                               "SITE1", "--gate", "G1", "--at", "2026-03-01T09:00:00Z")
    assert code == 0
    assert set(result) >= {"valid", "reason", "pass"}
    assert (result["valid"], result["reason"]) == (True, None)
    p = result["pass"]
    assert p["plates"] == ["AB123CD", "TR77"] and p["declared_gross_kg"] == 40000
    assert p["nbf"] == 1772352000 and p["exp"] == 1772352000 + 7200


@pytest.mark.parametrize(("extra", "reason"), [
    (["--site", "OTHER"], "pass.wrong_site"),
    (["--site", "SITE1", "--gate", "G7"], "pass.wrong_gate"),
    (["--site", "SITE1", "--direction", "entry"], "pass.wrong_direction"),
    (["--site", "SITE1", "--at", "2026-03-01T12:00:00Z"], "pass.expired"),
    (["--site", "SITE1", "--at", "2026-03-01T07:00:00"], "pass.not_yet_valid"),
])
def test_verify_rejections(keys: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                           reason: str) -> None:
    text = issue(keys, capsys)
    args = [text, "--trust", str(keys / "trust.json")]
    if "--at" not in extra:
        extra = [*extra, "--at", "2026-03-01T09:00:00Z"]
    code, result = verify_json(capsys, *args, *extra)
    assert (code, result["valid"], result["reason"]) == (1, False, reason)


def test_verify_untrusted_and_garbage(keys: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    lanectl("pass", "keygen", "--out", str(tmp_path / "other"))
    capsys.readouterr()
    text = issue(keys, capsys)
    at = ["--at", "2026-03-01T09:00:00Z"]
    _, result = verify_json(capsys, text, "--trust", str(tmp_path / "other" / "trust.json"),
                            "--site", "SITE1", *at)
    assert result["reason"] == "pass.unknown_key"
    _, result = verify_json(capsys, "GP1:!!", "--trust", str(keys / "trust.json"),
                            "--site", "SITE1")
    assert (result["reason"], result["pass"]) == ("pass.bad_format", None)


def test_verify_with_ledger_consumes(keys: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    text = issue(keys, capsys)
    args = [text, "--trust", str(keys / "trust.json"), "--site", "SITE1", "--at",
            "2026-03-01T09:00:00Z", "--ledger", str(tmp_path / "ledger.db")]
    assert verify_json(capsys, *args)[1]["valid"] is True
    assert verify_json(capsys, *args)[1]["reason"] == "pass.already_used"


def test_issue_png_verifies_from_image(keys: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "pass.png"
    text = issue(keys, capsys, "--png", str(png))
    code, result = verify_json(capsys, "--image", str(png), "--trust", str(keys / "trust.json"),
                               "--site", "SITE1", "--at", "2026-03-01T09:00:00Z")
    assert code == 0 and result["valid"] and result["pass"]["release_no"] == "REL-1"
    assert lanectl("qr", "decode", str(png), "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["texts"] == [text]


def test_verify_image_without_code(keys: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    Image.new("L", (200, 200), 255).save(tmp_path / "blank.png")
    code, result = verify_json(capsys, "--image", str(tmp_path / "blank.png"), "--trust",
                               str(keys / "trust.json"), "--site", "SITE1")
    assert (code, result["reason"]) == (1, "pass.bad_format")
    assert "no QR code" in result["detail"]


def test_verify_needs_exactly_one_input(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lanectl("pass", "verify", "--trust", str(keys / "trust.json"), "--site", "S") == 2
    assert "exactly one" in capsys.readouterr().err


def test_missing_trust_file_is_a_clean_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert lanectl("pass", "verify", "GP1:X", "--trust", str(tmp_path / "nope.json"),
                   "--site", "S") == 2
    assert "trust list" in capsys.readouterr().err


def test_inspect(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = issue(keys, capsys)
    assert lanectl("pass", "inspect", text, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["claims"]["release_no"] == "REL-1" and info["alg"] == "EdDSA"
    assert lanectl("pass", "inspect", "nonsense", "--json") == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["reason"] == "pass.bad_format" and "error" in refused


@pytest.mark.parametrize(("at", "state"), [
    ("2026-03-01T07:30:00Z", "not valid yet: valid in 30m 0s"),
    ("2026-03-01T08:00:01Z", "expires in 1h 59m"),
    ("2026-03-04T10:00:00Z", "expired 3d 0h ago"),
])
def test_inspect_shows_the_dates(keys: Path, capsys: pytest.CaptureFixture[str], at: str,
                                 state: str) -> None:
    text = issue(keys, capsys)  # valid 2026-03-01 08:00..10:00 UTC
    assert lanectl("pass", "inspect", text, "--at", at, "--json") == 0
    dates = json.loads(capsys.readouterr().out)["dates"]
    assert dates["nbf"] == "2026-03-01T08:00:00Z" and dates["exp"] == "2026-03-01T10:00:00Z"
    assert dates["iat"] is not None and dates["iat"].endswith("Z")
    assert dates["state"] == state
    assert lanectl("pass", "inspect", text, "--at", at) == 0
    human = capsys.readouterr().out
    assert "2026-03-01T08:00:00Z .. 2026-03-01T10:00:00Z" in human and state in human
    assert "release_no" in human and "NOT verified" in human


def test_inspect_of_garbage_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert lanectl("pass", "inspect", "nonsense") == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not a readable GP1 pass" in one_line_error(captured.err)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30m", 1800), ("2h", 7200),
                                               ("1d", 86400), ("1h30m", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert cmd_pass.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "h", "1h junk"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cmd_pass.parse_duration(text)


def test_bad_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k.pem").write_text("not a key")
    assert lanectl("pass", "issue", "--key", str(tmp_path / "k.pem"), *ISSUE) == 2
    assert "issuer key" in capsys.readouterr().err


def run_lanectl(*argv: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a child process: what a technician sees, tracebacks too."""
    return subprocess.run([sys.executable, "-m", "host_tools.lanectl", *argv],
                          capture_output=True, text=True, timeout=60, check=False)


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lanectl pass"), stderr
    return lines[0]


@pytest.mark.parametrize(("doc", "problem"), [
    ("not json", "not JSON"),
    ('{"keys": "none"}', "'keys' list"),
    ('{"keys": [42]}', "keys[0]: expected an object"),
    ('{"keys": [{"public_key": "%%%"}]}', "not base64"),
    ('{"keys": [{"public_key": "-----BEGIN PUBLIC KEY-----\\nMCow\\n-----END"}]}', "PEM"),
])
def test_malformed_trust_file_is_one_line_exit_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 doc: str, problem: str) -> None:
    path = tmp_path / "trust.json"
    path.write_text(doc)
    assert lanectl("pass", "verify", "GP1:X", "--trust", str(path), "--site", "S") == 2
    captured = capsys.readouterr()
    line = one_line_error(captured.err)
    assert str(path) in line and problem in line and captured.out == ""


def test_malformed_trust_dates_via_the_entry_point(keys: Path, tmp_path: Path) -> None:
    doc = json.loads((keys / "trust.json").read_text())
    doc["keys"][0]["valid_to"] = "next tuesday"
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(doc))
    proc = run_lanectl("pass", "verify", "GP1:X", "--trust", str(path), "--site", "S")
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_line_error(proc.stderr)
    assert str(path) in line and "valid_to" in line


BAD_ISSUES = [
    (["--valid-for", "0"], "valid_for"),
    (["--valid-for=-1h"], "--valid-for"),
    (["--valid-for", "9999999999d"], "validity period too long"),
    (["--gross-kg", "0"], "gross"),
    (["--gross-kg", "-40000"], "gross"),
    (["--gross-kg", "999999999"], "gross"),
    (["--gross-kg", "heavy"], "--gross-kg"),
    (["--tolerance-kg", "-1"], "tolerance"),
    (["--site", ""], "site"),
    (["--site", "SITE1 "], "site"),
    (["--release-no", ""], "release number"),
    (["--enterprise", ""], "enterprise"),
    (["--plate", ""], "plate"),
    (["--plate", "P" * 65], "plate"),
    (["--gate", "G" * 70], "gate"),
    (["--valid-from", "1969-12-31T00:00:00Z"], "1970"),
    (["--valid-from", "not a date"], "--valid-from"),
    (["--direction", "sideways"], "--direction"),
    ([arg for i in range(7) for arg in ("--plate", f"{'C' * 62}{i:02d}")][2:]
     + [arg for i in range(7) for arg in ("--gate", f"{'G' * 62}{i:02d}")], "too large"),
]


@pytest.mark.parametrize(("extra", "problem"), BAD_ISSUES)
def test_issue_refuses_passes_no_lane_accepts(keys: Path, capsys: pytest.CaptureFixture[str],
                                              extra: list[str], problem: str) -> None:
    argv = ["pass", "issue", "--key", str(keys / "issuer.key.pem"), *ISSUE, *extra]
    try:
        code = lanectl(*argv)
    except SystemExit as exc:  # argparse refuses the value itself
        code = int(str(exc.code))
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert problem in one_line_error(captured.err)


def test_issue_refuses_an_already_expired_pass(keys: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = ["pass", "issue", "--key", str(keys / "issuer.key.pem"), *ISSUE[:-1]]
    assert lanectl(*base) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "already be expired" in one_line_error(captured.err)
    # A fresh pass (valid from now) issues without the flag.
    fresh = [a for a in base if a not in ("--valid-from", "2026-03-01T08:00:00Z")]
    assert lanectl(*fresh) == 0
    assert capsys.readouterr().out.startswith("GP1:")


def test_issue_errors_through_the_entry_point(keys: Path) -> None:
    for extra, problem in (BAD_ISSUES[0], BAD_ISSUES[-2]):
        proc = run_lanectl("pass", "issue", "--key", str(keys / "issuer.key.pem"), *ISSUE,
                           *extra)
        assert proc.returncode == 2 and proc.stdout == ""
        assert problem in one_line_error(proc.stderr)
