"""Red-team cases against GP1 passes, the trust list, ``lanectl pass`` and revocation hashes.

Every case goes through the public interface (``verify_pass``, ``TrustList.load``,
``parse_revocation_hash``, the command-argument check, the ``lanectl`` entry point in a child
process) and builds hostile passes from raw CBOR, as an attacker would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.errors import ConfigError
from edge_agent.identity.iso6346 import check_digit
from edge_agent.protocols import gp1
from edge_agent.protocols.base45 import b45encode
from edge_agent.telemetry.command_args import structure_problems

NOW = 1_767_258_000
KEY = Ed25519PrivateKey.generate()
TRUST = gp1.TrustList().with_key(KEY.public_key())
KID = gp1.key_id(KEY)
EDDSA = -8


def claims(**release_changes: Any) -> dict[Any, Any]:
    release: dict[Any, Any] = {1: "REL-1", 2: "ACME", 3: ["AB123CD"], 4: [], 5: 40_000,
                               7: "SITE1", 9: 0}
    release.update({int(k[1:]): v for k, v in release_changes.items()})
    return {1: "customs", 4: NOW + 3600, 5: NOW - 3600, 6: NOW - 3600, 7: b"\x01" * 16,
            -70001: release}


def forge(header: Any = None, payload: Any = None, *, unprotected: Any = None,
          tag: int | None = 18) -> str:
    """A correctly signed pass built by hand: any header, any claims, any envelope tag."""
    protected = cbor2.dumps({1: EDDSA, 4: KID} if header is None else header)
    body = cbor2.dumps(claims() if payload is None else payload)
    signature = KEY.sign(cbor2.dumps(["Signature1", protected, b"", body]))
    envelope: Any = [protected, {} if unprotected is None else unprotected, body, signature]
    return gp1.PREFIX + b45encode(cbor2.dumps(envelope if tag is None else
                                              cbor2.CBORTag(tag, envelope)))


def verdict(text: str) -> gp1.Verdict:
    return gp1.verify_pass(text, trust=TRUST, site="SITE1", gate="G1", direction="exit",
                           now=NOW)


def test_control_hand_built_passes_are_valid() -> None:
    assert verdict(forge()).valid
    assert verdict(forge(tag=None)).valid  # untagged COSE_Sign1 is allowed


# -- 1. labels encoded as true or 1.0 ------------------------------------------------------------
@pytest.mark.parametrize("label", [True, 1.0])
def test_1_header_alg_label_as_true_or_float(label: Any) -> None:
    result = verdict(forge({label: EDDSA, 4: KID}))
    assert (result.valid, result.reason) == (False, "pass.bad_format")


@pytest.mark.parametrize("label", [True, 1.0])
def test_1_unprotected_header_label_as_true_or_float(label: Any) -> None:
    assert verdict(forge(unprotected={label: EDDSA})).reason == "pass.bad_format"


@pytest.mark.parametrize(("real", "alias"), [(1, True), (1, 1.0), (4, 4.0), (5, 5.0),
                                             (-70001, -70001.0)])
def test_1_cwt_claim_keys_as_true_or_float(real: int, alias: Any) -> None:
    payload = claims()
    payload[alias] = payload.pop(real)
    assert verdict(forge(payload=payload)).reason == "pass.bad_format"


@pytest.mark.parametrize(("real", "alias"), [(1, True), (1, 1.0), (5, 5.0), (7, 7.0),
                                             (9, 9.0)])
def test_1_release_claim_keys_as_true_or_float(real: int, alias: Any) -> None:
    payload = claims()
    payload[-70001][alias] = payload[-70001].pop(real)
    assert verdict(forge(payload=payload)).reason == "pass.bad_format"


# -- 2. crit ----------------------------------------------------------------------------------
@pytest.mark.parametrize("crit", [[3], [99], ["exp-policy"], [1, 99], [], "all"])
def test_2_crit_listing_labels_not_understood(crit: Any) -> None:
    header = {1: EDDSA, 2: crit, 3: 0, 4: KID, 99: 1, "exp-policy": 1}
    assert verdict(forge(header)).reason == "pass.bad_format"


def test_2_crit_in_unprotected_header() -> None:
    assert verdict(forge(unprotected={2: [99], 99: 1})).reason == "pass.bad_format"


# -- 3. CBOR tags other than the outer 18 ------------------------------------------------------
@pytest.mark.parametrize("unprotected", [
    {4: cbor2.CBORTag(99, b"kid")},
    {33: cbor2.CBORTag(1000, [1, 2])},
    {5: cbor2.CBORTag(52, b"\x7f\x00\x00\x01")},   # an IPv4 address, decoded natively
    {5: cbor2.CBORTag(43000, [1.0, 2.0])},          # a complex number, decoded natively
    {5: cbor2.CBORTag(18, [])},
])
def test_3_tags_inside_the_unprotected_header(unprotected: Any) -> None:
    assert verdict(forge(unprotected=unprotected)).reason == "pass.bad_format"


def test_3_tags_wrapping_values() -> None:
    assert verdict(forge(payload={**claims(), 99: cbor2.CBORTag(99, 1)})).reason == \
        "pass.bad_format"
    assert verdict(forge(payload=claims(c10=cbor2.CBORTag(99, "x")))).reason == \
        "pass.bad_format"
    assert verdict(forge({1: EDDSA, 4: KID, 33: cbor2.CBORTag(99, b"x")})).reason == \
        "pass.bad_format"


@pytest.mark.parametrize("tag", [98, 99, 55799, 61])
def test_3_outer_tag_other_than_18(tag: int) -> None:
    assert verdict(forge(tag=tag)).reason == "pass.bad_format"


def test_3_tag_between_tag_18_and_the_array() -> None:
    protected = cbor2.dumps({1: EDDSA, 4: KID})
    body = cbor2.dumps(claims())
    signature = KEY.sign(cbor2.dumps(["Signature1", protected, b"", body]))
    parts = [protected, {}, body, signature]
    for inner in (cbor2.CBORTag(99, parts), cbor2.CBORTag(18, parts)):
        text = gp1.PREFIX + b45encode(cbor2.dumps(cbor2.CBORTag(18, inner)))
        assert verdict(text).reason == "pass.bad_format"


# -- 4. malformed trust list files ---------------------------------------------------------------
GOOD_ENTRY = TRUST.to_json()["keys"][0]
MALFORMED_TRUST: dict[str, str | bytes] = {
    "bad-json": "{\"keys\": [",
    "not-utf8": b"\xff\xfe\x00",
    "wrong-shape-array": "[]",
    "wrong-shape-keys": '{"keys": {"kid": "x"}}',
    "wrong-shape-entry": '{"keys": ["368d24a6506267ab"]}',
    "entry-null": '{"keys": [null]}',
    "bad-base64": json.dumps({"keys": [{**GOOD_ENTRY, "public_key": "not*base64!"}]}),
    "bad-der": json.dumps({"keys": [{**GOOD_ENTRY, "public_key": "AAAA"}]}),
    "pem-key": json.dumps({"keys": [{**GOOD_ENTRY, "public_key":
                                     "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n"
                                     "-----END PUBLIC KEY-----\n"}]}),
    "key-not-text": json.dumps({"keys": [{**GOOD_ENTRY, "public_key": 12}]}),
    "bad-date": json.dumps({"keys": [{**GOOD_ENTRY, "valid_from": "31/12/2026"}]}),
    "date-wrong-type": json.dumps({"keys": [{**GOOD_ENTRY, "valid_to": [2026]}]}),
    "date-bool": json.dumps({"keys": [{**GOOD_ENTRY, "valid_to": True}]}),
    # Python's json accepts Infinity, so a lane's loader meets it too.
    "date-infinite": json.dumps({"keys": [{**GOOD_ENTRY, "valid_to": float("inf")}]}),
    "date-huge": json.dumps({"keys": [{**GOOD_ENTRY, "valid_to": 1e300}]}),
    "kid-not-text": json.dumps({"keys": [{**GOOD_ENTRY, "kid": 5}]}),
    "issuer-null": json.dumps({"keys": [{**GOOD_ENTRY, "issuer": None}]}),
}


@pytest.fixture(params=sorted(MALFORMED_TRUST))
def bad_trust(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.json"
    doc = MALFORMED_TRUST[request.param]
    path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
    return path


def test_4_trust_list_load_raises_config_error_naming_the_file(bad_trust: Path) -> None:
    with pytest.raises(ConfigError) as info:
        gp1.TrustList.load(bad_trust)
    message = str(info.value)
    assert str(bad_trust) in message and "\n" not in message
    assert len(message) > len(f"trust list {bad_trust}: ")  # says what is wrong


@pytest.mark.parametrize("name", sorted(set(MALFORMED_TRUST) - {"bad-json", "not-utf8"}))
def test_4_trust_list_from_json_raises_config_error(name: str) -> None:
    with pytest.raises(ConfigError):
        gp1.TrustList.from_json(json.loads(MALFORMED_TRUST[name]))


def lanectl(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host_tools.lanectl", *argv],
                          capture_output=True, text=True, timeout=60, check=False)


def assert_one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lanectl"), proc.stderr
    return lines[0]


def test_4_lanectl_verify_with_malformed_trust_file(bad_trust: Path) -> None:
    line = assert_one_line_refusal(lanectl("pass", "verify", forge(), "--trust",
                                           str(bad_trust), "--site", "SITE1"))
    assert str(bad_trust) in line


# -- 5. lanectl pass issue refuses passes every lane rejects --------------------------------------
@pytest.fixture(scope="module")
def issuer_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("issuer")
    assert lanectl("pass", "keygen", "--out", str(out)).returncode == 0
    return out / "issuer.key.pem"


GOOD_ISSUE = {"--release-no": "REL-1", "--enterprise": "ACME", "--plate": "AB123CD",
              "--gross-kg": "40000", "--site": "SITE1"}
LONG = "X" * 65


@pytest.mark.parametrize("change", [
    {"--valid-for": "0"}, {"--valid-for": "0s"}, {"--valid-for=": "-2h"},
    {"--valid-for=": "-60"}, {"--gross-kg": "0"}, {"--gross-kg=": "-1"},
    {"--gross-kg": "99999999999"}, {"--gross-kg": "2000000"}, {"--site": ""},
    {"--release-no": ""}, {"--enterprise": ""}, {"--plate": ""}, {"--site": "   "},
    {"--tolerance-kg=": "-5"}, {"--valid-from": "1900-01-01T00:00:00Z"},
    {"--valid-from": "2020-01-01T00:00:00Z"},  # its whole window is already over
    {"--valid-for": "99999999999d"}, {"--plate": LONG}, {"--release-no": LONG},
    {"--enterprise": LONG}, {"--site": LONG}, {"--gate": LONG}, {"--container": LONG},
    {"--direction": "sideways"}, {"--direction": ""},
], ids=lambda change: " ".join(f"{k}{v!r}" for k, v in change.items()))
def test_5_issue_refuses_with_one_line(issuer_key: Path, change: dict[str, str]) -> None:
    options = {**GOOD_ISSUE}
    options.update({k.rstrip("="): v for k, v in change.items() if not k.endswith("=")})
    argv = ["pass", "issue", "--key", str(issuer_key)]
    for flag, value in options.items():
        argv += [flag, value]
    argv += [f"{k}{v}" for k, v in change.items() if k.endswith("=")]
    assert_one_line_refusal(lanectl(*argv))


def test_5_issue_refuses_a_pass_too_large_for_the_qr_code(issuer_key: Path) -> None:
    argv = ["pass", "issue", "--key", str(issuer_key),
            *(part for option in GOOD_ISSUE.items() for part in option)]
    for i in range(7):  # GOOD_ISSUE has a plate: eight in all
        serial = f"{i:06d}"  # valid ISO 6346 numbers: size is what must be refused here
        argv += ["--container", f"MSCU{serial}{check_digit('MSCU' + serial)}",
                 "--gate", f"{'G' * 62}{i:02d}", "--plate", f"{'P' * 62}{i:02d}"]
    line = assert_one_line_refusal(lanectl(*argv))
    assert "too large" in line


def test_5_control_a_sound_issue_still_works(issuer_key: Path) -> None:
    argv = ["pass", "issue", "--key", str(issuer_key),
            *(part for option in GOOD_ISSUE.items() for part in option)]
    proc = lanectl(*argv)
    assert proc.returncode == 0 and proc.stdout.startswith("GP1:")


# -- 6. revocation hashes with spaces ------------------------------------------------------------
HASH = gp1.revocation_hash(b"\x01" * 16).hex()
SPACED = [" ".join(HASH[i:i + 2] for i in range(0, 32, 2)), HASH[:16] + " " + HASH[16:],
          # 32 characters, so a length check alone passes it; bytes.fromhex gives 15 bytes.
          HASH[:16] + "  " + HASH[16:30], HASH[:30] + "  ",
          " " + HASH, HASH + " ", HASH[:-1], HASH + "0", "0x" + HASH[2:], "\t" + HASH]


@pytest.mark.parametrize("text", SPACED)
def test_6_parse_revocation_hash_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="revocation hash"):
        gp1.parse_revocation_hash(text)


@pytest.mark.parametrize("text", [HASH, HASH.upper()])
def test_6_parse_revocation_hash_accepts_32_hex_digits(text: str) -> None:
    assert gp1.parse_revocation_hash(text) == bytes.fromhex(HASH)


@pytest.mark.parametrize("text", SPACED)
def test_6_revocations_command_refuses_the_entry(text: str) -> None:
    problems = structure_problems("revocations", {"version": 1, "pass_hashes": [HASH, text]})
    assert problems and all(p.startswith("pass_hashes[1]") for p in problems), problems


def test_6_revocations_command_accepts_good_hashes() -> None:
    args = {"version": 1, "pass_hashes": [HASH, HASH.upper()]}
    assert structure_problems("revocations", args) == []


def test_6_local_revocation_file_refuses_spaced_hash(tmp_path: Path) -> None:
    from edge_agent.assembly import load_revocations

    path = tmp_path / "revoked.txt"
    path.write_text(f"{HASH}\n{SPACED[0]}  # typed by hand\n")
    with pytest.raises(ConfigError, match=":2:"):
        load_revocations(path)
