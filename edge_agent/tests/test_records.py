"""The refusal budget: a burst, then a trickle, on the time it is given."""

from __future__ import annotations

from edge_agent.telemetry.records import RefusalBudget


def test_the_refusal_budget_allows_a_burst_then_one_per_interval() -> None:
    budget = RefusalBudget(burst=3, per_s=0.5)
    assert [budget.allow(0.0) for _ in range(5)] == [True, True, True, False, False]
    assert budget.allow(1.0) is False  # half a token back
    assert budget.allow(2.0) is True
    assert budget.allow(100.0) and budget.allow(100.0) and budget.allow(100.0)
    assert budget.allow(100.0) is False  # never more than the burst stored up
    assert budget.suppressed == 4
