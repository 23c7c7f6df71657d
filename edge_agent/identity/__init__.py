"""Truck identity: container numbers (ISO 6346) and licence plates, as pure functions."""
