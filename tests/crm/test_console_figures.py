"""What the supervisor's figures read from the call logs: when the agent finished a call, and the
day's calls with their service and its time zone (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from crm import console, handlers, service
from crm.db import SessionMaker
from crm.handlers import CallLogWriter
from cti.bus import Bus
from cti.model import CallClassification, CallPhase, ChangeKind

from .helpers import T0, change, snapshot


async def test_the_agents_work_end_is_kept_on_the_call_log_and_read_with_the_days_calls(
    sessionmaker: SessionMaker,
) -> None:
    support = await service.create_service(
        sessionmaker, service.NewService(dnis="8001", name="support", time_zone="Asia/Shanghai")
    )
    classified = CallClassification(
        ani_e164="+8613800138000", customer_id=None, customer_name=None, customer_tier=None,
        new_contact=True, customer_match="none:unknown_number", service_id=support.id,
        service_name="support", language=None,
    )  # fmt: skip
    talking = snapshot("1", phase=CallPhase.TALKING, connected=5, agent="1001", classification=classified)
    wrap = snapshot(
        "1", phase=CallPhase.WRAP_UP, connected=5, ended=65, agent="1001", classification=classified
    )
    bus = Bus()
    sub = handlers.subscribe(bus)
    writer = CallLogWriter(sessionmaker, sub)
    task = asyncio.create_task(writer.run())
    try:
        bus.publish(change(talking))
        await writer.flush(10)
        done = T0 + timedelta(seconds=80)
        # Only the call's own agent finishes it (after a transfer, the one who had it last).
        assert not await console.record_work_end(sessionmaker, "pbx1", "1", "1002", done)
        assert not await console.record_work_end(sessionmaker, "pbx1", "unknown", "1001", done)
        assert await console.record_work_end(sessionmaker, "pbx1", "1", "1001", done)
        # The call log writer's later writes of the call keep it.
        bus.publish(change(wrap, ChangeKind.ENDED))
        bus.publish(change(snapshot("2", classification=None)))  # another call, no service
        await writer.flush(10)
    finally:
        bus.unsubscribe(sub)
        await asyncio.wait_for(task, 10)
    zones = await console.service_zones(sessionmaker)
    assert zones == {support.id: ("support", "Asia/Shanghai")}
    rows = sorted(await console.day_calls(sessionmaker, T0, zones), key=lambda r: r["service"])
    assert [(r["service"], r["time_zone"]) for r in rows] == [
        ("support", "Asia/Shanghai"),
        ("unassigned", "UTC"),
    ]
    first = rows[0]
    assert first["work_ended_at"] == done and first["ended_at"] == T0 + timedelta(seconds=65)
    assert first["connected_at"] == T0 + timedelta(seconds=5) and first["wait_seconds"] == 5.0
    assert first["talk_seconds"] == 60.0
    # Nothing of either call happened after this: neither is read.
    assert await console.day_calls(sessionmaker, T0 + timedelta(hours=1), zones) == []
