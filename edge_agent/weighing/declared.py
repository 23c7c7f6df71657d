"""Measured weight against the gross weight declared on the release pass, and a plate's tare.

Tolerance rules (a site's ``tolerance_rule``; the pass's own tolerance, when it has one, wins):
  * ``absolute``: a fixed number of kg (the site's, else 5 e);
  * ``percent``: a share of the declared gross;
  * ``both``: the larger of the two, so a light truck keeps a tolerance above the scale's
    resolution and a heavy one a share of its load (the default: 1 % but never less than 5 e).
A site tare for one of the pass's plates adds a band: a weight below tare - band is a truck
lighter than the vehicle itself, a different vehicle or a scale fault.

Every verdict names the rule that fired and its numbers, so the decision event can say why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Customs tolerance was not found in any source; until the site configures one, allow 1 % of
# the declared gross (fuel, driver, pallets) but never less than 5 e.
DEFAULT_TOLERANCE_FRACTION = 0.01
DEFAULT_TOLERANCE_E = 5.0

ToleranceRule = Literal["absolute", "percent", "both"]


@dataclass(frozen=True, slots=True)
class TolerancePolicy:
    """A site's rule. ``rule`` None: ``absolute_kg`` flat when set, else ``both``."""

    rule: ToleranceRule | None = None
    absolute_kg: float | None = None  # None: 5 e
    percent: float = 100 * DEFAULT_TOLERANCE_FRACTION


@dataclass(frozen=True, slots=True)
class Tare:
    """A vehicle's known tare and the band its weight may fall below it."""

    kg: float
    band_kg: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a declared-weight check found: ``detail`` is set when it fails."""

    rule: str
    numbers: Mapping[str, Any]
    detail: str | None = None

    def as_data(self) -> dict[str, Any]:
        return {"rule": self.rule, **self.numbers, "ok": self.detail is None}


def default_tolerance_kg(declared_kg: float, e_kg: float) -> float:
    return max(DEFAULT_TOLERANCE_FRACTION * declared_kg, DEFAULT_TOLERANCE_E * e_kg)


def tolerance_for(
    declared_kg: float, e_kg: float, policy: TolerancePolicy, pass_tolerance_kg: float | None
) -> tuple[str, float]:
    """(the rule that applies, its tolerance in kg)."""
    if pass_tolerance_kg is not None:
        return "pass", pass_tolerance_kg
    absolute = DEFAULT_TOLERANCE_E * e_kg if policy.absolute_kg is None else policy.absolute_kg
    share = policy.percent / 100 * declared_kg
    rule = policy.rule
    if rule is None:
        rule = "absolute" if policy.absolute_kg is not None else "both"
    if rule == "absolute":
        return "absolute", absolute
    if rule == "percent":
        return "percent", share
    return ("percent" if share >= absolute else "absolute") + " (both)", max(share, absolute)


def judge_declared(
    weight_kg: float, uncertainty_kg: float, declared_kg: float, e_kg: float,
    policy: TolerancePolicy, pass_tolerance_kg: float | None = None,
) -> Verdict:
    """The weight against the declared gross under the site's rule.

    Flags only a difference that exceeds the tolerance even after giving the measurement the
    benefit of its uncertainty, so an honest weight is never called a mismatch by noise.
    """
    rule, tolerance = tolerance_for(declared_kg, e_kg, policy, pass_tolerance_kg)
    difference = weight_kg - declared_kg
    numbers = {"measured_kg": weight_kg, "uncertainty_kg": uncertainty_kg,
               "declared_kg": declared_kg, "difference_kg": round(difference, 1),
               "tolerance_kg": round(tolerance, 1)}
    if abs(difference) - uncertainty_kg <= tolerance:
        return Verdict(rule, numbers)
    return Verdict(rule, numbers, (
        f"measured {weight_kg:.0f} +- {uncertainty_kg:.0f} kg, declared {declared_kg:.0f} kg "
        f"({difference:+.0f} kg), tolerance {tolerance:.0f} kg ({rule})"
    ))


def check_declared(
    weight_kg: float,
    uncertainty_kg: float,
    declared_kg: float,
    tolerance_kg: float | None,
    e_kg: float,
) -> str | None:
    """Detail for ``weight.declared_mismatch``, or None when the weight agrees (a flat
    tolerance, else the default rule)."""
    policy = TolerancePolicy(absolute_kg=tolerance_kg)
    return judge_declared(weight_kg, uncertainty_kg, declared_kg, e_kg, policy).detail


def plate_key(plate: str) -> str:
    """A plate as the tare table keys it: upper case, without spaces, dots or dashes."""
    return "".join(c for c in plate.upper() if c not in " .-·")


def judge_tare(
    weight_kg: float, uncertainty_kg: float, plates: Sequence[str], tares: Mapping[str, Tare]
) -> Verdict | None:
    """The weight against the site's tare for the first of ``plates`` it knows (None: none)."""
    table = {plate_key(plate): tare for plate, tare in tares.items()}
    for plate in plates:
        tare = table.get(plate_key(plate))
        if tare is None:
            continue
        floor = tare.kg - tare.band_kg
        numbers = {"plate": plate, "measured_kg": weight_kg, "tare_kg": tare.kg,
                   "band_kg": tare.band_kg}
        if weight_kg + uncertainty_kg >= floor:
            return Verdict("tare", numbers)
        return Verdict("tare", numbers, (
            f"measured {weight_kg:.0f} +- {uncertainty_kg:.0f} kg is below the tare of {plate}, "
            f"{tare.kg:.0f} - {tare.band_kg:.0f} kg"
        ))
    return None
