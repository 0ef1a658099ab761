"""Placing campaign calls without ever dialling a number twice: the attempt is on record before the
Originate is sent, a lost answer is never re-sent, and a restart reconciles pending attempts by
ChannelId instead of dialling again.

Against the scripted AMI server (tests/support/ami_server.py): a link that drops exactly after an
Originate is written cannot be produced on demand by a real Asterisk. The store is the real one
(the customer record's tables on a migrated SQLite database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from app.dialer_wiring import CrmCampaignStore
from crm import campaigns as crm_campaigns
from crm import db as crm_db
from cti.ami import AmiClient
from dialer.compliance import Refusal, Verdict
from dialer.dialling import CallRoute, Placed, place_call, reconcile_pending
from dialer.model import CallingWindow, Campaign, DialMode
from dialer.store import LeadView, StoreConflict
from tests.support.ami_server import FakeAmi

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
CAMPAIGN = Campaign(
    "renewals", "续保", "8001", "+862161234567", DialMode.PROGRESSIVE,
    CallingWindow(time(0), time(23, 59), frozenset(range(1, 8))),
)  # fmt: skip
ROUTE = CallRoute(endpoint="customers", context="cti-campaign")
ALLOWED = Verdict((), "allowed")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CrmCampaignStore]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite3'}"
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    sm = crm_db.make_sessionmaker(engine)
    s = CrmCampaignStore(sm)
    await s.save_campaign(CAMPAIGN, True, NOW)
    await crm_campaigns.add_leads(
        sm, "renewals", [crm_campaigns.NewLead("+8613800138000", "张三")], filename="x.csv", encoding="utf-8",
        rows=1, merged_in_file=0, rejected=0, rejected_report=b"", created_by=None, now=NOW,
    )  # fmt: skip
    try:
        yield s
    finally:
        await engine.dispose()


async def only_lead(store: CrmCampaignStore) -> LeadView:
    (lead,) = await store.leads("renewals", None, 10, 0)
    return lead


async def test_the_attempt_is_written_before_the_originate_and_carries_its_channel_id(
    store: CrmCampaignStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    lead = await only_lead(store)
    result = await place_call(store, client, CAMPAIGN, lead, ALLOWED, ROUTE, NOW)
    assert result.placed is Placed.RINGING
    (sent,) = server.actions("Originate")
    assert sent.headers["ChannelId"] == result.channel_id
    assert sent.headers["Channel"] == "PJSIP/8613800138000@customers"
    assert sent.headers["Timeout"] == "25000"  # the campaign's ring time, at least 15 s
    (attempt,) = await store.attempts(lead.lead.id)
    assert (attempt.channel_id, attempt.outcome.value) == (result.channel_id, "pending")
    # While the call is on, the lead cannot be dialled again.
    with pytest.raises(StoreConflict):
        await place_call(store, client, CAMPAIGN, await only_lead(store), ALLOWED, ROUTE, NOW)
    assert len(server.actions("Originate")) == 1


async def test_a_refusing_verdict_writes_and_sends_nothing(
    store: CrmCampaignStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    lead = await only_lead(store)
    refused = Verdict((Refusal.DO_NOT_CALL,), "on the internal do-not-call list")
    with pytest.raises(ValueError, match="do-not-call"):
        await place_call(store, client, CAMPAIGN, lead, refused, ROUTE, NOW)
    assert await store.attempts(lead.lead.id) == []
    assert server.actions("Originate") == []


async def test_an_originate_asterisk_refused_is_retried_by_the_rules(
    store: CrmCampaignStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    server.fail = {"Originate": "Originate failed"}
    lead = await only_lead(store)
    result = await place_call(store, client, CAMPAIGN, lead, ALLOWED, ROUTE, NOW)
    assert result.placed is Placed.NOT_DIALLED
    after = await only_lead(store)
    assert (after.status, after.next_attempt_at) == ("scheduled", NOW + timedelta(minutes=10))


async def test_restart_mid_call_reconciles_and_never_dials_again(
    store: CrmCampaignStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    server.drop_after = {"Originate"}  # the answer is lost with the link...
    server.refuse_logins = True  # ...and the link does not come back in time
    lead = await only_lead(store)
    result = await place_call(store, client, CAMPAIGN, lead, ALLOWED, ROUTE, NOW, reconcile_within=0.3)
    assert result.placed is Placed.UNRESOLVED
    assert [a.channel_id for a in await store.pending_attempts()] == [result.channel_id]

    # "Restart": the platform comes back, the PBX is reachable again, the call has ended meanwhile.
    server.refuse_logins = False
    server.drop_after = set()
    server.channels = [{"Channel": "PJSIP/agent-00000009", "Uniqueid": "1700000000.9", "Linkedid": "x"}]
    with pytest.raises(StoreConflict):  # the lead is not dialled before reconciliation
        await place_call(store, client, CAMPAIGN, await only_lead(store), ALLOWED, ROUTE, NOW)
    reconciled = await reconcile_pending(store, client, {"renewals": CAMPAIGN}, NOW, within=5)
    assert reconciled.ended_unknown == (result.channel_id,)
    (attempt,) = await store.attempts(lead.lead.id)
    assert attempt.outcome.value == "unknown"
    after = await only_lead(store)
    assert after.status == "done" and "not redialled blindly" in (after.done_reason or "")
    with pytest.raises(StoreConflict):
        await place_call(store, client, CAMPAIGN, after, ALLOWED, ROUTE, NOW)
    assert len(server.actions("Originate")) == 1  # the number was dialled exactly once


async def test_reconciliation_keeps_attempts_whose_call_is_live(
    store: CrmCampaignStore, ami: tuple[FakeAmi, AmiClient]
) -> None:
    server, client = ami
    server.drop_after = {"Originate"}
    server.refuse_logins = True
    lead = await only_lead(store)
    result = await place_call(store, client, CAMPAIGN, lead, ALLOWED, ROUTE, NOW, reconcile_within=0.3)
    server.refuse_logins = False
    server.drop_after = set()
    server.channels = [
        {"Channel": "PJSIP/customers-0000000a", "Uniqueid": result.channel_id, "Linkedid": "y"}
    ]
    reconciled = await reconcile_pending(store, client, {"renewals": CAMPAIGN}, NOW, within=5)
    assert reconciled.live == (result.channel_id,) and reconciled.ended_unknown == ()
    assert [a.outcome.value for a in await store.attempts(lead.lead.id)] == ["pending"]
