"""Both event stores for one test suite: every store test runs on SQLite and on a private
PostgreSQL server (started once per session, a fresh database per test)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.pgserver import PgServer
from backend.store import EventStore
from backend.store_url import open_store

OpenStore = Callable[[], EventStore]
_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    with PgServer(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.process)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store's URL: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    server: PgServer = request.getfixturevalue("pg_server")
    return server.fresh_database(f"test_{next(_databases)}")


@pytest.fixture
def stores(store_url: str) -> Iterator[OpenStore]:
    """Opens connections to the test's store (several: workers sharing one store)."""
    opened: list[EventStore] = []

    def connect() -> EventStore:
        opened.append(open_store(store_url))
        return opened[-1]

    yield connect
    for store in opened:
        store.close()
