"""Weighing: the truck's static weight, fast and honest, and every abnormality with evidence.

Pure and time-driven: feed :class:`WeightWatcher` readings with their arrival times, call
``tick(now)`` at ``next_deadline()``, act on the events it returns.
"""

from edge_agent.weighing.analyze import Analysis, TraceError, TraceRow, analyze, read_trace
from edge_agent.weighing.classical import ClassicalSettler
from edge_agent.weighing.declared import check_declared, default_tolerance_kg
from edge_agent.weighing.events import (
    WEIGHT_CODES,
    DeckCleared,
    Evidence,
    ScaleConfig,
    TruckOnDeck,
    WeighEvent,
    WeightAbnormality,
    WeightCommitted,
)
from edge_agent.weighing.settle import Estimate, OscillationSettler, Settler
from edge_agent.weighing.watcher import DeckState, WeightWatcher

__all__ = [
    "WEIGHT_CODES",
    "Analysis",
    "ClassicalSettler",
    "DeckCleared",
    "DeckState",
    "Estimate",
    "Evidence",
    "OscillationSettler",
    "ScaleConfig",
    "Settler",
    "TraceError",
    "TraceRow",
    "TruckOnDeck",
    "WeighEvent",
    "WeightAbnormality",
    "WeightCommitted",
    "WeightWatcher",
    "analyze",
    "check_declared",
    "default_tolerance_kg",
    "read_trace",
]
