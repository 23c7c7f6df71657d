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


def test_a_pass_used_at_another_lane_of_the_site_counts_as_used(tmp_path: Path) -> None:
    from edge_agent.protocols.gp1 import revocation_hash

    ledger = PassLedger(tmp_path / "passes.sqlite")
    elsewhere, here = b"\x01" * 16, b"\x02" * 16
    assert ledger.learn_site_uses([revocation_hash(elsewhere)], now=1.0) == 1
    assert ledger.learn_site_uses([revocation_hash(elsewhere)], now=2.0) == 0  # known already
    assert ledger.is_used(elsewhere) and not ledger.is_used(here)
    assert ledger.mark_used(elsewhere, exp=2_000_000_000, now=3.0) is False
    assert ledger.mark_used(here, exp=2_000_000_000, now=3.0) is True


def test_a_damaged_ledger_is_quarantined_and_its_readable_uses_carried_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "passes.sqlite"
    ledger = PassLedger(path)
    for n in range(3000):
        ledger.mark_used(n.to_bytes(16, "big"), exp=2_000_000_000, now=1.0)
    ledger.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 20 : page * 21] = b"\xa5" * page  # one page in the middle of the table
    path.write_bytes(bytes(data))
    reopened, moved, problem = PassLedger.open_checked(path)
    assert moved is not None and moved.exists()
    assert moved.name.startswith("passes.sqlite.corrupt-")
    assert problem
    assert 0 < reopened.count() <= 3000  # whatever was still readable
    assert reopened.is_used((0).to_bytes(16, "big"))
    assert reopened.mark_used(b"\xff" * 16, exp=2_000_000_000, now=2.0) is True
