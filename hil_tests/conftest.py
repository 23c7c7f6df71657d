"""The HIL suite: the same tests against the simulated lane (``sim``, default) or a bench.

``pytest hil_tests --lane-env bench --bench-config hil_tests/envs/bench.toml`` runs against a
wired bench; the simulated lane needs nothing but this repository.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.harness import SimLane, TruckOutcome
from simulators.scenarios import DEMO, Scenario


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gatelane HIL")
    group.addoption("--lane-env", default="sim", choices=("sim", "bench"))
    group.addoption("--bench-config", type=Path, default=None)


@pytest.fixture(scope="session")
def lane_env(request: pytest.FixtureRequest) -> str:
    env: str = request.config.getoption("--lane-env")
    if env == "bench" and request.config.getoption("--bench-config") is None:
        pytest.skip("bench environment selected but no --bench-config given")
    return env


@pytest.fixture(scope="session")
def demo_scenario() -> Scenario:
    return DEMO


@pytest.fixture(scope="session")
def demo_run(
    lane_env: str, demo_scenario: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SimLane, list[TruckOutcome]]]:
    if lane_env != "sim":
        pytest.skip("trucks can only be driven through the lane in the simulated environment")
    workdir = tmp_path_factory.mktemp("lane")
    lines: list[str] = []
    with SimLane(demo_scenario, workdir=workdir, log=lines.append) as lane:
        outcomes = [lane.run_truck(plan) for plan in demo_scenario.trucks]
        yield lane, outcomes
