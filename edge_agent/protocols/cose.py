"""COSE_Sign1 (RFC 9052) for release passes: bounded CBOR decoding, signing and verification.

Pure functions over bytes. Only what GP1 needs: a protected header ``{1: alg, 4: kid}``, EdDSA
(-8, Ed25519) and ES256 (-7, P-256 with raw ``r || s`` signatures), an empty external AAD.

Decoding is bounded: the size is checked before any CBOR is parsed, indefinite lengths,
duplicate map keys, deep nesting, trailing bytes and every semantic tag (except one outer 18,
the COSE_Sign1 tag) are refused, and every field's type is checked after decoding. Header
labels must be integers or text: Python's ``True == 1 == 1.0`` would otherwise let a ``true``
or ``1.0`` key stand in for label 1. A ``crit`` header may only list labels this module
processes (RFC 9052 section 3.1: anything else makes the message invalid).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from edge_agent.errors import RemoteProtocolError

ALG_EDDSA = -8
ALG_ES256 = -7
ALG_NAMES = {ALG_EDDSA: "EdDSA", ALG_ES256: "ES256"}
HEADER_ALG = 1
HEADER_CRIT = 2
HEADER_KID = 4
PROCESSED_LABELS = frozenset({HEADER_ALG, HEADER_KID})
COSE_SIGN1_TAG = 18
MAX_SIGN1_BYTES = 1024
MAX_DEPTH = 6

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class CoseError(RemoteProtocolError, ValueError):
    """A COSE structure is malformed, oversized or of the wrong shape."""


@dataclass(frozen=True, slots=True)
class Sign1:
    """A decoded COSE_Sign1; ``protected`` keeps the exact bytes the signature covers."""

    protected: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes


def _refuse_tag(decoder: Any) -> Any:
    raise cbor2.CBORDecodeError("semantic tags are not allowed here")


# Every tag cbor2 would otherwise turn into a Python object (dates, bignums, regexes, IP
# addresses, complex numbers, ...): refused before its decoder runs.
_REFUSED_TAGS = {
    tag: _refuse_tag
    for tag in (*range(0, 6), *range(21, 38), 52, 54, 100, *range(256, 262), 1004, 43000,
                55799)
}

# What plain CBOR decodes to. Anything else means cbor2 decoded a tag natively: the walk in
# ``loads_bounded`` refuses it even if the list above misses that tag.
_PLAIN_SCALARS = (bool, int, float, str, bytes, type(None), type(cbor2.undefined),
                  cbor2.CBORSimpleValue)


def _refuse_tags(item: Any, what: str, *, outer_tag: int | None) -> None:
    """Raise ``CoseError`` if ``item`` holds any tag, except ``outer_tag`` around the whole."""
    if isinstance(item, cbor2.CBORTag) and outer_tag is not None and item.tag == outer_tag:
        item = item.value
    pending = [item]
    while pending:
        value = pending.pop()
        if isinstance(value, cbor2.CBORTag):
            raise CoseError(f"{what}: unexpected tag {value.tag}")
        if isinstance(value, (list, tuple)):
            pending.extend(value)
        elif isinstance(value, Mapping):  # dict, or cbor2.frozendict for a map used as a key
            pending.extend(value.keys())
            pending.extend(value.values())
        elif not isinstance(value, _PLAIN_SCALARS):
            raise CoseError(f"{what}: unexpected tagged value ({type(value).__name__})")


def require_labels(header: Mapping[Any, Any], what: str) -> None:
    """Every key must be an integer (not bool, not float) or text, as COSE and CWT require."""
    for key in header:
        if type(key) is not int and type(key) is not str:
            raise CoseError(f"{what}: label {key!r} is not an integer or text")


def loads_bounded(data: bytes, *, max_bytes: int, what: str, outer_tag: int | None = None) -> Any:
    """Decode exactly one CBOR item from ``data`` under strict limits; raise ``CoseError``.

    No semantic tag is accepted anywhere, except ``outer_tag`` around the whole item.
    """
    if len(data) > max_bytes:
        raise CoseError(f"{what}: {len(data)} bytes exceeds the {max_bytes}-byte limit")
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            semantic_decoders=_REFUSED_TAGS,
        )
        item = decoder.decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise CoseError(f"{what}: invalid CBOR ({exc})") from None
    if stream.tell() != len(data):
        raise CoseError(f"{what}: {len(data) - stream.tell()} trailing bytes after the CBOR item")
    _refuse_tags(item, what, outer_tag=outer_tag)
    return item


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes actually signed: ``["Signature1", protected, h'', payload]``."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def encode_protected(alg: int, kid: bytes) -> bytes:
    return cbor2.dumps({HEADER_ALG: alg, HEADER_KID: kid})


def encode_sign1(protected: bytes, payload: bytes, signature: bytes) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def decode_sign1(data: bytes) -> Sign1:
    """Parse a (tagged or untagged) COSE_Sign1 and its protected header; raise ``CoseError``."""
    item = loads_bounded(data, max_bytes=MAX_SIGN1_BYTES, what="COSE_Sign1",
                         outer_tag=COSE_SIGN1_TAG)
    if isinstance(item, cbor2.CBORTag):
        item = item.value
    if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) != 4:
        raise CoseError("COSE_Sign1: expected an array of 4 items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise CoseError("COSE_Sign1: protected header and payload must be byte strings")
    if not isinstance(signature, bytes) or not isinstance(unprotected, Mapping):
        raise CoseError("COSE_Sign1: signature must be bytes and unprotected header a map")
    header = loads_bounded(protected, max_bytes=64, what="protected header")
    if not isinstance(header, Mapping):
        raise CoseError("protected header: expected a map")
    require_labels(header, "protected header")
    require_labels(unprotected, "unprotected header")
    if HEADER_CRIT in unprotected:
        raise CoseError("unprotected header: crit must be in the protected header")
    if HEADER_CRIT in header:
        _check_crit(header)
    alg = header.get(HEADER_ALG)
    kid = header.get(HEADER_KID)
    if type(alg) is not int or alg not in ALG_NAMES:
        raise CoseError(f"protected header: unsupported alg {alg!r}")
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= 32:
        raise CoseError("protected header: kid must be 1..32 bytes")
    if len(signature) != 64:
        raise CoseError(f"COSE_Sign1: signature is {len(signature)} bytes, expected 64")
    return Sign1(protected, alg, kid, payload, signature)


def _check_crit(header: Mapping[Any, Any]) -> None:
    """A ``crit`` we accept lists only labels we process, each present in the header."""
    crit = header[HEADER_CRIT]
    if not isinstance(crit, list) or not crit:
        raise CoseError("protected header: crit must be a non-empty array of labels")
    for label in crit:
        if type(label) not in (int, str) or label not in PROCESSED_LABELS:
            raise CoseError(f"protected header: crit lists {label!r}, which is not processed")
        if label not in header:
            raise CoseError(f"protected header: crit lists {label!r}, which is absent")


def alg_for_key(key: PrivateKey | PublicKey) -> int:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return ALG_EDDSA
    if isinstance(key.curve, ec.SECP256R1):
        return ALG_ES256
    raise ValueError(f"unsupported key type: curve {key.curve.name}")


def sign(key: PrivateKey, data: bytes) -> bytes:
    """Sign ``data``; ES256 signatures are converted to the raw 64-byte ``r || s`` form."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    alg_for_key(key)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(key: PublicKey, alg: int, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is valid for ``data`` under ``key`` with ``alg``."""
    if alg != alg_for_key(key) or len(signature) != 64:
        return False
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
