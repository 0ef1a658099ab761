"""Campaigns, leads, the attempt audit trail, do-not-call and registry lists, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from crm import campaigns as c
from crm import service
from crm.db import SessionMaker

from .helpers import T0

CAMPAIGN = c.CampaignRow(
    "renewals", "续保", "8001", "+862161234567", "predictive", {"max_attempts": 4, "ring_seconds": 25}
)
ZHANG = "+8613800138000"
LI = "+8613900139000"


async def _campaign(sm: SessionMaker) -> None:
    await c.save_campaign(sm, CAMPAIGN, T0)


async def _import(sm: SessionMaker, *leads: c.NewLead) -> c.ImportRecord:
    return await c.add_leads(
        sm, "renewals", leads, filename="名单.csv", encoding="gb18030", rows=len(leads) + 2,
        merged_in_file=1, rejected=1, rejected_report=b"line,reason\r\n3,bad\r\n", created_by="admin", now=T0,
    )  # fmt: skip


async def test_campaigns_are_saved_and_replaced(sessionmaker: SessionMaker) -> None:
    await _campaign(sessionmaker)
    assert await c.get_campaign(sessionmaker, "renewals") == CAMPAIGN
    active = replace(CAMPAIGN, service="8002", mode="progressive", config={}, active=True)
    await c.save_campaign(sessionmaker, active, T0 + timedelta(minutes=1))
    assert await c.list_campaigns(sessionmaker) == [active]
    with pytest.raises(service.NotFound):
        await c.get_campaign(sessionmaker, "nope")
    with pytest.raises(service.InvalidInput):
        await c.save_campaign(sessionmaker, replace(CAMPAIGN, id="Bad Id"), T0)


async def test_leads_are_linked_to_customers_and_merged_across_imports(sessionmaker: SessionMaker) -> None:
    customer = await service.create_customer(
        sessionmaker, service.NewCustomer("张三", phones=(service.NewPhone(ZHANG),)), default_region="CN"
    )
    assert await c.customers_by_phone(sessionmaker, [ZHANG, LI]) == {ZHANG: customer.id}
    await _campaign(sessionmaker)
    first = await _import(
        sessionmaker,
        c.NewLead(ZHANG, "张三", True, customer.id, {"城市": "上海"}),
        c.NewLead(LI, "", None, None, {"城市": ""}),
    )
    assert (first.added, first.merged, first.rejected) == (2, 1, 1)
    second = await _import(sessionmaker, c.NewLead(LI, "李四", False, None, {"城市": "北京"}))
    assert (second.added, second.merged) == (0, 2)
    leads = {lead.phone_e164: lead for lead in await c.list_leads(sessionmaker, "renewals")}
    assert (leads[ZHANG].customer_id, leads[ZHANG].consent, leads[ZHANG].status) == (customer.id, True, "new")
    assert (leads[LI].name, leads[LI].consent, leads[LI].fields) == ("李四", False, {"城市": "北京"})
    record, report = await c.rejected_report(sessionmaker, first.id)
    assert (record.filename, report) == ("名单.csv", b"line,reason\r\n3,bad\r\n")
    with pytest.raises(service.InvalidInput):
        await _import(sessionmaker, c.NewLead("13800138000"))
    with pytest.raises(service.NotFound):
        await c.add_leads(
            sessionmaker, "nope", [], filename="x", encoding="utf-8", rows=0, merged_in_file=0, rejected=0,
            rejected_report=b"", created_by=None, now=T0,
        )  # fmt: skip


async def test_an_attempt_is_written_before_dialling_and_never_doubled(sessionmaker: SessionMaker) -> None:
    await _campaign(sessionmaker)
    await _import(sessionmaker, c.NewLead(ZHANG))
    (lead,) = await c.list_leads(sessionmaker, "renewals")
    attempt = await c.begin_attempt(sessionmaker, lead.id, "dial-0001", T0)
    assert (attempt.number, attempt.outcome, attempt.ended_at) == (1, "pending", None)
    # A second attempt while the first is pending, e.g. after a restart, is refused.
    with pytest.raises(service.Conflict):
        await c.begin_attempt(sessionmaker, lead.id, "dial-0002", T0)
    with pytest.raises(service.Conflict):
        await c.schedule_lead(sessionmaker, lead.id, status="done", next_attempt_at=None, reason="x", now=T0)
    assert [a.channel_id for a in await c.pending_attempts(sessionmaker)] == ["dial-0001"]
    assert await c.due_leads(sessionmaker, "renewals", T0, 10) == []

    ended = await c.finish_attempt(
        sessionmaker, "dial-0001", "busy", T0 + timedelta(seconds=5), "17 user busy"
    )
    assert (ended.outcome, ended.detail) == ("busy", "17 user busy")
    with pytest.raises(service.Conflict):
        await c.finish_attempt(sessionmaker, "dial-0001", "no_answer", T0 + timedelta(seconds=9))
    assert await c.pending_attempts(sessionmaker) == []

    retry_at = T0 + timedelta(minutes=15)
    await c.schedule_lead(
        sessionmaker, lead.id, status="scheduled", next_attempt_at=retry_at, reason="busy", now=T0
    )
    assert await c.due_leads(sessionmaker, "renewals", T0 + timedelta(minutes=14), 10) == []
    assert [x.id for x in await c.due_leads(sessionmaker, "renewals", retry_at, 10)] == [lead.id]
    second = await c.begin_attempt(sessionmaker, lead.id, "dial-0002", retry_at)
    assert second.number == 2
    await c.finish_attempt(sessionmaker, "dial-0002", "connected", retry_at)
    with pytest.raises(service.Conflict):  # a ChannelId is never reused
        await c.begin_attempt(sessionmaker, lead.id, "dial-0002", retry_at)
    await c.schedule_lead(
        sessionmaker, lead.id, status="done", next_attempt_at=None, reason="sold", now=retry_at
    )
    with pytest.raises(service.Conflict):
        await c.begin_attempt(sessionmaker, lead.id, "dial-0003", retry_at)
    trail = await c.lead_attempts(sessionmaker, lead.id)
    assert [(a.number, a.outcome) for a in trail] == [(1, "busy"), (2, "connected")]


async def test_do_not_call_list(sessionmaker: SessionMaker) -> None:
    await c.add_do_not_call(
        sessionmaker, ZHANG, reason="asked", source="disposition", added_by="1001", now=T0
    )
    await c.add_do_not_call(sessionmaker, ZHANG, reason="again", source="manual", added_by=None, now=T0)
    assert await c.do_not_call_among(sessionmaker, [ZHANG, LI]) == {ZHANG}
    assert await c.remove_do_not_call(sessionmaker, ZHANG)
    assert not await c.remove_do_not_call(sessionmaker, ZHANG)
    with pytest.raises(service.InvalidInput):
        await c.add_do_not_call(sessionmaker, "12345", reason="", source="manual", added_by=None, now=T0)


async def test_registry_lists_are_replaced_whole_with_their_date(sessionmaker: SessionMaker) -> None:
    await c.replace_registry(sessionmaker, "national", date(2026, 10, 1), [ZHANG, LI, LI], T0)
    later = await c.replace_registry(
        sessionmaker, "national", date(2026, 11, 1), [LI], T0 + timedelta(days=1)
    )
    assert later.numbers == 1
    assert await c.list_registries(sessionmaker) == [later]
    assert await c.registry_hits(sessionmaker, ["national", "trade"], [ZHANG, LI]) == {
        "national": frozenset({LI}),
        "trade": frozenset(),
    }
