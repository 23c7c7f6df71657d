"""The lane's state files: a damaged one is quarantined, never silently deleted.

``open_state_db`` opens a store. If its file is damaged (SQLite says CORRUPT or NOTADB,
``PRAGMA quick_check`` finds damage, or a store of another kind raises ``StateDamaged``), the
file and its WAL are renamed aside as ``NAME.corrupt-<UTC time>`` (kept for analysis) and a
fresh store is opened in its place. The caller gets the quarantined path, so it can raise
``lane.state_quarantined`` and salvage what is still readable (``salvage_rows``). Errors that
are not damage (a full disk, a missing permission) are raised as they are: the data is fine,
only the place is not.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


class StateDamaged(ValueError):
    """A state file that is not SQLite could not be read back: its content is damaged."""


def is_corruption(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the file itself is damaged."""
    while exc is not None:
        if isinstance(exc, StateDamaged):
            return True
        if isinstance(exc, sqlite3.DatabaseError):
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _CORRUPT_CODES:
                return True
            text = str(exc)
            if "malformed" in text or "not a database" in text:
                return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def quick_check(path: Path) -> str | None:
    """None if ``path`` is missing or sound, else what SQLite found wrong."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(str(path), timeout=5.0)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc) if is_corruption(exc) else None
    found = [str(row[0]) for row in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


def quarantine(path: Path) -> Path:
    """Rename ``path`` (and its -wal, -shm) aside; returns the new name of the main file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            source.replace(target.with_name(target.name + suffix))
    return target


def open_state_db(
    path: Path, opener: Callable[[Path], T], *, sqlite: bool = True
) -> tuple[T, Path | None, str]:
    """``(store, quarantined file or None, what was wrong)``; see the module docstring.

    ``sqlite=False`` for a store of another kind: only its own ``StateDamaged`` counts."""
    problem = quick_check(path) if sqlite else None
    if problem is None:
        try:
            return opener(path), None, ""
        except Exception as exc:
            if not is_corruption(exc):
                raise
            problem = str(exc)
    moved = quarantine(path)
    return opener(path), moved, problem


def salvage_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Whatever rows of ``sql`` a damaged file still gives, up to the first unreadable page."""
    rows: list[tuple[Any, ...]] = []
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            for row in db.execute(sql):
                rows.append(tuple(row))
        except sqlite3.Error:
            pass
        finally:
            db.close()
    return rows
