"""The dialer's HTTP routes in the real platform app (in process, its database migrated, no Asterisk):
who may do what, campaigns validated, a real lead file imported with its rejected-rows report, the
do-not-call list and registry lists feeding the compliance check."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.compose import Platform
from crm import campaigns as crm_campaigns
from crm import db as crm_db
from crm import service as crm_service
from cti.auth import Principal, Role, issue_token
from cti.settings import Settings

CAMPAIGN = {
    "name": "续保回访",
    "service": "8001",
    "caller_id": "+862161234567",
    "mode": "predictive",
    "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6, 7]},
    "registries": ["national"],
    "abandonment_rule": "uk_24_hours",
}


@pytest.fixture
async def platform(tmp_path: Path):
    platform = Platform(Settings(state_dir=tmp_path))
    await crm_db.migrate_async(platform.database_url)
    try:
        yield platform
    finally:
        await platform.engine.dispose()


def bearer(platform: Platform, role: Role | None) -> dict[str, str]:
    if role is None:
        return {}
    token = issue_token(Principal(1, f"a-{role}", role), platform.token_secret, 600, datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


async def call(
    platform: Platform,
    method: str,
    path: str,
    role: Role | None,
    json: Any = None,
    content: bytes | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=platform.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, json=json, content=content, headers=bearer(platform, role))


ROLES = [None, Role.AGENT, Role.SUPERVISOR, Role.ADMIN]
SUPERVISORS = {Role.SUPERVISOR, Role.ADMIN}
EVERYONE = {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [
        ("GET", "/api/dialer/campaigns", None, SUPERVISORS),
        ("PUT", "/api/dialer/campaigns/renewals", CAMPAIGN, {Role.ADMIN}),
        ("GET", "/api/dialer/registries", None, SUPERVISORS),
        (
            "PUT",
            "/api/dialer/registries/national",
            {"published_on": "2026-11-01", "numbers": []},
            {Role.ADMIN},
        ),
        ("POST", "/api/dialer/do-not-call", {"number": "+8613800138000"}, EVERYONE),
        ("DELETE", "/api/dialer/do-not-call/+8613800138000", None, {Role.ADMIN}),
        ("GET", "/api/dialer/leads/1/attempts", None, SUPERVISORS),
    ],
)
async def test_roles(platform: Platform, method: str, path: str, body: Any, allowed: set[Role]) -> None:
    for role in ROLES:
        response = await call(platform, method, path, role, body)
        if role is None:
            assert response.status_code == 401, (role, response.text)
        elif role in allowed:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)


async def test_campaign_settings_are_validated_and_stored(platform: Platform) -> None:
    bad = {**CAMPAIGN, "ring_seconds": 10}
    assert (await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, bad)).status_code == 422
    midnight = {**CAMPAIGN, "window": {"start": "21:00", "end": "09:00"}}
    response = await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, midnight)
    assert response.status_code == 422 and "starts before it ends" in response.text
    assert (await call(platform, "PUT", "/api/dialer/campaigns/Bad", Role.ADMIN, CAMPAIGN)).status_code == 422
    stored = await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, CAMPAIGN)
    assert stored.status_code == 200, stored.text
    got = (await call(platform, "GET", "/api/dialer/campaigns/renewals", Role.SUPERVISOR)).json()
    assert (got["name"], got["mode"], got["abandonment_cap"], got["ring_seconds"]) == (
        "续保回访",
        "predictive",
        0.03,
        25,
    )
    assert [r["outcome"] for r in got["retries"]] == ["busy", "no_answer", "machine", "abandoned", "failed"]
    assert got["blocked_by"] == ["registry list 'national' was never imported"]
    assert (await call(platform, "GET", "/api/dialer/campaigns/nope", Role.SUPERVISOR)).status_code == 404


async def test_a_gbk_lead_file_is_imported_with_its_rejected_rows(platform: Platform) -> None:
    customer = await crm_service.create_customer(
        platform.sessionmaker,
        crm_service.NewCustomer("张三", phones=(crm_service.NewPhone("13800138000"),)),
        default_region="CN",
    )
    await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, CAMPAIGN)
    data = (
        "姓名;手机号;备注\r\n"
        "张三;1.3800138E+10;老客户\r\n"
        "李四;139 0013 9000;\r\n"
        "王五;12345;\r\n"
        "张三;13800138000;again\r\n"
    )
    response = await call(
        platform, "POST", "/api/dialer/campaigns/renewals/leads?region=CN&filename=名单.csv", Role.SUPERVISOR,
        content=data.encode("gbk"),
    )  # fmt: skip
    assert response.status_code == 201, response.text
    summary = response.json()
    assert (summary["encoding"], summary["delimiter"], summary["phone_column"]) == ("gb18030", ";", "手机号")
    assert (summary["rows"], summary["added"], summary["merged"], summary["rejected"]) == (4, 2, 1, 1)
    assert summary["linked_to_customers"] == 1
    report = await call(platform, "GET", summary["rejected_report"], Role.SUPERVISOR)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert rows[0] == ["line", "reason", "姓名", "手机号", "备注"]
    assert rows[1][0] == "4" and rows[1][3] == "12345"
    leads = (await call(platform, "GET", "/api/dialer/campaigns/renewals/leads", Role.SUPERVISOR)).json()
    assert [(x["phone"], x["name"], x["customer_id"], x["status"]) for x in leads] == [
        ("+8613800138000", "张三", customer.id, "new"),
        ("+8613900139000", "李四", None, "new"),
    ]
    unreadable = await call(
        platform,
        "POST",
        "/api/dialer/campaigns/renewals/leads?region=CN",
        Role.SUPERVISOR,
        content=b"a,b\n1,2\n",
    )
    assert unreadable.status_code == 422 and "no phone column" in unreadable.text
    assert (
        await call(platform, "GET", "/api/dialer/imports/999/rejected.csv", Role.SUPERVISOR)
    ).status_code == 404


async def test_compliance_check_reads_do_not_call_and_registries(platform: Platform) -> None:
    await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, CAMPAIGN)
    url = "/api/dialer/campaigns/renewals/check?number=13800138000&region=CN"
    blocked = (await call(platform, "GET", url, Role.SUPERVISOR)).json()
    assert (blocked["allowed"], blocked["refusals"]) == (False, ["campaign_blocked"])

    today = datetime.now(UTC).date()
    registry = {"published_on": today.isoformat(), "numbers": ["+8613800138000"]}
    assert (
        await call(platform, "PUT", "/api/dialer/registries/national", Role.ADMIN, registry)
    ).status_code == 200
    on_registry = (await call(platform, "GET", url, Role.SUPERVISOR)).json()
    assert on_registry["refusals"] == ["on_registry"]

    fresh = {"published_on": today.isoformat(), "numbers": []}
    await call(platform, "PUT", "/api/dialer/registries/national", Role.ADMIN, fresh)
    assert (await call(platform, "GET", url, Role.SUPERVISOR)).json()["allowed"] is True

    added = await call(platform, "POST", "/api/dialer/do-not-call", Role.AGENT, {"number": "138 0013 8000"})
    assert added.status_code == 204
    assert (await call(platform, "GET", url, Role.SUPERVISOR)).json()["refusals"] == ["do_not_call"]
    assert (
        await call(platform, "DELETE", "/api/dialer/do-not-call/+8613800138000", Role.ADMIN)
    ).status_code == 204
    assert (
        await call(platform, "DELETE", "/api/dialer/do-not-call/+8613800138000", Role.ADMIN)
    ).status_code == 404

    stale = {"published_on": (today - timedelta(days=40)).isoformat(), "numbers": []}
    await call(platform, "PUT", "/api/dialer/registries/national", Role.ADMIN, stale)
    got = (await call(platform, "GET", url, Role.SUPERVISOR)).json()
    assert got["refusals"] == ["campaign_blocked"] and "40 days old" in got["detail"]
    bad = await call(platform, "POST", "/api/dialer/do-not-call", Role.AGENT, {"number": "anonymous"})
    assert bad.status_code == 422


async def test_a_large_import_runs_in_the_background_with_visible_progress(platform: Platform) -> None:
    await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, CAMPAIGN)
    rows = "".join(f"+1212555{i:04d},客户{i}\n" for i in range(5000))
    data = ("phone,name\n" + rows + "junk,x\n").encode()
    started = await call(
        platform,
        "POST",
        "/api/dialer/campaigns/renewals/lead-imports?region=US",
        Role.SUPERVISOR,
        content=data,
    )
    assert started.status_code == 202, started.text
    status_url = started.json()["status_url"]
    seen: list[dict[str, Any]] = []
    for _ in range(300):
        state = (await call(platform, "GET", status_url, Role.SUPERVISOR)).json()
        seen.append(state)
        if state["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.05)
    final = seen[-1]
    assert final["state"] == "done", final
    assert final["lines_done"] == final["lines_total"] >= 5001
    assert (final["result"]["added"], final["result"]["rejected"]) == (5000, 1)
    done = [s["lines_done"] for s in seen]
    assert done == sorted(done)  # progress only moves forward
    assert (await call(platform, "GET", status_url, Role.AGENT)).status_code == 403
    assert (
        await call(platform, "GET", "/api/dialer/lead-imports/0123456789abcdef", Role.ADMIN)
    ).status_code == 404
    refused = await call(
        platform,
        "POST",
        "/api/dialer/campaigns/renewals/lead-imports?region=US",
        Role.SUPERVISOR,
        content=b"a,b\n",
    )
    for _ in range(100):
        state = (await call(platform, "GET", refused.json()["status_url"], Role.SUPERVISOR)).json()
        if state["state"] != "reading":
            break
        await asyncio.sleep(0.05)
    assert state["state"] == "failed" and "no phone column" in state["error"]


async def test_live_figures_from_the_attempt_trail(platform: Platform) -> None:
    await call(platform, "PUT", "/api/dialer/campaigns/renewals", Role.ADMIN, CAMPAIGN)
    data = b"phone\n13800138000\n13900139000\n13700137000\n"
    await call(
        platform, "POST", "/api/dialer/campaigns/renewals/leads?region=CN", Role.SUPERVISOR, content=data
    )
    leads = (await call(platform, "GET", "/api/dialer/campaigns/renewals/leads", Role.SUPERVISOR)).json()
    now = datetime.now(UTC)
    sm = platform.sessionmaker
    for lead, outcome in zip(leads, ["connected", "abandoned", None], strict=True):
        await crm_campaigns.begin_attempt(sm, lead["id"], f"dial-{lead['id']}", now - timedelta(minutes=5))
        if outcome is not None:
            await crm_campaigns.finish_attempt(sm, f"dial-{lead['id']}", outcome, now - timedelta(minutes=4))
    stats = await call(platform, "GET", "/api/dialer/campaigns/renewals/stats", Role.SUPERVISOR)
    assert stats.status_code == 200, stats.text
    got = stats.json()
    assert got["last_24_hours"] == {
        "attempts": 3, "contacts": 1, "live_answers": 2, "abandoned": 1, "abandonment_rate": 0.5,
    }  # fmt: skip
    assert got["outcomes_24_hours"] == {"abandoned": 1, "connected": 1}
    assert (got["in_progress"], got["abandonment_rule"], got["abandonment_cap"]) == (1, "uk_24_hours", 0.03)
    trail = (
        await call(platform, "GET", f"/api/dialer/leads/{leads[0]['id']}/attempts", Role.SUPERVISOR)
    ).json()
    assert [(a["number"], a["outcome"]) for a in trail] == [(1, "connected")]
    assert (
        await call(platform, "GET", "/api/dialer/campaigns/renewals/stats", Role.AGENT)
    ).status_code == 403
