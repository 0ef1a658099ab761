"""Call recordings on the customer record, on SQLite and a real PostgreSQL: stored once per call,
linked to the call log (whichever is written first), listed per call and per customer, purged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm import db, service
from crm import recordings as rec
from crm.handlers import row_values
from crm.model import CallLog
from tests.crm.helpers import snapshot

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


async def _customer(sessionmaker: db.SessionMaker) -> int:
    return (await service.create_customer(sessionmaker, service.NewCustomer("王芳"), default_region="CN")).id


async def _call_log(sessionmaker: db.SessionMaker, linkedid: str) -> int:
    values = row_values(snapshot(linkedid, connected=3, ended=60), default_region="CN", now=NOW)
    async with sessionmaker() as session, session.begin():
        row = CallLog(**values)
        session.add(row)
        await session.flush()
        return row.id


async def _store(sessionmaker: db.SessionMaker, linkedid: str, customer_id: int | None, **kw: object):
    values: dict[str, object] = {
        "pbx": "pbx1", "linkedid": linkedid, "customer_id": customer_id, "agent": "1001", "status": "ok",
        "file_path": f"/spool/monitor/{linkedid}.wav", "compressed_path": f"/spool/monitor/{linkedid}.mp3",
        "duration_seconds": 42.5, "started_at": NOW, "now": NOW,
    }  # fmt: skip
    values.update(kw)
    return await rec.store_recording(sessionmaker, **values)  # type: ignore[arg-type]


async def test_a_recording_is_stored_once_per_call_and_on_its_call_log(sessionmaker: db.SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    log_id = await _call_log(sessionmaker, "1732280000.10")
    first, created = await _store(sessionmaker, "1732280000.10", customer)
    assert created and first.call_log_id == log_id and first.call_key == "pbx1/1732280000.10"
    again, created = await _store(sessionmaker, "1732280000.10", customer, duration_seconds=1.0)
    assert not created and again == first  # nothing stored twice, nothing overwritten
    logs = await service.list_calls(sessionmaker, limit=10, default_region="CN")
    assert logs[0].recording_path == "/spool/monitor/1732280000.10.mp3"
    assert logs[0].recording_seconds == pytest.approx(42.5)
    assert [r.id for r in await rec.recordings_of(sessionmaker, customer)] == [first.id]
    assert await rec.list_recordings(sessionmaker, pbx="pbx1", linkedid="1732280000.10") == [first]
    assert await rec.list_recordings(sessionmaker, pbx="pbx2", linkedid="1732280000.10") == []
    assert await rec.get_recording(sessionmaker, first.id) == first


async def test_a_call_log_written_after_the_recording_is_linked_later(sessionmaker: db.SessionMaker) -> None:
    stored, _ = await _store(sessionmaker, "1732280000.20", None)
    assert stored.call_log_id is None
    log_id = await _call_log(sessionmaker, "1732280000.20")
    assert await rec.link_call_log(sessionmaker, "pbx1", "1732280000.20") == log_id
    found = await rec.get_recording(sessionmaker, stored.id)
    assert found is not None and found.call_log_id == log_id


async def test_missing_and_empty_recordings_are_on_the_record_as_such(sessionmaker: db.SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    missing, _ = await _store(
        sessionmaker, "1732280000.30", customer, status="missing", file_path=None, compressed_path=None,
        duration_seconds=0.0,
    )  # fmt: skip
    assert missing.status == "missing" and missing.file_path is None
    with pytest.raises(ValueError, match="status"):
        await _store(sessionmaker, "1732280000.31", customer, status="lost")


async def test_a_deleted_customer_leaves_the_recording_unattached(sessionmaker: db.SessionMaker) -> None:
    stored, _ = await _store(sessionmaker, "1732280000.40", 999_999)
    assert stored.customer_id is None


async def test_expired_recordings_are_listed_oldest_first_and_deleted(sessionmaker: db.SessionMaker) -> None:
    customer = await _customer(sessionmaker)
    await _call_log(sessionmaker, "1732280000.50")
    old, _ = await _store(sessionmaker, "1732280000.50", customer, now=NOW - timedelta(days=40))
    older, _ = await _store(sessionmaker, "1732280000.51", customer, now=NOW - timedelta(days=50))
    fresh, _ = await _store(sessionmaker, "1732280000.52", customer, now=NOW - timedelta(days=1))
    expired = await rec.expired_recordings(sessionmaker, NOW - timedelta(days=30))
    assert [r.id for r in expired] == [older.id, old.id]
    assert await rec.delete_recordings(sessionmaker, [older.id, old.id]) == 2
    assert [r.id for r in await rec.recordings_of(sessionmaker, customer)] == [fresh.id]
    logs = await service.list_calls(sessionmaker, limit=10, default_region="CN")
    assert logs[0].recording_path is None  # the call log no longer points at a deleted file
