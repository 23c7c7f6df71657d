"""Is the wall clock trustworthy? Envelopes say so; intervals never use it (monotonic only)."""

from __future__ import annotations

import os

_TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"
_CHRONY_SOCKET = "/run/chrony/chronyd.sock"


def wall_clock_status() -> tuple[bool, str]:
    """Return (synced, source). A Pi without an RTC boots with fake-hwclock's last saved time."""
    if os.path.exists(_TIMESYNCD_FLAG):
        return True, "systemd-timesyncd"
    if os.path.exists(_CHRONY_SOCKET):
        return True, "chrony"
    return False, "system"
