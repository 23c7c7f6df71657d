"""Fixtures for the edge agent's tests: the whole agent on the in-package fakes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from simulators.scenarios import DEMO
from simulators.virtual_lane import VirtualLane


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[VirtualLane]:
    """The virtual lane on the demo scenario (the real LaneAgent in virtual time), closed after
    the test. A module with a lane of its own defines its own ``lane``."""
    with closing(VirtualLane(tmp_path, DEMO)) as virtual:
        yield virtual
