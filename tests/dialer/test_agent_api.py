"""The desk's HTTP routes in the real platform app (in process, its database migrated, no Asterisk):
a campaign's disposition codes validated and stored, start and stop, and a campaign call's
disposition saved on the attempt, on the call log and in the linked customer's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.compose import Platform
from crm import campaigns as crm_campaigns
from crm import db as crm_db
from crm import service as crm_service
from crm.model import CallLog
from cti.auth import Principal, Role, issue_token
from cti.settings import Settings

CAMPAIGN = {
    "name": "续保回访",
    "service": "8001",
    "caller_id": "+862161234567",
    "mode": "preview",
    "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6, 7]},
}
NAMES = {Role.AGENT: "1001", Role.SUPERVISOR: "boss", Role.ADMIN: "root"}


@pytest.fixture
async def platform(tmp_path: Path):
    platform = Platform(Settings(state_dir=tmp_path, default_region="CN"))
    await crm_db.migrate_async(platform.database_url)
    try:
        yield platform
    finally:
        await platform.engine.dispose()


async def call(
    platform: Platform, method: str, path: str, role: Role, json: Any = None, username: str | None = None
) -> httpx.Response:
    principal = Principal(1, username or NAMES[role], role)
    token = issue_token(principal, platform.token_secret, 600, datetime.now(UTC))
    transport = httpx.ASGITransport(app=platform.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, json=json, headers={"Authorization": f"Bearer {token}"})


async def test_disposition_codes_are_validated_and_stored_per_campaign(platform: Platform) -> None:
    assert (
        await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, CAMPAIGN)
    ).status_code == 200
    defaults = (await call(platform, "GET", "/api/dialer/campaigns/renewals/dispositions", Role.AGENT)).json()
    assert [c["code"] for c in defaults] == [
        "sale", "not_interested", "callback", "retry_later", "wrong_number", "do_not_call",
    ]  # fmt: skip
    path = "/api/dialer/campaigns/renewals/dispositions"
    own = {"codes": [
        {"code": "renewed", "label": "已续保", "action": "done", "success": True},
        {"code": "later", "label": "稍后", "action": "retry", "retry_minutes": 30},
        {"code": "dnc", "label": "勿扰", "action": "do_not_call"},
    ]}  # fmt: skip
    no_dnc = {"codes": own["codes"][:2]}
    refused = await call(platform, "PUT", path, Role.ADMIN, no_dnc)
    assert refused.status_code == 422 and "do_not_call" in refused.text
    twice = {"codes": [*own["codes"], own["codes"][0]]}
    assert (await call(platform, "PUT", path, Role.ADMIN, twice)).status_code == 422
    bad = {"codes": [{"code": "Bad Code", "label": "x", "action": "done"}]}
    assert (await call(platform, "PUT", path, Role.ADMIN, bad)).status_code == 422
    assert (await call(platform, "PUT", path, Role.ADMIN, own)).status_code == 200
    stored = (await call(platform, "GET", path, Role.AGENT)).json()
    assert [(c["code"], c["action"], c["retry_minutes"]) for c in stored] == [
        ("renewed", "done", 60), ("later", "retry", 30), ("dnc", "do_not_call", 60),
    ]  # fmt: skip


async def test_a_supervisor_stops_and_starts_a_campaign(platform: Platform) -> None:
    await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, {**CAMPAIGN, "active": True})
    stopped = await call(platform, "POST", "/api/dialer/campaigns/renewals/stop", Role.SUPERVISOR)
    assert stopped.json() == {"id": "renewals", "active": False}
    got = (await call(platform, "GET", "/api/dialer/campaigns/renewals", Role.SUPERVISOR)).json()
    assert got["active"] is False and got["mode"] == "preview"  # the settings are unchanged
    started = await call(platform, "POST", "/api/dialer/campaigns/renewals/start", Role.SUPERVISOR)
    assert started.json()["active"] is True
    panel = (await call(platform, "GET", "/api/dialer/campaigns/renewals/panel", Role.SUPERVISOR)).json()
    assert (panel["active"], panel["attempts_24h"], panel["cap"]) == (True, 0, 0.03)


async def test_a_campaign_calls_disposition_reaches_the_attempt_the_call_log_and_the_customer(
    platform: Platform,
) -> None:
    sm = platform.sessionmaker
    await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, {**CAMPAIGN, "active": True})
    customer = await crm_service.create_customer(
        sm,
        crm_service.NewCustomer("刘洋", phones=(crm_service.NewPhone("13800138001"),)),
        default_region="CN",
    )
    now = datetime.now(UTC)
    await crm_campaigns.add_leads(
        sm, "renewals", [crm_campaigns.NewLead("+8613800138001", "刘洋", None, customer.id, {"保单": "P-1"})],
        filename="x.csv", encoding="utf-8", rows=1, merged_in_file=0, rejected=0, rejected_report=b"",
        created_by=None, now=now,
    )  # fmt: skip
    (lead,) = await crm_campaigns.list_leads(sm, "renewals")
    await crm_campaigns.begin_attempt(sm, lead.id, "dial-0123456789abcdef", now)
    await crm_campaigns.finish_attempt(sm, "dial-0123456789abcdef", "connected", now + timedelta(minutes=2))
    async with sm() as session, session.begin():
        session.add(
            CallLog(pbx="test", linkedid="dial-0123456789abcdef", direction="internal",
                    ani_raw="+862161234567", ani_e164="+862161234567", caller_name="", dnis="",
                    started_at=now, phase="ended", agent="1001", customer_id=customer.id, created_at=now,
                    updated_at=now)
        )  # fmt: skip
    path = "/api/dialer/calls/test/dial-0123456789abcdef"
    pop = (await call(platform, "GET", f"{path}/lead", Role.AGENT)).json()
    assert pop["lead"]["name"] == "刘洋" and pop["customer"]["name"] == "刘洋"
    assert (await call(platform, "GET", f"{path}/lead", Role.AGENT, username="1002")).status_code == 403
    mine = {"disposition": "callback", "at": (now + timedelta(days=1)).isoformat(), "callback_for": "me"}
    boss = await call(platform, "POST", f"{path}/disposition", Role.SUPERVISOR, mine)
    assert boss.status_code == 422 and "for anyone" in boss.text  # a supervisor is not an agent
    body = {"disposition": "retry_later", "notes": "<i>在开车</i>"}
    saved = await call(platform, "POST", f"{path}/disposition", Role.AGENT, body)
    assert saved.status_code == 200, saved.text
    assert saved.json()["next_step"] == "scheduled"
    card = (await call(platform, "GET", f"/api/customers/{customer.id}", Role.AGENT)).json()
    (interaction,) = card["interactions"]
    assert (interaction["disposition"], interaction["notes"]) == ("retry_later", "<i>在开车</i>")
    trail = (await call(platform, "GET", f"/api/dialer/leads/{lead.id}/attempts", Role.SUPERVISOR)).json()
    assert [a["outcome"] for a in trail] == ["connected"]
    pop = (await call(platform, "GET", f"{path}/lead", Role.SUPERVISOR)).json()
    assert pop["attempts"][0]["disposition"]["code"] == "retry_later"
    assert pop["lead"]["status"] == "scheduled"
