from __future__ import annotations

import pytest

from simulators.barrier import BarrierMotor


def test_opens_in_travel_time_and_reports_limits() -> None:
    motor = BarrierMotor(travel_s=1.0)
    p = motor.step(0.0, open_relay=True, close_relay=False)
    assert p.limit_closed and not p.limit_open and p.direction == 1
    p = motor.step(0.5, open_relay=True, close_relay=False)
    assert p.fraction == pytest.approx(0.5)
    assert not p.limit_open and not p.limit_closed
    p = motor.step(1.2, open_relay=True, close_relay=False)
    assert p.fraction == 1.0 and p.limit_open


def test_closes_and_stops_without_relays() -> None:
    motor = BarrierMotor(travel_s=2.0, fraction=1.0)
    motor.step(10.0, open_relay=False, close_relay=True)
    p = motor.step(11.0, open_relay=False, close_relay=False)
    assert p.fraction == pytest.approx(0.5)
    p = motor.step(20.0, open_relay=False, close_relay=False)
    assert p.fraction == pytest.approx(0.5) and p.direction == 0


def test_both_relays_do_not_move_and_are_counted() -> None:
    motor = BarrierMotor(travel_s=1.0, fraction=0.5)
    motor.step(0.0, open_relay=True, close_relay=True)
    p = motor.step(1.0, open_relay=True, close_relay=True)
    assert p.fraction == pytest.approx(0.5)
    assert motor.conflicts == 2


def test_time_going_backwards_is_ignored() -> None:
    motor = BarrierMotor(travel_s=1.0)
    motor.step(5.0, open_relay=True, close_relay=False)
    p = motor.step(4.0, open_relay=True, close_relay=False)
    assert p.fraction == 0.0


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="travel_s"):
        BarrierMotor(travel_s=0)
    with pytest.raises(ValueError, match="fraction"):
        BarrierMotor(fraction=1.5)
