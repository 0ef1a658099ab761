"""Migrations and connection settings, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from crm import db
from crm.model import Base, CallLog


def _schema_diff(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_name": lambda name, kind, _parent: not (kind == "table" and name == db.VERSION_TABLE),
        },
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_build_exactly_the_model_schema(empty_db_url: str) -> None:
    await db.migrate_async(empty_db_url)
    await db.migrate_async(empty_db_url)  # a second run is a no-op
    engine = db.make_engine(empty_db_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
            version_table = sa.table(db.VERSION_TABLE, sa.column("version_num"))
            # Capabilities add migrations on branches from one revision: the database is at every head.
            versions = set(await conn.scalars(sa.select(version_table.c.version_num)))
            heads = set(ScriptDirectory.from_config(db.alembic_config(empty_db_url)).get_heads())
            assert versions == heads
    finally:
        await engine.dispose()


def test_main_has_one_migration_head(tmp_path: Path) -> None:
    """Branches may add migrations side by side; a merge revision joins them before they land, so
    the next migration has exactly one revision to revise."""
    heads = ScriptDirectory.from_config(db.alembic_config(f"sqlite:///{tmp_path}/x.db")).get_heads()
    assert len(heads) == 1, heads


async def test_downgrade_to_base_and_back(empty_db_url: str) -> None:
    await db.migrate_async(empty_db_url)
    await asyncio.to_thread(command.downgrade, db.alembic_config(empty_db_url), "base")
    engine = db.make_engine(empty_db_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert set(tables) <= {db.VERSION_TABLE}
    finally:
        await engine.dispose()
    await db.migrate_async(empty_db_url)


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'dir' / 'crm.sqlite3'}"
    engine = db.make_engine(url, sqlite_busy_timeout_ms=1234)
    try:
        async with engine.connect() as conn:
            assert (await conn.scalar(sa.text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(sa.text("PRAGMA foreign_keys"))) == 1
            assert (await conn.scalar(sa.text("PRAGMA busy_timeout"))) == 1234
    finally:
        await engine.dispose()


async def test_timestamps_round_trip_as_aware_utc(sessionmaker: db.SessionMaker) -> None:
    shanghai = timezone(timedelta(hours=8))
    started = datetime(2026, 11, 22, 16, 30, 15, 123456, tzinfo=shanghai)
    async with sessionmaker() as session, session.begin():
        session.add(
            CallLog(
                pbx="pbx1", linkedid="1.1", direction="inbound", ani_raw="", caller_name="", dnis="",
                started_at=started, phase="arriving", created_at=started, updated_at=started,
            )
        )  # fmt: skip
    async with sessionmaker() as session:
        row = await session.scalar(sa.select(CallLog))
    assert row is not None
    assert row.started_at == started
    assert row.started_at.utcoffset() == timedelta(0)
    assert row.started_at.hour == 8


async def test_naive_datetimes_are_refused(sessionmaker: db.SessionMaker) -> None:
    naive = datetime(2026, 11, 22, 8, 0, 0)
    async with sessionmaker() as session:
        session.add(
            CallLog(
                pbx="pbx1", linkedid="1.2", direction="inbound", ani_raw="", caller_name="", dnis="",
                started_at=naive, phase="arriving", created_at=naive, updated_at=naive,
            )
        )  # fmt: skip
        with pytest.raises(sa.exc.StatementError, match="timezone-aware"):
            await session.flush()


def test_alembic_config_keeps_percent_signs_in_urls() -> None:
    config = db.alembic_config("postgresql+asyncpg://u:p%40ss%25word@127.0.0.1/x")
    assert config.attributes["database_url"].endswith("p%40ss%25word@127.0.0.1/x")
    assert config.get_main_option("version_table") == db.VERSION_TABLE
