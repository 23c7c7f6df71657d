"""``lane-sim run --keep DIR``: the lane's state is left in DIR, its transaction log intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.records import LOG_NAME
from edge_agent.records.segments import verify_segments
from edge_agent.records.verify import verify_log
from simulators.lane_sim import main

pytestmark = [pytest.mark.process, pytest.mark.broker, pytest.mark.slow]


def test_the_kept_state_holds_an_intact_log_of_the_run(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "kept"
    assert main(["run", "--trucks", "1", "--keep", str(keep)]) == 0
    assert "lane state kept in" in capsys.readouterr().out
    assert {"outbox.sqlite", "passes.sqlite", LOG_NAME} <= {p.name for p in keep.iterdir()}
    verdict = verify_log((keep / LOG_NAME).read_bytes())
    assert verdict.ok, verdict.reason
    kinds = [r.kind for r in verdict.items]
    assert kinds[:2] == ["header", "power_cycle"] and "transit" in kinds
    assert verify_segments(keep).ok
