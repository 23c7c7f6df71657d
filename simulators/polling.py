"""Waiting for something that happens in another process or thread: poll with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], bool], timeout: float = 30.0, *, every: float = 0.02
) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; then ask once more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()
