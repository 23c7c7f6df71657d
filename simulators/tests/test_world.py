"""The lane world: geometry, loads and sensors follow the truck; the arm is watched."""

from __future__ import annotations

from simulators.world import DECK_END_M, Phase, TruckSpec, World


def drive(world: World, until: float, arm: float = 0.0, dt: float = 0.02, t0: float = 0.0) -> float:
    t = t0
    while t < until:
        world.step(t, arm)
        t += dt
    return t


def test_truck_drives_on_stops_fully_on_the_deck_and_loads_its_gross() -> None:
    world = World()
    world.send(TruckSpec(plate="T1", gross_kg=30_000))
    assert world.deck_load_kg() == 0.0
    drive(world, 10.0)
    truck = world.truck
    assert truck is not None and truck.phase is Phase.STOPPED
    assert abs(world.deck_load_kg() - 30_000) < 1e-6
    sensors = world.sensors()
    assert sensors.deck_front and sensors.deck_rear
    assert not sensors.loop_a and not sensors.photo_eye


def test_partly_off_deck_truck_blocks_the_exit_beam_and_misses_an_axle() -> None:
    world = World()
    world.send(TruckSpec(plate="T2", gross_kg=30_000, stop_front_m=DECK_END_M + 1.6))
    drive(world, 10.0)
    assert not world.sensors().deck_front
    assert world.deck_load_kg() < 30_000


def test_driver_shows_the_pass_after_stopping_and_departs_when_the_arm_is_up() -> None:
    shown: list[bool] = []
    world = World(on_show=shown.append)
    world.send(TruckSpec(plate="T3", gross_kg=20_000, show_pass_after_s=0.5))
    t = drive(world, 10.0)
    assert shown == [True]
    t = drive(world, t + 20.0, arm=1.0, t0=t)
    truck = world.truck
    assert truck is not None and truck.phase is Phase.GONE
    assert shown == [True, False]
    assert world.violations == []


def test_arm_not_up_over_the_truck_is_recorded_as_a_violation() -> None:
    world = World()
    world.send(TruckSpec(plate="T4", gross_kg=20_000))
    t = drive(world, 10.0)
    t = drive(world, t + 1.0, arm=1.0, t0=t)  # the truck is now under the arm
    truck = world.truck
    assert truck is not None and truck.covers(20.0)
    world.step(t, 0.5)
    assert world.violations


def test_held_truck_backs_off_the_deck() -> None:
    world = World()
    world.send(TruckSpec(plate="T5", gross_kg=20_000, back_off_after_s=2.0))
    drive(world, 60.0)
    truck = world.truck
    assert truck is not None and truck.phase is Phase.GONE
    assert world.deck_load_kg() == 0.0
