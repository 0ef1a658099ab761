"""``cti recordings purge`` as an operator runs it: a real process, a real SQLite database."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crm import db as crm_db
from crm import recordings as crm_recordings

CTI = str(Path(sys.executable).parent / "cti")


async def test_purge_deletes_what_is_past_retention_and_keeps_the_rest(tmp_path: Path) -> None:
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    env = {
        **os.environ,
        "CTI_SETTINGS_FILE": str(tmp_path / "none.toml"),
        "CTI_STATE_DIR": str(tmp_path),
        "CTI_RECORDINGS__MONITOR_DIR": str(monitor),
        "CTI_RECORDINGS__RETENTION_DAYS": "30",
    }
    url = f"sqlite+aiosqlite:///{(tmp_path / 'cti.sqlite3').resolve()}"
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    sessionmaker = crm_db.make_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        for linkedid, age in (("1732280000.1", 45), ("1732280000.2", 5)):
            wav, mp3 = monitor / f"{linkedid}.wav", monitor / f"{linkedid}.mp3"
            wav.write_bytes(b"wav")
            mp3.write_bytes(b"mp3")
            await crm_recordings.store_recording(
                sessionmaker, pbx="pbx1", linkedid=linkedid, customer_id=None, agent="1001", status="ok",
                file_path=str(wav), compressed_path=str(mp3), duration_seconds=3.0,
                started_at=now - timedelta(days=age), now=now - timedelta(days=age),
            )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            CTI, "recordings", "purge", env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out
        assert "purged 1 recordings older than 30 days (2 files deleted)" in out.decode()
        assert sorted(p.name for p in monitor.iterdir()) == ["1732280000.2.mp3", "1732280000.2.wav"]
        assert [r.linkedid for r in await crm_recordings.list_recordings(sessionmaker)] == ["1732280000.2"]
    finally:
        await engine.dispose()
