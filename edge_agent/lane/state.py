"""The lane machine's states and settings (``machine.py`` holds the transitions)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from edge_agent import defaults
from edge_agent.errors import ConfigError
from edge_agent.lane.policy import PolicyConfig


class LaneState(enum.Enum):
    IDLE = "idle"  # deck empty, barrier closed
    LOADING = "loading"  # truck on deck; waiting for pass and weight
    RECORDING = "recording"  # decided to open; waiting for the pass's use to be durable
    OPENING = "opening"  # OpenBarrier sent; waiting for the board to report open
    OPEN = "open"  # barrier open; waiting for the truck to pass and leave the deck
    HOLD = "hold"  # abnormality published; waiting for release or the truck backing off


@dataclass(frozen=True, slots=True)
class MachineConfig:
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    opening_timeout_s: float = 6.0
    # Rule L8: long enough for a driver who shows the pass while still driving up, short
    # enough that the next truck finds the lane idle.
    pass_without_truck_s: float = defaults.PASS_WITHOUT_TRUCK_S

    def __post_init__(self) -> None:
        for name in ("opening_timeout_s", "pass_without_truck_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value > 0)
            ):
                raise ConfigError(f"lane {name} must be a positive number of seconds: {value!r}")
