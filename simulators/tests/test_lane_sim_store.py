"""``lane-sim run --store postgresql``: the same lane, its backend on a private PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulators.lane_sim import main

pytestmark = [pytest.mark.process, pytest.mark.broker, pytest.mark.slow]


def _decisions(report: Path) -> list[tuple[str, object]]:
    trucks = json.loads(report.read_text())["trucks"]
    return [(t["name"], t["decision"]) for t in trucks]


def test_the_lane_decides_the_same_with_either_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_pg, with_sqlite = tmp_path / "pg.json", tmp_path / "sqlite.json"
    assert main(["run", "--trucks", "2", "--store", "postgresql",
                 "--report", str(with_pg)]) == 0
    out = capsys.readouterr().out
    assert "store       postgresql postgresql://" in out
    assert main(["run", "--trucks", "2", "--report", str(with_sqlite)]) == 0
    assert _decisions(with_pg) == _decisions(with_sqlite)
    pg_report = json.loads(with_pg.read_text())
    assert pg_report["backend_events"] > 0
