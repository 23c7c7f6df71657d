"""Fixtures shared by every test folder: a private Mosquitto and the backend simulator on it.

A test module that needs a differently configured broker (TLS, ACL) defines its own ``broker``,
which takes precedence over this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.backend import BackendSim
from simulators.broker import MosquittoBroker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(workdir=tmp_path / "broker") as running:
        yield running


@pytest.fixture
def backend(broker: MosquittoBroker) -> Iterator[BackendSim]:
    with BackendSim(broker.url) as sim:
        yield sim
