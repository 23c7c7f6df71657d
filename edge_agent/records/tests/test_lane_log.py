"""``LaneLog``: what the running lane records, and a disk that refuses records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edge_agent.records import LOG_NAME
from edge_agent.records.lane_log import RETRY_S, LaneLog
from edge_agent.records.segments import verify_segments
from edge_agent.records.verify import verify_log

CONFIG = {"weighbridge.e_kg": 20.0, "lane.lane": "lane-01", "passes.skew_s": 300}
SOFTWARE = {"version": "1.0.0", "sha256": "a" * 64}
UTC0 = 1_800_000_000.0


class Lane:
    """A LaneLog with what it publishes and reports collected."""

    def __init__(self, state: Path, **kwargs: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.faults: list[str] = []
        self.log = LaneLog(state, publish=lambda data, _tid: self.sent.append(data),
                           on_fault=self.faults.append, **kwargs)  # fmt: skip

    def start(self, utc: float = UTC0, mono: float = 10.0, *, config: dict[str, Any] = CONFIG,
              software: dict[str, str] = SOFTWARE) -> None:  # fmt: skip
        self.log.start(utc=utc, mono=mono, config=config, software=software, boot_id=1,
                       synced=True, source="chrony")  # fmt: skip

    def kinds(self) -> list[str]:
        """The kinds sent, without the segment headers (sent at every start)."""
        return [d["record"]["kind"] for d in self.sent if d["record"]["kind"] != "header"]

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        return [d["record"]["body"] for d in self.sent if d["record"]["kind"] == kind]


def decision() -> dict[str, Any]:
    return {"decision": "hold", "reasons": ["weight.declared_mismatch"], "weight_kg": 32480.0,
            "estimate_kg": 32481.2, "indicator_kg": 32480.0, "indicator_stable": True,
            "indicator_frames": [{"t": 1.0, "kg": 32480.0, "stable": True, "raw": "02ab"}],
            "weight_rules": [{"rule": "pass", "ok": False}], "release_no": "RL-1",
            "identity": [{"check": "plate", "code": None, "reads": ["SU-A1001"]}]}  # fmt: skip


def test_the_first_start_records_the_start_and_the_configuration(tmp_path: Path) -> None:
    lane = Lane(tmp_path)
    lane.start()
    assert lane.sent[0]["record"]["kind"] == "header"  # the receiver's key comes first
    assert lane.kinds() == ["power_cycle", "config_change"]
    [cycle] = lane.bodies("power_cycle")
    assert cycle["previous_shutdown"] == "unknown" and cycle["software"] == SOFTWARE
    [change] = lane.bodies("config_change")
    assert change["by"] == "startup" and change["old_hash"] is None and change["counter"] == 1
    assert {c["key"] for c in change["changed"]} == set(CONFIG)


def test_a_restart_says_how_the_run_before_ended(tmp_path: Path) -> None:
    first = Lane(tmp_path)
    first.start()
    first.log.stop(utc=UTC0 + 5, mono=15.0, reason="stopped", by="SIGTERM")
    clean = Lane(tmp_path)
    clean.start(UTC0 + 60, 70.0)
    assert clean.kinds() == ["power_cycle"]  # same software, same config: nothing else
    assert clean.bodies("power_cycle")[0]["previous_shutdown"] == "clean"
    assert clean.bodies("power_cycle")[0]["previous_stop"]["by"] == "SIGTERM"
    clean.log.store.close()  # type: ignore[union-attr]  # a crash: no stop
    crashed = Lane(tmp_path)
    crashed.start(UTC0 + 120, 3.0)
    assert crashed.bodies("power_cycle")[0]["previous_shutdown"] == "unclean"


def test_new_software_and_a_changed_configuration_are_recorded_at_start(tmp_path: Path) -> None:
    Lane(tmp_path).start()
    lane = Lane(tmp_path)
    newer = {"version": "1.1.0", "sha256": "b" * 64}
    lane.start(UTC0 + 60, 5.0, config={**CONFIG, "weighbridge.e_kg": 10.0}, software=newer)
    assert lane.kinds() == ["power_cycle", "software_update", "config_change"]
    assert lane.bodies("software_update")[0] == {"old": SOFTWARE, "new": newer}
    change = lane.bodies("config_change")[0]
    assert change["changed"] == [{"key": "weighbridge.e_kg", "old": 20.0, "new": 10.0}]
    assert change["counter"] == 2 and change["old_hash"] != change["new_hash"]


def test_a_change_while_running_names_who_and_an_unchanged_one_is_not_recorded(
    tmp_path: Path,
) -> None:
    lane = Lane(tmp_path)
    lane.start()
    lane.log.config(dict(CONFIG), by="reload", utc=UTC0 + 1, mono=11.0)
    lane.log.config({**CONFIG, "passes.skew_s": 60}, by="remote config version 4",
                    utc=UTC0 + 2, mono=12.0)  # fmt: skip
    assert [b["by"] for b in lane.bodies("config_change")] == ["startup", "remote config version 4"]


def test_a_transit_record_carries_the_decision_its_weights_and_ids(tmp_path: Path) -> None:
    lane = Lane(tmp_path)
    lane.start()
    lane.log.note_evidence("T1", {"ref": "T1-weight", "part": 0, "parts": 2, "size": 9000,
                                  "sha256": "c" * 64, "media_type": "image/jpeg"})  # fmt: skip
    lane.log.note_evidence("T1", {"ref": "T1-weight", "part": 1, "sha256": "c" * 64})
    lane.log.transit(decision(), transit_id="T1", pass_claims={"release_no": "RL-1",
                     "pass_hash": "d" * 32, "plates": ["SU-A1001"], "containers": []},
                     event={"event_id": "E1", "seq": 9}, boot_id=1,
                     clock={"synced": True, "source": "chrony"}, utc=UTC0 + 3,
                     mono=13.0)  # fmt: skip
    [body] = lane.bodies("transit")
    assert (body["transit_id"], body["event_id"], body["event_seq"]) == ("T1", "E1", 9)
    assert body["decision"] == "hold" and body["reasons"] == ["weight.declared_mismatch"]
    assert body["indicator_kg"] == 32480.0 and body["estimate_kg"] == 32481.2
    assert body["indicator_frames"][0]["raw"] == "02ab"
    assert body["pass"]["pass_hash"] == "d" * 32 and body["plates"] == ["SU-A1001"]
    assert body["plates_read"] == ["SU-A1001"] and body["containers_read"] == []
    assert body["evidence"] == [{"ref": "T1-weight", "sha256": "c" * 64, "size": 9000,
                                 "media_type": "image/jpeg"}]  # fmt: skip
    assert body["software"] == SOFTWARE and body["config_changes"] == 1
    record = lane.sent[-1]["record"]
    assert (record["utc"], record["mono"]) == (UTC0 + 3, 13.0)


def test_a_clock_step_is_recorded_while_running_and_across_a_restart(tmp_path: Path) -> None:
    lane = Lane(tmp_path)
    lane.start()
    lane.log.observe_clock(utc=UTC0 + 1.0002, mono=11.0, synced=True, source="chrony")  # slew
    lane.log.observe_clock(utc=UTC0 - 3600 + 2, mono=12.0, synced=False, source="system")
    [step] = lane.bodies("clock_step")
    assert step["step_s"] == pytest.approx(-3600 + 0.0, abs=0.01) and step["seen"] == "running"
    lane.log.stop(utc=UTC0, mono=20.0, reason="stopped", by=None)
    behind = Lane(tmp_path)
    behind.start(UTC0 - 86400, 1.0)  # booted with a clock a day behind the last record
    assert behind.kinds() == ["power_cycle", "clock_step"]
    assert behind.bodies("clock_step")[0]["step_s"] == pytest.approx(-86400 + 3598)


def test_a_refusing_disk_is_reported_once_and_the_records_follow_when_it_is_back(
    tmp_path: Path,
) -> None:
    lane = Lane(tmp_path)
    lane.start()
    store = lane.log.store
    assert store is not None
    os.close(store._fd)
    store._fd = os.open(tmp_path / LOG_NAME, os.O_RDONLY)  # writes fail from now on
    os.chmod(tmp_path / LOG_NAME, 0o400)
    for i in range(3):
        lane.log.transit(decision(), transit_id=f"T{i}", pass_claims=None, event=None,
                         boot_id=1, clock={}, utc=UTC0 + i, mono=20.0 + i)  # fmt: skip
    assert len(lane.faults) == 1 and "append failed" in lane.faults[0]
    health = lane.log.health(UTC0 + 5)
    assert not health["ok"] and health["pending"] == 3 and health["error"]
    assert lane.kinds() == ["power_cycle", "config_change"]  # nothing unwritten was sent
    if os.geteuid() != 0:  # root writes a 0400 file: the refusal above came from the fd
        lane.log.tick(utc=UTC0 + 40, mono=60.0, synced=True)
        assert lane.log.health(UTC0 + 40)["pending"] == 3
    os.chmod(tmp_path / LOG_NAME, 0o600)
    lane.log.tick(utc=UTC0 + 80, mono=60.0 + RETRY_S * 2, synced=True)
    assert lane.log.ok and lane.log.health(UTC0 + 80)["pending"] == 0
    assert [b["transit_id"] for b in lane.bodies("transit")] == ["T0", "T1", "T2"]
    assert [r["record"]["utc"] for r in lane.sent[-3:]] == [UTC0, UTC0 + 1, UTC0 + 2]
    assert verify_segments(tmp_path).ok


def test_a_damaged_log_is_kept_aside_and_a_new_segment_starts(tmp_path: Path) -> None:
    lane = Lane(tmp_path)
    lane.start()
    lane.log.stop(utc=UTC0, mono=20.0, reason="stopped", by=None)
    data = bytearray((tmp_path / LOG_NAME).read_bytes())
    data[8] ^= 0xFF  # inside the header's frame: not a torn tail, an edit
    (tmp_path / LOG_NAME).write_bytes(bytes(data))
    again = Lane(tmp_path)
    again.start(UTC0 + 60, 5.0)
    [(moved, problem)] = again.log.quarantined
    assert moved.exists() and moved.name.startswith(f"{LOG_NAME}.damaged-") and problem
    assert verify_log((tmp_path / LOG_NAME).read_bytes()).items[0].body["after_damaged"] == \
        moved.name
    assert again.kinds()[0] == "power_cycle"


def test_health_reports_disk_use_against_the_budget(tmp_path: Path) -> None:
    lane = Lane(tmp_path, budget_bytes=4000, segment_bytes=2000)
    lane.start()
    for i in range(10):
        lane.log.transit(decision(), transit_id=f"T{i}", pass_claims=None, event=None,
                         boot_id=1, clock={}, utc=UTC0 + i * 86400, mono=20.0 + i)  # fmt: skip
    health = lane.log.health(UTC0 + 10 * 86400)
    assert health["segments"] > 2 and health["bytes"] > 4000 and health["over_budget"]
    assert health["days_kept"] == 10.0 and health["keep_days"] == 90
    # Past 90 days the oldest segments go, down to the budget; the rest still verifies.
    lane.log.tick(utc=UTC0 + 200 * 86400, mono=100.0, synced=True)
    after = lane.log.health(UTC0 + 200 * 86400)
    assert after["segments"] < health["segments"] and after["bytes"] <= 4000 + 2000 * 2
    assert verify_segments(tmp_path).ok
