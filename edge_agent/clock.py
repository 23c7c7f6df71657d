"""Is the wall clock trustworthy? Envelopes say so; intervals never use it (monotonic only).

"Synced" is the kernel's own verdict: chrony and systemd-timesyncd both discipline the clock
through ``adjtimex(2)`` and clear ``STA_UNSYNC`` once they trust their source; the kernel sets
it again when the estimated error passes 16 s without an update. That is also what
``timedatectl``'s ``NTPSynchronized`` reports. A Pi without an RTC boots with
fake-hwclock's last saved time, unsynced, until the first good NTP exchange.

The kernel call, ``timedatectl show`` and ``chronyc tracking`` are three readings of the same
fact; ``judge_kernel``, ``parse_timedatectl`` and ``parse_chronyc_tracking`` turn each into a
decision, and ``wait_for_sync`` takes the status source and the clocks as parameters.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ClockStatus = Callable[[], tuple[bool, str]]

STA_UNSYNC = 0x0040
TIME_ERROR = 5  # adjtimex's return value while the clock is not synchronised
_CHRONY_RUN = Path("/run/chrony")
_TIMESYNCD_RUN = Path("/run/systemd/timesync")


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` of <sys/timex.h> (glibc, Linux); ``modes = 0`` only reads."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True, slots=True)
class KernelClock:
    """What ``adjtimex(2)`` says about the clock."""

    state: int  # TIME_OK 0 .. TIME_ERROR 5
    status: int  # STA_* bits
    maxerror_us: int


_libc: ctypes.CDLL | None = None


def read_kernel_clock() -> KernelClock:
    """Ask the kernel (read only). Raises OSError if the call is refused (a seccomp filter)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    timex = _Timex()
    state = _libc.adjtimex(ctypes.byref(timex))
    if state < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"adjtimex: {os.strerror(errno)}")
    return KernelClock(state=state, status=timex.status, maxerror_us=timex.maxerror)


def judge_kernel(kernel: KernelClock) -> bool:
    """Synchronised as chrony and timesyncd report it to the kernel."""
    return not kernel.status & STA_UNSYNC and kernel.state != TIME_ERROR


def parse_timedatectl(text: str) -> bool:
    """``timedatectl show -p NTPSynchronized`` (``NTPSynchronized=yes``) -> synced."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "NTPSynchronized":
            return value.strip() == "yes"
    raise ValueError("no NTPSynchronized= line in the timedatectl output")


def parse_chronyc_tracking(text: str) -> bool:
    """``chronyc tracking``: synced unless its leap status says "Not synchronised"."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Leap status":
            return value.strip() != "Not synchronised"
    raise ValueError("no 'Leap status' line in the chronyc tracking output")


def sync_daemon(
    chrony_run: Path = _CHRONY_RUN, timesyncd_run: Path = _TIMESYNCD_RUN
) -> str:
    """Which daemon keeps the clock (for the envelopes' ``clock.source``)."""
    if chrony_run.is_dir():
        return "chrony"
    if timesyncd_run.is_dir():
        return "systemd-timesyncd"
    return "ntp"


def kernel_clock_status(
    read: Callable[[], KernelClock] = read_kernel_clock, daemon: Callable[[], str] = sync_daemon
) -> tuple[bool, str]:
    """(synced, source): source names the daemon while synced, else ``system``."""
    try:
        synced = judge_kernel(read())
    except OSError:
        return False, "system"
    return (True, daemon()) if synced else (False, "system")


def wall_clock_status() -> tuple[bool, str]:
    """The lane's clock status: the kernel's verdict (a syscall, cheap enough per record)."""
    return kernel_clock_status()


def wait_for_sync(
    status: ClockStatus,
    wait_s: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], bool],
    step_s: float = 1.0,
) -> tuple[bool, str]:
    """Poll ``status`` until synced or ``wait_s`` has passed; returns the last status.

    ``sleep(seconds)`` returns True to give up early (the agent is stopping).
    """
    synced, source = status()
    give_up = clock() + wait_s
    while not synced:
        left = give_up - clock()
        if left <= 0 or sleep(min(step_s, left)):
            break
        synced, source = status()
    return synced, source
