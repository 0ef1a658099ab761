"""End to end: the agent console and the supervisor's page in headless Chromium, on the real sandbox.

A SIPp caller with a Chinese name dials the IVR (DNIS 8002), chooses Chinese and then an agent; the
platform (``cti serve``) routes the call; SIPp phones answer as agent 1001 and as the supervisor's
phone (endpoint 1002). The pop carries the customer's card; the supervisor sees the agents by state
in the service's row, the charts get a point at the answer, and listens in. The agent saves a
disposition, consults agent 1002 (attended transfer: its phone is now 1002's agent phone), the
console shows the consultation from the ``call_control`` messages, and completes it. The
supervisor then whispers to and barges in on 1002's call from endpoint 1001: each time the PBX
rings that phone, it answers, and ChanSpy runs on 1002's own channel with the mode's options. That
the supervisor's voice reaches the agent (or both) is not checked: the sandbox's phones and callers
send no audio, so there is nothing to measure. The browser is Debian's ``chromium`` driven by
Playwright; nothing is faked. Screenshots of both pages are written to ``var/screenshots/``
(ignored by git), or to ``$CTI_SCREENSHOTS_DIR`` (``docs/screenshots`` to refresh the ones in the
docs), so an ordinary test run leaves the working tree clean.
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
from tests.support.platform import PlatformApi, PlatformProcess
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
    users = PlatformApi(platform)
    await users.login(*ADMIN)
    await wait_for_agi()
    hotline = await users.request(
        "admin", "POST", "/api/services", json={"dnis": IVR_DNIS, "name": "hotline"}
    )
    await users.request(
        "admin", "PUT", f"/api/routing/services/{hotline['id']}", json={"needs": [{"skill": "support"}]}
    )
    for agent in sandbox_pbx.agents:
        await users.request(
            "admin",
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


async def spy_channel(pbx: SandboxPbx, channel_id: str) -> list[str] | None:
    """The spy call ``channel_id`` (the supervisor's phone's channel), as ``core show channels
    concise`` gives it (name, context, exten, priority, state, application, data, ..., uniqueid),
    if it is there now."""
    text = await pbx.cli("core show channels concise")
    for line in text.splitlines():
        fields = line.split("!")
        if len(fields) > 6 and fields[-1] == channel_id:
            return fields
    return None


async def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not seen in {timeout} s: {what}"
        await asyncio.sleep(0.3)


async def test_a_popped_call_consulted_and_transferred_while_the_supervisor_watches_and_spies(
    sandbox_pbx: SandboxPbx, platform: PlatformProcess, browser: Any
) -> None:
    expect = playwright_api.expect
    users = PlatformApi(platform)
    await users.login(*ADMIN)
    await users.login("1002", AGENT_PASSWORD)
    customer = await users.request(
        "admin",
        "POST",
        "/api/customers",
        json={"name": "张伟", "tier": "vip", "language": "zh-CN", "notes": "<script>alert(1)</script> 老客户",
              "phones": [{"number": "+86 138 0013 8000"}]},
    )  # fmt: skip
    agent_port = {a.id: a.port for a in sandbox_pbx.agents}
    # Agent 1001's phone answers and stays on the line (the transfer ends its leg); endpoint 1002 is
    # first the supervisor's phone for this test and answers the one ChanSpy call.
    phones = [
        await sipp.start_agent_phone(port=agent_port["1001"], media_port=next(_ports), talk_ms=150_000),
        await sipp.start_agent_phone(port=agent_port["1002"], media_port=next(_ports), talk_ms=3000, calls=1),
    ]
    caller = None
    try:
        agent = await sign_in(browser, platform, "1001", AGENT_PASSWORD)
        assert agent.url.endswith("/console")
        boss = await sign_in(browser, platform, *SUPERVISOR)
        assert boss.url.endswith("/supervisor")

        # Logged in but not ready yet: the call will wait, and the supervisor sees it waiting.
        await agent.click("#go-not-ready")
        await expect(agent.locator("#state")).to_have_text("not_ready", timeout=10_000)
        # The hotline needs the support skill, which both agents have: both count in its row.
        await expect(boss.locator("#service-hotline td.agents")).to_have_text(
            "not_ready 1 · logged_out 1", timeout=10_000
        )
        port = next(_ports)
        caller = await sipp.call_with_keys(
            pbx_port=sandbox_pbx.sip_port, dnis=IVR_DNIS, caller=CALLER,
            keys=[(1500, "1"), (1500, "0")], port=port, media_port=port + 4, hold_ms=180_000,
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
        # The supervisor sees the agent's state change live, overall and in the service's row.
        await expect(boss.locator("#agent-1001 td.status")).to_have_text(
            re.compile("reserved|on_call"), timeout=10_000
        )
        await expect(boss.locator("#agent-1001 td.status")).to_have_text("on_call", timeout=15_000)
        await expect(boss.locator("#service-hotline td.agents")).to_have_text(
            "on_call 1 · logged_out 1", timeout=10_000
        )
        # The charts fill at the answer: this interval has a point for the hotline's service level.
        level = boss.locator("figure[data-figure='service_level'] circle[data-service='hotline']")
        await expect(level).to_have_count(1, timeout=20_000)

        # Listen: the supervisor's phone (endpoint 1002) gets a ChanSpy call on the agent's channel.
        await boss.fill("#spy-phone", "1002")
        async with boss.expect_response(lambda r: r.url.endswith("/api/supervisor/agents/1001/spy")) as spied:
            await boss.click("#agent-1001 button[data-action='listen']")
        response = await spied.value
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["channel"].startswith("PJSIP/1001-") and body["mode"] == "listen"
        listened = await phones[1].wait(30)
        assert listened.ok and listened.calls_ok == 1, listened.output[-2000:]
        await boss.screenshot(path=str(SCREENSHOTS / "supervisor.png"), full_page=True)

        # Wrap-up notes: disposition and notes go to the call log and show in the customer's history.
        await agent.select_option("#disposition", "resolved")
        await agent.fill("#notes", "客户询问账单，已解决")
        await agent.click("#save-disposition")
        await expect(agent.locator("#saved")).to_have_text("saved", timeout=10_000)
        await expect(agent.locator("#history tbody")).to_contain_text("客户询问账单，已解决", timeout=10_000)

        # Attended transfer to agent 1002 (now an agent's phone that answers and stays on).
        phones[1] = await sipp.start_agent_phone(
            port=agent_port["1002"], media_port=next(_ports), talk_ms=150_000
        )
        for step in ("login", "ready"):
            await users.request("1002", "POST", f"/api/routing/agents/1002/{step}")
        await agent.fill("#transfer-to", "1002")
        await agent.click("#consult-start")
        await expect(agent.locator("#consult-state")).to_have_text("consulting agent 1002", timeout=10_000)
        await expect(agent.locator("#consult-complete")).to_be_enabled()
        await expect(agent.locator("#consult-start")).to_be_disabled()

        async def target_answered() -> bool:
            text = await sandbox_pbx.cli("core show channels concise")
            return any(line.startswith("PJSIP/1002-") and "!Up!" in line for line in text.splitlines())

        await until(target_answered, "agent 1002's phone answering the consultation")
        await agent.screenshot(path=str(SCREENSHOTS / "agent-console.png"), full_page=True)
        await agent.click("#consult-complete")
        await expect(agent.locator("#consult-state")).to_have_text(
            "transferred to agent 1002", timeout=10_000
        )
        await expect(agent.locator("#consult-complete")).to_be_disabled()
        # Completed: 1001 wraps up (the console counts it down), 1002 has the caller.
        await expect(agent.locator("#state")).to_have_text("wrap_up", timeout=30_000)
        await expect(agent.locator("#wrapup")).to_be_visible()
        await expect(agent.locator("#wrapup-countdown")).to_have_text(re.compile(r"^([12][0-9]|30|[1-9])$"))
        await expect(boss.locator("#agent-1002 td.status")).to_have_text("on_call", timeout=15_000)
        await agent.click("#wrapup-done")
        await expect(agent.locator("#state")).to_have_text("ready", timeout=10_000)
        await agent.click("#go-logout")  # 1001's phone is the supervisor's now
        await expect(agent.locator("#state")).to_have_text("logged_out", timeout=10_000)

        # Whisper, then barge, on agent 1002's call from the supervisor's phone (endpoint 1001): the
        # PBX rings that phone, it answers, and ChanSpy runs on 1002's own channel with the mode's
        # options (w: the supervisor talks to the agent; B: to both).
        await phones[0].stop()
        phones[0] = await sipp.start_agent_phone(
            port=agent_port["1001"], media_port=next(_ports), talk_ms=3000, calls=2
        )
        await boss.fill("#spy-phone", "1001")
        spy_calls = []
        for mode, options in (("whisper", "qw"), ("barge", "qB")):
            async with boss.expect_response(
                lambda r: r.url.endswith("/api/supervisor/agents/1002/spy")
            ) as spied:
                await boss.click(f"#agent-1002 button[data-action='{mode}']")
            response = await spied.value
            assert response.status == 200, await response.text()
            body = await response.json()
            assert body["mode"] == mode and body["channel"].startswith("PJSIP/1002-")
            spy_calls.append(body["channel_id"])

            async def spying(channel_id: str = body["channel_id"]) -> list[str] | None:
                found = await spy_channel(sandbox_pbx, channel_id)
                return found if found is not None and found[4] == "Up" and found[5] == "ChanSpy" else None

            fields = await until(spying, f"the supervisor's phone answered and in ChanSpy ({mode})")
            assert fields[0].startswith("PJSIP/1001-") and fields[6] == f"{body['channel']},{options}", fields
        spied_calls = await phones[0].wait(30)
        assert spied_calls.ok and spied_calls.calls_ok == 2, spied_calls.output[-2000:]
        await users.request("1002", "POST", "/api/agents/1002/call/hangup")

        # The sandbox's phones and callers send no audio, and ChanSpy notices its own channel hung
        # up only with the next frame from the spied one: the spy calls end with the call.
        async def spies_gone() -> bool:
            return all([await spy_channel(sandbox_pbx, c) is None for c in spy_calls])

        await until(spies_gone, "the spy calls ended with the agent's call")
    finally:
        if caller is not None:
            await caller.stop()
        for phone in phones:
            await phone.stop()
    record = await users.request("admin", "GET", f"/api/customers/{customer['id']}")
    (call,) = [c for c in record["interactions"] if (c["ivr_inputs"] or {}).get("main_menu.choice") == "0"]
    assert call["disposition"] == "resolved" and call["notes"] == "客户询问账单，已解决"
    assert call["agent"] == "1002"  # one call log row through the transfer, with the agent who had it last
