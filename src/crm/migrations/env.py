"""Alembic environment for the CRM schema, on async engines (aiosqlite or asyncpg).

The target URL comes from ``config.attributes["database_url"]`` (set by ``crm.db.alembic_config``),
else from the ``sqlalchemy.url`` option, else from the platform settings (``CTI_DATABASE_URL``), so
the ``alembic`` command line works with ``-c src/crm/alembic.ini`` as well.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from crm.db import VERSION_TABLE, is_sqlite
from crm.model import Base

config = context.config


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from cti.settings import load_settings

    return load_settings().resolved_database_url()


def _configure(connection: Connection | None = None) -> None:
    offline = connection is None
    context.configure(
        connection=connection,
        url=_url() if offline else None,
        literal_binds=offline,
        dialect_opts={"paramstyle": "named"} if offline else None,
        target_metadata=Base.metadata,
        version_table=config.get_main_option("version_table") or VERSION_TABLE,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=is_sqlite(_url()),
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _configure()
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
