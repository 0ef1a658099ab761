"""CRM test fixtures: every store test runs on SQLite and on a real PostgreSQL.

Each test gets its own database, copied from one migrated template per backend (a file copy for
SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL), so tests are isolated and migrations run
once per backend per session (their own test runs them on empty databases).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crm import db
from tests.support.postgres import PostgresServer

_names = itertools.count(1)

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crm-template") / "template.sqlite3"
    db.migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template(postgres_server: PostgresServer) -> str:
    url = postgres_server.create_database("crm_template")
    db.migrate(url)
    return "crm_template"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of ``backend`` for this test only."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "crm.sqlite3"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"crm_t{next(_names)}"
    url = server.create_database(name, template=template_name)
    yield url
    if server.running:
        server.drop_database(name)


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema) of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"crm_e{next(_names)}"
    url = server.create_database(name)
    yield url
    if server.running:
        server.drop_database(name)


@pytest.fixture
async def sessionmaker(db_url: str) -> AsyncIterator[db.SessionMaker]:
    engine = db.make_engine(db_url)
    try:
        yield db.make_sessionmaker(engine)
    finally:
        await engine.dispose()
