"""Proof of an agent package: its SHA-256 (given or beside it) and its release signature."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.telemetry.commands import SIGNING_CONTEXT as COMMAND_CONTEXT
from edge_agent.telemetry.commands import KeyRole, TrustedKey, public_key_text
from host_tools.agent_package import (
    SIGNING_CONTEXT,
    PackageError,
    ReleaseKey,
    load_release_key,
    sign_package,
    site_release_keys,
    verify_package,
)
from host_tools.errors import ToolError

ROOT = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OFFICER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ROOT_KEY = ReleaseKey("root-1234", ROOT.public_key())


@pytest.fixture
def deb(tmp_path: Path) -> Path:
    path = tmp_path / "gatelane_0.2.0_arm64.deb"
    path.write_bytes(b"!<arch>\ndebian-binary   " + bytes(range(256)) * 40)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def key_file(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "root.key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    return path


def test_the_given_sha256_proves_the_package(deb: Path) -> None:
    proof = verify_package(deb, expected_sha256=digest(deb).upper())
    assert (proof.sha256, proof.hash_from, proof.signed_by) == (digest(deb), ("--sha256",), None)


def test_a_sha256sum_file_beside_it_proves_the_package(deb: Path) -> None:
    (deb.parent / f"{deb.name}.sha256").write_text(f"{digest(deb)}  {deb.name}\n")
    assert verify_package(deb).hash_from == (f"{deb.name}.sha256",)


def test_a_changed_package_is_refused_naming_both_digests(deb: Path) -> None:
    expected = digest(deb)
    with deb.open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(PackageError, match=f"SHA-256 is {digest(deb)}, but --sha256 says "
                                           f"{expected}: the file is damaged"):
        verify_package(deb, expected_sha256=expected)


def test_a_wrong_sha256_file_wins_over_a_right_argument(deb: Path) -> None:
    (deb.parent / f"{deb.name}.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(PackageError, match=r"\.sha256 says 0000"):
        verify_package(deb, expected_sha256=digest(deb))


@pytest.mark.parametrize("text", ["abc", "zz" * 32, ""])
def test_a_sha256_that_is_not_one_is_refused(deb: Path, text: str) -> None:
    with pytest.raises(PackageError, match="is not a SHA-256"):
        verify_package(deb, expected_sha256=text)


def test_a_package_without_any_proof_is_refused(deb: Path) -> None:
    with pytest.raises(PackageError, match=r"nothing proves .* give --sha256 HEX, or put "
                                           r"gatelane_0.2.0_arm64.deb.sig"):
        verify_package(deb, keys=[ROOT_KEY])


def test_a_missing_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"gone\.deb: no such file"):
        verify_package(tmp_path / "gone.deb", expected_sha256="0" * 64)


def test_a_signed_package_is_proven_by_the_sites_root_key(deb: Path, tmp_path: Path) -> None:
    sig, sha = sign_package(deb, key_file(tmp_path, ROOT))
    assert (sig.name, sha.name) == (f"{deb.name}.sig", f"{deb.name}.sha256")
    site = [TrustedKey.from_raw("officers-1", KeyRole.COMMAND, public_key_text(OFFICER)),
            TrustedKey.from_raw("root-1", KeyRole.ROOT, public_key_text(ROOT))]
    proof = verify_package(deb, keys=site_release_keys(site))
    assert (proof.signed_by, proof.hash_from) == ("root-1", (sha.name,))


def test_a_command_tier_key_cannot_sign_software(deb: Path, tmp_path: Path) -> None:
    sign_package(deb, key_file(tmp_path, OFFICER))
    site = [TrustedKey.from_raw("officers-1", KeyRole.COMMAND, public_key_text(OFFICER)),
            TrustedKey.from_raw("root-1", KeyRole.ROOT, public_key_text(ROOT))]
    with pytest.raises(PackageError, match=r"not by a release key this lane trusts \(root-1\)"):
        verify_package(deb, keys=site_release_keys(site))


def test_a_package_changed_after_signing_is_refused(deb: Path, tmp_path: Path) -> None:
    _sig, sha = sign_package(deb, key_file(tmp_path, ROOT))
    sha.unlink()
    deb.write_bytes(deb.read_bytes()[:-1])
    with pytest.raises(PackageError, match="or the package was changed after signing"):
        verify_package(deb, keys=[ROOT_KEY])


def test_a_command_signature_is_never_a_package_signature(deb: Path) -> None:
    """The same root key signs commands: one of those over the digest must not pass."""
    assert SIGNING_CONTEXT != COMMAND_CONTEXT
    raw = ROOT.sign(COMMAND_CONTEXT + bytes.fromhex(digest(deb)))
    (deb.parent / f"{deb.name}.sig").write_text(base64.urlsafe_b64encode(raw).decode())
    with pytest.raises(PackageError, match="not by a release key"):
        verify_package(deb, keys=[ROOT_KEY])


def test_a_signature_nobody_can_check_is_refused_not_ignored(deb: Path, tmp_path: Path) -> None:
    sign_package(deb, key_file(tmp_path, ROOT))
    with pytest.raises(PackageError, match="no release key to check it with"):
        verify_package(deb, expected_sha256=digest(deb))


def test_a_signature_file_that_is_not_one_is_refused(deb: Path) -> None:
    (deb.parent / f"{deb.name}.sig").write_text("-----BEGIN PGP SIGNATURE-----\n")
    with pytest.raises(PackageError, match=r"not an Ed25519 signature \(base64url of 64 bytes\)"):
        verify_package(deb, keys=[ROOT_KEY])


def test_a_release_key_file_is_pem_or_base64url(tmp_path: Path) -> None:
    pem = tmp_path / "release.pem"
    pem.write_bytes(ROOT.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    text = tmp_path / "release.pub"
    text.write_text(public_key_text(ROOT) + "\n")
    for path in (pem, text):
        key = load_release_key(path)
        assert key.kid == path.name
        assert key.key.public_bytes_raw() == ROOT.public_key().public_bytes_raw()


@pytest.mark.parametrize(("content", "error"), [
    (b"hello", "not an Ed25519 public key"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
])
def test_a_release_key_file_that_is_not_one_is_refused(
    tmp_path: Path, content: bytes, error: str
) -> None:
    path = tmp_path / "key.pub"
    path.write_bytes(content)
    with pytest.raises(ToolError, match=error):
        load_release_key(path)
    with pytest.raises(ToolError, match="cannot be read"):
        load_release_key(tmp_path / "missing.pub")


def test_signing_needs_an_ed25519_private_key(deb: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="not an unencrypted PEM private key"):
        sign_package(deb, deb)
    assert not (deb.parent / f"{deb.name}.sig").exists()
