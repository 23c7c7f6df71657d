"""The GP1 trust list: which issuer keys a lane accepts, and when (``trust.json``).

Trust entries are valid for *verification* between ``valid_from`` and ``valid_to``; during a
key rotation the old and new keys overlap so passes signed just before the switch still verify.
Several entries may share a kid: each one is tried. Also the small text helpers the pass
codec shares with it (times, kids, one-line renderings of bad values).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge_agent.errors import ConfigError
from edge_agent.protocols import cose

MAX_STR = 64
PrivateKey = cose.PrivateKey
PublicKey = cose.PublicKey


def key_id(key: PublicKey | PrivateKey) -> bytes:
    """First 8 bytes of SHA-256 over the public key's DER SubjectPublicKeyInfo."""
    public = key.public_key() if isinstance(key, (ed25519.Ed25519PrivateKey,
                                                   ec.EllipticCurvePrivateKey)) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()[:8]


def shown_value(value: object, limit: int = 60) -> str:
    """``repr`` of a bad value, cut short so an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def format_time(ts: int | None) -> str | None:
    """ISO 8601 UTC text (``...Z``) for unix seconds, the inverse of ``parse_time``."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace(
        "+00:00", "Z")


def parse_time(value: str | int | float | datetime | None) -> int | None:
    """Unix seconds from an ISO 8601 string (``Z`` or offset; naive means UTC) or a number."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else int(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


@dataclass(frozen=True, slots=True)
class TrustEntry:
    kid: bytes
    public_key: PublicKey
    valid_from: int | None
    valid_to: int | None
    issuer: str

    def usable_at(self, now: float, skew_s: int = 0) -> bool:
        return (self.valid_from is None or now + skew_s >= self.valid_from) and (
            self.valid_to is None or now - skew_s <= self.valid_to
        )

    def to_json(self) -> dict[str, Any]:
        der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "kid": self.kid.hex(),
            "alg": cose.ALG_NAMES[cose.alg_for_key(self.public_key)],
            "public_key": base64.b64encode(der).decode(),
            "valid_from": format_time(self.valid_from),
            "valid_to": format_time(self.valid_to),
            "issuer": self.issuer,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TrustEntry:
        """One entry of a JSON trust list; ``ConfigError`` names the entry and the problem."""
        try:
            return cls._parse(obj)
        except ValueError as exc:
            raise ConfigError(f"trust list entry {_entry_label(obj)}: {exc}") from None

    @classmethod
    def _parse(cls, obj: object) -> TrustEntry:
        """Like ``from_json`` but raises a plain ``ValueError`` saying only what is wrong."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected an object, not {_json_type(obj)}")
        public = _trust_public_key(obj.get("public_key"))
        kid = key_id(public)
        alg = cose.ALG_NAMES[cose.alg_for_key(public)]
        if "alg" in obj and obj["alg"] != alg:
            raise ValueError(f"alg {shown_value(obj['alg'])} does not match the {alg} public key")
        kid_text = obj.get("kid")
        if kid_text is not None and not isinstance(kid_text, str):
            raise ValueError(f"kid must be hex text, not {_json_type(kid_text)}")
        if kid_text:
            try:
                claimed = bytes.fromhex(kid_text)
            except ValueError:
                raise ValueError(f"kid {shown_value(kid_text)} is not hex") from None
            if claimed != kid:
                raise ValueError(f"kid {claimed.hex()} does not match the public key")
        valid_from = _trust_time(obj, "valid_from")
        valid_to = _trust_time(obj, "valid_to")
        if valid_from is not None and valid_to is not None and valid_from > valid_to:
            raise ValueError("valid_from is after valid_to: the key could never be used")
        issuer = obj.get("issuer", "")
        if not isinstance(issuer, str) or len(issuer) > MAX_STR:
            # A non-text issuer used to become e.g. "None" and then match no pass at all.
            raise ValueError(f"issuer must be text of at most {MAX_STR} characters, "
                             f"not {shown_value(issuer)}")
        return cls(kid, public, valid_from, valid_to, issuer)


def _entry_label(obj: object) -> str:
    kid = obj.get("kid") if isinstance(obj, Mapping) else None
    if not isinstance(kid, str) or not kid:
        return "?"
    return kid if kid.isalnum() and len(kid) <= 40 else shown_value(kid, 40)


def _trust_public_key(value: object) -> PublicKey:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("public_key must be base64 text of a DER SubjectPublicKeyInfo")
    if value.lstrip().startswith("-----BEGIN"):
        raise ValueError("public_key must be base64 DER SubjectPublicKeyInfo, not PEM")
    try:
        # Line breaks are tolerated; any other non-base64 character is an error, not skipped.
        der = base64.b64decode("".join(value.split()), validate=True)
        public = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("public_key is not base64 of a DER SubjectPublicKeyInfo") from None
    if not isinstance(public, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        raise ValueError(f"public_key: unsupported key type {type(public).__name__} "
                         "(Ed25519 or P-256)")
    try:
        cose.alg_for_key(public)
    except ValueError as exc:
        raise ValueError(f"public_key: {exc} (Ed25519 or P-256)") from None
    return public


def _trust_time(obj: Mapping[str, Any], field: str) -> int | None:
    value = obj.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{field} must be an ISO 8601 UTC time or null, not {shown_value(value)}")
    try:
        seconds = parse_time(value)
        format_time(seconds)  # it must also be writable back as a date
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{field} {shown_value(value)} is not a valid ISO 8601 time") from None
    return seconds


class TrustList:
    """The issuer keys this lane accepts; entries may overlap during a rotation."""

    def __init__(self, entries: Iterable[TrustEntry] = ()) -> None:
        self.entries: tuple[TrustEntry, ...] = tuple(entries)

    def keys_for(self, kid: bytes) -> list[TrustEntry]:
        return [e for e in self.entries if e.kid == kid]

    def to_json(self) -> dict[str, Any]:
        return {"format": "gp1-trust", "version": 1, "keys": [e.to_json() for e in self.entries]}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TrustList:
        """A trust list document; ``ConfigError`` names the first bad entry and its problem."""
        try:
            return cls(_trust_entries(obj))
        except ValueError as exc:
            raise ConfigError(f"trust list: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> TrustList:
        """Read a trust list file; any problem is a one-line ``ConfigError`` naming the file."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(_trust_entries(doc))
        except OSError as exc:
            raise ConfigError(f"trust list {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"trust list {path}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"trust list {path}: not JSON: {exc}") from None
        except RecursionError:
            raise ConfigError(f"trust list {path}: not JSON: nested too deeply") from None
        except ValueError as exc:
            raise ConfigError(f"trust list {path}: {exc}") from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def with_key(self, public: PublicKey, *, issuer: str = "customs",
                 valid_from: str | int | datetime | None = None,
                 valid_to: str | int | datetime | None = None) -> TrustList:
        """A copy with one more key (rotation: add the new key before retiring the old)."""
        entry = TrustEntry(key_id(public), public, parse_time(valid_from),
                           parse_time(valid_to), issuer)
        return TrustList((*self.entries, entry))


def _trust_entries(doc: object) -> list[TrustEntry]:
    """Entries of a trust-list document; ``ValueError`` says which entry is wrong and why."""
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(doc, Mapping) or not isinstance(keys, list):
        raise ValueError("expected an object with a 'keys' list")
    if doc.get("format", "gp1-trust") != "gp1-trust":
        raise ValueError(f"format {shown_value(doc['format'])} is not gp1-trust")
    if "version" in doc and (type(doc["version"]) is not int or doc["version"] != 1):
        raise ValueError(f"version {shown_value(doc['version'])} is not supported (only 1)")
    entries = []
    for index, item in enumerate(keys):
        try:
            entries.append(TrustEntry._parse(item))
        except ValueError as exc:
            label = _entry_label(item)
            where = f"keys[{index}]" + ("" if label == "?" else f" (kid {label})")
            raise ValueError(f"{where}: {exc}") from None
    return entries
