"""Manifest hash of the deployed firmware files, reported in HELLO_ACK.

sha256 over, for each .py/.mpy file in name order: name, 0x00, sha256(content). Truncated to
8 bytes. The host tools load this file to compute the same over a release folder or over the
digests a board reports, so the rule lives here only.
"""

import hashlib


def counted(name):
    """Is this file part of the manifest (code, not data or markers)?"""
    return name.endswith(".py") or name.endswith(".mpy")


def manifest_of_digests(digests):
    """digests: file name -> sha256 digest (bytes) of its content."""
    h = hashlib.sha256()
    for name in sorted(n for n in digests if counted(n)):
        h.update(name.encode())
        h.update(b"\x00")
        h.update(digests[name])
    return h.digest()[:8]


def manifest_hash(read, names):
    """read(name) -> bytes; names: the deployed file names."""
    return manifest_of_digests({n: hashlib.sha256(read(n)).digest() for n in names if counted(n)})
