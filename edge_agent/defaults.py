"""Defaults that more than one layer needs, each defined here once.

The lane's file (``config.py``) falls back to these; the cores and tools that can run without
a file (the lane machine, the IO board driver, ``lanectl io``) use the same values.
"""

from __future__ import annotations

PASS_WITHOUT_TRUCK_S = 120.0
"""L8: a pass shown with no truck on the deck is let go after this long."""

T_CLEAR_S = 0.5
"""The IO board closes once the barrier's path has been clear this long."""

TRAVEL_TIMEOUT_S = 4.0
"""The barrier must reach its limit switch within this long."""

DEAD_TIME_S = 0.2
"""Both relays off this long before the barrier reverses."""
