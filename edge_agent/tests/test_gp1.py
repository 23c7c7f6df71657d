"""GP1 passes: round trip, every rejection code, bounded parsing, key rotation."""

from __future__ import annotations

import hashlib
import json
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
        containers=("MSCU1234566",), declared_gross_kg=40_000, tolerance_kg=250, site="SITE1",
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
        "REL-2026-0001", "ACME Logistics", ("AB123CD", "TR9876"), ("MSCU1234566",))
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


# -- strict COSE/CWT labels, crit and tags -------------------------------------------------------
def sign_parts(key: gp1.PrivateKey, header: dict[object, object], payload: bytes, *,
               unprotected: object = None, tag: bool = True) -> str:
    """A pass with a hand-made protected header (signed) and unprotected header (not signed)."""
    protected = cbor2.dumps(header)
    sig = cose.sign(key, cose.sig_structure(protected, payload))
    body = [protected, {} if unprotected is None else unprotected, payload, sig]
    item: object = cbor2.CBORTag(18, body) if tag else body
    return gp1.PREFIX + b45encode(cbor2.dumps(item))


def header_of(key: gp1.PrivateKey, **extra: object) -> dict[object, object]:
    header: dict[object, object] = {1: cose.alg_for_key(key), 4: gp1.key_id(key)}
    header.update({int(k[1:]): v for k, v in extra.items()})
    return header


def test_hand_built_pass_verifies(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    payload = cbor2.dumps(_claims())
    assert verify(sign_parts(key, header_of(key), payload), trust).valid
    assert verify(sign_parts(key, header_of(key), payload, tag=False), trust).valid
    # Unknown header parameters and claims are still ignored (room to grow).
    assert verify(sign_parts(key, header_of(key, h33=b"x"), payload,
                             unprotected={"note": "hello"}), trust).valid


@pytest.mark.parametrize("label", [True, 1.0])
def test_header_labels_must_be_integers_or_text(key: gp1.PrivateKey, trust: gp1.TrustList,
                                                label: object) -> None:
    payload = cbor2.dumps(_claims())
    aliased = {label: cose.alg_for_key(key), 4: gp1.key_id(key)}
    verdict = verify(sign_parts(key, aliased, payload), trust)
    assert verdict.reason == "pass.bad_format" and "label" in verdict.detail
    for unprotected in ({label: 5}, {b"bytes": 5}):
        text = sign_parts(key, header_of(key), payload, unprotected=unprotected)
        assert verify(text, trust).reason == "pass.bad_format"


@pytest.mark.parametrize(("real", "alias"), [(4, 4.0), (1, True), (-70001, -70001.0),
                                             (5, b"\x05")])
def test_claim_keys_must_be_integers_or_text(key: gp1.PrivateKey, trust: gp1.TrustList,
                                             real: int, alias: object) -> None:
    claims = _claims()
    claims[alias] = claims.pop(real)
    verdict = verify(resign(key, cbor2.dumps(claims)), trust)
    assert (verdict.reason, verdict.claims) == ("pass.bad_format", None), verdict.detail


@pytest.mark.parametrize(("real", "alias"), [(1, True), (5, 5.0), (9, 9.0), (7, b"\x07")])
def test_release_keys_must_be_integers_or_text(key: gp1.PrivateKey, trust: gp1.TrustList,
                                               real: int, alias: object) -> None:
    claims = _claims()
    release = claims[-70001]
    assert isinstance(release, dict)
    release[alias] = release.pop(real)
    assert verify(resign(key, cbor2.dumps(claims)), trust).reason == "pass.bad_format"


@pytest.mark.parametrize("crit", [[3], [99], ["x"], [], 1, [True], [1.0], [1, 33]])
def test_crit_with_labels_we_do_not_process_is_refused(key: gp1.PrivateKey,
                                                       trust: gp1.TrustList,
                                                       crit: object) -> None:
    text = sign_parts(key, header_of(key, h2=crit, h3=1, h33=b"x"), cbor2.dumps(_claims()))
    verdict = verify(text, trust)
    assert verdict.reason == "pass.bad_format" and "crit" in verdict.detail


def test_crit_listing_processed_labels_is_accepted(key: gp1.PrivateKey,
                                                   trust: gp1.TrustList) -> None:
    payload = cbor2.dumps(_claims())
    assert verify(sign_parts(key, header_of(key, h2=[1, 4]), payload), trust).valid
    assert verify(sign_parts(key, header_of(key, h2=[1]), payload), trust).valid


def test_crit_in_the_unprotected_header_is_refused(key: gp1.PrivateKey,
                                                   trust: gp1.TrustList) -> None:
    text = sign_parts(key, header_of(key), cbor2.dumps(_claims()), unprotected={2: [1]})
    assert verify(text, trust).reason == "pass.bad_format"


@pytest.mark.parametrize("unprotected", [
    {5: cbor2.CBORTag(99, 1)},                       # unknown tag
    {5: cbor2.CBORTag(52, b"\x7f\x00\x00\x01")},     # decoded natively as an IP address
    {5: cbor2.CBORTag(43000, [1, 2])},               # decoded natively as a complex number
    {5: [cbor2.CBORTag(18, [])]},                    # a nested COSE_Sign1 tag
    {cbor2.CBORTag(99, 5): 1},                       # a tagged label
])
def test_tags_in_the_unprotected_header_are_refused(key: gp1.PrivateKey, trust: gp1.TrustList,
                                                    unprotected: object) -> None:
    text = sign_parts(key, header_of(key), cbor2.dumps(_claims()), unprotected=unprotected)
    verdict = verify(text, trust)
    assert verdict.reason == "pass.bad_format" and "tag" in verdict.detail


def test_tags_in_signed_parts_and_around_values_are_refused(key: gp1.PrivateKey,
                                                            trust: gp1.TrustList) -> None:
    claims = _claims()
    claims[99] = cbor2.CBORTag(99, "unknown claim, tagged")
    assert verify(resign(key, cbor2.dumps(claims)), trust).reason == "pass.bad_format"
    claims = _claims(c10=cbor2.CBORTag(1000, 1))
    assert verify(resign(key, cbor2.dumps(claims)), trust).reason == "pass.bad_format"
    text = sign_parts(key, header_of(key, h33=cbor2.CBORTag(99, b"x")), cbor2.dumps(_claims()))
    assert verify(text, trust).reason == "pass.bad_format"
    # Tags wrapping the envelope's array or its items, inside the outer tag 18.
    sign1 = cose.decode_sign1(b45decode(resign(key, cbor2.dumps(_claims()))[4:]))
    parts = [sign1.protected, {}, sign1.payload, sign1.signature]
    for inner in (cbor2.CBORTag(99, parts), cbor2.CBORTag(18, parts),
                  [cbor2.CBORTag(24, sign1.protected), *parts[1:]],
                  [*parts[:3], cbor2.CBORTag(99, sign1.signature)]):
        text = "GP1:" + b45encode(cbor2.dumps(cbor2.CBORTag(18, inner)))
        assert verify(text, trust).reason == "pass.bad_format", inner


# -- trust list files ---------------------------------------------------------------------------
def trust_entry_json(**changes: object) -> dict[str, object]:
    entry = gp1.TrustList().with_key(gp1.generate_key().public_key()).to_json()["keys"][0]
    entry.update(changes)
    return dict(entry)


@pytest.mark.parametrize(("doc", "problem"), [
    (b"\xff\xfe not text", "not UTF-8"),
    ("{", "not JSON"),
    ("[" * 100_000, "not JSON"),
    ('"keys"', "'keys' list"),
    ('{"keys": {}}', "'keys' list"),
    ('{"keys": [7]}', "keys[0]: expected an object"),
    ('{"keys": [null]}', "keys[0]: expected an object"),
    ('{"keys": [{}]}', "public_key"),
    ('{"keys": [{"public_key": 5}]}', "public_key"),
    ('{"keys": [{"public_key": "A"}]}', "not base64"),
    ('{"keys": [{"public_key": "-----BEGIN PUBLIC KEY-----"}]}', "not PEM"),
    ('{"keys": [{"public_key": "AAAA"}]}', "not base64 of a DER"),
    ('{"format": "other", "keys": []}', "format"),
    ('{"version": 2, "keys": []}', "version"),
])
def test_malformed_trust_file_is_a_config_error(tmp_path: Path, doc: str | bytes,
                                                problem: str) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
    with pytest.raises(ConfigError) as info:
        gp1.TrustList.load(path)
    assert str(path) in str(info.value) and problem in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"public_key": "MCowBQYDK2VwAyEA!!"}, "not base64"),
    ({"public_key": "MCowBQYDK2VwAyEAcNMFWD"}, "not base64"),
    ({"kid": 17}, "kid must be hex"),
    ({"kid": "zz"}, "not hex"),
    ({"alg": "ES512"}, "does not match"),
    ({"valid_from": "yesterday"}, "valid_from"),
    ({"valid_to": "2026-13-01T00:00:00Z"}, "valid_to"),
    ({"valid_from": True}, "valid_from"),
    ({"valid_from": ["2026-01-01"]}, "valid_from"),
    ({"valid_to": {"at": 1}}, "valid_to"),
    ({"valid_to": float("inf")}, "valid_to"),
    ({"valid_to": 1e300}, "valid_to"),
    ({"valid_from": "2026-02-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"},
     "after valid_to"),
    ({"issuer": None}, "issuer"),
    ({"issuer": 5}, "issuer"),
])
def test_malformed_trust_entry_names_file_entry_and_problem(tmp_path: Path,
                                                            changes: dict[str, object],
                                                            problem: str) -> None:
    path = tmp_path / "trust.json"
    good = trust_entry_json()
    path.write_text(json.dumps({"keys": [good, trust_entry_json(**changes)]}))
    with pytest.raises(ConfigError) as info:
        gp1.TrustList.load(path)
    message = str(info.value)
    assert message.startswith(f"trust list {path}: keys[1]") and problem in message, message
    with pytest.raises(ConfigError, match="keys\\[1\\]"):
        gp1.TrustList.from_json({"keys": [good, trust_entry_json(**changes)]})


def test_trust_entry_accepts_what_it_always_did() -> None:
    entry = trust_entry_json(valid_from=1_700_000_000, valid_to="2030-01-01T00:00:00")
    del entry["alg"], entry["issuer"]
    entry["kid"] = str(entry["kid"]).upper()
    entry["public_key"] = str(entry["public_key"])[:20] + "\n" + str(entry["public_key"])[20:]
    parsed = gp1.TrustEntry.from_json(entry)
    assert parsed.issuer == "" and parsed.valid_from == 1_700_000_000
    assert parsed.valid_to == 1_893_456_000


# -- issuing refuses passes no lane would accept -------------------------------------------------
@pytest.mark.parametrize("bad", [
    {"valid_for_s": -60}, {"valid_for_s": 2**40}, {"declared_gross_kg": 0},
    {"declared_gross_kg": gp1.MAX_GROSS_KG + 1}, {"declared_gross_kg": True},
    {"declared_gross_kg": 40_000.5}, {"tolerance_kg": -1}, {"tolerance_kg": 2**40},
    {"release_no": ""}, {"enterprise": ""}, {"enterprise": "   "}, {"site": ""},
    {"site": "SITE1 "}, {"plates": [""]}, {"plates": "AB123CD"},
    {"gates": ["G1", ""]}, {"containers": ["x" * 65]}, {"issuer": ""},
    {"release_no": "R" * 65}, {"valid_from": -1}, {"valid_from": 2**40 - 60},
    {"issued_at": -5},
    # Every field within its own limit, but together more than a lane (or a QR) takes.
    {"plates": ["P" * 64] * 8, "containers": ["C" * 64] * 8, "gates": ["G" * 64] * 8},
])
def test_issue_refuses_passes_every_lane_would_reject(key: gp1.PrivateKey,
                                                      bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        issue(key, **bad)
    assert "\n" not in str(info.value)


def test_largest_pass_that_issues_is_accepted(key: gp1.PrivateKey, trust: gp1.TrustList) -> None:
    text = issue(key, plates=["P" * 64] * 8, containers=(), gates=["G1"],
                 declared_gross_kg=gp1.MAX_GROSS_KG, tolerance_kg=0, valid_for_s=1)
    assert len(text) <= gp1.MAX_TEXT_CHARS
    assert verify(text, trust, now=T0 - HOUR).valid


# -- revocation hashes --------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["00" * 16, "ab" * 16, "AB" * 16, "aB" * 16])
def test_revocation_hash_parses_32_hex_digits(text: str) -> None:
    assert gp1.parse_revocation_hash(text) == bytes.fromhex(text)


@pytest.mark.parametrize("text", [
    "ab " * 15 + "ab", "ab" * 8 + " " + "ab" * 8, " " + "ab" * 16, "ab" * 16 + "\n",
    "ab" * 15 + "a", "ab" * 17, "", "0x" + "ab" * 15, "g" * 32, "\uff10" * 32, 7, None,
])
def test_revocation_hash_refuses_anything_else(text: object) -> None:
    with pytest.raises(ValueError, match="revocation hash"):
        gp1.parse_revocation_hash(text)  # type: ignore[arg-type]


def test_parsed_revocation_hash_matches_the_pass(key: gp1.PrivateKey,
                                                 trust: gp1.TrustList) -> None:
    cti = b"\x24" * 16
    typed = gp1.revocation_hash(cti).hex().upper()
    revoked = {gp1.parse_revocation_hash(typed)}
    assert verify(issue(key, cti=cti), trust, revoked=revoked).reason == "pass.revoked"
