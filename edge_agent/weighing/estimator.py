"""The weighing interface the agent uses: config, watcher, events and the declared check."""

from edge_agent.weighing.declared import check_declared
from edge_agent.weighing.events import (
    DeckCleared,
    ScaleConfig,
    TruckOnDeck,
    WeighEvent,
    WeightAbnormality,
    WeightCommitted,
)
from edge_agent.weighing.watcher import WeightWatcher

__all__ = [
    "DeckCleared",
    "ScaleConfig",
    "TruckOnDeck",
    "WeighEvent",
    "WeightAbnormality",
    "WeightCommitted",
    "WeightWatcher",
    "check_declared",
]
