"""Named scenarios: which trucks come through the lane, and what the lane must do with each."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from simulators.errors import SimulatorSetupError
from simulators.plate_render import PlateSighting
from simulators.world import DECK_END_M, TruckSpec


@dataclass(frozen=True, slots=True)
class TruckPlan:
    """One truck of a scenario and the outcome the lane must reach."""

    name: str
    truck: TruckSpec
    pass_kind: str = "valid"  # valid | untrusted | expired | reuse | none
    declared_kg: int | None = None  # defaults to the truck's true gross
    tolerance_kg: int | None = 300
    expect_decision: str = "open"  # open | hold
    expect_reason: str | None = None  # the first hold reason (edge_agent/catalogue.py)
    faults: tuple[str, ...] = ()  # weighbridge faults from the truck's stop until it leaves
    release: str | None = None  # how a hold ends: None = backs off; "remote"; "technician"
    broker_outage: bool = False  # the broker is down from drive-on until the truck has gone
    notes: str = ""
    # What the lane's plate camera shows of this truck (CameraSim.show_plate); None: no plate.
    plate_view: PlateSighting | None = None
    # Its seals, on the pass and heard by the e-seal reader (``lane-sim run --eseal``): each
    # "ID" (closed) or "ID:status"; a status "unheard" is on the pass but never heard.
    seals: tuple[str, ...] = ()

    @property
    def declared(self) -> int:
        return int(self.declared_kg if self.declared_kg is not None else self.truck.gross_kg)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    trucks: tuple[TruckPlan, ...]
    site: str = "BZ01"
    lane: str = "exit-03"
    gate: str = "G3"
    extra: dict[str, str] = field(default_factory=dict)


def _truck(plate: str, gross: float, **kwargs: object) -> TruckSpec:
    return replace(TruckSpec(plate=plate, gross_kg=gross), **kwargs)  # type: ignore[arg-type]


# A held truck backs off once the lane announces the hold; this is only the driver's patience
# if the announcement never comes (then the outcome check fails).
_BACK_OFF = 25.0

# Trucks that show one abnormality each; scenarios name them.
EXTRA_TRUCKS: dict[str, TruckPlan] = {
    "reused": TruckPlan(
        "reused-pass",
        _truck("SU-A1001", 32_400, back_off_after_s=_BACK_OFF),
        pass_kind="reuse",
        expect_decision="hold",
        expect_reason="pass.already_used",
    ),
    "expired": TruckPlan(
        "expired-pass",
        _truck("SU-F6006", 22_300, back_off_after_s=_BACK_OFF),
        pass_kind="expired",
        expect_decision="hold",
        expect_reason="pass.expired",
    ),
    "off-deck": TruckPlan(
        "partly-off-deck",
        _truck("SU-G7007", 30_000, stop_front_m=DECK_END_M + 1.6, back_off_after_s=_BACK_OFF),
        expect_decision="hold",
        expect_reason="weight.not_on_deck",
    ),
    "frozen": TruckPlan(
        "frozen-indicator",
        _truck("SU-H8008", 28_000, back_off_after_s=_BACK_OFF),
        faults=("frozen",),
        expect_decision="hold",
        expect_reason="weight.frozen",
    ),
}


DEMO = Scenario(
    name="demo",
    description="Valid passes, a reused, a forged and an expired pass, a declared-weight "
    "mismatch, a truck partly off the deck and a frozen indicator.",
    trucks=(
        TruckPlan("valid-1", _truck("SU-A1001", 32_480)),
        EXTRA_TRUCKS["reused"],
        TruckPlan(
            "mismatch",
            _truck("SU-B2002", 41_260),
            declared_kg=36_000,
            expect_decision="hold",
            expect_reason="weight.declared_mismatch",
            release="remote",
        ),
        TruckPlan("valid-2", _truck("SU-C3003", 18_940), broker_outage=True),
        TruckPlan(
            "untrusted-key",
            _truck("SU-D4004", 27_500, back_off_after_s=_BACK_OFF),
            pass_kind="untrusted",
            expect_decision="hold",
            expect_reason="pass.unknown_key",
        ),
        EXTRA_TRUCKS["expired"],
        EXTRA_TRUCKS["off-deck"],
        EXTRA_TRUCKS["frozen"],
        TruckPlan("valid-3", _truck("SU-E5005", 45_120)),
    ),
)

SCENARIOS: dict[str, Scenario] = {DEMO.name: DEMO}


def get_scenario(name: str, trucks: int | None = None) -> Scenario:
    """The named scenario, optionally cut or cycled to ``trucks`` trucks."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise SimulatorSetupError(f"unknown scenario {name!r}; known: {known}") from None
    if trucks is None or trucks == len(scenario.trucks):
        return scenario
    if trucks < 1:
        raise SimulatorSetupError("--trucks must be at least 1")
    plans = [scenario.trucks[i % len(scenario.trucks)] for i in range(trucks)]
    return replace(scenario, trucks=tuple(plans))
