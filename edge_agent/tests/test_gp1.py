"""GP1 passes: round trip, every rejection code, bounded parsing, key rotation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization

from edge_agent.drivers.pass_ledger import PassLedger
from edge_agent.errors import ConfigError
from edge_agent.protocols import cose, gp1
from edge_agent.protocols.base45 import b45decode, b45encode

T0 = 1_760_000_000  # a fixed "now" (unix seconds)
HOUR = 3600


@pytest.fixture(scope="module", params=["ed25519", "es256"])
def key(request: pytest.FixtureRequest) -> gp1.PrivateKey:
    return gp1.generate_key(request.param)


@pytest.fixture(scope="module")
def trust(key: gp1.PrivateKey) -> gp1.TrustList:
    return gp1.TrustList().with_key(key.public_key())


def issue(key: gp1.PrivateKey, **overrides: object) -> str:
    fields: dict[str, object] = dict(
        release_no="REL-2026-0001", enterprise="ACME Logistics", plates=("AB123CD", "TR9876"),
        containers=("MSCU1234565",), declared_gross_kg=40_000, tolerance_kg=250, site="SITE1",
        gates=("G1", "G2"), direction="exit", valid_from=T0 - HOUR, valid_for_s=4 * HOUR,
    )
    fields.update(overrides)
    return gp1.issue_pass(key, **fields)  # type: ignore[arg-type]


def verify(text: str, trust: gp1.TrustList, **overrides: object) -> gp1.Verdict:
    args: dict[str, object] = dict(trust=trust, site="SITE1", gate="G1", direction="exit", now=T0)
    args.update(overrides)
    return gp1.verify_pass(text, **args)  # type: ignore[arg-type]


def resign(key: gp1.PrivateKey, payload: bytes, *, kid: bytes | None = None) -> str:
    protected = cose.encode_protected(cose.alg_for_key(key), kid or gp1.key_id(key))
    sig = cose.sign(key, cose.sig_structure(protected, payload))
    return gp1.PREFIX + b45encode(cose.encode_sign1(protected, payload, sig))


def payload_of(text: str) -> dict[object, object]:
    sign1 = cose.decode_sign1(b45decode(text[4:]))
    return dict(cbor2.loads(sign1.payload))


# -- round trip ---------------------------------------------------------------------------------
def test_round_trip_carries_every_claim(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    cti = bytes(range(16))
    verdict = verify(issue(key, cti=cti), trust)
    assert verdict == gp1.Verdict(True, None, verdict.claims)
    c = verdict.claims
    assert c is not None
    assert (c.release_no, c.enterprise, c.plates, c.containers) == (
        "REL-2026-0001", "ACME Logistics", ("AB123CD", "TR9876"), ("MSCU1234565",))
    assert (c.declared_gross_kg, c.tolerance_kg, c.site, c.gates, c.direction) == (
        40_000, 250, "SITE1", ("G1", "G2"), "exit")
    assert (c.iss, c.nbf, c.exp, c.cti) == ("customs", T0 - HOUR, T0 + 3 * HOUR, cti)
    assert c.to_json()["cti"] == cti.hex()


def test_wire_layout_matches_the_format(key: gp1.PrivateKey) -> None:
    text = issue(key)
    assert text.startswith("GP1:")
    assert set(text[4:]) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    sign1 = cose.decode_sign1(b45decode(text[4:]))
    assert cbor2.loads(sign1.protected) == {1: cose.alg_for_key(key), 4: gp1.key_id(key)}
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert sign1.kid == hashlib.sha256(der).digest()[:8]
    claims = payload_of(text)
    assert set(claims) == {1, 4, 5, 6, 7, -70001}
    assert len(claims[7]) == 16  # type: ignore[arg-type]
    assert claims[-70001][9] == 0  # type: ignore[index]


def test_optional_claims_may_be_absent(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    text = issue(key, tolerance_kg=None, gates=(), containers=(), direction="entry")
    assert 6 not in payload_of(text)[-70001] and 8 not in payload_of(text)[-70001]  # type: ignore[operator]
    verdict = verify(text, trust, gate="ANY-GATE", direction="entry")
    assert verdict.valid and verdict.claims is not None
    assert verdict.claims.tolerance_kg is None and verdict.claims.gates == ()


def test_each_pass_gets_a_fresh_cti(key: gp1.PrivateKey) -> None:
    assert payload_of(issue(key))[7] != payload_of(issue(key))[7]


# -- rejections, in verification order -----------------------------------------------------------
@pytest.mark.parametrize("text", [
    "", "HC1:ABC", "gp1:ABC", "GP1:", "GP1:abc", "GP1:A", "GP1:::::", "GP1:GGW",
    "GP1:" + b45encode(b"\x00\x01\x02"), "GP1:" + b45encode(cbor2.dumps([1, 2, 3, 4])),
])
def test_malformed_text_is_bad_format(text: str, trust: gp1.TrustList) -> None:
    verdict = verify(text, trust)
    assert (verdict.valid, verdict.reason, verdict.claims) == (False, "pass.bad_format", None)


def test_non_text_input_does_not_raise(trust: gp1.TrustList) -> None:
    assert verify(None, trust).reason == "pass.bad_format"  # type: ignore[arg-type]
    assert verify(b"GP1:", trust).reason == "pass.bad_format"  # type: ignore[arg-type]


def test_unknown_key(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    rogue = gp1.generate_key("ed25519")
    assert verify(issue(rogue), trust).reason == "pass.unknown_key"


def test_tampered_payload_is_bad_signature(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    sign1 = cose.decode_sign1(b45decode(issue(key)[4:]))
    claims = cbor2.loads(sign1.payload)
    claims[-70001][5] = 10_000  # lighter declared weight
    forged = cose.encode_sign1(sign1.protected, cbor2.dumps(claims), sign1.signature)
    verdict = verify("GP1:" + b45encode(forged), trust)
    assert (verdict.reason, verdict.claims) == ("pass.bad_signature", None)


def test_signature_by_other_key_claiming_trusted_kid(key: gp1.PrivateKey,
                                                      trust: gp1.TrustList) -> None:
    rogue = gp1.generate_key("ed25519" if cose.alg_for_key(key) == cose.ALG_EDDSA else "es256")
    forged = resign(rogue, payload_of_bytes(issue(key)), kid=gp1.key_id(key))
    assert verify(forged, trust).reason == "pass.bad_signature"


def payload_of_bytes(text: str) -> bytes:
    return cose.decode_sign1(b45decode(text[4:])).payload


def test_flipped_signature_byte(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    sign1 = cose.decode_sign1(b45decode(issue(key)[4:]))
    sig = bytes([sign1.signature[0] ^ 1]) + sign1.signature[1:]
    text = "GP1:" + b45encode(cose.encode_sign1(sign1.protected, sign1.payload, sig))
    assert verify(text, trust).reason == "pass.bad_signature"


@pytest.mark.parametrize(("now", "reason"), [
    (T0 - HOUR - 301, "pass.not_yet_valid"),
    (T0 + 3 * HOUR + 300, "pass.expired"),
])
def test_validity_window(key: gp1.PrivateKey, trust: gp1.TrustList, now: int,
                         reason: str) -> None:
    verdict = verify(issue(key), trust, now=now)
    assert verdict.reason == reason
    assert verdict.claims is not None  # signature was fine: claims are reported as evidence


def test_clock_skew_is_tolerated(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    text = issue(key)
    assert verify(text, trust, now=T0 - HOUR - 299).valid
    assert verify(text, trust, now=T0 + 3 * HOUR + 299).valid
    assert not verify(text, trust, now=T0 - HOUR - 10, skew_s=0).valid


@pytest.mark.parametrize(("override", "reason"), [
    ({"site": "SITE2"}, "pass.wrong_site"),
    ({"gate": "G9"}, "pass.wrong_gate"),
    ({"direction": "entry"}, "pass.wrong_direction"),
])
def test_lane_binding(key: gp1.PrivateKey, trust: gp1.TrustList, override: dict[str, str],
                      reason: str) -> None:
    assert verify(issue(key), trust, **override).reason == reason


def test_unknown_gate_at_lane_skips_gate_check(key: gp1.PrivateKey,
                                               trust: gp1.TrustList) -> None:
    assert verify(issue(key), trust, gate=None).valid


def test_revoked(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    cti = b"\x42" * 16
    text = issue(key, cti=cti)
    revoked = {gp1.revocation_hash(cti)}
    assert gp1.revocation_hash(cti) == hashlib.sha256(cti).digest()[:16]
    assert verify(text, trust, revoked=revoked).reason == "pass.revoked"
    assert verify(issue(key), trust, revoked=revoked).valid


def test_single_use_ledger(key: gp1.PrivateKey, trust: gp1.TrustList, tmp_path: Path) -> None:
    text = issue(key)
    with PassLedger(tmp_path / "ledger.db") as ledger:
        assert verify(text, trust, ledger=ledger).valid
        assert verify(text, trust, ledger=ledger).reason == "pass.already_used"
        # A rejected pass is not consumed.
        other = issue(key)
        assert verify(other, trust, ledger=ledger, site="X").reason == "pass.wrong_site"
        assert verify(other, trust, ledger=ledger).valid


def test_ledger_is_keyed_by_cti_not_signature(key: gp1.PrivateKey, trust: gp1.TrustList,
                                              tmp_path: Path) -> None:
    cti = b"\x07" * 16
    first, second = issue(key, cti=cti), issue(key, cti=cti, release_no="OTHER")
    assert first != second
    with PassLedger(tmp_path / "ledger.db") as ledger:
        assert verify(first, trust, ledger=ledger).valid
        assert verify(second, trust, ledger=ledger).reason == "pass.already_used"


# -- bounded parsing ----------------------------------------------------------------------------
def test_oversized_text_is_refused_before_decoding(trust: gp1.TrustList) -> None:
    verdict = verify("GP1:" + "0" * (gp1.MAX_TEXT_CHARS + 3), trust)
    assert verdict.reason == "pass.bad_format" and "limit" in verdict.detail


def test_oversized_cose_is_refused(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    text = resign(key, cbor2.dumps({1: "x" * 2000}))
    assert verify(text, trust).reason == "pass.bad_format"


@pytest.mark.parametrize("cut", [1, 10, 60])
def test_truncated_pass(key: gp1.PrivateKey, trust: gp1.TrustList, cut: int) -> None:
    text = issue(key)
    raw = b45decode(text[4:])
    assert verify("GP1:" + b45encode(raw[:-cut]), trust).reason == "pass.bad_format"


def test_trailing_bytes_are_refused(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    raw = b45decode(issue(key)[4:])
    assert verify("GP1:" + b45encode(raw + b"\x00"), trust).reason == "pass.bad_format"


@pytest.mark.parametrize("envelope", [
    cbor2.CBORTag(98, [b"", {}, b"", b""]),            # COSE_Sign, not Sign1
    [b"\xa0", {}, b"", b"\x00" * 64],                   # no alg/kid
    [cbor2.dumps({1: -257, 4: b"12345678"}), {}, b"", b"\x00" * 64],  # RS256: not accepted
    [cbor2.dumps({1: -8, 4: "text-kid"}), {}, b"", b"\x00" * 64],
    [cbor2.dumps({1: -8, 4: b"12345678"}), {}, "payload", b"\x00" * 64],
    [cbor2.dumps({1: -8, 4: b"12345678"}), {}, b"", b"\x00" * 10],
    [cbor2.dumps({1: -8, 4: b"12345678"}), [], b"", b"\x00" * 64],
    {"not": "an array"},
])
def test_wrong_envelope_shapes(envelope: object, trust: gp1.TrustList) -> None:
    assert verify("GP1:" + b45encode(cbor2.dumps(envelope)), trust).reason == "pass.bad_format"


def test_indefinite_and_duplicate_keys_refused() -> None:
    with pytest.raises(cose.CoseError):
        cose.loads_bounded(b"\x9f\x01\xff", max_bytes=100, what="x")  # indefinite array
    with pytest.raises(cose.CoseError):
        cose.loads_bounded(b"\xa2\x01\x01\x01\x02", max_bytes=100, what="x")
    with pytest.raises(cose.CoseError):
        cose.loads_bounded(cbor2.dumps(cbor2.CBORTag(1, 0)), max_bytes=100, what="x")
    with pytest.raises(cose.CoseError):
        cose.loads_bounded(b"\x81" * 20 + b"\x00", max_bytes=100, what="x")  # too deep


def _claims(**release_overrides: object) -> dict[object, object]:
    release: dict[int, object] = {1: "R", 2: "E", 3: ["P1"], 4: [], 5: 100, 7: "SITE1", 9: 0}
    for k, v in release_overrides.items():
        if v is None:
            release.pop(int(k[1:]), None)
        else:
            release[int(k[1:])] = v
    return {1: "customs", 4: T0 + HOUR, 5: T0 - HOUR, 6: T0 - HOUR, 7: b"\x01" * 16,
            -70001: release}


@pytest.mark.parametrize("bad", [
    {"c1": 5}, {"c1": None}, {"c2": ""}, {"c3": "P1"}, {"c3": [1]}, {"c3": ["x" * 65]},
    {"c3": ["P"] * 9}, {"c5": -1}, {"c5": True}, {"c5": 1.5}, {"c5": 2**41}, {"c6": "10"},
    {"c7": b"SITE1"}, {"c8": "G1"}, {"c9": 2}, {"c9": None},
])
def test_signed_but_mistyped_claims_are_bad_format(key: gp1.PrivateKey, trust: gp1.TrustList,
                                                   bad: dict[str, object]) -> None:
    good = resign(key, cbor2.dumps(_claims()))
    assert verify(good, trust).valid
    text = resign(key, cbor2.dumps(_claims(**bad)))
    verdict = verify(text, trust)
    assert (verdict.reason, verdict.claims) == ("pass.bad_format", None), verdict.detail


@pytest.mark.parametrize(("claim", "value"), [(7, b"short"), (7, "text"), (4, "soon"), (1, 7),
                                              (-70001, [1])])
def test_mistyped_top_level_claims(key: gp1.PrivateKey, trust: gp1.TrustList, claim: int,
                                   value: object) -> None:
    claims = _claims()
    claims[claim] = value
    assert verify(resign(key, cbor2.dumps(claims)), trust).reason == "pass.bad_format"


# -- trust list and rotation --------------------------------------------------------------------
def test_key_rotation_with_overlap() -> None:
    old, new = gp1.generate_key(), gp1.generate_key()
    trust = (gp1.TrustList()
             .with_key(old.public_key(), valid_from=T0 - 100 * HOUR, valid_to=T0 + 2 * HOUR)
             .with_key(new.public_key(), valid_from=T0 - HOUR))
    old_pass, new_pass = issue(old), issue(new)
    assert verify(old_pass, trust).valid and verify(new_pass, trust).valid
    # After the old key's window the old pass has no usable key; the new one still verifies.
    later = T0 + 2 * HOUR + 301
    assert verify(old_pass, trust, now=later).reason == "pass.unknown_key"
    assert verify(new_pass, trust, now=later).valid
    # Before the new key's window opens it is not yet usable.
    assert verify(new_pass, trust, now=T0 - 2 * HOUR).reason == "pass.unknown_key"


def test_every_key_with_a_kid_is_tried() -> None:
    real, other = gp1.generate_key(), gp1.generate_key()
    clash = gp1.key_id(real)
    decoy = gp1.TrustEntry(clash, other.public_key(), None, None, "customs")
    genuine = gp1.TrustEntry(clash, real.public_key(), None, None, "customs")
    trust = gp1.TrustList([decoy, genuine])
    assert verify(issue(real), trust).valid


def test_key_is_bound_to_its_issuer() -> None:
    key = gp1.generate_key()
    trust = gp1.TrustList().with_key(key.public_key(), issuer="customs")
    assert verify(issue(key, issuer="someone-else"), trust).reason == "pass.unknown_key"


def test_trust_list_file_round_trip(tmp_path: Path) -> None:
    ed, ec = gp1.generate_key("ed25519"), gp1.generate_key("es256")
    trust = (gp1.TrustList().with_key(ed.public_key(), valid_from="2026-01-01T00:00:00Z")
             .with_key(ec.public_key(), issuer="port-authority", valid_to=T0 + HOUR))
    trust.save(tmp_path / "trust.json")
    loaded = gp1.TrustList.load(tmp_path / "trust.json")
    assert loaded.to_json() == trust.to_json()
    assert [e.kid for e in loaded.entries] == [gp1.key_id(ed), gp1.key_id(ec)]
    assert loaded.entries[0].valid_from == 1767225600


@pytest.mark.parametrize("doc", [
    "{}", "[]", '{"keys": [{"kid": "00"}]}', '{"keys": [{"public_key": "!!"}]}', "not json",
])
def test_bad_trust_list_names_the_problem(tmp_path: Path, doc: str) -> None:
    (tmp_path / "t.json").write_text(doc)
    with pytest.raises(ConfigError, match="trust list"):
        gp1.TrustList.load(tmp_path / "t.json")


def test_trust_entry_with_wrong_kid_is_refused() -> None:
    entry = gp1.TrustList().with_key(gp1.generate_key().public_key()).to_json()["keys"][0]
    entry["kid"] = "0011223344556677"
    with pytest.raises(ConfigError, match="does not match"):
        gp1.TrustList.from_json({"keys": [entry]})


def test_write_keypair(tmp_path: Path) -> None:
    key_path, trust_path = gp1.write_keypair(tmp_path / "keys", "es256")
    assert key_path.name == "issuer.key.pem" and trust_path.name == "trust.json"
    assert key_path.stat().st_mode & 0o077 == 0
    key = gp1.load_private_key(key_path)
    assert verify(issue(key), gp1.TrustList.load(trust_path)).valid


def test_issue_refuses_bad_arguments(key: gp1.PrivateKey) -> None:
    for bad in ({"direction": "sideways"}, {"declared_gross_kg": -1}, {"valid_for_s": 0},
                {"cti": b"short"}, {"plates": ["x" * 100]}):
        with pytest.raises(ConfigError):
            issue(key, **bad)


def test_inspect_does_not_need_trust(key: gp1.PrivateKey) -> None:
    info = gp1.inspect_pass(issue(key))
    assert info["kid"] == gp1.key_id(key).hex() and info["signature_verified"] is False
    assert info["claims"]["site"] == "SITE1"
    with pytest.raises(ValueError):
        gp1.inspect_pass("GP1:???")
