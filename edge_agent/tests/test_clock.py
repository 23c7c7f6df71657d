"""The wall clock's sync state: the kernel's own verdict, and the wait before the lane opens."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from edge_agent.clock import (
    STA_UNSYNC,
    TIME_ERROR,
    KernelClock,
    _Timex,
    judge_kernel,
    kernel_clock_status,
    parse_chronyc_tracking,
    parse_timedatectl,
    read_kernel_clock,
    sync_daemon,
    wait_for_sync,
)

# `chronyc tracking` as chrony 4.3 (Debian 12) prints it, synced and before the first sample.
CHRONYC_SYNCED = """\
Reference ID    : C0A80101 (gw.bz01.example)
Stratum         : 3
Ref time (UTC)  : Thu Dec 03 05:12:44 2026
System time     : 0.000012043 seconds fast of NTP time
Last offset     : +0.000003117 seconds
RMS offset      : 0.000021915 seconds
Frequency       : 7.311 ppm slow
Residual freq   : +0.001 ppm
Skew            : 0.034 ppm
Root delay      : 0.023165712 seconds
Root dispersion : 0.000763842 seconds
Update interval : 1031.9 seconds
Leap status     : Normal
"""
CHRONYC_UNSYNCED = """\
Reference ID    : 00000000 ()
Stratum         : 0
Ref time (UTC)  : Thu Jan 01 00:00:00 1970
System time     : 0.000000000 seconds fast of NTP time
Last offset     : +0.000000000 seconds
RMS offset      : 0.000000000 seconds
Frequency       : 0.000 ppm slow
Residual freq   : +0.000 ppm
Skew            : 0.000 ppm
Root delay      : 1.000000000 seconds
Root dispersion : 1.000000000 seconds
Update interval : 0.0 seconds
Leap status     : Not synchronised
"""


def test_the_timex_struct_has_glibcs_size() -> None:
    # <sys/timex.h> on LP64 (amd64, arm64): 208 bytes; a wrong layout would corrupt the stack.
    assert ctypes.sizeof(_Timex) == (208 if ctypes.sizeof(ctypes.c_long) == 8 else 128)


def test_the_real_kernel_call_gives_a_consistent_verdict() -> None:
    kernel = read_kernel_clock()
    assert 0 <= kernel.state <= TIME_ERROR
    assert kernel.maxerror_us >= 0
    synced = judge_kernel(kernel)
    # The kernel's own rule: unsynced state and STA_UNSYNC go together.
    assert synced == (not kernel.status & STA_UNSYNC and kernel.state != TIME_ERROR)
    assert kernel_clock_status()[0] == synced


@pytest.mark.parametrize(
    ("kernel", "synced"),
    [
        (KernelClock(state=0, status=0x2001, maxerror_us=12_000), True),  # PLL, nano, TIME_OK
        (KernelClock(state=1, status=0x2011, maxerror_us=9_000), True),  # leap second ahead
        (KernelClock(state=5, status=0x2040, maxerror_us=16_000_000), False),  # fresh boot
        (KernelClock(state=0, status=0x0040, maxerror_us=16_000_000), False),
    ],
)
def test_the_decision_follows_sta_unsync(kernel: KernelClock, synced: bool) -> None:
    assert judge_kernel(kernel) is synced
    assert kernel_clock_status(lambda: kernel, lambda: "chrony") == (
        (True, "chrony") if synced else (False, "system"))


def test_a_refused_kernel_call_means_not_synced() -> None:
    def refused() -> KernelClock:
        raise PermissionError(1, "adjtimex: Operation not permitted")

    assert kernel_clock_status(refused) == (False, "system")


def test_chronyc_and_timedatectl_outputs() -> None:
    assert parse_chronyc_tracking(CHRONYC_SYNCED) is True
    assert parse_chronyc_tracking(CHRONYC_UNSYNCED) is False
    assert parse_timedatectl("NTPSynchronized=yes\n") is True
    assert parse_timedatectl("NTPSynchronized=no\n") is False
    with pytest.raises(ValueError, match="Leap status"):
        parse_chronyc_tracking("506 Cannot talk to daemon\n")
    with pytest.raises(ValueError, match="NTPSynchronized"):
        parse_timedatectl("")


def test_the_source_names_the_daemon_by_its_run_folder(tmp_path: Path) -> None:
    chrony, timesyncd = tmp_path / "chrony", tmp_path / "timesync"
    assert sync_daemon(chrony, timesyncd) == "ntp"
    timesyncd.mkdir()
    assert sync_daemon(chrony, timesyncd) == "systemd-timesyncd"
    chrony.mkdir()
    assert sync_daemon(chrony, timesyncd) == "chrony"


class _Time:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return False


def test_wait_for_sync_returns_once_the_clock_syncs() -> None:
    time = _Time()

    def status() -> tuple[bool, str]:
        return (time.now >= 103.0, "chrony" if time.now >= 103.0 else "system")

    assert wait_for_sync(status, 60.0, clock=time, sleep=time.sleep) == (True, "chrony")
    assert time.now == 103.0 and time.slept == [1.0, 1.0, 1.0]


def test_wait_for_sync_gives_up_after_the_limit_and_at_zero_does_not_wait() -> None:
    time = _Time()
    never = lambda: (False, "system")  # noqa: E731
    assert wait_for_sync(never, 2.5, clock=time, sleep=time.sleep) == (False, "system")
    assert time.slept == [1.0, 1.0, 0.5]
    time.slept.clear()
    assert wait_for_sync(never, 0.0, clock=time, sleep=time.sleep) == (False, "system")
    assert time.slept == []


def test_wait_for_sync_stops_early_when_asked() -> None:
    time = _Time()
    assert wait_for_sync(lambda: (False, "system"), 60.0, clock=time,
                         sleep=lambda s: True) == (False, "system")
    assert time.now == 100.0
