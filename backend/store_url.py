"""Which event store a URL names: ``postgresql://...`` a site's PostgreSQL database,
``sqlite:///PATH`` or a plain path a SQLite file (the embedded default), ``:memory:`` a
throwaway SQLite store."""

from __future__ import annotations

from pathlib import Path

from backend.errors import BackendSetupError
from backend.store import EventStore

FORMS = "postgresql://USER@HOST:PORT/DB, sqlite:///PATH, a file path, or :memory:"


def open_store(url: str | Path | None) -> EventStore:
    """Open the store ``url`` names (None: in memory)."""
    from backend.sqlite_store import SqliteStore

    if url is None or url == ":memory:":
        return SqliteStore(None)
    if isinstance(url, Path):
        return SqliteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from backend.pg_store import PgStore

        return PgStore(url)
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite://")))
    if "://" in url or not url.strip():
        raise BackendSetupError(f"unknown event store {url!r}: use {FORMS}")
    return SqliteStore(Path(url))
