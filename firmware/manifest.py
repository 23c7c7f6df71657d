"""Manifest hash of the deployed firmware files, reported in HELLO_ACK.

sha256 over, for each file in name order: name, 0x00, sha256(content). Truncated to 8 bytes.
Host tools compute the same over a release folder to compare.
"""

import hashlib


def manifest_hash(read, names):
    """read(name) -> bytes; names: the deployed file names."""
    h = hashlib.sha256()
    for name in sorted(n for n in names if n.endswith(".py") or n.endswith(".mpy")):
        h.update(name.encode())
        h.update(b"\x00")
        h.update(hashlib.sha256(read(name)).digest())
    return h.digest()[:8]
