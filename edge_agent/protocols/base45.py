"""Base45 (RFC 9285): bytes <-> the QR alphanumeric alphabet.

Pure functions, no I/O. Decoding rejects anything RFC 9285 calls invalid (characters outside the
alphabet, a dangling single character, triplets or pairs whose value overflows) with
``ValueError`` naming the position, so a pass verifier can map it to ``pass.bad_format``.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUES = {c: i for i, c in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    """Encode ``data``: two bytes -> three characters, a trailing byte -> two characters."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = divmod(n, 45 * 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[d], ALPHABET[e], ALPHABET[c])
    if len(data) % 2:
        e, d = divmod(data[-1], 45)
        out += (ALPHABET[d], ALPHABET[e])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode Base45 text; raise ``ValueError`` on any invalid input."""
    if len(text) % 3 == 1:
        raise ValueError(f"base45: length {len(text)} leaves a dangling character")
    try:
        values = [_VALUES[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"base45: character {exc.args[0]!r} is not in the alphabet") from None
    out = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i : i + 3]
        if len(chunk) == 3:
            n = chunk[0] + chunk[1] * 45 + chunk[2] * 45 * 45
            if n > 0xFFFF:
                raise ValueError(f"base45: triplet at {i} overflows two bytes")
            out += n.to_bytes(2, "big")
        else:
            n = chunk[0] + chunk[1] * 45
            if n > 0xFF:
                raise ValueError(f"base45: pair at {i} overflows one byte")
            out.append(n)
    return bytes(out)
