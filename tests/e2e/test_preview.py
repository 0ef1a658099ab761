"""End to end: a preview campaign at the agent's desk on the real sandbox Asterisk.

Two tests, each with its own ``cti serve``: one over HTTP as the console does, one in headless
Chromium (Debian's ``chromium``, driven by Playwright) through the console's own pages.

``cti serve`` runs beside the sandbox; the agent's phone (1001) and the customer's phone (the PBX's
``outside`` endpoint, standing for the public network) are SIPp phones that answer. Over HTTP, as
the console does: the agent sees the lead with its record, presses Dial, the customer answers and
the agent's phone is connected; the attempt gets its outcome from the call; the agent dispositions
"call back tomorrow" (the lead is scheduled, for them) and, on the second lead, "do not call" (the
number goes on the do-not-call list and is never offered again). Nothing is faked.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.support import sipp
from tests.support.platform import PlatformApi, PlatformProcess
from tests.support.sandbox import SIPP_PORT_BASE, TEST_PORTS, SandboxPbx

pytestmark = [pytest.mark.sandbox]

ADMIN = ("admin", "admin-password-1")
AGENT = ("1001", "agent-password-1")
_ports = itertools.count(SIPP_PORT_BASE + 1300, 8)  # this module's own slice of the SIPp ports
CAMPAIGN = {
    "name": "续保回访",
    "service": "8099",  # no routing service has this DNIS: any agent may take the campaign
    "caller_id": "+862161234567",
    "mode": "preview",
    "window": {"start": "00:00", "end": "23:59", "weekdays": [1, 2, 3, 4, 5, 6, 7]},
    "active": True,
}
LEADS = "姓名,手机号,保单,备注\n刘洋,13800138001,P-001,<b>VIP</b>\n王芳,13800138002,P-002,\n".encode()
ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = Path(os.environ.get("CTI_SCREENSHOTS_DIR") or ROOT / "var" / "screenshots")
CHROMIUM = "/usr/bin/chromium"
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Api(PlatformApi):
    async def attempt(self, lead_id: int, outcome: str) -> dict[str, Any] | None:
        attempts = await self.request("admin", "GET", f"/api/dialer/leads/{lead_id}/attempts")
        return attempts[-1] if attempts and attempts[-1]["outcome"] == outcome else None

    async def agent_status(self) -> str:
        state = await self.request("admin", "GET", "/api/routing/agents/1001")
        return str(state["state"]["status"])


@pytest.fixture
async def api(sandbox_pbx: SandboxPbx, tmp_path: Path) -> AsyncIterator[Api]:
    state = tmp_path / "platform"
    platform = PlatformProcess.configure(
        state,
        ami_port=sandbox_pbx.ami_port,
        ami_secret_file=sandbox_pbx.instance_dir / "ami.secret",
        extra={
            "CTI_IVR__ENABLED": "false",
            "CTI_SANDBOX__INSTANCE": sandbox_pbx.settings.sandbox.instance,
            "CTI_SANDBOX__CACHE_DIR": str(sandbox_pbx.settings.sandbox.cache_dir),
            "CTI_ROUTING__DEFAULT_WRAP_UP_SECONDS": "0",
        },
    )
    await platform.add_user(*ADMIN, "admin")
    await platform.add_user(*AGENT, "agent")
    await platform.start()
    api = Api(platform)
    try:
        await api.login(*ADMIN)
        await api.login(*AGENT)
        await api.request("admin", "PUT", "/api/routing/agents/1001", json={"name": "刘备", "skills": {}})
        await api.request("admin", "PUT", "/api/dialer/campaigns/renewals", json=CAMPAIGN)
        imported = await api.request(
            "admin", "POST", "/api/dialer/campaigns/renewals/leads", params={"region": "CN"}, content=LEADS
        )
        assert imported["added"] == 2, imported
        yield api
    finally:
        await platform.stop()


@pytest.fixture
async def phones() -> AsyncIterator[None]:
    """The agent's phone and the customer's, both answering; the agent's hangs up after 3 s."""
    agent = await sipp.start_agent_phone(port=TEST_PORTS["agent_base"], media_port=next(_ports), talk_ms=3000)
    try:
        customer = await sipp.start_agent_phone(
            port=TEST_PORTS["outside"], media_port=next(_ports), talk_ms=20_000
        )
    except BaseException:
        await agent.stop()
        raise
    try:
        yield
    finally:
        await customer.stop()
        await agent.stop()


async def _call(api: Api, lead_name: str) -> tuple[dict[str, Any], str]:
    """The agent, ready, previews the next lead (expected: ``lead_name``), dials it, and the call is
    connected and ended; returns the lead's record and the call's Linkedid."""
    await api.until("the agent ready", lambda: _ready(api), timeout=30)
    campaigns = await api.request("1001", "GET", "/api/dialer/preview/1001/campaigns")
    assert [c["id"] for c in campaigns] == ["renewals"]
    record = await api.request(
        "1001", "POST", "/api/dialer/preview/1001/next", json={"campaign_id": "renewals"}
    )
    assert record["lead"]["name"] == lead_name and record["campaign"]["name"] == "续保回访"
    lead_id = record["lead"]["id"]
    placed = await api.request("1001", "POST", "/api/dialer/preview/1001/dial", json={"lead_id": lead_id})
    assert placed["placed"] == "ringing", placed
    linkedid = placed["channel_id"]
    # Dialled once: a second press is refused and nothing more is sent.
    again = await api.raw("1001", "POST", "/api/dialer/preview/1001/dial", json={"lead_id": lead_id})
    assert again.status_code == 409, again.text
    # The agent is reserved for the call until it ends: routing offers them nothing else.
    assert await api.agent_status() in ("reserved", "on_call")
    await api.until("the attempt connected", lambda: api.attempt(lead_id, "connected"), timeout=60)
    return record, linkedid


async def test_a_preview_call_is_dialled_connected_and_dispositioned(api: Api, phones: None) -> None:
    await api.request("1001", "POST", "/api/routing/agents/1001/login")
    record, linkedid = await _call(api, "刘洋")
    lead_id = record["lead"]["id"]
    assert record["lead"]["phone"] == "+8613800138001" and record["lead"]["fields"]["保单"] == "P-001"

    async def logged() -> dict[str, Any] | None:
        for row in await api.request("admin", "GET", "/api/calls", params={"limit": 50}):
            if row["linkedid"] == linkedid and row["ended_at"]:
                return dict(row)
        return None

    row = await api.until("the call log", logged, timeout=30)
    assert row["agent"] == "1001" and row["connected_at"] is not None
    # The lead's record, as the console pops it for the call.
    pop = await api.request("1001", "GET", f"/api/dialer/calls/{row['pbx']}/{linkedid}/lead")
    assert pop["lead"]["name"] == "刘洋" and pop["attempts"][0]["outcome"] == "connected"
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    done = await api.request(
        "1001", "POST", f"/api/dialer/calls/{row['pbx']}/{linkedid}/disposition",
        json={"disposition": "callback", "notes": "明天再联系", "at": tomorrow.isoformat(),
              "callback_for": "me"},
    )  # fmt: skip
    assert done["next_step"] == "scheduled" and done["callback_agent"] == "1001"
    (lead,) = [
        x
        for x in await api.request("admin", "GET", "/api/dialer/campaigns/renewals/leads")
        if x["id"] == lead_id
    ]
    assert lead["status"] == "scheduled"
    assert datetime.fromisoformat(lead["next_attempt_at"]) == tomorrow
    calls = await api.request("admin", "GET", "/api/calls", params={"limit": 50})
    assert [c["disposition"] for c in calls if c["linkedid"] == linkedid] == ["callback"]

    # The second lead asks never to be called again.
    second, linkedid2 = await _call(api, "王芳")
    await api.until("the second call ended", lambda: _ended(api, second["lead"]["id"]), timeout=30)
    await api.request(
        "1001", "POST", f"/api/dialer/calls/{row['pbx']}/{linkedid2}/disposition",
        json={"disposition": "do_not_call", "notes": "不要再打"},
    )  # fmt: skip
    check = await api.request(
        "admin", "GET", "/api/dialer/campaigns/renewals/check", params={"number": "+8613800138002"}
    )
    assert "do_not_call" in check["refusals"]
    await api.until("the agent ready", lambda: _ready(api), timeout=30)
    nothing = await api.request(
        "1001", "POST", "/api/dialer/preview/1001/next", json={"campaign_id": "renewals"}
    )
    assert nothing == {"lead": None}
    panel = await api.request("admin", "GET", "/api/dialer/campaigns/renewals/panel")
    assert (panel["attempts_24h"], panel["contacts_24h"], panel["abandoned_24h"]) == (2, 2, 0)
    assert panel["talk_seconds_last_hour"]["1001"] > 0


async def _ready(api: Api) -> bool:
    if await api.agent_status() == "ready":
        return True
    try:
        await api.request("1001", "POST", "/api/routing/agents/1001/ready")
    except AssertionError:
        return False
    return True


async def _ended(api: Api, lead_id: int) -> bool:
    attempts = await api.request("admin", "GET", f"/api/dialer/leads/{lead_id}/attempts")
    return bool(attempts and attempts[-1]["ended_at"])


async def test_the_console_previews_dials_pops_the_lead_and_the_supervisor_stops_the_campaign(
    api: Api, phones: None
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    expect = playwright_api.expect
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            agent = await _sign_in(chromium, api, *AGENT)
            await agent.click("#go-ready")
            await expect(agent.locator("#state")).to_have_text("ready", timeout=10_000)
            await expect(agent.locator("#preview-campaign option")).to_have_text(["续保回访"], timeout=10_000)
            await agent.click("#preview-next")
            await expect(agent.locator("#lead-name")).to_have_text("刘洋", timeout=10_000)
            await expect(agent.locator("#lead-campaign")).to_contain_text("续保回访")
            # The list's text is shown as text, never as markup.
            await expect(agent.locator("#lead-fields")).to_contain_text("<b>VIP</b>")
            assert await agent.locator("#lead-fields b").count() == 0
            await agent.click("#preview-dial")
            await expect(agent.locator("#preview-result")).to_have_text("ringing", timeout=15_000)
            # The call rings the agent's phone: the pop, and the lead's record for the campaign call.
            await expect(agent.locator("#pop")).to_be_visible(timeout=20_000)
            await expect(agent.locator("#campaign-disposition")).to_be_visible(timeout=10_000)
            await expect(agent.locator("#disposition option[value='callback']")).to_have_count(1)
            (lead,) = await api.request(
                "admin", "GET", "/api/dialer/campaigns/renewals/leads", params={"limit": 1}
            )
            await api.until("the attempt connected", lambda: api.attempt(lead["id"], "connected"), timeout=60)
            # "Call back tomorrow at 10:00" in the agent's own time (Shanghai): 02:00 UTC.
            tomorrow = (datetime.now(UTC) + timedelta(days=1)).astimezone(SHANGHAI).date()
            await agent.select_option("#disposition", "callback")
            await agent.fill("#callback-at", f"{tomorrow.isoformat()}T10:00")
            await agent.fill("#notes", "明天上午十点回电")
            await agent.click("#save-disposition")
            await expect(agent.locator("#saved")).to_contain_text("saved: scheduled", timeout=15_000)
            await expect(agent.locator("#lead-attempts")).to_contain_text("明天上午十点回电", timeout=10_000)
            await agent.screenshot(path=str(SCREENSHOTS / "agent-campaign.png"), full_page=True)

            boss = await _sign_in(chromium, api, *ADMIN)
            row = boss.locator("#campaigns tbody tr", has_text="续保回访")
            await expect(row).to_contain_text("running", timeout=15_000)
            await expect(row.locator("td").nth(5)).to_have_text("1")  # contacts in 24 h
            await boss.screenshot(path=str(SCREENSHOTS / "supervisor-campaigns.png"), full_page=True)
            await row.locator("button").click()
            await expect(row).to_contain_text("stopped", timeout=15_000)
        finally:
            await chromium.close()
    (after,) = [
        x
        for x in await api.request("admin", "GET", "/api/dialer/campaigns/renewals/leads")
        if x["id"] == lead["id"]
    ]
    expected = datetime.combine(tomorrow, dt_time(10), tzinfo=SHANGHAI)
    assert after["status"] == "scheduled" and datetime.fromisoformat(after["next_attempt_at"]) == expected
    campaign = await api.request("admin", "GET", "/api/dialer/campaigns/renewals")
    assert campaign["active"] is False


async def _sign_in(browser: Any, api: Api, username: str, password: str) -> Any:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 1000}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    page = await context.new_page()
    await page.goto(f"{api.platform.base_url}/console/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login")
    await page.wait_for_selector("#link.up", timeout=15_000)  # the websocket is live
    return page
