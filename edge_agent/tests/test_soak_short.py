"""A short soak: 150 trucks through the virtual lane with its real publisher on a real broker,
one broker outage, two indicator drops (between trucks and under a truck) and a camera loss.
Nothing is lost, and descriptors and threads are back at their count once the faults clear.
(The 2,000-truck soak with its slopes is ``make bench``'s.)"""

from __future__ import annotations

from pathlib import Path

from simulators.soak import SoakPlan, SoakResult, render, run_soak
from simulators.soak_figures import series

PLAN = SoakPlan(trucks=150, outages=1, outage_trucks=20, indicator_drops=2, camera_losses=1,
                sample_every=10, warmup=30)


def test_a_short_soak_loses_nothing_and_leaks_no_descriptor_or_thread(tmp_path: Path) -> None:
    result: SoakResult = run_soak(tmp_path, PLAN)
    report = render(result)

    assert result.faults == {"broker_down": 1, "broker_up": 1, "indicator_drop": 1,
                             "indicator_truck": 1, "camera_loss": 1}, report
    assert (result.trucks, result.as_expected, result.problems) == (150, 150, []), report
    # Nothing lost: every seq issued is stored once at the backend, the outbox drained.
    assert result.lost == [], report
    assert result.nothing_lost
    assert result.events > 150 * 8
    assert result.backend["watermark"] == result.events and result.backend["gaps"] == []
    assert result.backend["stored"] == result.events
    # The outage was real: rows piled up while the link was down, then drained.
    assert result.backlogs and result.backlogs[0] > 20 * 8, report
    assert result.end["outbox_rows"] == 0
    # Once the faults cleared, the lane holds what it held after its first truck.
    assert result.end["fds"] == result.baseline["fds"], report
    assert (result.fds_gained, result.fds_lost) == ([], []), report
    assert result.end["threads"] == result.baseline["threads"], report
    assert "nothing lost: yes" in report


def samples(values: dict[str, list[float]], every: int = 20) -> list[dict[str, float]]:
    count = len(next(iter(values.values())))
    return [{"truck": float(i * every), **{k: v[i] for k, v in values.items()}}
            for i in range(count)]


def test_a_series_is_flat_when_its_slope_after_warm_up_is_under_its_bound() -> None:
    # RSS that climbs during warm-up and then stays within noise; fds that leak one per
    # 200 trucks; a WAL that grows to the checkpoint size late in the run.
    rss = [80 + min(i, 10) + (0.3 if i % 2 else -0.3) for i in range(60)]
    fds = [20.0 + i // 10 for i in range(60)]
    wal = [min(4.1, 0.1 * i) for i in range(60)]
    found = {s.name: s for s in series(samples({"rss_mb": rss, "fds": fds,
                                                 "passes.sqlite-wal_mb": wal}), warmup=400)}
    assert found["rss_mb"].flat and abs(found["rss_mb"].slope) < 0.1
    assert (found["rss_mb"].start, found["rss_mb"].end) == (rss[0], rss[-1])
    assert found["rss_mb"].peak == max(rss)
    assert not found["fds"].flat and 4.0 < found["fds"].slope < 6.0  # 1 per 200 trucks
    assert found["passes.sqlite-wal_mb"].slope > 0.5 and found["passes.sqlite-wal_mb"].flat
