from __future__ import annotations

from pathlib import Path

from edge_agent.records import LOG_NAME
from edge_agent.records.keys import load_or_create_key
from edge_agent.records.store import RecordStore
from edge_agent.records.verify import verify_log


def _log(tmp_path: Path, n: int = 5) -> bytes:
    store = RecordStore(tmp_path, load_or_create_key(tmp_path), utc=1.0, mono=0.0)
    for i in range(n):
        store.append("transit", {"pass_id": f"P{i}", "weight_kg": 32480}, utc=2.0 + i, mono=i)
    store.close()
    return (tmp_path / LOG_NAME).read_bytes()


def test_intact_log_verifies(tmp_path: Path) -> None:
    verdict = verify_log(_log(tmp_path))
    assert verdict.ok and verdict.records == 6
    assert (tmp_path / "record-key.pem").stat().st_mode & 0o777 == 0o600


def test_flipped_byte_is_named(tmp_path: Path) -> None:
    data = bytearray(_log(tmp_path))
    data[len(data) // 2] ^= 0x01
    verdict = verify_log(bytes(data))
    assert not verdict.ok and verdict.bad_seq is not None


def test_torn_tail_is_quarantined_and_log_continues(tmp_path: Path) -> None:
    data = _log(tmp_path)
    (tmp_path / LOG_NAME).write_bytes(data[:-7])
    store = RecordStore(tmp_path, load_or_create_key(tmp_path), utc=9.0, mono=9.0)
    assert store.quarantined is not None and store.quarantined.exists()
    rec = store.append("power_cycle", {}, utc=10.0, mono=10.0)
    store.close()
    assert rec.seq == 5
    assert verify_log((tmp_path / LOG_NAME).read_bytes()).ok
