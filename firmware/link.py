"""IO-board link frame codec (PROTOCOL.md): COBS frames delimited by 0x00.

Decoded frame: ver(1) type(1) seq(1) ack(1) payload(0..240) crc16(2), CRC-16/CCITT-FALSE
big-endian over ver..payload. The receiver works byte by byte in preallocated buffers, drops
oversized input until the next delimiter and counts garbage instead of raising: a noisy
line must never stop the safety loop.
"""

try:
    from micropython import const
except ImportError:
    def const(x):  # type: ignore[misc,no-redef]
        return x

import cobs
from crc16 import crc16

VERSION = const(1)
MAX_PAYLOAD = const(240)
HEADER = const(4)
MAX_FRAME = const(246)  # header + payload + crc
MAX_ENCODED = const(248)  # COBS overhead for 246 bytes is 1 + 0

# Host -> board
T_HELLO = const(0x01)
T_HEARTBEAT = const(0x02)
T_OPEN = const(0x10)
T_CLOSE_WHEN_CLEAR = const(0x11)
T_CONFIG = const(0x12)
T_CLEAR_FAULT = const(0x13)
T_MAINTENANCE = const(0x14)
# Board -> host
T_HELLO_ACK = const(0x81)
T_SNAPSHOT = const(0x82)
T_STATE = const(0x83)
T_RESULT = const(0x84)


def encode_frame(ftype, seq, ack, payload=b""):
    """Whole on-wire frame: COBS(ver type seq ack payload crc) + 0x00."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError("payload too long")
    raw = bytearray(HEADER + n + 2)
    raw[0] = VERSION
    raw[1] = ftype & 0xFF
    raw[2] = seq & 0xFF
    raw[3] = ack & 0xFF
    raw[HEADER:HEADER + n] = payload
    c = crc16(raw, HEADER + n)
    raw[HEADER + n] = c >> 8
    raw[HEADER + n + 1] = c & 0xFF
    return cobs.encode(raw) + b"\x00"


class Receiver:
    """Byte-by-byte frame decoder; push() returns the frame length when one completes."""

    def __init__(self):
        self._enc = bytearray(MAX_ENCODED)
        self._n = 0
        self._overflow = False
        self.frame = bytearray(MAX_FRAME)  # the last good frame, valid until the next push
        self.frames = 0
        self.err_cobs = 0
        self.err_crc = 0
        self.err_size = 0
        self.err_version = 0

    def errors(self):
        return self.err_cobs + self.err_crc + self.err_size + self.err_version

    def push(self, b):
        """Feed one byte; return the decoded length (> 0) of a valid frame now in self.frame."""
        if b != 0:
            if self._n < MAX_ENCODED:
                self._enc[self._n] = b
                self._n += 1
            else:
                self._overflow = True
            return 0
        n = self._n
        self._n = 0
        if self._overflow:
            self._overflow = False
            self.err_size += 1
            return 0
        if n == 0:
            return 0  # idle delimiter (senders may start frames with one to resync)
        m = cobs.decode_into(self._enc, n, self.frame)
        if m < 0:
            self.err_cobs += 1
            return 0
        if m < HEADER + 2:
            self.err_size += 1
            return 0
        c = crc16(self.frame, m - 2)
        if (self.frame[m - 2] << 8 | self.frame[m - 1]) != c:
            self.err_crc += 1
            return 0
        if self.frame[0] != VERSION:
            self.err_version += 1
            return 0
        self.frames += 1
        return m
