"""The campaign loop's pass (``dialer.runner``): blending, compliance before the pace, and what is
dialled. The store is the real one (the customer record's tables on a migrated SQLite database);
Asterisk is the scripted AMI server (tests/support/ami_server.py), which records every Originate:
the end-to-end module (tests/e2e/test_campaign.py) runs the same loop against the real PBX.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from app.dialer_wiring import CrmDeskStore
from crm import campaigns as crm_campaigns
from crm import db as crm_db
from crm.model import CallLog
from cti.ami import AmiClient
from cti.bus import Bus
from cti.model import CampaignPaced
from dialer.dialling import CallRoute
from dialer.model import CallingWindow, Campaign, DialMode, Outcome
from dialer.preview import AgentDesk, DeskPorts
from dialer.runner import (
    CALLBACK_WAIT,
    AgentView,
    CampaignRunner,
    DueLead,
    RunnerPorts,
    Staffing,
    blend,
    route_callbacks,
)
from tests.support.ami_server import FakeAmi

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai, 22:00 the day before in New York
DAYTIME = CallingWindow(time(9), time(20), frozenset(range(1, 8)))
CAMPAIGN = Campaign("renewals", "续保", "8001", "+862161234567", DialMode.PROGRESSIVE, DAYTIME)
SHANGHAI_1, SHANGHAI_2, ON_DNC, NEW_YORK = (
    "+8613800138001",
    "+8613800138002",
    "+8613800138003",
    "+12125550101",
)


def test_blending_keeps_ready_agents_for_waiting_inbound_calls() -> None:
    agents = (
        AgentView("1001", "ready"),
        AgentView("1002", "ready"),
        AgentView("1003", "on_call", 40.0),
        AgentView("1004", "wrap_up", 5.0),
        AgentView("1005", "not_ready"),
        AgentView("1006", "reserved", 1.0),
    )
    free = blend(Staffing(agents, inbound_waiting=0))
    assert (free.ready, free.talking, free.wrapping, free.kept_for_inbound) == (2, (40.0, 1.0), (5.0,), 0)
    one_waiting = blend(Staffing(agents, inbound_waiting=1))
    assert (one_waiting.ready, one_waiting.kept_for_inbound) == (1, 1)
    many_waiting = blend(Staffing(agents, inbound_waiting=5))
    assert (many_waiting.ready, many_waiting.kept_for_inbound) == (0, 2)  # never below zero
    assert many_waiting.logged_in == 5  # the not-ready agent is not counted


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CrmDeskStore]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite3'}"
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    s = CrmDeskStore(crm_db.make_sessionmaker(engine))
    try:
        yield s
    finally:
        await engine.dispose()


async def setup(store: CrmDeskStore, campaign: Campaign, phones: list[str]) -> None:
    await store.save_campaign(campaign, True, NOW)
    await crm_campaigns.add_leads(
        store._sm, campaign.id, [crm_campaigns.NewLead(p, "") for p in phones], filename="x.csv",
        encoding="utf-8", rows=len(phones), merged_in_file=0, rejected=0, rejected_report=b"",
        created_by=None, now=NOW,
    )  # fmt: skip


def runner_for(
    store: CrmDeskStore, client: AmiClient, staffing: Staffing
) -> tuple[CampaignRunner, list[object], list[tuple[str, str, int]]]:
    published: list[object] = []
    joined: list[tuple[str, str, int]] = []

    async def agents(campaign: Campaign) -> Staffing:
        return staffing

    ports = RunnerPorts(
        store=store,
        link=client,
        route=CallRoute(endpoint="outside", context="cti-campaign", safe_harbor_sound="/s/sh"),
        staffing=agents,
        join_line=lambda channel, campaign, lead: joined.append((channel, campaign.id, lead)),
        publish=published.append,
        clock=lambda: NOW,
        talk=store.campaign_talk,
    )
    return CampaignRunner(ports, Bus().subscribe("dialer", (object,))), published, joined


async def test_a_pass_dials_one_call_per_free_agent_and_only_leads_compliance_allows(
    store: CrmDeskStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    await setup(store, CAMPAIGN, [SHANGHAI_1, SHANGHAI_2, ON_DNC, NEW_YORK])
    await store.add_do_not_call(ON_DNC, "asked", "agent", None, NOW)
    runner, published, _ = runner_for(store, client, Staffing((AgentView("1001", "ready"),)))
    await runner.pace_all()
    (sent,) = server.actions("Originate")  # one ready agent: one call (progressive)
    assert sent.headers["Channel"] == f"PJSIP/{SHANGHAI_1.lstrip('+')}@outside"
    variables = sent.headers["Variable"].split("\n")
    assert "CTI_SERVICE=8001" in variables and "CTI_AMD=1" in variables
    assert "CTI_SAFE_HARBOR_SOUND=/s/sh" in variables and "CTI_MACHINE=hang_up" in variables
    assert runner.following() == {sent.headers["ChannelId"]}
    leads = {v.lead.phone: v for v in await store.leads("renewals", None, 10, 0)}
    assert leads[SHANGHAI_1].status == "dialling"
    assert leads[SHANGHAI_2].status == "new"  # waits for the next free agent
    assert leads[ON_DNC].status == "done" and "do-not-call" in (leads[ON_DNC].done_reason or "")
    assert await store.attempts(leads[ON_DNC].lead.id) == []
    # New York is outside 09:00-20:00 at 22:00 local: scheduled for 09:00 there, not dialled.
    assert leads[NEW_YORK].status == "scheduled"
    assert leads[NEW_YORK].next_attempt_at == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    paced = [m for m in published if isinstance(m, CampaignPaced)]
    assert paced and paced[-1].running and paced[-1].placed == 1 and paced[-1].ringing == 1
    assert "progressive" in paced[-1].reason and runner.live("renewals") == paced[-1]

    # The next pass: the agent is covered by the ringing call, nothing more is dialled.
    await runner.pace_all()
    assert len(server.actions("Originate")) == 1


async def test_waiting_inbound_calls_come_first(store: CrmDeskStore, ami: tuple[FakeAmi, AmiClient]) -> None:
    server, client = ami
    await setup(store, CAMPAIGN, [SHANGHAI_1])
    runner, _, _ = runner_for(store, client, Staffing((AgentView("1001", "ready"),), inbound_waiting=1))
    await runner.pace_all()
    assert server.actions("Originate") == []
    paced = runner.live("renewals")
    assert paced is not None and paced.ready == 0 and "kept for waiting inbound calls" in paced.reason


async def test_a_stale_registry_list_stops_the_campaign(
    store: CrmDeskStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    campaign = Campaign(
        "renewals",
        "续保",
        "8001",
        "+862161234567",
        DialMode.PREDICTIVE,
        DAYTIME,
        registries=frozenset({"national"}),
    )
    await setup(store, campaign, [SHANGHAI_1])
    await store.replace_registry("national", date(2026, 9, 1), ["+8613800138999"], NOW)
    runner, _, _ = runner_for(store, client, Staffing((AgentView("1001", "ready"),)))
    await runner.pace_all()
    assert server.actions("Originate") == []
    paced = runner.live("renewals")
    assert (
        paced is not None
        and not paced.running
        and "'national'" in paced.reason
        and "83 days old" in paced.reason
    )
    # A fresh copy of the list lets it run again.
    await store.replace_registry("national", NOW.date() - timedelta(days=1), ["+8613800138999"], NOW)
    await runner.pace_all()
    assert len(server.actions("Originate")) == 1


async def test_the_abandonment_ledger_is_rebuilt_from_the_stored_attempts_at_start(
    store: CrmDeskStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    _, client = ami
    await setup(store, CAMPAIGN, [SHANGHAI_1, SHANGHAI_2, ON_DNC])
    leads = await store.leads("renewals", None, 10, 0)
    for view, outcome in zip(leads, (Outcome.CONNECTED, Outcome.ABANDONED, Outcome.BUSY), strict=True):
        channel = f"dial-{view.lead.id:016x}"
        await store.begin_attempt(view.lead.id, channel, NOW - timedelta(hours=2))
        await store.finish_attempt(channel, outcome, NOW - timedelta(hours=1), "")
    runner, _, _ = runner_for(store, client, Staffing(()))
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
    finally:
        task.cancel()
    figures = runner.abandonment("renewals", NOW)
    assert figures is not None and (figures.answered, figures.abandoned) == (2, 1)  # busy is no answer


async def test_a_call_accepted_but_never_seen_is_looked_for_and_never_redialled(
    store: CrmDeskStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    await setup(store, CAMPAIGN, [SHANGHAI_1])
    clock = [NOW]
    runner, _, _ = runner_for(store, client, Staffing((AgentView("1001", "ready"),)))
    runner.ports = replace(runner.ports, clock=lambda: clock[0])
    await runner.pace_all()
    (sent,) = server.actions("Originate")
    clock[0] = NOW + timedelta(seconds=CAMPAIGN.ring_seconds + 5)
    await runner.pace_all()  # still within its ring time: nothing to look for, nothing dialled
    assert runner.following() == {sent.headers["ChannelId"]} and len(server.actions("Originate")) == 1
    clock[0] = NOW + timedelta(seconds=CAMPAIGN.ring_seconds + 31)
    server.channels = []  # Asterisk has no channel with its ChannelId: the Originate failed on its own
    await runner.pace_all()
    assert runner.following() == frozenset()
    (lead,) = await store.leads("renewals", None, 10, 0)
    (attempt,) = await store.attempts(lead.lead.id)
    assert attempt.outcome is Outcome.UNKNOWN and lead.status == "done"
    assert len(server.actions("Originate")) == 1


# ------------------------------------------------------------------ callbacks booked for one agent


def test_a_callback_booked_for_one_agent_goes_to_that_agent_waits_for_them_then_goes_to_anyone() -> None:
    due = [
        DueLead(1, NOW - timedelta(minutes=5), "1001"),  # 1001 is ready: theirs
        DueLead(2, NOW - timedelta(minutes=4), "1001"),  # 1001 is taken by lead 1 this pass: waits
        DueLead(3, NOW - timedelta(minutes=3), "1003"),  # 1003 is not ready, due 3 min ago: waits
        DueLead(4, NOW - CALLBACK_WAIT, "1003"),  # 1003 not ready and waited long enough: anyone
        DueLead(5, None),  # no callback: anyone
        DueLead(6, NOW - timedelta(minutes=1), "1002"),  # 1002 is ready: theirs
    ]
    routed = route_callbacks(due, {"1001", "1002"}, free=2, now=NOW)
    assert routed.direct == ((1, "1001"), (6, "1002"))
    assert routed.pooled == (4, 5) and routed.waiting == (2, 3)
    # Inbound calls kept one of the two ready agents: only one callback is dialled for its agent.
    one_free = route_callbacks(due, {"1001", "1002"}, free=1, now=NOW)
    assert one_free.direct == ((1, "1001"),) and one_free.waiting == (2, 3, 6)
    # Nobody ready (or no way to reserve one agent): callbacks wait, then go to anyone.
    nobody = route_callbacks(due, (), free=0, now=NOW)
    assert nobody.direct == () and nobody.pooled == (4, 5) and nobody.waiting == (1, 2, 3, 6)
    later = route_callbacks(due, (), free=0, now=NOW + CALLBACK_WAIT)
    assert later.pooled == (1, 2, 3, 4, 5, 6)


@dataclass
class Reservations:
    """Stand-in for routing's reservation of an agent for a call's key (tested in routing)."""

    status: dict[str, str]
    reserved: dict[str, str] = field(default_factory=dict)

    async def agent_status(self, agent_id: str) -> str | None:
        return self.status.get(agent_id)

    async def may_take(self, agent_id: str, service: str) -> bool:
        return True

    async def reserve(self, agent_id: str, channel_id: str, service: str) -> bool:
        if self.status.get(agent_id) != "ready":
            return False
        self.status[agent_id] = "reserved"
        self.reserved[agent_id] = channel_id
        return True

    async def unreserve(self, agent_id: str, channel_id: str) -> None:
        if self.reserved.pop(agent_id, None) == channel_id:
            self.status[agent_id] = "ready"


async def test_a_callback_booked_for_an_agent_is_dialled_for_that_agent_when_they_are_ready(
    store: CrmDeskStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    await setup(store, CAMPAIGN, [SHANGHAI_1, SHANGHAI_2])
    leads = {v.lead.phone: v.lead.id for v in await store.leads("renewals", None, 10, 0)}
    # Agent 1001 took SHANGHAI_1's call and booked "call me back" for themself, due 5 minutes ago.
    earlier = NOW - timedelta(hours=1)
    await store.begin_attempt(leads[SHANGHAI_1], "dial-0000000000000001", earlier)
    await store.finish_attempt("dial-0000000000000001", Outcome.CONNECTED, earlier + timedelta(minutes=2), "")
    await store.dispose_attempt(
        "dial-0000000000000001", "callback", "", "1001", earlier + timedelta(minutes=3), status="scheduled",
        next_attempt_at=NOW - timedelta(minutes=5), reason="callback", callback=True, callback_agent="1001",
    )  # fmt: skip
    reservations = Reservations({"1001": "not_ready", "1002": "ready"})
    desk = AgentDesk(
        store,
        DeskPorts(
            agent_status=reservations.agent_status, may_take=reservations.may_take,
            reserve=reservations.reserve, unreserve=reservations.unreserve, follow=lambda c, lead: None,
            call_agent=lambda pbx, linkedid: asyncio.sleep(0, (False, None)),
            save_call_disposition=lambda *a: asyncio.sleep(0), customer_card=lambda c: asyncio.sleep(0),
            link=client, route=lambda agent: CallRoute("outside", "cti-preview", agent),
        ),
        clock=lambda: NOW,
    )  # fmt: skip

    async def staffing(campaign: Campaign) -> Staffing:
        return Staffing(tuple(AgentView(a, s) for a, s in sorted(reservations.status.items())))

    async def callback_agent(lead_id: int) -> str | None:
        booked = await store.lead_callback(lead_id)
        return booked[0] if booked is not None else None

    runner, _, joined = runner_for(store, client, Staffing(()))
    runner.ports = replace(
        runner.ports, staffing=staffing, callback_agent=callback_agent, connect_agent=desk.connect
    )
    # 1001 is not ready: the callback waits for them; 1002 gets the other lead through the line.
    await runner.pace_all()
    (first,) = server.actions("Originate")
    assert first.headers["Channel"] == f"PJSIP/{SHANGHAI_2.lstrip('+')}@outside"
    assert first.headers["Context"] == "cti-campaign"
    paced = runner.live("renewals")
    assert paced is not None and "1 callbacks waiting" in paced.reason
    assert (await store.lead(leads[SHANGHAI_1])).status == "scheduled"

    # 1002 is now on that call and 1001 is ready: the callback is dialled for 1001 only.
    reservations.status.update({"1001": "ready", "1002": "on_call"})
    await runner.pace_all()
    first_again, second = server.actions("Originate")
    assert first_again == first
    assert second.headers["Channel"] == f"PJSIP/{SHANGHAI_1.lstrip('+')}@outside"
    assert (second.headers["Context"], second.headers["Exten"]) == ("cti-preview", "1001")
    channel_id = second.headers["ChannelId"]
    assert channel_id.startswith("cbk-") and reservations.reserved == {"1001": channel_id}
    assert runner.following() == {first.headers["ChannelId"], channel_id}
    paced = runner.live("renewals")
    assert paced is not None and paced.placed == 1 and "1 callbacks dialled" in paced.reason
    assert paced.ringing == 1  # the callback's agent is reserved: it is not a call waiting for anyone
    (_, attempt) = await store.attempts(leads[SHANGHAI_1])
    assert attempt.channel_id == channel_id and attempt.outcome is Outcome.PENDING
    assert joined == []  # no call was seen on the bus yet; the callback is never put in the line

    # Nothing more: both agents are busy, no lead is left.
    await runner.pace_all()
    assert len(server.actions("Originate")) == 2


# ------------------------------------------------------------------ talk time per agent-hour


async def test_talk_time_per_agent_hour_comes_from_the_stored_call_logs_and_survives_a_restart(
    store: CrmDeskStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    _, client = ami
    await setup(store, CAMPAIGN, [SHANGHAI_1, SHANGHAI_2, ON_DNC])
    leads = await store.leads("renewals", None, 10, 0)
    # Two calls ended in the last hour (1001 talked 600 s, 1002 300 s), one two hours ago.
    talks = ((timedelta(minutes=10), "1001", 600), (timedelta(minutes=20), "1002", 300),
             (timedelta(hours=2), "1001", 1000))  # fmt: skip
    for view, (ago, agent, talk) in zip(leads, talks, strict=True):
        channel = f"dial-{view.lead.id:016x}"
        ended = NOW - ago
        await store.begin_attempt(view.lead.id, channel, ended - timedelta(seconds=talk + 30))
        await store.finish_attempt(channel, Outcome.CONNECTED, ended, "")
        await store.schedule_lead(view.lead.id, "done", None, "connected", ended)
        async with store._sm() as session, session.begin():
            session.add(
                CallLog(pbx="pbx1", linkedid=channel, direction="outbound", ani_raw=view.lead.phone[1:],
                        ani_e164=view.lead.phone, caller_name="", dnis="8001",
                        started_at=ended - timedelta(seconds=talk + 10), ended_at=ended, phase="ended",
                        agent=agent, talk_seconds=talk, created_at=ended, updated_at=ended)
            )  # fmt: skip
    two_busy = Staffing((AgentView("1001", "on_call", 5.0), AgentView("1002", "wrap_up", 3.0)))
    for _ in range(2):  # a run, then the run after a restart: the same figure, not zero
        runner, _, _ = runner_for(store, client, two_busy)
        await runner.pace_all()
        paced = runner.live("renewals")
        assert paced is not None and paced.talk_seconds_per_agent_hour == 900 / 2  # 900 s over 2 agents
    # 30 s later four agents are logged in: the hour is counted at the mean the run has watched.
    clock = [NOW + timedelta(seconds=30)]
    four = Staffing(two_busy.agents + (AgentView("1003", "on_call", 1.0), AgentView("1004", "wrap_up", 1.0)))
    runner.ports = replace(runner.ports, clock=lambda: clock[0], staffing=lambda c: asyncio.sleep(0, four))
    runner.publish_seconds = 0.0
    await runner.pace_all()
    paced = runner.live("renewals")
    assert paced is not None and paced.talk_seconds_per_agent_hour == 900 / 4
