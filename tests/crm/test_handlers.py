"""The call log writer: one row per call, stale never wins, nothing lost while the database is down.

Store tests run on SQLite and a real PostgreSQL. The outage tests are real faults: PostgreSQL is
stopped and started again, and a SQLite database is locked by another connection.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm import handlers, service
from crm.db import SessionMaker, make_engine, make_sessionmaker
from crm.handlers import CallLogWriter, merge, supersedes
from crm.model import CallLog
from cti.bus import Bus
from cti.model import (
    CallClassification,
    CallKey,
    CallPhase,
    CallSnapshot,
    ChangeKind,
    EndReason,
    LiveCallsResynced,
)
from tests.support.postgres import PostgresServer

from .helpers import T0, change, snapshot


@asynccontextmanager
async def running(
    sm: SessionMaker, bus: Bus, name: str = "crm.call_log", **options: object
) -> AsyncIterator[CallLogWriter]:
    sub = handlers.subscribe(bus, name=name)
    writer = CallLogWriter(sm, sub, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(writer.run(), name=f"writer {name}")
    try:
        yield writer
    finally:
        bus.unsubscribe(sub)  # closing the subscription lets run() finish what is pending and return
        await asyncio.wait_for(task, 30)


async def mailbox_drained(bus: Bus, name: str = "crm.call_log") -> None:
    for _ in range(1000):
        if not bus.stats()[name]["pending"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer did not take its messages in")


async def rows(sm: SessionMaker) -> list[CallLog]:
    async with sm() as session:
        return list(await session.scalars(sa.select(CallLog).order_by(CallLog.pbx, CallLog.linkedid)))


# ------------------------------------------------------------ pure rules

ARRIVING = snapshot("1")
TALKING = snapshot("1", phase=CallPhase.TALKING, answered=1, connected=5, agent="PJSIP/agent1")
WRAP = snapshot("1", phase=CallPhase.WRAP_UP, answered=1, connected=5, ended=65, agent="PJSIP/agent1")
CLOSED = replace(WRAP, phase=CallPhase.ENDED)


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (ARRIVING, TALKING, True),
        (TALKING, ARRIVING, True),  # not ended: the newest snapshot wins (a ringing agent may not answer)
        (TALKING, WRAP, True),
        (WRAP, TALKING, False),  # ended never reopens
        (WRAP, CLOSED, True),
        (CLOSED, WRAP, False),  # phase never moves back from ended
        (CLOSED, CLOSED, True),
        (WRAP, replace(WRAP, hangup_cause=16), True),
    ],
)
def test_supersedes(current: CallSnapshot, incoming: CallSnapshot, expected: bool) -> None:
    assert supersedes(current, incoming) is expected


def test_merge_keeps_what_only_becomes_known() -> None:
    classified = replace(
        TALKING,
        classification=CallClassification(
            "+8613800138000", 7, "张伟", "vip", False, "unique", 1, "support", "zh-CN"
        ),
    )
    later = replace(WRAP, answered_at=None, connected_at=None, agent=None, classification=None)
    merged = merge(classified, later)
    assert merged.ended_at == WRAP.ended_at
    assert merged.connected_at == TALKING.connected_at
    assert merged.agent == "PJSIP/agent1"
    assert merged.classification == classified.classification
    assert merge(WRAP, TALKING) is WRAP
    assert merge(None, TALKING) is TALKING


# ------------------------------------------------------------ writer on both backends


async def test_one_row_per_call_whatever_the_order(sessionmaker: SessionMaker) -> None:
    bus = Bus()
    sequence = [
        (ChangeKind.STARTED, ARRIVING),
        (ChangeKind.UPDATED, TALKING),
        (ChangeKind.UPDATED, TALKING),  # the same snapshot twice
        (ChangeKind.ENDED, WRAP),
        (ChangeKind.UPDATED, TALKING),  # stale, after the end
        (ChangeKind.STARTED, ARRIVING),  # stale, replayed
        (ChangeKind.CLOSED, WRAP),  # closed: the row's phase becomes ended
        (ChangeKind.ENDED, WRAP),  # stale: would move the phase back to wrap_up
    ]
    async with running(sessionmaker, bus) as writer:
        for kind, snap in sequence:
            bus.publish(change(snap, kind))
            await writer.flush(10)  # each one really reaches the database
    [row] = await rows(sessionmaker)
    assert (row.pbx, row.linkedid) == ("pbx1", "1")
    assert row.phase == "ended"
    assert row.ended_at == T0 + timedelta(seconds=65)
    assert row.connected_at == T0 + timedelta(seconds=5)
    assert row.answered_at == T0 + timedelta(seconds=1)
    assert row.wait_seconds == 5.0
    assert row.talk_seconds == 60.0
    assert row.agent == "PJSIP/agent1"
    assert writer.dropped == 0


async def test_snapshots_coalesced_in_memory_keep_the_newest(sessionmaker: SessionMaker) -> None:
    bus = Bus()
    # A FIFO subscription (no coalescing in the mailbox) hands every message, stale ones included,
    # to the writer's own pending map, which must merge them.
    sub = bus.subscribe("fifo", handlers.MESSAGE_TYPES)
    writer = CallLogWriter(sessionmaker, sub)
    for snap in (ARRIVING, WRAP, TALKING, ARRIVING):
        bus.publish(change(snap))
    bus.publish(change(snapshot("2")))
    task = asyncio.create_task(writer.run())
    await writer.flush(10)
    assert writer.pending() == 0
    assert writer.written == 2  # one write per call: the five messages were merged before writing
    bus.unsubscribe(sub)
    await asyncio.wait_for(task, 10)
    first, second = await rows(sessionmaker)
    assert (first.linkedid, first.phase, first.ended_at) == ("1", "wrap_up", WRAP.ended_at)
    assert (second.linkedid, second.phase, second.ended_at) == ("2", "arriving", None)


async def test_two_writers_racing_still_write_one_row_per_call(sessionmaker: SessionMaker) -> None:
    bus = Bus()
    calls = [f"17000000{i:02}.{i}" for i in range(40)]
    async with running(sessionmaker, bus, "one") as one, running(sessionmaker, bus, "two") as two:
        for step in range(4):
            for linkedid in calls:
                snap = [ARRIVING, TALKING, WRAP, CLOSED][step]
                bus.publish(change(replace(snap, key=CallKey("pbx1", linkedid))))
            await asyncio.sleep(0)
        await asyncio.gather(one.flush(20), two.flush(20))
    stored = await rows(sessionmaker)
    assert sorted(r.linkedid for r in stored) == sorted(calls)
    assert {r.phase for r in stored} == {"ended"}
    assert all(r.ended_at == WRAP.ended_at for r in stored)


async def test_classification_and_region(sessionmaker: SessionMaker) -> None:
    customer = await service.create_customer(
        sessionmaker,
        service.NewCustomer("张伟", phones=[service.NewPhone("+8613800138000")]),
        default_region="CN",
    )
    known = await service.Classifier(sessionmaker, "CN").classify("013800138000", "8001")
    bus = Bus()
    async with running(sessionmaker, bus, default_region="CN") as writer:
        bus.publish(change(replace(ARRIVING, ani="013800138000", classification=known)))
        await writer.flush(10)
        bus.publish(change(replace(WRAP, ani="013800138000")))  # a later snapshot without classification
        bus.publish(change(snapshot("unclassified", ani="138 0013 8000")))
        bus.publish(change(snapshot("withheld", ani="anonymous")))
    by_id = {r.linkedid: r for r in await rows(sessionmaker)}
    row = by_id["1"]
    assert (row.customer_id, row.customer_match, row.new_contact) == (customer.id, "unique", False)
    assert (row.ani_raw, row.ani_e164, row.phase) == ("013800138000", "+8613800138000", "wrap_up")
    assert by_id["unclassified"].ani_e164 == "+8613800138000"
    assert by_id["unclassified"].customer_match is None
    assert (by_id["withheld"].ani_raw, by_id["withheld"].ani_e164) == ("anonymous", None)


async def test_vanished_customer_does_not_cost_the_call_log(sessionmaker: SessionMaker) -> None:
    ghost = CallClassification("+8613800138000", 999_999, "ghost", "vip", False, "unique", 888_888, "x", None)
    bus = Bus()
    async with running(sessionmaker, bus) as writer:
        bus.publish(change(replace(ARRIVING, classification=ghost)))
        bus.publish(change(snapshot("2")))
        await writer.flush(10)
    first, second = await rows(sessionmaker)
    assert (first.linkedid, first.customer_id, first.service_id) == ("1", None, None)
    assert first.customer_match == "unique"
    assert second.linkedid == "2"
    assert writer.dropped == 0


NASTY_NAMES = [
    "'; DROP TABLE call_logs;--",
    "Robert'); DELETE FROM customers; --",
    '<script>alert("x")</script>',
    "<img src=x onerror=alert(1)>",
    "欧阳娜娜 😀",
    'back\\slash "quotes" %_ wildcards',
    "",
]


async def test_caller_names_and_anis_are_stored_verbatim(sessionmaker: SessionMaker) -> None:
    bus = Bus()
    async with running(sessionmaker, bus) as writer:
        for i, name in enumerate(NASTY_NAMES):
            bus.publish(change(snapshot(f"n{i}", caller_name=name, ani=name or "anonymous")))
        bus.publish(change(snapshot("nul", caller_name="bad\x00name")))
        await writer.flush(10)
    by_id = {r.linkedid: r for r in await rows(sessionmaker)}
    for i, name in enumerate(NASTY_NAMES):
        assert by_id[f"n{i}"].caller_name == name
        assert by_id[f"n{i}"].ani_raw == (name or "anonymous")
    assert by_id["nul"].caller_name == "bad\ufffdname"  # PostgreSQL text cannot hold NUL
    found = await service.list_calls(sessionmaker, ani=NASTY_NAMES[0], default_region="CN")
    assert [c.linkedid for c in found] == ["n0"]


async def test_resync_closes_open_rows_that_are_not_live(sessionmaker: SessionMaker) -> None:
    bus = Bus()
    at = T0 + timedelta(minutes=30)
    async with running(sessionmaker, bus) as writer:
        bus.publish(change(snapshot("gone")))
        bus.publish(change(snapshot("live", phase=CallPhase.TALKING, connected=3)))
        bus.publish(change(replace(snapshot("done", ended=9), end_reason=EndReason.HANGUP, hangup_cause=16)))
        bus.publish(change(snapshot("other-pbx", pbx="pbx2")))
        await writer.flush(10)
        bus.publish(LiveCallsResynced("pbx1", frozenset({CallKey("pbx1", "live")}), EndReason.LINK_LOST, at))
        await writer.flush(10)
        bus.publish(change(snapshot("gone", phase=CallPhase.WAITING)))  # a stale view of the closed call
        await writer.flush(10)
    by_id = {r.linkedid: r for r in await rows(sessionmaker)}
    gone = by_id["gone"]
    assert (gone.ended_at, gone.end_reason, gone.phase) == (at, "ended_while_ami_link_down", "ended")
    assert (by_id["live"].ended_at, by_id["live"].phase) == (None, "talking")
    assert (by_id["done"].end_reason, by_id["done"].ended_at) == ("hangup", T0 + timedelta(seconds=9))
    assert (by_id["other-pbx"].ended_at, by_id["other-pbx"].phase) == (None, "arriving")


# ------------------------------------------------------------ outages


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_locked_sqlite_database_loses_nothing_and_keeps_order(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = db_url.split(":///", 1)[1]
    engine = make_engine(db_url, sqlite_busy_timeout_ms=50)
    sm = make_sessionmaker(engine)
    bus = Bus()
    blocker = sqlite3.connect(path, isolation_level=None)
    caplog.set_level(logging.WARNING, logger="crm.handlers")
    try:
        async with running(sm, bus, retry_min=0.05, retry_max=0.2) as writer:
            blocker.execute("BEGIN EXCLUSIVE")
            bus.publish(change(snapshot("before")))
            bus.publish(
                LiveCallsResynced("pbx1", frozenset(), EndReason.LINK_LOST, T0 + timedelta(minutes=1))
            )
            bus.publish(change(snapshot("after", started=T0 + timedelta(minutes=2))))
            with pytest.raises(TimeoutError):
                await writer.flush(0.5)
            assert writer.pending() == 3
            assert writer.failures >= 1
            assert "call log write failed, 3 pending, retrying in" in caplog.text
            assert "database is locked" in caplog.text
            blocker.execute("ROLLBACK")
            await writer.flush(10)
            assert writer.pending() == 0
    finally:
        blocker.close()
    by_id = {r.linkedid: r for r in await rows(sm)}
    await engine.dispose()
    # In arrival order: the call seen before the resync was closed by it, the one after stays open.
    assert (by_id["before"].phase, by_id["before"].end_reason) == ("ended", "ended_while_ami_link_down")
    assert (by_id["after"].phase, by_id["after"].ended_at) == ("arriving", None)


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_postgres_down_while_snapshots_arrive_then_every_row_lands_once(
    sessionmaker: SessionMaker, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="crm.handlers")
    bus = Bus()
    first = [f"first-{i}" for i in range(5)]
    during = [f"during-{i}" for i in range(5)]
    async with running(sessionmaker, bus, retry_min=0.05, retry_max=0.5) as writer:
        for linkedid in first:
            bus.publish(change(replace(ARRIVING, key=CallKey("pbx1", linkedid))))
        await writer.flush(10)
        assert len(await rows(sessionmaker)) == 5

        postgres_server.stop()
        try:
            for linkedid in first:
                bus.publish(change(replace(TALKING, key=CallKey("pbx1", linkedid))))
            for linkedid in during:
                bus.publish(change(replace(ARRIVING, key=CallKey("pbx1", linkedid))))
            for linkedid in first[:3] + during[:2]:
                bus.publish(change(replace(WRAP, key=CallKey("pbx1", linkedid)), ChangeKind.ENDED))
            # Stale updates arriving late must not reopen them. (Published once the writer has taken
            # the newer ones in: the bus mailbox itself keeps whatever was published last.)
            await mailbox_drained(bus)
            for linkedid in first[:3]:
                bus.publish(change(replace(TALKING, key=CallKey("pbx1", linkedid))))
            for _ in range(200):
                if writer.failures >= 2:
                    break
                await asyncio.sleep(0.05)
            assert writer.failures >= 2
            assert writer.pending() == 10
        finally:
            postgres_server.start()
        await writer.flush(30)
    assert "call log write failed, 10 pending, retrying in" in caplog.text
    stored = await rows(sessionmaker)
    assert sorted(r.linkedid for r in stored) == sorted(first + during)
    by_id = {r.linkedid: r for r in stored}
    for linkedid in first[:3] + during[:2]:
        assert (by_id[linkedid].phase, by_id[linkedid].ended_at) == ("wrap_up", WRAP.ended_at)
    for linkedid in first[3:]:
        assert (by_id[linkedid].phase, by_id[linkedid].ended_at) == ("talking", None)
    for linkedid in during[2:]:
        assert (by_id[linkedid].phase, by_id[linkedid].ended_at) == ("arriving", None)
    assert writer.dropped == 0


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_a_writer_stopped_during_an_outage_keeps_its_calls_in_the_spool_for_the_next(
    sessionmaker: SessionMaker, postgres_server: PostgresServer, tmp_path
) -> None:
    spool = tmp_path / "spool" / "call-logs.json"
    bus = Bus()
    sub = handlers.subscribe(bus)
    writer = CallLogWriter(sessionmaker, sub, retry_min=0.05, retry_max=0.2, spool_path=spool)
    task = asyncio.create_task(writer.run())
    postgres_server.stop()
    try:
        bus.publish(change(replace(WRAP, key=CallKey("pbx1", "spooled-1")), ChangeKind.ENDED))
        bus.publish(
            change(replace(CLOSED, key=CallKey("pbx1", "spooled-2"), caller_name="张伟"), ChangeKind.CLOSED)
        )
        for _ in range(200):
            if writer.failures >= 1 and spool.exists():
                break
            await asyncio.sleep(0.05)
        assert spool.exists() and writer.pending() == 2
        assert oct(spool.stat().st_mode & 0o777) == "0o600"
        task.cancel()  # as a SIGKILL would: the spool is what survives
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        postgres_server.start()
    assert not (await rows(sessionmaker))
    async with running(sessionmaker, Bus(), retry_min=0.05, spool_path=spool) as second:
        await second.flush(20)
    stored = {r.linkedid: r for r in await rows(sessionmaker)}
    assert set(stored) == {"spooled-1", "spooled-2"}
    assert stored["spooled-1"].ended_at == WRAP.ended_at
    assert stored["spooled-2"].caller_name == "张伟" and stored["spooled-2"].phase == "ended"
    assert not spool.exists()


async def test_an_unreadable_spool_is_set_aside_not_fatal(sessionmaker: SessionMaker, tmp_path) -> None:
    spool = tmp_path / "call-logs.json"
    spool.write_text("{not json", encoding="utf-8")
    async with running(sessionmaker, Bus(), spool_path=spool) as writer:
        await writer.flush(5)
    assert not spool.exists()
    assert spool.with_suffix(".unreadable").read_text(encoding="utf-8") == "{not json"


async def test_the_ivr_path_and_masked_inputs_land_on_the_call_log(sessionmaker: SessionMaker) -> None:
    from cti.model import IvrRecord

    ivr = IvrRecord(
        path=("welcome", "main_menu", "pin"), inputs=(("main_menu", "2"), ("pin", "****")), outcome="route"
    )
    bus = Bus()
    async with running(sessionmaker, bus) as writer:
        bus.publish(change(replace(TALKING, key=CallKey("pbx1", "ivr-1"), ivr=ivr)))
        await writer.flush(10)
        bus.publish(change(replace(WRAP, key=CallKey("pbx1", "ivr-1")), ChangeKind.ENDED))
        await writer.flush(10)
    (row,) = await rows(sessionmaker)
    assert row.ivr_path == ["welcome", "main_menu", "pin"]
    assert row.ivr_inputs == {"main_menu": "2", "pin": "****"}
