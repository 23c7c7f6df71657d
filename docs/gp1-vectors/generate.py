"""Regenerate ``vectors.json``: GP1 passes with the verdict every implementation must reach.

Run from the repository root: ``.venv/bin/python docs/gp1-vectors/generate.py``. Keys are
derived from fixed seeds, so the EdDSA vectors are byte-for-byte reproducible (Ed25519 is
deterministic). ES256 signatures are randomised: the published ES256 pass is kept while it
still verifies to the same claims, so regenerating changes only the vectors whose claims
changed. Only regenerate when the format changes on purpose.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge_agent.protocols import cose, gp1
from edge_agent.protocols.base45 import b45decode, b45encode

HERE = Path(__file__).parent
NOW = 1_767_258_000  # 2026-01-01T09:00:00Z
CONTEXT = {"site": "KHH-FTZ-1", "gate": "G2", "direction": "exit", "now": NOW, "skew_s": 300}
CTI = bytes.fromhex("00112233445566778899aabbccddeeff")
REVOKED_CTI = bytes.fromhex("dead0000beef0000dead0000beef0000")


def seed(label: str) -> bytes:
    return hashlib.sha256(b"gatelane gp1 vector " + label.encode()).digest()


def keys() -> dict[str, Any]:
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(seed("issuer-ed25519"))
    scalar = int.from_bytes(seed("issuer-es256"), "big") % (2**255)
    es = ec.derive_private_key(scalar, ec.SECP256R1())
    rogue = ed25519.Ed25519PrivateKey.from_private_bytes(seed("rogue-ed25519"))
    return {"ed25519": ed, "es256": es, "rogue": rogue}


def pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


BASE = dict(release_no="KHH-REL-2026-000417", enterprise="Kaohsiung Demo Logistics Co.",
            plates=("KLA-1234", "TR-5678"), containers=("MSCU1234566",),
            declared_gross_kg=38_450, tolerance_kg=300, site="KHH-FTZ-1", gates=("G1", "G2"),
            direction="exit", issuer="customs", valid_from=NOW - 3600, valid_for_s=4 * 3600,
            cti=CTI)


def issue(key: Any, **overrides: Any) -> str:
    return gp1.issue_pass(key, **{**BASE, **overrides})


def tamper(text: str) -> str:
    sign1 = cose.decode_sign1(b45decode(text[4:]))
    claims = cbor2.loads(sign1.payload)
    claims[-70001][5] = 18_450
    return "GP1:" + b45encode(cose.encode_sign1(sign1.protected, cbor2.dumps(claims),
                                                sign1.signature))


def resign(key: Any, claims: dict[Any, Any]) -> str:
    payload = cbor2.dumps(claims)
    protected = cose.encode_protected(cose.alg_for_key(key), gp1.key_id(key))
    sig = cose.sign(key, cose.sig_structure(protected, payload))
    return "GP1:" + b45encode(cose.encode_sign1(protected, payload, sig))


def published(name: str) -> str | None:
    """The text of vector ``name`` in the current ``vectors.json``, if there is one."""
    try:
        doc = json.loads((HERE / "vectors.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return next((v["text"] for v in doc.get("vectors", []) if v.get("name") == name), None)


def kept_if_same(name: str, fresh: str, trust: gp1.TrustList) -> str:
    """The published text of ``name`` while it verifies to the claims ``fresh`` carries."""
    def claims(text: str) -> dict[str, Any] | None:
        verdict = gp1.verify_pass(text, trust=trust, site="KHH-FTZ-1", gate="G2",
                                  direction="exit", now=NOW)
        return verdict.claims.to_json() if verdict.valid and verdict.claims else None

    old = published(name)
    return old if old is not None and claims(old) is not None and claims(old) == claims(
        fresh) else fresh


def main() -> None:
    k = keys()
    trust = gp1.TrustList().with_key(k["ed25519"].public_key()).with_key(k["es256"].public_key())
    valid = issue(k["ed25519"])
    bad_claims = cbor2.loads(cose.decode_sign1(b45decode(valid[4:])).payload)
    bad_claims[-70001][5] = "38450"
    bad_container = cbor2.loads(cose.decode_sign1(b45decode(valid[4:])).payload)
    bad_container[-70001][4] = ["MSCU1234565"]  # check digit 5, ISO 6346 gives 6
    sealed = issue(k["ed25519"], seals=("ES-00471135", "KHH-778812"))
    v = []

    def add(name: str, text: str, reason: str | None, note: str, **extra: Any) -> None:
        v.append({"name": name, "text": text, "valid": reason is None, "reason": reason,
                  "note": note, **extra})

    add("valid-eddsa", valid, None, "reference pass, Ed25519",
        claims=gp1.verify_pass(valid, trust=trust, site="KHH-FTZ-1", gate="G2",
                               direction="exit", now=NOW).claims.to_json())  # type: ignore[union-attr]
    add("valid-es256", kept_if_same("valid-es256", issue(k["es256"]), trust), None,
        "same claims, ES256 (signature varies per run)")
    add("valid-any-gate", issue(k["ed25519"], gates=(), tolerance_kg=None), None,
        "no gate list (any gate) and no tolerance claim")
    add("tampered-weight", tamper(valid), "pass.bad_signature",
        "declared_gross_kg changed after signing")
    add("unknown-key", issue(k["rogue"]), "pass.unknown_key", "signed by a key not trusted")
    add("expired", issue(k["ed25519"], valid_from=NOW - 8 * 3600), "pass.expired",
        "exp 4 h before now")
    add("not-yet-valid", issue(k["ed25519"], valid_from=NOW + 3600), "pass.not_yet_valid",
        "nbf 1 h after now (beyond the 300 s skew)")
    add("wrong-site", issue(k["ed25519"], site="TPE-FTZ-3"), "pass.wrong_site", "other site")
    add("wrong-gate", issue(k["ed25519"], gates=("G7",)), "pass.wrong_gate", "gate G7 only")
    add("wrong-direction", issue(k["ed25519"], direction="entry"), "pass.wrong_direction",
        "entry pass at an exit lane")
    add("revoked", issue(k["ed25519"], cti=REVOKED_CTI), "pass.revoked",
        "SHA-256(cti)[:16] is on the revocation list")
    add("already-used", valid, "pass.already_used", "the reference pass presented a second time",
        use_first=True)
    add("bad-prefix", "HC1:" + valid[4:], "pass.bad_format", "wrong prefix")
    add("bad-base45", valid[:20] + "a" + valid[21:], "pass.bad_format", "lower-case character")
    add("truncated", valid[:-12], "pass.bad_format", "last 12 characters missing")
    add("trailing-bytes", "GP1:" + b45encode(b45decode(valid[4:]) + b"\x00"), "pass.bad_format",
        "a byte after the COSE structure")
    add("mistyped-claim", resign(k["ed25519"], bad_claims), "pass.bad_format",
        "signed, but declared_gross_kg is text")
    add("oversized", "GP1:" + "0" * 2000, "pass.bad_format", "longer than the size limit")
    add("valid-seals", sealed, None, "the reference claims and two seals (release key 10)",
        claims=gp1.verify_pass(sealed, trust=trust, site="KHH-FTZ-1", gate="G2",
                               direction="exit", now=NOW).claims.to_json())  # type: ignore[union-attr]
    add("bad-container", resign(k["ed25519"], bad_container), "pass.bad_container",
        "signed, but the container's check digit is wrong")
    doc = {
        "format": "gp1-test-vectors", "version": 1,
        "context": {**CONTEXT, "revoked": [gp1.revocation_hash(REVOKED_CTI).hex()]},
        "trust": trust.to_json(),
        "keys": {name: {"kid": gp1.key_id(key).hex(), "private_key_pem": pem(key)}
                 for name, key in k.items()},
        "reference_issue": {**{kk: (list(vv) if isinstance(vv, tuple) else vv)
                               for kk, vv in BASE.items() if kk != "cti"}, "cti": CTI.hex()},
        "vectors": v,
    }
    (HERE / "vectors.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
