"""Millisecond/microsecond tick source with MicroPython's wrapping arithmetic.

On the board this is time.ticks_*; under CPython (unit tests, type checks of the core) a
30-bit emulation with the same wrap rules. Core code only ever compares ticks with diff(),
so a test can inject any period (2^30 like the RP2040) and start just before the wrap.
"""

try:
    from time import ticks_add, ticks_diff, ticks_ms, ticks_us  # type: ignore[attr-defined]
except ImportError:  # CPython
    import time as _time

    _PERIOD = 1 << 30
    _HALF = _PERIOD >> 1

    def ticks_ms():  # type: ignore[misc]
        return (_time.monotonic_ns() // 1000000) & (_PERIOD - 1)  # type: ignore[attr-defined]

    def ticks_us():  # type: ignore[misc]
        return (_time.monotonic_ns() // 1000) & (_PERIOD - 1)  # type: ignore[attr-defined]

    def ticks_add(ticks, delta):  # type: ignore[misc]
        return (ticks + delta) & (_PERIOD - 1)

    def ticks_diff(ticks1, ticks2):  # type: ignore[misc,no-redef]
        return ((ticks1 - ticks2 + _HALF) & (_PERIOD - 1)) - _HALF


def make_diff(period):
    """ticks_diff for an explicit period (a power of two), for tests of wrap handling."""
    half = period >> 1
    mask = period - 1

    def diff(a, b):
        return ((a - b + half) & mask) - half

    return diff
