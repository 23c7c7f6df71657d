"""Fixtures of the red-team suite: the running agent, its broker and (where asked) a backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from redteam.agent_rig import AgentRig
from simulators.broker import MosquittoBroker


@pytest.fixture
def agent(broker: MosquittoBroker, tmp_path: Path) -> Iterator[AgentRig]:
    """The edge agent, configured but not started (``agent.start()``), on a private broker."""
    rig = AgentRig(broker.url, tmp_path / "lane")
    yield rig
    rig.close()
