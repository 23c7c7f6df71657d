"""Consistent Overhead Byte Stuffing: no 0x00 in the output, so 0x00 can delimit frames.

Overhead is 1 + n // 254 bytes. decode_into works in preallocated buffers (no allocation
per frame on the board); encode allocates, it runs a few times per second.
"""


def encode(data):
    """Encode bytes; the result holds no 0x00 and carries no delimiter."""
    out = bytearray(len(data) + len(data) // 254 + 1)
    code_at = 0
    code = 1
    o = 1
    for b in data:
        if b:
            out[o] = b
            o += 1
            code += 1
        if not b or code == 0xFF:
            out[code_at] = code
            code_at = o
            code = 1
            o += 1
    out[code_at] = code
    return bytes(out[:o])


def decode_into(src, n, dst):
    """Decode src[:n] into dst; return the decoded length, or -1 if src is not valid COBS
    (a zero byte, a code running past the end) or dst is too small."""
    i = 0
    o = 0
    cap = len(dst)
    while i < n:
        code = src[i]
        if code == 0:
            return -1
        i += 1
        end = i + code - 1
        if end > n or o + code - 1 > cap:
            return -1
        while i < end:
            b = src[i]
            if b == 0:
                return -1
            dst[o] = b
            o += 1
            i += 1
        if code != 0xFF and i < n:
            if o >= cap:
                return -1
            dst[o] = 0
            o += 1
    return o


def decode(data):
    """Decode one frame's bytes (no delimiter); None when invalid."""
    buf = bytearray(len(data))
    n = decode_into(data, len(data), buf)
    return None if n < 0 else bytes(buf[:n])
