"""Measured weight against the gross weight declared on the release pass."""

from __future__ import annotations

# Customs tolerance was not found in any source; until the site configures one, allow 1 % of
# the declared gross (fuel, driver, pallets) but never less than 5 e.
DEFAULT_TOLERANCE_FRACTION = 0.01
DEFAULT_TOLERANCE_E = 5.0


def default_tolerance_kg(declared_kg: float, e_kg: float) -> float:
    return max(DEFAULT_TOLERANCE_FRACTION * declared_kg, DEFAULT_TOLERANCE_E * e_kg)


def check_declared(
    weight_kg: float,
    uncertainty_kg: float,
    declared_kg: float,
    tolerance_kg: float | None,
    e_kg: float,
) -> str | None:
    """Detail for ``weight.declared_mismatch``, or None when the weight agrees.

    Flags only a difference that exceeds the tolerance even after giving the measurement the
    benefit of its uncertainty, so an honest weight is never called a mismatch by noise.
    """
    tolerance = default_tolerance_kg(declared_kg, e_kg) if tolerance_kg is None else tolerance_kg
    difference = weight_kg - declared_kg
    if abs(difference) - uncertainty_kg <= tolerance:
        return None
    return (
        f"measured {weight_kg:.0f} +- {uncertainty_kg:.0f} kg, declared {declared_kg:.0f} kg "
        f"({difference:+.0f} kg), tolerance {tolerance:.0f} kg"
    )
