"""The lane world: trucks, deck, loops, beams and the barrier arm, as positions along the lane.

Pure: ``step(now)`` advances everything to ``now``; the simulators around it read the world
(deck load for the weighbridge, sensor states for the IO board, what the driver shows for the
camera) and feed back the barrier relays. One axis, metres, increasing towards the exit:

    entry beam  deck (0 .. 18 m)  exit beam  loop A   barrier + photo-eye   loop B
        0 ============================ 18   18.3-19.8       20.0          20.2-23.0
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

DECK_START_M = 0.0
DECK_END_M = 18.0
LOOP_A_M = (18.3, 19.8)
BARRIER_M = 20.0
LOOP_B_M = (20.2, 23.0)
GONE_M = 23.5  # the truck's rear beyond this: it has left the lane
STOP_FRONT_M = 17.3  # where a well-placed truck stops: whole body on the deck
DEPART_SPEEDUP = 1.3  # an empty lane ahead: drivers leave faster than they arrive


@dataclass(frozen=True, slots=True)
class TruckSpec:
    """A truck as the world drives it."""

    plate: str
    gross_kg: float
    length_m: float = 16.5
    # Axle positions measured back from the front bumper, and each axle's share of the gross.
    axles_m: tuple[float, ...] = (1.4, 5.2, 6.5, 13.0, 14.3, 15.6)
    shares: tuple[float, ...] = (0.11, 0.17, 0.17, 0.18, 0.185, 0.185)
    stop_front_m: float = STOP_FRONT_M
    speed_mps: float = 7.0
    show_pass_after_s: float = 0.4  # after stopping, the driver holds the pass up
    back_off_after_s: float | None = None  # a held truck reverses off the deck after this


class Phase(enum.Enum):
    APPROACH = "approach"
    STOPPED = "stopped"
    DEPART = "depart"
    REVERSE = "reverse"
    GONE = "gone"


@dataclass
class TruckState:
    spec: TruckSpec
    front_m: float
    phase: Phase = Phase.APPROACH
    stopped_at: float | None = None
    showing_pass: bool = False

    @property
    def rear_m(self) -> float:
        return self.front_m - self.spec.length_m

    def covers(self, x: float) -> bool:
        return self.rear_m <= x <= self.front_m

    def overlaps(self, span: tuple[float, float]) -> bool:
        return self.rear_m <= span[1] and self.front_m >= span[0]


@dataclass
class Sensors:
    """Logical sensor states, as the IO board's inputs see them."""

    loop_a: bool = False
    loop_b: bool = False
    photo_eye: bool = False  # True = beam blocked
    deck_front: bool = True  # True = beam clear
    deck_rear: bool = True


@dataclass
class World:
    """Trucks one after another through one exit lane."""

    start_front_m: float = -0.5
    truck: TruckState | None = None
    barrier_open_fraction: float = 0.0
    person_in_eye: bool = False
    last_step: float | None = None
    violations: list[str] = field(default_factory=list)
    on_show: Callable[[bool], None] | None = None

    def back_off(self) -> None:
        """The driver sees the lane hold the truck and reverses off the deck."""
        truck = self.truck
        if truck is not None and truck.phase is Phase.STOPPED:
            self._set_showing(truck, show=False)
            truck.phase = Phase.REVERSE

    def send(self, spec: TruckSpec) -> None:
        """A new truck starts its approach onto the deck."""
        self.truck = TruckState(spec=spec, front_m=self.start_front_m)

    # -- what the devices read ---------------------------------------------------------------
    def deck_load_kg(self) -> float:
        truck = self.truck
        if truck is None or truck.phase is Phase.GONE:
            return 0.0
        return sum(
            truck.spec.gross_kg * share
            for offset, share in zip(truck.spec.axles_m, truck.spec.shares, strict=True)
            if DECK_START_M <= truck.front_m - offset <= DECK_END_M
        )

    def sensors(self) -> Sensors:
        truck = self.truck
        if truck is None or truck.phase is Phase.GONE:
            return Sensors(photo_eye=self.person_in_eye)
        return Sensors(
            loop_a=truck.overlaps(LOOP_A_M),
            loop_b=truck.overlaps(LOOP_B_M),
            photo_eye=truck.covers(BARRIER_M) or self.person_in_eye,
            deck_front=not truck.covers(DECK_END_M),
            deck_rear=not truck.covers(DECK_START_M),
        )

    # -- time ----------------------------------------------------------------------------------
    def step(self, now: float, barrier_open_fraction: float) -> None:
        """Advance to ``now`` given where the barrier arm is (0 closed .. 1 open)."""
        dt = 0.0 if self.last_step is None else max(0.0, now - self.last_step)
        self.last_step = now
        self.barrier_open_fraction = barrier_open_fraction
        truck = self.truck
        if truck is None or truck.phase is Phase.GONE:
            return
        if truck.covers(BARRIER_M) and barrier_open_fraction < 0.999:
            arm = f"{barrier_open_fraction:.2f}"
            self.violations.append(f"{now:.2f}: barrier arm at {arm} over {truck.spec.plate}")
        handler = _PHASES[truck.phase]
        handler(self, truck, now, dt)

    def _approach(self, truck: TruckState, now: float, dt: float) -> None:
        remaining = truck.spec.stop_front_m - truck.front_m
        # Slow down over the last metre so the stop is a stop, not a crash.
        speed = truck.spec.speed_mps
        if remaining < 1.0:
            speed = max(0.4, speed * remaining)
        truck.front_m = min(truck.spec.stop_front_m, truck.front_m + speed * dt)
        if truck.front_m >= truck.spec.stop_front_m - 1e-6:
            truck.phase = Phase.STOPPED
            truck.stopped_at = now

    def _stopped(self, truck: TruckState, now: float, dt: float) -> None:
        assert truck.stopped_at is not None
        waited = now - truck.stopped_at
        show = waited >= truck.spec.show_pass_after_s and self.barrier_open_fraction < 0.999
        self._set_showing(truck, show=show)
        if self.barrier_open_fraction >= 0.999:
            self._set_showing(truck, show=False)
            truck.phase = Phase.DEPART
        elif truck.spec.back_off_after_s is not None and waited >= truck.spec.back_off_after_s:
            self._set_showing(truck, show=False)
            truck.phase = Phase.REVERSE

    def _depart(self, truck: TruckState, now: float, dt: float) -> None:
        # A driver does not drive into an arm that is not fully up.
        if self.barrier_open_fraction < 0.999 and truck.front_m < BARRIER_M - 0.5:
            return
        truck.front_m += truck.spec.speed_mps * DEPART_SPEEDUP * dt
        if truck.rear_m > GONE_M:
            truck.phase = Phase.GONE

    def _reverse(self, truck: TruckState, now: float, dt: float) -> None:
        truck.front_m -= truck.spec.speed_mps * 1.2 * dt
        if truck.front_m < DECK_START_M - 1.0:
            truck.phase = Phase.GONE

    def _set_showing(self, truck: TruckState, *, show: bool) -> None:
        if show != truck.showing_pass:
            truck.showing_pass = show
            if self.on_show is not None:
                self.on_show(show)


_PHASES: dict[Phase, Callable[[World, TruckState, float, float], None]] = {
    Phase.APPROACH: World._approach,
    Phase.STOPPED: World._stopped,
    Phase.DEPART: World._depart,
    Phase.REVERSE: World._reverse,
}
