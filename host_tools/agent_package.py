"""Proof that an agent package is the release meant: its SHA-256, its release signature.

A release is proven by its SHA-256 (``--sha256 HEX``, or ``PACKAGE.sha256`` beside it in
``sha256sum`` form) and/or a detached signature ``PACKAGE.sig``: base64url of the Ed25519
signature over ``SIGNING_CONTEXT + sha256(PACKAGE)``. The context keeps a package signature
from ever being taken for a command signature made with the same key (commands.py signs
``gate.cmd/1``). Release keys are the site's ``root`` command keys (the lane's
command_keys.json: the same key that signs trust updates signs software) or key files given
to the tool (PEM public key, or the base64url raw key as command_keys.json carries it).

Whatever proof is present must hold: a signature nobody can check is refused, not ignored.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.telemetry.command_args import b64url_decode
from edge_agent.telemetry.commands import KeyRole, TrustedKey
from host_tools.errors import ToolError

SIGNING_CONTEXT = b"gate.pkg/1\n"


class PackageError(ToolError):
    """The package is refused (damaged, unsigned, wrong); nothing was changed."""


@dataclass(frozen=True, slots=True)
class ReleaseKey:
    kid: str
    key: Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class Proof:
    """What proved the package: its digest, where the expected one came from, who signed."""

    sha256: str
    hash_from: tuple[str, ...] = ()
    signed_by: str | None = None

    def describe(self) -> str:
        said = [f"SHA-256 {self.sha256[:16]}... matches {' and '.join(self.hash_from)}"]
        if not self.hash_from:
            said = [f"SHA-256 {self.sha256[:16]}..."]
        if self.signed_by:
            said.append(f"signed by {self.signed_by}")
        return ", ".join(said)


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def signature_text(private_key: Ed25519PrivateKey, digest_hex: str) -> str:
    """The content of ``PACKAGE.sig`` for a package whose SHA-256 is ``digest_hex``."""
    signature = private_key.sign(SIGNING_CONTEXT + bytes.fromhex(digest_hex))
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode() + "\n"


def sign_package(package: Path, key_file: Path) -> tuple[Path, Path]:
    """Write ``PACKAGE.sig`` and ``PACKAGE.sha256`` beside ``package``; return both paths."""
    private_key = load_private_key(key_file)
    digest = _readable_digest(package)
    sig, sha = _beside(package, ".sig"), _beside(package, ".sha256")
    sig.write_text(signature_text(private_key, digest), encoding="ascii")
    sha.write_text(f"{digest}  {package.name}\n", encoding="ascii")
    return sig, sha


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ToolError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise ToolError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ToolError(f"{path}: not an Ed25519 key (a site's keys/root.key.pem is one)")
    return key


def load_release_key(path: Path) -> ReleaseKey:
    """A release public key file: PEM, or the base64url raw key of command_keys.json."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ToolError(f"release key {path}: cannot be read: {exc.strerror or exc}") from None
    key: object = None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ToolError(f"release key {path}: not a PEM public key: {exc}") from None
    else:
        raw = b64url_decode(data.decode("ascii", "replace").strip())
        if raw is not None and len(raw) == 32:
            key = Ed25519PublicKey.from_public_bytes(raw)
    if not isinstance(key, Ed25519PublicKey):
        raise ToolError(f"release key {path}: not an Ed25519 public key (PEM, or the "
                        f"base64url public_key of command_keys.json)")  # fmt: skip
    return ReleaseKey(path.name, key)


def site_release_keys(trusted: Iterable[TrustedKey]) -> list[ReleaseKey]:
    """The root-tier keys of a lane's command_keys: those may sign software."""
    return [ReleaseKey(k.kid, k.public_key) for k in trusted if k.role is KeyRole.ROOT]


def verify_package(
    package: Path, *, expected_sha256: str | None = None, keys: Sequence[ReleaseKey] = ()
) -> Proof:
    """Check every proof present for ``package``; raise PackageError naming what failed."""
    digest = _readable_digest(package)
    sources: list[tuple[str, str]] = []
    if expected_sha256 is not None:
        sources.append(("--sha256", _hex_digest(expected_sha256, "--sha256")))
    sha_file = _beside(package, ".sha256")
    if sha_file.is_file():
        words = sha_file.read_text(encoding="ascii", errors="replace").split()
        sources.append((sha_file.name, _hex_digest(words[0] if words else "", sha_file.name)))
    for source, expected in sources:
        if expected != digest:
            raise PackageError(f"{package}: its SHA-256 is {digest}, but {source} says "
                               f"{expected}: the file is damaged or not the release meant; "
                               f"copy it again")  # fmt: skip
    signed_by = None
    sig_file = _beside(package, ".sig")
    if sig_file.is_file():
        signed_by = _check_signature(sig_file, digest, keys)
    if not sources and signed_by is None:
        raise PackageError(f"nothing proves {package} is the release meant: give --sha256 HEX, "
                           f"or put {sig_file.name} or {sha_file.name} beside it")  # fmt: skip
    return Proof(digest, tuple(s for s, _ in sources), signed_by)


def _check_signature(sig_file: Path, digest: str, keys: Sequence[ReleaseKey]) -> str:
    signature = b64url_decode(sig_file.read_text(encoding="ascii", errors="replace").strip())
    if signature is None or len(signature) != 64:
        raise PackageError(f"{sig_file}: not an Ed25519 signature (base64url of 64 bytes)")
    if not keys:
        raise PackageError(f"{sig_file}: no release key to check it with: give --release-key "
                           f"FILE, or a lane config whose [mqtt] command_keys has a root key")
    message = SIGNING_CONTEXT + bytes.fromhex(digest)
    for candidate in keys:
        try:
            candidate.key.verify(signature, message)
        except InvalidSignature:
            continue
        return candidate.kid
    kids = ", ".join(k.kid for k in keys)
    raise PackageError(f"{sig_file}: the signature is not by a release key this lane trusts "
                       f"({kids}), or the package was changed after signing")  # fmt: skip


def _readable_digest(package: Path) -> str:
    if not package.is_file():
        raise PackageError(f"{package}: no such file")
    try:
        return sha256_of(package)
    except OSError as exc:
        raise PackageError(f"{package}: cannot be read: {exc.strerror or exc}") from None


def _hex_digest(text: str, source: str) -> str:
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise PackageError(f"{source}: {text.strip()[:70]!r} is not a SHA-256 (64 hex digits)")
    return value


def _beside(package: Path, suffix: str) -> Path:
    return package.with_name(package.name + suffix)
