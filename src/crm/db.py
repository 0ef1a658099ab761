"""Engines, sessions and schema migrations for the CRM database (SQLite or PostgreSQL).

``migrate`` is synchronous: Alembic's async environment runs its own event loop. From async code call
``await migrate_async(url)``, which runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SessionMaker = async_sessionmaker[AsyncSession]

# Alembic's bookkeeping table; named for the capability so others may keep their own in the same database.
VERSION_TABLE = "crm_alembic_version"
DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5000


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def make_engine(
    url: str, *, echo: bool = False, sqlite_busy_timeout_ms: int = DEFAULT_SQLITE_BUSY_TIMEOUT_MS
) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``).

    SQLite connections get WAL (readers never block the call log writer), ``foreign_keys=ON`` and a
    busy timeout (a locked database waits that long, then raises ``OperationalError``).
    PostgreSQL connections are pinged when taken from the pool, so a restarted server costs one
    reconnect instead of one failed transaction per pooled connection.
    """
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": sqlite_busy_timeout_ms / 1000})
        memory = make_url(url).database in (None, "", ":memory:")

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if not memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={int(sqlite_busy_timeout_ms)}")
            finally:
                cursor.close()

        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    """Sessions whose objects stay readable after commit (results are returned past the session)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    """An Alembic configuration built in code: the scripts inside this package, ``url`` as target."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("crm") / "migrations"))
    config.set_main_option("version_table", VERSION_TABLE)
    # Passed as an attribute, not an option: ConfigParser would interpolate any % in a password.
    config.attributes["database_url"] = url
    return config


def migrate(url: str, revision: str = "heads") -> None:
    """Bring the schema at ``url`` to ``revision``. Blocking; must not run inside an event loop.

    The default is every head: capabilities add their tables in migrations that branch from a common
    revision and are joined by a merge revision, so work on two capabilities never has to renumber.
    """
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


async def migrate_async(url: str, revision: str = "heads") -> None:
    """``migrate`` from async code (in a worker thread, because Alembic runs its own event loop)."""
    await asyncio.to_thread(migrate, url, revision)
