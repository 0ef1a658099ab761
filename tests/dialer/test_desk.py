"""Campaign calls at the agent's desk on a real PostgreSQL: preview (hold, compliance at that moment,
dial once with the agent reserved, skip with its reason), the lead's record, and dispositions that
schedule callbacks or put the number on the do-not-call list.

Routing is replaced by a small stand-in (``Routing`` below): these tests are about the dialer's side,
and routing's reservation of the agent for the call's key is tested where routing runs
(``RoutingService.reserve_outbound``). The PBX is the fake AMI server the dialling tests use.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from app.dialer_wiring import CrmDeskStore
from crm import campaigns as crm_campaigns
from crm import db as crm_db
from crm.db import SessionMaker
from crm.model import CallLog
from cti.ami import AmiClient
from cti.auth import Principal, Role
from dialer.dialling import CallRoute
from dialer.dispositions import CallbackFor, Disposition
from dialer.model import CallingWindow, Campaign, DialMode, Outcome
from dialer.preview import AgentDesk, DeskError, DeskPorts
from tests.support.ami_server import FakeAmi
from tests.support.postgres import PostgresServer

CAMPAIGN = Campaign(
    "renewals", "续保", "8001", "+862161234567", DialMode.PREVIEW,
    CallingWindow(time(0), time(23, 59), frozenset(range(1, 8))),
)  # fmt: skip
PHONES = [f"+86138001380{i:02d}" for i in range(10)]


@dataclass
class Routing:
    """Stand-in for routing's agent states: who is ready, and the reservations made."""

    status: dict[str, str] = field(default_factory=lambda: {str(a): "ready" for a in range(1001, 1011)})
    reserved: dict[str, str] = field(default_factory=dict)
    followed: dict[str, int] = field(default_factory=dict)
    call_agents: dict[str, str] = field(default_factory=dict)
    saved: list[tuple[str, str]] = field(default_factory=list)

    async def agent_status(self, agent_id: str) -> str | None:
        return self.status.get(agent_id)

    async def may_take(self, agent_id: str, service: str) -> bool:
        return agent_id != "1010"  # 1010 lacks the service's skill

    async def reserve(self, agent_id: str, channel_id: str, service: str) -> bool:
        if self.status.get(agent_id) != "ready":
            return False
        self.status[agent_id] = "reserved"
        self.reserved[agent_id] = channel_id
        return True

    async def unreserve(self, agent_id: str, channel_id: str) -> None:
        if self.reserved.pop(agent_id, None) == channel_id:
            self.status[agent_id] = "ready"

    def follow(self, channel_id: str, lead_id: int) -> None:
        self.followed[channel_id] = lead_id

    async def call_agent(self, pbx: str, linkedid: str) -> tuple[bool, str | None]:
        return (linkedid in self.call_agents, self.call_agents.get(linkedid))

    async def save_call_disposition(
        self, pbx: str, linkedid: str, user: Principal, code: str, notes: str
    ) -> None:
        self.saved.append((linkedid, code))

    async def customer_card(self, customer_id: int) -> dict[str, Any] | None:
        return {"id": customer_id, "name": "刘洋"}


@pytest.fixture
async def sessionmaker(postgres_server: PostgresServer) -> AsyncIterator[SessionMaker]:
    name = f"desk_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    try:
        yield crm_db.make_sessionmaker(engine)
    finally:
        await engine.dispose()
        postgres_server.drop_database(name)


@dataclass
class Desk:
    desk: AgentDesk
    store: CrmDeskStore
    routing: Routing
    sm: SessionMaker
    server: FakeAmi


@pytest.fixture
async def desk(sessionmaker: SessionMaker, ami: tuple[FakeAmi, AmiClient]) -> Desk:
    server, client = ami
    store = CrmDeskStore(sessionmaker)
    now = datetime.now(UTC)
    await store.save_campaign(CAMPAIGN, True, now)
    leads = [
        crm_campaigns.NewLead(p, f"客户{i}", None, None, {"policy": f"P-{i}", "note": "<script>x</script>"})
        for i, p in enumerate(PHONES)
    ]
    await crm_campaigns.add_leads(
        sessionmaker, "renewals", leads, filename="x.csv", encoding="utf-8", rows=len(leads),
        merged_in_file=0, rejected=0, rejected_report=b"", created_by=None, now=now,
    )  # fmt: skip
    routing = Routing()
    ports = DeskPorts(
        agent_status=routing.agent_status, may_take=routing.may_take, reserve=routing.reserve,
        unreserve=routing.unreserve, follow=routing.follow, call_agent=routing.call_agent,
        save_call_disposition=routing.save_call_disposition, customer_card=routing.customer_card,
        link=client, route=lambda agent: CallRoute("outside", "cti-preview", agent),
    )  # fmt: skip
    return Desk(AgentDesk(store, ports, lambda: datetime.now(UTC)), store, routing, sessionmaker, server)


async def test_agents_asking_at_once_never_get_the_same_lead(desk: Desk) -> None:
    agents = [str(a) for a in range(1001, 1010)]  # nine agents for ten leads
    first = await asyncio.gather(*(desk.desk.next_lead(a, "renewals") for a in agents))
    ids = [r["lead"]["id"] for r in first if r is not None]
    assert len(ids) == len(agents) == len(set(ids))
    # Asking again gives each agent the lead they hold, never another's; one lead is left.
    again = await asyncio.gather(*(desk.desk.next_lead(a, "renewals") for a in agents))
    assert [r["lead"]["id"] for r in again if r is not None] == ids


async def test_preview_checks_the_agent_and_compliance_at_that_moment(desk: Desk) -> None:
    desk.routing.status["1001"] = "not_ready"
    with pytest.raises(DeskError, match="not_ready") as not_ready:
        await desk.desk.next_lead("1001", "renewals")
    assert not_ready.value.status == 409
    with pytest.raises(DeskError, match="not skilled") as unskilled:
        await desk.desk.next_lead("1010", "renewals")
    assert unskilled.value.status == 403
    # The first two leads went on the do-not-call list since the import: never shown, closed.
    now = datetime.now(UTC)
    for phone in PHONES[:2]:
        await desk.store.add_do_not_call(phone, "asked", "manual", "boss", now)
    record = await desk.desk.next_lead("1002", "renewals")
    assert record is not None and record["lead"]["phone"] == PHONES[2]
    assert record["lead"]["name"] == "客户2" and record["lead"]["fields"]["policy"] == "P-2"
    assert record["campaign"] == {"id": "renewals", "name": "续保", "mode": "preview", "service": "8001"}
    assert [d["code"] for d in record["dispositions"]][:2] == ["sale", "not_interested"]
    for lead in await desk.store.leads("renewals", "done", 10, 0):
        assert lead.lead.phone in PHONES[:2] and "do-not-call" in (lead.done_reason or "")
    closed = (await desk.store.leads("renewals", "done", 10, 0))[0]
    (event,) = await desk.store.lead_events(closed.lead.id)
    assert event.kind == "refused" and "do-not-call" in event.detail
    # A stopped campaign offers nothing.
    await desk.store.set_active("renewals", False, now)
    with pytest.raises(DeskError, match="stopped"):
        await desk.desk.next_lead("1003", "renewals")


async def test_skip_returns_the_lead_with_its_reason_and_offers_the_next(desk: Desk) -> None:
    first = await desk.desk.next_lead("1001", "renewals")
    assert first is not None
    lead_id = first["lead"]["id"]
    with pytest.raises(DeskError) as not_theirs:
        await desk.desk.skip("1002", lead_id, "not mine")
    assert not_theirs.value.status == 409
    await desk.desk.skip("1001", lead_id, "客户在开会")
    view = await desk.store.lead(lead_id)
    assert view.status == "scheduled" and view.next_attempt_at is not None
    assert view.next_attempt_at > datetime.now(UTC) + timedelta(minutes=29)
    (event,) = await desk.store.lead_events(lead_id)
    assert (event.kind, event.actor, event.detail) == ("skipped", "1001", "客户在开会")
    following = await desk.desk.next_lead("1001", "renewals")
    assert following is not None and following["lead"]["id"] != lead_id


async def test_dial_places_the_call_once_with_the_agent_reserved(desk: Desk) -> None:
    record = await desk.desk.next_lead("1001", "renewals")
    assert record is not None
    lead_id = record["lead"]["id"]
    with pytest.raises(DeskError, match="not held"):
        await desk.desk.dial("1002", lead_id)
    placed = await desk.desk.dial("1001", lead_id)
    assert placed["placed"] == "ringing"
    channel_id = placed["channel_id"]
    (sent,) = desk.server.actions("Originate")
    assert sent.headers["ChannelId"] == channel_id
    assert sent.headers["Channel"] == f"PJSIP/{PHONES[0].lstrip('+')}@outside"
    assert (sent.headers["Context"], sent.headers["Exten"]) == ("cti-preview", "1001")
    assert desk.routing.reserved == {"1001": channel_id} and desk.routing.followed == {channel_id: lead_id}
    (attempt,) = await desk.store.attempts(lead_id)
    assert (attempt.channel_id, attempt.outcome) == (channel_id, Outcome.PENDING)
    # Dial again (a double click, a second tab): nothing more is sent.
    desk.routing.status["1001"] = "ready"
    with pytest.raises(DeskError) as twice:
        await desk.desk.dial("1001", lead_id)
    assert twice.value.status == 409
    assert len(desk.server.actions("Originate")) == 1


async def _ended_campaign_call(desk: Desk, agent: str) -> tuple[int, str]:
    record = await desk.desk.next_lead(agent, "renewals")
    assert record is not None
    lead_id = record["lead"]["id"]
    placed = await desk.desk.dial(agent, lead_id)
    channel_id = placed["channel_id"]
    desk.routing.call_agents[channel_id] = agent
    return lead_id, channel_id


async def test_dispositions_schedule_a_callback_and_put_the_number_on_do_not_call(desk: Desk) -> None:
    agent = Principal(1, "1001", Role.AGENT)
    lead_id, channel_id = await _ended_campaign_call(desk, "1001")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    callback = Disposition("callback", "明天上午", tomorrow, CallbackFor.ME)
    with pytest.raises(DeskError, match="not written yet") as early:
        await desk.desk.dispose(agent, "pbx1", channel_id, callback)
    assert early.value.status == 409
    now = datetime.now(UTC)
    await desk.store.finish_attempt(channel_id, Outcome.CONNECTED, now, "")
    other = Principal(2, "1002", Role.AGENT)
    with pytest.raises(DeskError) as not_theirs:
        await desk.desk.dispose(other, "pbx1", channel_id, callback)
    assert not_theirs.value.status == 403
    with pytest.raises(DeskError) as bad:
        await desk.desk.dispose(agent, "pbx1", channel_id, Disposition("callback"))
    assert bad.value.status == 422
    done = await desk.desk.dispose(agent, "pbx1", channel_id, callback)
    assert done["next_step"] == "scheduled" and done["callback_agent"] == "1001"
    view = await desk.store.lead(lead_id)
    assert view.status == "scheduled" and view.next_attempt_at == tomorrow
    assert await desk.store.lead_callback(lead_id) == ("1001", tomorrow)
    assert desk.routing.saved == [(channel_id, "callback")]
    record = await desk.desk.campaign_call(agent, "pbx1", channel_id)
    (attempt,) = record["attempts"]
    assert attempt["outcome"] == "connected" and attempt["disposition"]["code"] == "callback"
    assert attempt["disposition"]["notes"] == "明天上午"
    assert record["callback"] == {"agent_id": "1001", "at": tomorrow.isoformat()}
    with pytest.raises(DeskError, match="already has a disposition"):
        await desk.desk.dispose(agent, "pbx1", channel_id, Disposition("sale"))

    # Another lead: the customer asks never to be called again.
    desk.routing.status["1002"] = "ready"
    lead2, channel2 = await _ended_campaign_call(desk, "1002")
    await desk.store.finish_attempt(channel2, Outcome.CONNECTED, datetime.now(UTC), "")
    await desk.desk.dispose(other, "pbx1", channel2, Disposition("do_not_call", "别再打了"))
    phone = (await desk.store.lead(lead2)).lead.phone
    assert await desk.store.do_not_call_among([phone]) == frozenset({phone})
    assert (await desk.store.lead(lead2)).status == "done"
    kinds = [e.kind for e in await desk.store.lead_events(lead2)]
    assert kinds == ["disposition", "do_not_call"]
    # Never offered again: every other lead is handed out before it runs out, and not this one.
    seen = set()
    for a in range(1003, 1010):
        got = await desk.desk.next_lead(str(a), "renewals")
        if got is not None:
            seen.add(got["lead"]["id"])
    assert lead2 not in seen and lead_id not in seen


async def test_a_callback_for_one_agent_is_offered_to_that_agent_only(desk: Desk) -> None:
    agent = Principal(1, "1001", Role.AGENT)
    lead_id, channel_id = await _ended_campaign_call(desk, "1001")
    await desk.store.finish_attempt(channel_id, Outcome.CONNECTED, datetime.now(UTC), "")
    soon = datetime.now(UTC) + timedelta(seconds=2)
    await desk.desk.dispose(agent, "pbx1", channel_id, Disposition("callback", "", soon, CallbackFor.ME))
    # Due once its time has come (the test moves the time by writing it, not by waiting).
    async with desk.sm() as session, session.begin():
        row = await session.get(crm_campaigns.DialerLead, lead_id)
        assert row is not None
        row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)
    for a in range(1002, 1010):
        got = await desk.desk.next_lead(str(a), "renewals")
        assert got is None or got["lead"]["id"] != lead_id
    desk.routing.status["1001"] = "ready"
    mine = await desk.desk.next_lead("1001", "renewals")
    assert mine is not None and mine["lead"]["id"] == lead_id
    assert mine["callback"]["agent_id"] == "1001"


async def test_the_call_log_holds_the_agent_who_may_see_the_lead(sessionmaker: SessionMaker) -> None:
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        session.add(
            CallLog(pbx="pbx1", linkedid="dial-abc", direction="outbound", ani_raw="13800138000",
                    ani_e164="+8613800138000", caller_name="", dnis="8001", started_at=now,
                    phase="talking", agent="1001", created_at=now, updated_at=now)
        )  # fmt: skip
    assert await crm_campaigns.call_log_agent(sessionmaker, "pbx1", "dial-abc") == (True, "1001")
    assert await crm_campaigns.call_log_agent(sessionmaker, "pbx1", "nope") == (False, None)


async def test_a_call_asterisk_refuses_frees_the_agent_and_the_lead_follows_the_retry_rules(
    desk: Desk,
) -> None:
    desk.server.fail = {"Originate": "Originate failed"}
    record = await desk.desk.next_lead("1001", "renewals")
    assert record is not None
    lead_id = record["lead"]["id"]
    placed = await desk.desk.dial("1001", lead_id)
    assert placed["placed"] == "not_dialled"
    assert (
        desk.routing.status["1001"] == "ready" and desk.routing.reserved == {} and desk.routing.followed == {}
    )
    (attempt,) = await desk.store.attempts(lead_id)
    assert attempt.outcome is Outcome.FAILED
    view = await desk.store.lead(lead_id)
    assert view.status == "scheduled" and view.next_attempt_at is not None  # failed: retried in 10 min
    assert await desk.store.lead_hold(lead_id) is None
