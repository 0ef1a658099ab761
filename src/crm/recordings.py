"""Call recordings on the customer record and the call log (the recordings capability's table).

One row per recorded call, keyed like the call log by the PBX and Asterisk's Linkedid (unique: a
call's recording is never stored twice, however often the writer is asked). A recording whose file
was missing or empty is stored too, with that ``status``, so that "this call should have been
recorded and was not" is on the record instead of silently absent.

Like ``crm.service``, every function takes the session maker first, runs its own transaction and
returns frozen records, never ORM objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Select,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import SessionMaker
from crm.model import Base, CallLog, Customer, Id, UTCDateTime

#: ``ok``: a file with sound; ``empty``: a file without any; ``missing``: no file where Asterisk writes.
RECORDING_STATUSES: Final = ("ok", "empty", "missing")


class Recording(Base):
    """A call's recording. ``file_path`` is the PBX's file as the platform reads it, ``compressed_path``
    the console's playback copy (None when there is none); both are set by the platform, never
    taken from a request."""

    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("pbx", "linkedid"),
        Index("ix_recordings_customer_id_started_at", "customer_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pbx: Mapped[str] = mapped_column(String(32))
    linkedid: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    agent: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    file_path: Mapped[str | None] = mapped_column(Text)
    compressed_path: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    id: int
    pbx: str
    linkedid: str
    customer_id: int | None
    agent: str | None
    status: str
    file_path: str | None
    compressed_path: str | None
    duration_seconds: float
    started_at: datetime
    created_at: datetime
    call_log_id: int | None = None

    @property
    def call_key(self) -> str:
        return f"{self.pbx}/{self.linkedid}"


def _record(row: Recording, call_log_id: int | None = None) -> RecordingRecord:
    return RecordingRecord(
        row.id, row.pbx, row.linkedid, row.customer_id, row.agent, row.status, row.file_path,
        row.compressed_path, row.duration_seconds, row.started_at, row.created_at, call_log_id,
    )  # fmt: skip


def _with_call_log() -> Select[Recording, int]:
    return select(Recording, CallLog.id).outerjoin(
        CallLog, (CallLog.pbx == Recording.pbx) & (CallLog.linkedid == Recording.linkedid)
    )


async def store_recording(
    sessionmaker: SessionMaker,
    *,
    pbx: str,
    linkedid: str,
    customer_id: int | None,
    agent: str | None,
    status: str,
    file_path: str | None,
    compressed_path: str | None,
    duration_seconds: float,
    started_at: datetime,
    now: datetime,
) -> tuple[RecordingRecord, bool]:
    """Store a call's recording once and put it on the call's log; ``(record, created)``.

    A second call for the same ``(pbx, linkedid)`` changes nothing and returns the stored record with
    ``created`` False. The call log row (if written yet) gets the playback path and the duration;
    ``link_call_log`` does it later for a call log written after the recording.
    """
    if status not in RECORDING_STATUSES:
        raise ValueError(f"recording status must be one of {', '.join(RECORDING_STATUSES)}: {status!r}")
    row = Recording(
        pbx=pbx, linkedid=linkedid, customer_id=customer_id, agent=(agent or None) and agent[:32],
        status=status, file_path=file_path, compressed_path=compressed_path,
        duration_seconds=max(0.0, float(duration_seconds)), started_at=started_at, created_at=now,
    )  # fmt: skip
    try:
        async with sessionmaker() as session, session.begin():
            # A customer deleted meanwhile: keep the recording, unattached, rather than lose it.
            if customer_id is not None and await session.get(Customer, customer_id) is None:
                row.customer_id = None
            session.add(row)
            await session.flush()
            stored = _record(row)
        created = True
    except IntegrityError:
        existing = await recording_of_call(sessionmaker, pbx, linkedid)
        if existing is None:
            raise
        return existing, False
    linked = await link_call_log(sessionmaker, pbx, linkedid)
    return (stored if linked is None else _replace_log(stored, linked)), created


def _replace_log(record: RecordingRecord, call_log_id: int) -> RecordingRecord:
    from dataclasses import replace

    return replace(record, call_log_id=call_log_id)


async def link_call_log(sessionmaker: SessionMaker, pbx: str, linkedid: str) -> int | None:
    """Put the stored recording's playback path and duration on the call's log; its id, or None
    when the call log has no row for the call (yet)."""
    async with sessionmaker() as session, session.begin():
        rec = await session.scalar(
            select(Recording).where(Recording.pbx == pbx, Recording.linkedid == linkedid)
        )
        if rec is None:
            return None
        log_id = await session.scalar(
            select(CallLog.id).where(CallLog.pbx == pbx, CallLog.linkedid == linkedid)
        )
        if log_id is None:
            return None
        await session.execute(
            update(CallLog)
            .where(CallLog.id == log_id)
            .values(
                recording_path=rec.compressed_path or rec.file_path,
                recording_seconds=rec.duration_seconds,
            )
        )
        if rec.customer_id is None:
            # The call log knows the customer when the recording writer did not.
            owner = await session.scalar(select(CallLog.customer_id).where(CallLog.id == log_id))
            if owner is not None:
                rec.customer_id = owner
        return int(log_id)


async def recording_of_call(sessionmaker: SessionMaker, pbx: str, linkedid: str) -> RecordingRecord | None:
    async with sessionmaker() as session:
        found = (
            await session.execute(
                _with_call_log().where(Recording.pbx == pbx, Recording.linkedid == linkedid)
            )
        ).first()
    return None if found is None else _record(found[0], found[1])


async def get_recording(sessionmaker: SessionMaker, recording_id: int) -> RecordingRecord | None:
    async with sessionmaker() as session:
        found = (await session.execute(_with_call_log().where(Recording.id == recording_id))).first()
    return None if found is None else _record(found[0], found[1])


async def list_recordings(
    sessionmaker: SessionMaker,
    *,
    pbx: str | None = None,
    linkedid: str | None = None,
    customer_id: int | None = None,
    limit: int = 100,
) -> list[RecordingRecord]:
    """Recordings, newest first, filtered by call (``pbx`` and ``linkedid``) and/or customer."""
    query = _with_call_log()
    if pbx is not None:
        query = query.where(Recording.pbx == pbx)
    if linkedid is not None:
        query = query.where(Recording.linkedid == linkedid)
    if customer_id is not None:
        query = query.where(Recording.customer_id == customer_id)
    query = query.order_by(Recording.started_at.desc(), Recording.id.desc()).limit(max(1, min(limit, 1000)))
    async with sessionmaker() as session:
        rows = (await session.execute(query)).all()
    return [_record(r[0], r[1]) for r in rows]


async def recordings_of(
    sessionmaker: SessionMaker, customer_id: int, *, limit: int = 100
) -> list[RecordingRecord]:
    """The customer's recordings, newest first."""
    return await list_recordings(sessionmaker, customer_id=customer_id, limit=limit)


async def expired_recordings(
    sessionmaker: SessionMaker, before: datetime, *, limit: int = 1000
) -> list[RecordingRecord]:
    """Recordings made before ``before``, oldest first (a purge deletes their files, then the rows)."""
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                _with_call_log()
                .where(Recording.created_at < before)
                .order_by(Recording.created_at, Recording.id)
                .limit(max(1, min(limit, 10_000)))
            )
        ).all()
    return [_record(r[0], r[1]) for r in rows]


async def delete_recordings(sessionmaker: SessionMaker, ids: list[int]) -> int:
    """Delete the rows ``ids`` and take their paths off the call logs; how many rows went."""
    if not ids:
        return 0
    async with sessionmaker() as session, session.begin():
        keys = (
            await session.execute(select(Recording.pbx, Recording.linkedid).where(Recording.id.in_(ids)))
        ).all()
        for pbx, linkedid in keys:
            await session.execute(
                update(CallLog)
                .where(CallLog.pbx == pbx, CallLog.linkedid == linkedid)
                .values(recording_path=None)
            )
        result = await session.execute(delete(Recording).where(Recording.id.in_(ids)))
        return int(getattr(result, "rowcount", 0) or 0)
