"""End to end: the agent console and the supervisor's page in headless Chromium, on the real sandbox.

A SIPp caller with a Chinese name dials the IVR (DNIS 8002), chooses Chinese and then an agent; the
platform (``cti serve``) routes the call; SIPp phones answer as agent 1001 and as the supervisor's
phone (endpoint 1002). The browser is Debian's ``chromium`` driven by Playwright; nothing is faked.
Screenshots of both pages are written to ``var/screenshots/`` (ignored by git), or to
``$CTI_SCREENSHOTS_DIR`` (``docs/screenshots`` to refresh the ones in the docs), so an ordinary test
run leaves the working tree clean.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import sipp
from tests.support.platform import PlatformProcess
from tests.support.sandbox import IVR_AGI_PORT, IVR_DNIS, SIPP_PORT_BASE, SandboxPbx

pytestmark = [pytest.mark.sandbox]

playwright_api = pytest.importorskip("playwright.async_api")

ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = Path(os.environ.get("CTI_SCREENSHOTS_DIR") or ROOT / "var" / "screenshots")
FLOWS = ROOT / "tests" / "data" / "ivr"
CHROMIUM = "/usr/bin/chromium"
ADMIN = ("admin", "admin-password-1")
SUPERVISOR = ("boss", "boss-password-1")
AGENT_PASSWORD = "agent-password-1"
CALLER = sipp.Caller("张伟", "+8613800138000")
_ports = itertools.count(SIPP_PORT_BASE + 7000, 8)  # this module's own slice of the SIPp ports


async def wait_for_agi(timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", IVR_AGI_PORT), timeout=0.5):
                return
        except OSError:
            await asyncio.sleep(0.3)
    raise TimeoutError(f"FastAGI not listening on {IVR_AGI_PORT}")


async def api(platform: PlatformProcess, method: str, path: str, **kwargs: Any) -> Any:
    async with platform.client() as client:
        response = await client.request(method, path, **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response.json() if response.content else None


@pytest.fixture
async def platform(sandbox_pbx: SandboxPbx, tmp_path: Path) -> AsyncIterator[PlatformProcess]:
    platform = PlatformProcess.configure(
        tmp_path / "platform",
        ami_port=sandbox_pbx.ami_port,
        ami_secret_file=sandbox_pbx.instance_dir / "ami.secret",
        extra={
            "CTI_SANDBOX__INSTANCE": sandbox_pbx.settings.sandbox.instance,
            "CTI_SANDBOX__CACHE_DIR": str(sandbox_pbx.settings.sandbox.cache_dir),
            "CTI_IVR__AGI_PORT": str(IVR_AGI_PORT),
            "CTI_IVR__FLOWS_DIR": str(FLOWS),
            "CTI_ROUTING__DEFAULT_WRAP_UP_SECONDS": "30",
        },
    )
    await platform.add_user(*ADMIN, "admin")
    await platform.add_user(*SUPERVISOR, "supervisor")
    for agent in sandbox_pbx.agents:
        await platform.add_user(agent.id, AGENT_PASSWORD, "agent")
    await platform.start()
    await platform.login(*ADMIN)
    await wait_for_agi()
    await api(platform, "POST", "/api/services", json={"dnis": IVR_DNIS, "name": "hotline"})
    for agent in sandbox_pbx.agents:
        await api(
            platform,
            "PUT",
            f"/api/routing/agents/{agent.id}",
            json={
                "name": f"agent {agent.id}",
                "skills": {"billing": 5, "support": 5},
                "languages": ["zh", "en"],
            },
        )
    try:
        yield platform
    finally:
        await platform.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield chromium
        finally:
            await chromium.close()


async def sign_in(browser: Any, platform: PlatformProcess, username: str, password: str) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    await page.goto(f"{platform.base_url}/console/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login")
    await page.wait_for_selector("#link.up", timeout=15_000)  # the websocket is live
    return page


async def test_agent_takes_a_popped_call_and_the_supervisor_watches_and_listens(
    sandbox_pbx: SandboxPbx, platform: PlatformProcess, browser: Any
) -> None:
    expect = playwright_api.expect
    customer = await api(
        platform,
        "POST",
        "/api/customers",
        json={"name": "张伟", "tier": "vip", "language": "zh-CN", "notes": "<script>alert(1)</script> 老客户",
              "phones": [{"number": "+86 138 0013 8000"}]},
    )  # fmt: skip
    agent_port = {a.id: a.port for a in sandbox_pbx.agents}
    # Agent 1001's phone answers and talks long enough for the supervisor to listen in; endpoint 1002
    # is the supervisor's phone for this test and answers the one ChanSpy call.
    agent_phone = await sipp.start_agent_phone(
        port=agent_port["1001"], media_port=next(_ports), talk_ms=15000
    )
    boss_phone = await sipp.start_agent_phone(
        port=agent_port["1002"], media_port=next(_ports), talk_ms=3000, calls=1
    )
    caller = None
    try:
        agent = await sign_in(browser, platform, "1001", AGENT_PASSWORD)
        assert agent.url.endswith("/console")
        boss = await sign_in(browser, platform, *SUPERVISOR)
        assert boss.url.endswith("/supervisor")

        # Logged in but not ready yet: the call will wait, and the supervisor sees it waiting.
        await agent.click("#go-not-ready")
        await expect(agent.locator("#state")).to_have_text("not_ready", timeout=10_000)
        port = next(_ports)
        caller = await sipp.call_with_keys(
            pbx_port=sandbox_pbx.sip_port, dnis=IVR_DNIS, caller=CALLER,
            keys=[(1500, "1"), (1500, "0")], port=port, media_port=port + 4, hold_ms=40000,
        )  # fmt: skip
        waiting = boss.locator("#services td.waiting", has_text="1")
        await expect(waiting).to_have_count(1, timeout=30_000)
        await boss.screenshot(path=str(SCREENSHOTS / "supervisor-waiting.png"), full_page=True)

        # The agent goes ready: the pop comes with the customer's card, tier and IVR choice.
        await agent.click("#go-ready")
        await expect(agent.locator("#pop-name")).to_have_text("张伟", timeout=15_000)
        await expect(agent.locator("#pop-tier")).to_have_text("vip")
        await expect(agent.locator("#pop-inputs")).to_contain_text("main_menu.choice=0")
        await expect(agent.locator("#pop-ivr")).to_contain_text("main_menu")
        # Notes are text, never markup.
        await expect(agent.locator("#pop-notes")).to_have_text("<script>alert(1)</script> 老客户")
        # The supervisor sees the agent's state change live.
        await expect(boss.locator("#agent-1001 td.status")).to_have_text(
            re.compile("reserved|on_call"), timeout=10_000
        )
        await expect(boss.locator("#agent-1001 td.status")).to_have_text("on_call", timeout=15_000)

        # Listen: the supervisor's phone (endpoint 1002) gets a ChanSpy call on the agent's channel.
        await boss.fill("#spy-phone", "1002")
        async with boss.expect_response(lambda r: r.url.endswith("/api/supervisor/agents/1001/spy")) as spied:
            await boss.click("#agent-1001 button[data-action='listen']")
        response = await spied.value
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["channel"].startswith("PJSIP/1001-") and body["mode"] == "listen"
        listened = await boss_phone.wait(30)
        assert listened.ok and listened.calls_ok == 1, listened.output[-2000:]
        await boss.screenshot(path=str(SCREENSHOTS / "supervisor.png"), full_page=True)

        # Wrap-up: disposition and notes go to the call log and show in the customer's history.
        await agent.select_option("#disposition", "resolved")
        await agent.fill("#notes", "客户询问账单，已解决")
        await agent.click("#save-disposition")
        await expect(agent.locator("#saved")).to_have_text("saved", timeout=10_000)
        await expect(agent.locator("#history tbody")).to_contain_text("客户询问账单，已解决", timeout=10_000)
        await agent.screenshot(path=str(SCREENSHOTS / "agent-console.png"), full_page=True)
        # The agent's phone ends the call: wrap-up starts and the console counts it down.
        await expect(agent.locator("#state")).to_have_text("wrap_up", timeout=30_000)
        await expect(agent.locator("#wrapup")).to_be_visible()
        await expect(agent.locator("#wrapup-countdown")).to_have_text(re.compile(r"^([12][0-9]|30|[1-9])$"))
        await agent.click("#wrapup-done")
        await expect(agent.locator("#state")).to_have_text("ready", timeout=10_000)
    finally:
        if caller is not None:
            await caller.stop()
        await agent_phone.stop()
        await boss_phone.stop()
    record = await api(platform, "GET", f"/api/customers/{customer['id']}")
    (call,) = [c for c in record["interactions"] if c["agent"] == "1001"]
    assert call["disposition"] == "resolved" and call["notes"] == "客户询问账单，已解决"
    assert call["ivr_inputs"]["main_menu.choice"] == "0"
