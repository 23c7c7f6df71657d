"""A barrier arm driven by the IO board's relays: pure model, time as a parameter.

The arm moves at constant speed while exactly one direction relay is on; both on (which the
firmware must never do) or both off stops it. The limit switches close within a small
margin of the ends, like real cam-operated switches.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators.errors import SimulatorSetupError

_LIMIT_MARGIN = 0.01  # fraction of travel where a limit switch is already made


@dataclass(frozen=True, slots=True)
class BarrierPosition:
    fraction: float  # 0 = closed, 1 = open
    limit_open: bool
    limit_closed: bool
    direction: int  # +1 opening, -1 closing, 0 still


class BarrierMotor:
    def __init__(self, travel_s: float = 1.5, *, fraction: float = 0.0) -> None:
        if travel_s <= 0:
            raise SimulatorSetupError(f"travel_s must be positive, got {travel_s}")
        if not 0.0 <= fraction <= 1.0:
            raise SimulatorSetupError(f"fraction must be within 0..1, got {fraction}")
        self.travel_s = travel_s
        self._fraction = fraction
        self._last: float | None = None
        self._direction = 0
        self.conflicts = 0  # steps seen with both relays on

    def step(self, now: float, *, open_relay: bool, close_relay: bool) -> BarrierPosition:
        """Advance to ``now`` under the relay state held since the previous step."""
        if self._last is not None and now > self._last:
            self._fraction += self._direction * (now - self._last) / self.travel_s
            self._fraction = min(1.0, max(0.0, self._fraction))
        if self._last is None or now > self._last:
            self._last = now
        if open_relay and close_relay:
            self.conflicts += 1
        self._direction = (1 if open_relay else 0) - (1 if close_relay else 0)
        if open_relay and close_relay:
            self._direction = 0
        return self.position()

    def position(self) -> BarrierPosition:
        f = self._fraction
        return BarrierPosition(
            fraction=f,
            limit_open=f >= 1.0 - _LIMIT_MARGIN,
            limit_closed=f <= _LIMIT_MARGIN,
            direction=self._direction,
        )
