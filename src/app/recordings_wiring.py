"""Wiring of the recordings capability: its ports onto the customer record's ``recordings`` table,
the AMI client as its action sink, and the settings' policies and folders.

Recordings and crm never import each other; this module maps crm's records to recordings' types.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from crm import recordings as crm_recordings
from crm.db import SessionMaker
from cti.bus import Bus
from cti.ports import ActionSink
from cti.settings import Settings
from recordings.api import RecordingQueries, RecordingView
from recordings.policy import RecordingPolicy
from recordings.service import (
    FiledRecording,
    PurgeResult,
    RecordingPorts,
    RecordingService,
    StoredFiles,
    purge_expired,
)

#: Waits between attempts to put a recording on a call log that is not written yet.
LINK_RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _view(record: crm_recordings.RecordingRecord) -> RecordingView:
    return RecordingView(
        record.id, record.pbx, record.linkedid, record.customer_id, record.agent, record.status,
        record.duration_seconds, record.started_at, record.created_at, record.call_log_id,
        record.file_path, record.compressed_path,
    )  # fmt: skip


def recording_ports(sessionmaker: SessionMaker) -> RecordingPorts:
    async def store(filed: FiledRecording) -> None:
        record, _ = await crm_recordings.store_recording(
            sessionmaker,
            pbx=filed.pbx,
            linkedid=filed.linkedid,
            customer_id=filed.customer_id,
            agent=filed.agent,
            status=filed.status,
            file_path=filed.file_path,
            compressed_path=filed.compressed_path,
            duration_seconds=filed.duration_seconds,
            started_at=filed.started_at,
            now=datetime.now(filed.started_at.tzinfo),
        )
        # The call log writer may not have written the call's row yet: link it when it has.
        for delay in LINK_RETRY_SECONDS:
            if record.call_log_id is not None:
                return
            await asyncio.sleep(delay)
            if await crm_recordings.link_call_log(sessionmaker, filed.pbx, filed.linkedid) is not None:
                return

    async def expired(before: datetime) -> list[StoredFiles]:
        found = await crm_recordings.expired_recordings(sessionmaker, before)
        return [StoredFiles(r.id, r.file_path, r.compressed_path) for r in found]

    async def delete(ids: list[int]) -> int:
        return await crm_recordings.delete_recordings(sessionmaker, ids)

    return RecordingPorts(store, expired, delete)


def recording_queries(sessionmaker: SessionMaker) -> RecordingQueries:
    async def list_(
        pbx: str | None, linkedid: str | None, customer_id: int | None, limit: int
    ) -> list[RecordingView]:
        found = await crm_recordings.list_recordings(
            sessionmaker, pbx=pbx, linkedid=linkedid, customer_id=customer_id, limit=limit
        )
        return [_view(r) for r in found]

    async def get(recording_id: int) -> RecordingView | None:
        record = await crm_recordings.get_recording(sessionmaker, recording_id)
        return None if record is None else _view(record)

    return RecordingQueries(list_, get)


def build_recordings(
    settings: Settings, sessionmaker: SessionMaker, bus: Bus, actions: ActionSink
) -> RecordingService:
    """The recordings service of ``cti serve`` (it subscribes to the bus here, before calls flow)."""
    rec = settings.recordings

    def policy_for(dnis: str) -> RecordingPolicy:
        return RecordingPolicy(rec.percent_for(dnis))

    return RecordingService(
        bus=bus,
        actions=actions,
        ports=recording_ports(sessionmaker),
        pbx=settings.pbx_id,
        monitor_dir=settings.monitor_dir(),
        policy_for=policy_for,
        confirm_seconds=rec.pause_confirm_seconds,
        compressed_format=rec.compressed_format,
    )


async def purge(settings: Settings, sessionmaker: SessionMaker) -> PurgeResult:
    """One purge of the recordings past ``settings.recordings.retention_days`` (``cti recordings purge``)."""
    return await purge_expired(
        recording_ports(sessionmaker), settings.monitor_dir(), settings.recordings.retention_days
    )
