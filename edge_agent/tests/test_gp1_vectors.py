"""The published GP1 test vectors (docs/gp1-vectors/vectors.json) pin encoder and verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from edge_agent.drivers.pass_ledger import PassLedger
from edge_agent.protocols import gp1

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "gp1-vectors" / "vectors.json"
DOC: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))


def verify(text: str, ledger: PassLedger | None = None) -> gp1.Verdict:
    ctx = DOC["context"]
    return gp1.verify_pass(
        text, trust=gp1.TrustList.from_json(DOC["trust"]), site=ctx["site"], gate=ctx["gate"],
        direction=ctx["direction"], now=ctx["now"], skew_s=ctx["skew_s"],
        revoked={bytes.fromhex(h) for h in ctx["revoked"]}, ledger=ledger,
    )


@pytest.mark.parametrize("vector", DOC["vectors"], ids=[v["name"] for v in DOC["vectors"]])
def test_vector_verdict(vector: dict[str, Any], tmp_path: Path) -> None:
    with PassLedger(tmp_path / "ledger.db") as ledger:
        if vector.get("use_first"):
            assert verify(vector["text"], ledger).valid
        verdict = verify(vector["text"], ledger)
    assert (verdict.valid, verdict.reason) == (vector["valid"], vector["reason"])
    if "claims" in vector:
        assert verdict.claims is not None and verdict.claims.to_json() == vector["claims"]


def test_every_rejection_code_has_a_vector() -> None:
    reasons = {v["reason"] for v in DOC["vectors"]}
    codes = {getattr(gp1, name) for name in ("BAD_FORMAT", "UNKNOWN_KEY", "BAD_SIGNATURE",
             "EXPIRED", "NOT_YET_VALID", "WRONG_SITE", "WRONG_GATE", "WRONG_DIRECTION",
             "REVOKED", "ALREADY_USED", "BAD_CONTAINER")}
    assert codes <= reasons


def test_encoder_reproduces_the_reference_pass_exactly() -> None:
    pem = DOC["keys"]["ed25519"]["private_key_pem"].encode()
    key = serialization.load_pem_private_key(pem, password=None)
    ref = dict(DOC["reference_issue"])
    ref["cti"] = bytes.fromhex(ref["cti"])
    text = gp1.issue_pass(key, **ref)  # type: ignore[arg-type]
    assert text == next(v["text"] for v in DOC["vectors"] if v["name"] == "valid-eddsa")


def test_kids_match_the_keys() -> None:
    for entry in DOC["keys"].values():
        key = serialization.load_pem_private_key(entry["private_key_pem"].encode(), None)
        assert gp1.key_id(key).hex() == entry["kid"]  # type: ignore[arg-type]
