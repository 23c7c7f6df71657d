"""The SQLite outbox alone: acceptance, seq, boot_id, watermark deletes, quota, dead letters."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_agent.errors import ConfigError, LocalProtocolError
from edge_agent.telemetry.envelope import decode
from edge_agent.telemetry.outbox import AckRefused, Outbox, Priority

WALL = 1_714_564_800_000


def _open(path: Path, **kwargs: Any) -> Outbox:
    return Outbox(path / "outbox.db", site="s1", lane="l1", agent_version="1.2.3", **kwargs)


def _add(outbox: Outbox, type: str = "vehicle_passed", **data: Any) -> dict[str, Any]:
    return outbox.add_event(
        type, data, transit_id="t-9", mono_ms=42, wall_ms=WALL, clock_synced=False
    )


def test_events_get_consecutive_seqs_and_a_complete_envelope(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    first, second = _add(outbox, n=1), _add(outbox, n=2)
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["event_id"] != second["event_id"]
    assert first["boot_id"] == outbox.boot_id == 1
    assert first["clock"] == {"synced": False, "source": "system"}
    assert (first["site"], first["lane"], first["transit_id"]) == ("s1", "l1", "t-9")
    assert first["occurred_at"] == "2024-05-01T12:00:00.000Z"
    rows = outbox.pending(10)
    assert [row.key for row in rows] == [1, 2]
    assert rows[0].topic == "gate/v1/s1/l1/evt/vehicle_passed"
    assert decode(rows[0].payload) == first  # the stored bytes are the returned envelope


def test_an_accepted_event_survives_reopening(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    envelope = _add(outbox)
    outbox.close()  # no further commit needed: accepted means committed
    again = _open(tmp_path)
    assert decode(again.pending(10)[0].payload) == envelope


def test_boot_id_increments_and_seq_continues_across_restarts(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    _add(outbox)
    _add(outbox)
    outbox.close()
    again = _open(tmp_path)
    assert again.boot_id == 2
    event = _add(again)
    assert (event["seq"], event["boot_id"]) == (3, 2)


def test_seq_is_never_reused_after_every_row_was_acked(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    for _ in range(3):
        _add(outbox)
    assert outbox.apply_ack(3, epoch=outbox.epoch) == 3
    assert outbox.pending(10) == []
    outbox.close()
    assert _add(_open(tmp_path))["seq"] == 4


def test_ack_deletes_only_what_the_watermark_covers(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    for _ in range(5):
        _add(outbox)
    assert outbox.apply_ack(2, epoch=outbox.epoch) == 2
    assert [row.key for row in outbox.pending(10)] == [3, 4, 5]
    assert outbox.apply_ack(2, epoch=outbox.epoch) == 0  # repeated (retained) ack is harmless
    stats = outbox.stats()
    assert (stats["events"], stats["first_seq"], stats["last_seq"]) == (3, 3, 5)


def test_an_ack_beyond_the_last_issued_seq_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    outbox = _open(tmp_path)
    for _ in range(3):
        _add(outbox)
    for upto in (4, 100, 9223372036854775806):
        with pytest.raises(AckRefused, match="above the last seq issued"):
            outbox.apply_ack(upto, epoch=outbox.epoch)
    assert [row.key for row in outbox.pending(10)] == [1, 2, 3]
    assert _add(outbox)["seq"] == 4


def test_an_ack_for_another_outbox_is_refused(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    _add(outbox)
    with pytest.raises(AckRefused, match="is for outbox"):
        outbox.apply_ack(1, epoch="0123456789abcdef")
    assert outbox.stats()["events"] == 1


def test_a_new_outbox_file_has_a_new_epoch_and_keeps_it(tmp_path: Path) -> None:
    first = _open(tmp_path)
    epoch = first.epoch
    assert _add(first)["epoch"] == epoch
    first.close()
    assert _open(tmp_path).epoch == epoch
    other = Outbox(tmp_path / "other.db", site="s1", lane="l1", agent_version="1")
    assert other.epoch != epoch


def test_cmd_results_use_their_topic_and_share_the_seq(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    _add(outbox)
    result = outbox.add_command_result(
        "cmd-7", {"ok": True}, mono_ms=1, wall_ms=WALL, clock_synced=True
    )
    assert result["seq"] == 2
    assert result["data"] == {"cmd_id": "cmd-7", "ok": True}
    assert outbox.pending(10)[1].topic == "gate/v1/s1/l1/cmd_result"


def test_urgent_types_form_their_own_priority_lane(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    _add(outbox)
    _add(outbox, "abnormality", code="weight.frozen")
    _add(outbox)
    assert [r.key for r in outbox.pending(10, priority=Priority.URGENT)] == [2]
    assert [r.key for r in outbox.pending(10, after_seq=1, priority=Priority.NORMAL)] == [3]
    assert [r.key for r in outbox.rows([3, 1, 99])] == [1, 3]


def test_bad_event_input_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    with pytest.raises(ConfigError):
        _add(outbox, "evt/with/slash")
    with pytest.raises(LocalProtocolError):
        _add(outbox, blob=b"bytes are not JSON")
    assert _add(outbox)["seq"] == 1  # no seq was burnt by the refusals


def test_health_has_its_own_counter_and_is_deleted_once_sent(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    _add(outbox)
    health = outbox.add_health({"cpu": 3}, mono_ms=1, wall_ms=WALL, clock_synced=True)
    assert health is not None
    assert health["seq"] == 1 and health["schema"] == "gate.lane_health/1"
    assert _add(outbox)["seq"] == 2  # health did not consume an event seq
    rows = outbox.pending_health(10)
    assert rows[0].topic == "gate/v1/s1/l1/health"
    assert rows[0].expires_ms == WALL + 300_000
    assert outbox.mark_sent([rows[0].key]) == 1
    assert outbox.pending_health(10) == []


def test_quota_sheds_health_first_never_events_and_raises_the_alarm(tmp_path: Path) -> None:
    outbox = _open(tmp_path, max_bytes=6_000)
    for _ in range(5):
        outbox.add_health({"pad": "x" * 300}, mono_ms=1, wall_ms=WALL, clock_synced=True)
    assert outbox.stats()["health"] == 5
    accepted = [_add(outbox, pad="y" * 300)["seq"] for _ in range(20)]
    stats = outbox.stats()
    assert accepted == list(range(1, 21))  # every event kept, even past the quota
    assert stats["events"] == 20
    assert stats["health"] == 0 and stats["health_shed"] == 5
    assert stats["disk_alarm"] is True
    refused = outbox.add_health({"pad": "x"}, mono_ms=1, wall_ms=WALL, clock_synced=True)
    assert refused is None
    outbox.apply_ack(20, epoch=outbox.epoch)
    stats = outbox.stats()
    assert stats["disk_alarm"] is False and stats["bytes"] == 0  # recovers without restart
    assert outbox.add_health({}, mono_ms=1, wall_ms=WALL, clock_synced=True) is not None


def test_alarm_trips_at_eighty_percent(tmp_path: Path) -> None:
    outbox = _open(tmp_path, max_bytes=10_000)
    while outbox.stats()["disk_used"] < 0.75:
        assert outbox.stats()["disk_alarm"] is False
        _add(outbox, pad="z" * 200)
    while outbox.stats()["disk_used"] < 0.8:
        _add(outbox, pad="z" * 200)
    assert outbox.stats()["disk_alarm"] is True


def test_dead_letter_moves_the_row_aside(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    event = _add(outbox)
    assert outbox.dead_letter(1, 135, "not authorized", wall_ms=WALL) is True
    assert outbox.dead_letter(1, 135, "not authorized", wall_ms=WALL) is False
    assert outbox.pending(10) == []
    [dead] = outbox.dead_letters()
    assert (dead["seq"], dead["event_id"], dead["reason_code"]) == (1, event["event_id"], 135)


def test_one_producer_and_one_publisher_thread_share_it_safely(tmp_path: Path) -> None:
    outbox = _open(tmp_path)
    seen: list[int] = []
    done = threading.Event()

    def publisher() -> None:
        upto = 0
        while not done.is_set() or outbox.pending(1, after_seq=upto):
            rows = outbox.pending(50, after_seq=upto)
            for row in rows:
                seen.append(json.loads(row.payload)["seq"])
                upto = row.key
            if rows:
                outbox.apply_ack(upto, epoch=outbox.epoch)

    thread = threading.Thread(target=publisher)
    thread.start()
    for _ in range(500):
        _add(outbox)
    done.set()
    thread.join(10)
    assert seen == list(range(1, 501))
    assert outbox.stats()["events"] == 0


def test_a_non_positive_quota_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_bytes"):
        _open(tmp_path, max_bytes=0)


def test_below_the_disk_reserve_evidence_and_health_wait_but_events_are_kept(
    tmp_path: Path,
) -> None:
    # A reserve larger than any disk: free space is always short of it.
    outbox = _open(tmp_path, reserve_bytes=1 << 62)
    assert outbox.space_short()
    chunk = outbox.add_event("evidence", {"part": 1}, transit_id="t", mono_ms=1, wall_ms=WALL,
                             clock_synced=True, sheddable=True)
    assert chunk is None
    decision = outbox.add_event("decision", {"decision": "hold"}, transit_id="t", mono_ms=1,
                                wall_ms=WALL, clock_synced=True)
    assert decision is not None and decision["seq"] == 1
    assert outbox.add_health({"x": 1}, mono_ms=1, wall_ms=WALL, clock_synced=True) is None
    stats = outbox.stats()
    assert (stats["events"], stats["evidence_shed"], stats["health_shed"]) == (1, 1, 1)
    assert stats["disk_alarm"] is True
