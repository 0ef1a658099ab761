"""Campaign calls' ends close their attempts through the real bus and the real store (SQLite), and
the campaign's retry rules then schedule or close the lead; other calls are ignored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.dialer_wiring import CrmCampaignStore
from crm import campaigns as crm_campaigns
from crm import db as crm_db
from cti.bus import Bus, subscribe_to_calls
from cti.model import CallPhase, ChangeKind
from dialer.handlers import AttemptFollower
from dialer.model import Campaign, DialMode, Outcome
from tests.crm.helpers import T0, change, snapshot

CAMPAIGN = Campaign("renewals", "续保", "8001", "+862161234567", DialMode.PREDICTIVE)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CrmCampaignStore]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite3'}"
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    sm = crm_db.make_sessionmaker(engine)
    s = CrmCampaignStore(sm)
    await s.save_campaign(CAMPAIGN, True, T0)
    leads = [crm_campaigns.NewLead("+8613800138000"), crm_campaigns.NewLead("+8613900139000")]
    await crm_campaigns.add_leads(
        sm, "renewals", leads, filename="x.csv", encoding="utf-8", rows=2, merged_in_file=0, rejected=0,
        rejected_report=b"", created_by=None, now=T0,
    )  # fmt: skip
    try:
        yield s
    finally:
        await engine.dispose()


async def test_ended_campaign_calls_close_their_attempts(store: CrmCampaignStore) -> None:
    first, second = await store.leads("renewals", None, 10, 0)
    await store.begin_attempt(first.lead.id, "dial-a", T0)
    await store.begin_attempt(second.lead.id, "dial-b", T0)
    seen: list[tuple[str, Outcome]] = []
    follower = AttemptFollower(
        store, lambda: {"renewals": CAMPAIGN}, on_outcome=lambda c, o, _: seen.append((c, o))
    )
    follower.pending.update({"dial-a": first.lead.id, "dial-b": second.lead.id})
    bus = Bus()
    task = asyncio.create_task(follower.run(subscribe_to_calls(bus, "dialer")))
    try:
        bus.publish(change(snapshot("inbound-1", phase=CallPhase.ENDED, ended=5.0), ChangeKind.ENDED))
        bus.publish(change(snapshot("dial-a", phase=CallPhase.TALKING, answered=4.0, connected=4.5)))
        bus.publish(
            change(
                snapshot("dial-a", phase=CallPhase.ENDED, answered=4.0, connected=4.5, ended=90.0),
                ChangeKind.ENDED,
            )
        )
        bus.publish(
            change(snapshot("dial-b", phase=CallPhase.ENDED, ended=3.0, hangup_cause=17), ChangeKind.ENDED)
        )
        for _ in range(250):  # until both outcomes are written (one message at a time)
            if len(seen) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert follower.pending == {}
    assert sorted(seen) == [("renewals", Outcome.BUSY), ("renewals", Outcome.CONNECTED)]
    a, b = await store.leads("renewals", None, 10, 0)
    assert (a.status, a.done_reason) == ("done", "final outcome: connected")
    assert (b.status, b.next_attempt_at) == ("scheduled", T0 + timedelta(seconds=3) + timedelta(minutes=15))
    assert [x.outcome for x in await store.attempts(b.lead.id)] == [Outcome.BUSY]


async def test_a_call_closed_without_wrap_up_closes_its_attempt_once(store: CrmCampaignStore) -> None:
    """With no wrap-up the call model closes a call at once: ``CLOSED`` is the only end it publishes."""
    first, _ = await store.leads("renewals", None, 10, 0)
    await store.begin_attempt(first.lead.id, "dial-c", T0)
    follower = AttemptFollower(store, lambda: {"renewals": CAMPAIGN})
    follower.pending["dial-c"] = first.lead.id
    ended = snapshot("dial-c", phase=CallPhase.ENDED, answered=4.0, connected=4.5, ended=60.0)
    assert await follower.handle(change(ended, ChangeKind.CLOSED)) is Outcome.CONNECTED
    # A CLOSED after the ENDED (a call that had wrap-up) finds nothing left to close.
    assert await follower.handle(change(ended, ChangeKind.CLOSED)) is None
    assert [a.outcome for a in await store.attempts(first.lead.id)] == [Outcome.CONNECTED]
