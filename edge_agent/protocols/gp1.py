"""GP1 release passes: ``GP1:`` + Base45(COSE_Sign1(CWT claims)), issued and verified.

The verifier is pure (time and state are parameters) and never raises on bad input: every
rejection is a ``Verdict`` carrying a stable section-6 ``pass.*`` code. The checks run in a
fixed order, cheapest and least trusting first: prefix, Base45, bounded CBOR envelope, kid in
the trust list, signature over the exact protected bytes, then the claims (validity window with
clock skew, site/gate/direction, revocation, the single-use ledger keyed by ``cti``).

The issuer keys a lane trusts are in :mod:`edge_agent.protocols.gp1_trust`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge_agent.errors import ConfigError
from edge_agent.identity.iso6346 import validate_container
from edge_agent.protocols import cose
from edge_agent.protocols.base45 import b45decode, b45encode

# The trust list has its own module; these names stay importable from here.
from edge_agent.protocols.gp1_trust import TrustEntry as TrustEntry
from edge_agent.protocols.gp1_trust import TrustList as TrustList
from edge_agent.protocols.gp1_trust import format_time as format_time
from edge_agent.protocols.gp1_trust import key_id as key_id
from edge_agent.protocols.gp1_trust import parse_time as parse_time
from edge_agent.protocols.gp1_trust import shown_value

if TYPE_CHECKING:
    from edge_agent.drivers.pass_ledger import PassLedger

PREFIX = "GP1:"
MAX_TEXT_CHARS = len(PREFIX) + (cose.MAX_SIGN1_BYTES * 3 + 1) // 2
MAX_PAYLOAD_BYTES = 900
CLAIM_ISS, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI = 1, 4, 5, 6, 7
CLAIM_RELEASE = -70001
CTI_BYTES = 16
REVOCATION_HASH_BYTES = 16
MAX_STR = 64
MAX_ITEMS = 8
MAX_UINT = 2**40  # claim integers are 0 <= n < MAX_UINT
# No lane can weigh more: weighbridge.max_kg is capped at this in the agent configuration.
MAX_GROSS_KG = 1_000_000
DIRECTIONS = ("exit", "entry")

# Section-6 rejection codes, in verification order.
BAD_FORMAT = "pass.bad_format"
UNKNOWN_KEY = "pass.unknown_key"
BAD_SIGNATURE = "pass.bad_signature"
EXPIRED = "pass.expired"
NOT_YET_VALID = "pass.not_yet_valid"
WRONG_SITE = "pass.wrong_site"
WRONG_GATE = "pass.wrong_gate"
WRONG_DIRECTION = "pass.wrong_direction"
REVOKED = "pass.revoked"
ALREADY_USED = "pass.already_used"
BAD_CONTAINER = "pass.bad_container"  # a container number fails ISO 6346

PrivateKey = cose.PrivateKey
PublicKey = cose.PublicKey


@dataclass(frozen=True, slots=True)
class PassClaims:
    release_no: str
    enterprise: str
    plates: tuple[str, ...]
    containers: tuple[str, ...]
    declared_gross_kg: int
    tolerance_kg: int | None
    site: str
    gates: tuple[str, ...]
    direction: str  # "exit" | "entry"
    iss: str
    iat: int
    nbf: int
    exp: int
    cti: bytes
    seals: tuple[str, ...] = ()  # release key 10, optional: passes before it carry none

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "release_no": self.release_no,
            "enterprise": self.enterprise,
            "plates": list(self.plates),
            "containers": list(self.containers),
            "declared_gross_kg": self.declared_gross_kg,
            "tolerance_kg": self.tolerance_kg,
            "site": self.site,
            "gates": list(self.gates),
            "direction": self.direction,
            "iss": self.iss,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "cti": self.cti.hex(),
        }
        if self.seals:  # absent when empty, so a pass without seals reads as it always did
            doc["seals"] = list(self.seals)
        return doc


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    reason: str | None  # a section-6 ``pass.*`` code when not valid
    claims: PassClaims | None  # present once the signature verified
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "pass": self.claims.to_json() if self.claims else None,
        }


def revocation_hash(cti: bytes) -> bytes:
    """The revocation-list entry for a pass: SHA-256(cti) truncated to 16 bytes."""
    return hashlib.sha256(cti).digest()[:REVOCATION_HASH_BYTES]


_REVOCATION_HEX = re.compile(rf"[0-9A-Fa-f]{{{2 * REVOCATION_HASH_BYTES}}}")


def parse_revocation_hash(text: str) -> bytes:
    """A revocation-list entry from exactly 32 hex digits; raise ``ValueError`` otherwise.

    Stricter than ``bytes.fromhex``, which skips spaces: an entry typed with spaces or the
    wrong length must be refused, not stored as a hash that never matches.
    """
    if not isinstance(text, str) or _REVOCATION_HEX.fullmatch(text) is None:
        raise ValueError(f"revocation hash {shown_value(text)}: expected exactly "
                         f"{2 * REVOCATION_HASH_BYTES} hex digits and nothing else")
    return bytes.fromhex(text)


def generate_key(alg: str = "ed25519") -> PrivateKey:
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "es256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ConfigError(f"unknown key algorithm {alg!r} (ed25519 or es256)")


def load_private_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"issuer key {path}: {exc}") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigError(f"issuer key {path}: unsupported key type {type(key).__name__}")
    return key


def write_keypair(out_dir: Path, alg: str = "ed25519", *,
                  issuer: str = "customs") -> tuple[Path, Path]:
    """Write ``issuer.key.pem`` (mode 0600) and ``trust.json`` holding its public key."""
    key = generate_key(alg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, trust_path = out_dir / "issuer.key.pem", out_dir / "trust.json"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    TrustList().with_key(key.public_key(), issuer=issuer).save(trust_path)
    return key_path, trust_path


# Issue-time checks refuse what every lane would refuse (or could never match), so a bad
# pass fails at the issuer's desk with a clear message instead of at the gate.
def _issue_text(value: object, what: str, *, identifier: bool = True) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_STR:
        raise ConfigError(f"{what} must be 1..{MAX_STR} characters, not {shown_value(value)}")
    if identifier and value != value.strip():
        # A lane compares identifiers exactly: "SITE1 " is never "SITE1".
        raise ConfigError(f"{what} {shown_value(value)} has leading or trailing spaces")
    return value


def _text_list(items: Iterable[str], what: str) -> list[str]:
    if isinstance(items, (str, bytes)):
        raise ConfigError(f"{what}: expected a list of texts, not one text")
    out = [_issue_text(item, what.removesuffix("s")) for item in items]
    if len(out) > MAX_ITEMS:
        raise ConfigError(f"{what}: at most {MAX_ITEMS} items of 1..{MAX_STR} characters, "
                          f"not {len(out)}")
    return out


def _container_list(containers: Iterable[str]) -> list[str]:
    out = _text_list(containers, "containers")
    for number in out:
        problem = validate_container(number)
        if problem is not None:
            raise ConfigError(f"container {number!r} is not a valid ISO 6346 number: "
                              f"{problem.reason}; check the number on the container or the "
                              "release document and issue the pass again")
    return out


def _bad_container(claims: PassClaims) -> str | None:
    for number in claims.containers:
        problem = validate_container(number)
        if problem is not None:
            return f"container {number!r}: {problem.reason}"
    return None


def _issue_int(value: object, what: str, low: int, high: int | None = None,
               unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        allowed = f"{low}..{high}{unit}" if high is not None else f"at least {low}{unit}"
        raise ConfigError(f"{what} must be {allowed}, not {shown_value(value)}")
    return value


def _issue_time(value: datetime | int, what: str) -> int:
    seconds = parse_time(value)
    assert seconds is not None
    if not 0 <= seconds < MAX_UINT:
        text = value.isoformat() if isinstance(value, datetime) else shown_value(value)
        raise ConfigError(f"{what} {text}: a lane accepts only times from 1970 on")
    return seconds


def issue_pass(private_key: PrivateKey, *, release_no: str, enterprise: str,
               plates: Sequence[str], containers: Sequence[str] = (),
               seals: Sequence[str] = (), declared_gross_kg: int,
               tolerance_kg: int | None = None, site: str, gates: Sequence[str] = (),
               direction: str = "exit", issuer: str = "customs",
               valid_from: datetime | int, valid_for_s: int, cti: bytes | None = None,
               issued_at: datetime | int | None = None) -> str:
    """Build, sign and encode a pass; returns the QR text (``GP1:...``).

    Raises ``ConfigError`` for a pass no lane would accept: texts outside 1..64 characters,
    a gross weight outside 1..``MAX_GROSS_KG`` kg, an empty or unrepresentable validity
    window, or claims too large for the lane's size limits (and so for the QR code).
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be exit or entry, not {direction!r}")
    release: dict[int, Any] = {
        1: _issue_text(release_no, "release number"),
        2: _issue_text(enterprise, "enterprise", identifier=False),
        3: _text_list(plates, "plates"), 4: _container_list(containers),
        5: _issue_int(declared_gross_kg, "declared gross weight", 1, MAX_GROSS_KG, " kg"),
        7: _issue_text(site, "site"), 9: DIRECTIONS.index(direction),
    }
    if tolerance_kg is not None:
        release[6] = _issue_int(tolerance_kg, "tolerance", 0, MAX_GROSS_KG, " kg")
    if gates:
        release[8] = _text_list(gates, "gates")
    if seals:
        release[10] = _text_list(seals, "seals")
    _issue_text(issuer, "issuer")
    _issue_int(valid_for_s, "validity period (valid_for_s)", 1, unit=" s")
    cti = os.urandom(CTI_BYTES) if cti is None else cti
    if not isinstance(cti, bytes) or len(cti) != CTI_BYTES:
        raise ConfigError(f"cti must be {CTI_BYTES} bytes")
    nbf = _issue_time(valid_from, "valid from")
    exp = nbf + valid_for_s
    if exp >= MAX_UINT:
        raise ConfigError(f"validity period too long: the pass would end at {exp} (unix "
                          f"seconds), a lane accepts times below {MAX_UINT}")
    iat = _issue_time(issued_at, "issued at") if issued_at is not None else nbf
    claims = {CLAIM_ISS: issuer, CLAIM_EXP: exp, CLAIM_NBF: nbf,
              CLAIM_IAT: iat, CLAIM_CTI: cti, CLAIM_RELEASE: release}
    payload = cbor2.dumps(claims)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ConfigError(f"pass too large: its claims are {len(payload)} bytes, a lane accepts "
                          f"at most {MAX_PAYLOAD_BYTES}; shorten the texts or lists")
    protected = cose.encode_protected(cose.alg_for_key(private_key), key_id(private_key))
    signature = cose.sign(private_key, cose.sig_structure(protected, payload))
    sign1 = cose.encode_sign1(protected, payload, signature)
    if len(sign1) > cose.MAX_SIGN1_BYTES:
        raise ConfigError(f"pass too large: {len(sign1)} bytes of COSE, a lane accepts at most "
                          f"{cose.MAX_SIGN1_BYTES}; shorten the texts or lists")
    return PREFIX + b45encode(sign1)


class _ClaimError(ValueError):
    pass


def _text(m: Mapping[Any, Any], key: int) -> str:
    value = m.get(key)
    if type(value) is not str or not 0 < len(value) <= MAX_STR:
        raise _ClaimError(f"claim {key}: expected text of 1..{MAX_STR} characters")
    return value


def _uint(m: Mapping[Any, Any], key: int) -> int:
    value = m.get(key)
    # bool is an int subclass: refuse it where an integer is expected.
    if type(value) is not int or not 0 <= value < MAX_UINT:
        raise _ClaimError(f"claim {key}: expected an unsigned integer below 2**40")
    return value


def _get_texts(m: Mapping[Any, Any], key: int, *, optional: bool = False) -> tuple[str, ...]:
    value = m.get(key)
    if value is None and optional:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise _ClaimError(f"claim {key}: expected an array of text")
    if len(value) > MAX_ITEMS or any(type(v) is not str or not 0 < len(v) <= MAX_STR
                                     for v in value):
        raise _ClaimError(f"claim {key}: at most {MAX_ITEMS} texts of 1..{MAX_STR} characters")
    return tuple(value)


def decode_claims(payload: bytes) -> PassClaims:
    """Type-check the CWT payload; raise ``ValueError`` naming the first bad claim."""
    try:
        claims = cose.loads_bounded(payload, max_bytes=MAX_PAYLOAD_BYTES, what="claims")
    except cose.CoseError as exc:
        raise _ClaimError(str(exc)) from None
    if not isinstance(claims, Mapping):
        raise _ClaimError("claims: expected a map")
    # Before any lookup: a ``true`` or ``4.0`` key would otherwise be found as claim 1 or 4.
    cose.require_labels(claims, "claims")
    release = claims.get(CLAIM_RELEASE)
    if not isinstance(release, Mapping):
        raise _ClaimError(f"claim {CLAIM_RELEASE}: expected a map")
    cose.require_labels(release, f"claim {CLAIM_RELEASE}")
    cti = claims.get(CLAIM_CTI)
    if type(cti) is not bytes or len(cti) != CTI_BYTES:
        raise _ClaimError(f"claim {CLAIM_CTI}: cti must be {CTI_BYTES} bytes")
    direction = _uint(release, 9)
    if direction not in (0, 1):
        raise _ClaimError("claim 9: direction must be 0 (exit) or 1 (entry)")
    return PassClaims(
        release_no=_text(release, 1), enterprise=_text(release, 2),
        plates=_get_texts(release, 3), containers=_get_texts(release, 4),
        declared_gross_kg=_uint(release, 5),
        tolerance_kg=None if release.get(6) is None else _uint(release, 6),
        site=_text(release, 7), gates=_get_texts(release, 8, optional=True),
        direction=DIRECTIONS[direction], iss=_text(claims, CLAIM_ISS),
        iat=_uint(claims, CLAIM_IAT), nbf=_uint(claims, CLAIM_NBF),
        exp=_uint(claims, CLAIM_EXP), cti=cti, seals=_get_texts(release, 10, optional=True),
    )


def inspect_pass(text: str) -> dict[str, Any]:
    """Decode a pass without trusting it (for ``lanectl pass inspect``); raises ``ValueError``."""
    sign1 = _unwrap(text)
    return {"alg": cose.ALG_NAMES[sign1.alg], "kid": sign1.kid.hex(),
            "claims": decode_claims(sign1.payload).to_json(), "signature_verified": False}


def _unwrap(text: str) -> cose.Sign1:
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise ValueError(f"text does not start with {PREFIX!r}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text is {len(text)} characters, limit {MAX_TEXT_CHARS}")
    return cose.decode_sign1(b45decode(text[len(PREFIX):]))


def verify_pass(text: str, *, trust: TrustList, site: str, gate: str | None,
                direction: str, now: float, skew_s: int = 300,
                revoked: Collection[bytes] = (), ledger: PassLedger | None = None,
                lane: str = "") -> Verdict:
    """Verify a pass for this lane at wall-clock ``now`` (unix seconds). Never raises on input.

    ``revoked`` holds ``revocation_hash(cti)`` values. With a ``ledger``, a pass that passes
    every other check is recorded as used atomically; a second use gets ``pass.already_used``.
    """
    try:
        sign1 = _unwrap(text)
    except ValueError as exc:  # CoseError is a ValueError too
        return Verdict(False, BAD_FORMAT, None, str(exc))
    candidates = trust.keys_for(sign1.kid)
    usable = [e for e in candidates if e.usable_at(now, skew_s)]
    if not usable:
        why = "outside its validity" if candidates else "not in the trust list"
        return Verdict(False, UNKNOWN_KEY, None, f"kid {sign1.kid.hex()} {why}")
    signed = cose.sig_structure(sign1.protected, sign1.payload)
    entry = next((e for e in usable if cose.verify(e.public_key, sign1.alg, sign1.signature,
                                                   signed)), None)
    if entry is None:
        return Verdict(False, BAD_SIGNATURE, None, f"no key with kid {sign1.kid.hex()} verifies")
    try:
        claims = decode_claims(sign1.payload)
    except ValueError as exc:
        return Verdict(False, BAD_FORMAT, None, str(exc))
    if entry.issuer and claims.iss != entry.issuer:
        return Verdict(False, UNKNOWN_KEY, claims,
                       f"key {entry.kid.hex()} is trusted for {entry.issuer!r}, not {claims.iss!r}")
    bad_container = _bad_container(claims)
    if bad_container is not None:
        return Verdict(False, BAD_CONTAINER, claims, bad_container)
    if now + skew_s < claims.nbf:
        return Verdict(False, NOT_YET_VALID, claims, f"valid from {format_time(claims.nbf)}")
    if now - skew_s >= claims.exp:
        return Verdict(False, EXPIRED, claims, f"expired at {format_time(claims.exp)}")
    if claims.site != site:
        return Verdict(False, WRONG_SITE, claims, f"pass is for site {claims.site!r}")
    if gate is not None and claims.gates and gate not in claims.gates:
        return Verdict(False, WRONG_GATE, claims, f"pass is for gates {list(claims.gates)}")
    if claims.direction != direction:
        return Verdict(False, WRONG_DIRECTION, claims, f"pass is for {claims.direction}")
    if revocation_hash(claims.cti) in revoked:
        return Verdict(False, REVOKED, claims, "cti is on the revocation list")
    if ledger is not None and not ledger.mark_used(claims.cti, exp=claims.exp, now=now,
                                                   lane=lane):
        return Verdict(False, ALREADY_USED, claims, "cti already used")
    return Verdict(True, None, claims)
