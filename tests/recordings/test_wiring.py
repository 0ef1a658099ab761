"""The recordings' ports onto the customer record (app wiring), on a real SQLite database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from app.recordings_wiring import recording_ports
from crm import db as crm_db
from crm import recordings as crm_recordings
from crm.handlers import row_values
from crm.model import CallLog
from recordings.service import FiledRecording
from tests.crm.helpers import snapshot

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


async def test_a_call_log_written_after_the_recording_still_gets_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite3'}"
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    sessionmaker = crm_db.make_sessionmaker(engine)
    try:
        filed = FiledRecording(
            "pbx1",
            "1732280000.7",
            None,
            "1001",
            "ok",
            "/m/1732280000.7.wav",
            "/m/1732280000.7.mp3",
            12.0,
            NOW,
        )
        storing = asyncio.create_task(recording_ports(sessionmaker).store(filed))
        await asyncio.sleep(0.2)  # the recording is stored; the call log writer is late
        async with sessionmaker() as session, session.begin():
            values = row_values(snapshot("1732280000.7", connected=3, ended=60), default_region="CN", now=NOW)
            session.add(CallLog(**values))
        await asyncio.wait_for(storing, 10)
        (found,) = await crm_recordings.list_recordings(sessionmaker, linkedid="1732280000.7")
        assert found.call_log_id is not None
        async with sessionmaker() as session:
            log = await session.get(CallLog, found.call_log_id)
            assert log is not None and log.recording_path == "/m/1732280000.7.mp3"
    finally:
        await engine.dispose()
