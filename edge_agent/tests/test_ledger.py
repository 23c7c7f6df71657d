"""The single-use pass ledger: durable, atomic, purgeable."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge_agent.drivers.pass_ledger import PassLedger
from edge_agent.errors import DeviceError

CTI = bytes(range(16))


def test_mark_used_once(tmp_path: Path) -> None:
    with PassLedger(tmp_path / "l.db") as ledger:
        assert not ledger.is_used(CTI)
        assert ledger.mark_used(CTI, exp=2000, now=1000.0, lane="L1") is True
        assert ledger.is_used(CTI)
        assert ledger.mark_used(CTI, exp=2000, now=1001.0, lane="L2") is False
        assert ledger.count() == 1


def test_survives_restart_and_uses_wal_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "state" / "l.db"
    with PassLedger(path) as ledger:
        ledger.mark_used(CTI, exp=2000, now=1000.0)
    with PassLedger(path) as reopened:
        assert reopened.is_used(CTI)
        assert not reopened.mark_used(CTI, exp=2000, now=1500.0)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_purge_expired_keeps_live_rows(tmp_path: Path) -> None:
    with PassLedger(tmp_path / "l.db") as ledger:
        ledger.mark_used(b"a" * 16, exp=1000, now=900.0)
        ledger.mark_used(b"b" * 16, exp=5000, now=900.0)
        assert ledger.purge_expired(3000.0, grace_s=100) == 1
        assert not ledger.is_used(b"a" * 16) and ledger.is_used(b"b" * 16)


def test_concurrent_marks_have_one_winner(tmp_path: Path) -> None:
    wins: list[bool] = []
    with PassLedger(tmp_path / "l.db") as ledger:
        threads = [threading.Thread(target=lambda: wins.append(
            ledger.mark_used(CTI, exp=9, now=1.0))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_unopenable_path_is_a_device_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeviceError, match="pass ledger"):
        PassLedger(tmp_path / "file" / "l.db")
