"""End to end: call control on the real sandbox Asterisk.

A SIPp caller dials the hold DNIS; ``cti serve`` routes it to agent 1001 (a SIPp phone that answers
and stays on the line); then the agent, over HTTP, holds and resumes, transfers (blind to an agent,
to a service, to an outside number; attended to an agent) or hangs up. Each test reads the outcome
back from the call log (one row for the whole conversation, with the agent who had it last), the
agents' states, and Asterisk itself (``core show channels``, ``bridge show all``). Nothing is faked:
the outside number rings a SIPp phone on the sandbox's ``outside`` endpoint.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_routing import ADMIN, AGENT_PASSWORD, Api
from tests.support import sipp
from tests.support.platform import PlatformProcess
from tests.support.sandbox import SIPP_PORT_BASE, TEST_PORTS, SandboxPbx

pytestmark = [pytest.mark.sandbox]

WRAP_UP = 30  # long enough to see the transferring agent in wrap-up
TALK_MS = 60_000  # the agents' phones stay on the line; the tests end the calls
# This module's own slice of the SIPp ports, inside this session's 2,000 (sessions' port offsets are
# 100 apart, and SIPP_PORT_BASE moves 20 ports per unit of offset).
_ports = itertools.count(SIPP_PORT_BASE + 1600, 8)


def ports() -> tuple[int, int]:
    port = next(_ports)
    return port, port + 4


class CallApi(Api):
    async def control(self, who: str, agent_id: str, action: str, json: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with httpx.AsyncClient(base_url=self.platform.base_url, timeout=10.0, headers=headers) as c:
            return await c.post(f"/api/agents/{agent_id}/call/{action}", json=json)

    async def ok(self, who: str, agent_id: str, action: str, json: Any = None) -> dict[str, Any]:
        response = await self.control(who, agent_id, action, json)
        assert response.status_code == 200, f"{action}: {response.status_code} {response.text}"
        return dict(response.json())

    async def only_row(self, ani: str, timeout: float = 30.0) -> dict[str, Any]:
        """The one call log row of ``ani`` once the call ended (a transfer must not split it)."""
        row = await self.wait_for_call(ani, timeout=timeout)
        rows = await self.calls(ani=ani)
        assert len(rows) == 1, rows
        return row


async def until(check: Callable[[], Awaitable[bool]], what: str, api: Api, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not {what}\n{api.platform.log_tail()}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def api(sandbox_pbx: SandboxPbx, tmp_path: Path):
    platform = PlatformProcess.configure(
        tmp_path / "platform",
        ami_port=sandbox_pbx.ami_port,
        ami_secret_file=sandbox_pbx.instance_dir / "ami.secret",
        extra={"CTI_IVR__ENABLED": "false"},
    )
    await platform.add_user(*ADMIN, "admin")
    for agent in sandbox_pbx.agents:
        await platform.add_user(agent.id, AGENT_PASSWORD, "agent")
    await platform.start()
    client = CallApi(platform)
    await client.login(*ADMIN)
    for agent in sandbox_pbx.agents:
        await client.login(agent.id, AGENT_PASSWORD)
    support = await client.request(
        "admin", "POST", "/api/services", json={"dnis": sandbox_pbx.hold_dnis, "name": "support"}
    )
    sales = await client.request("admin", "POST", "/api/services", json={"dnis": "8101", "name": "sales"})
    for service, skill in ((support, "mandarin"), (sales, "english")):
        await client.request(
            "admin",
            "PUT",
            f"/api/routing/services/{service['id']}",
            json={"needs": [{"skill": skill, "min_level": 1}], "wrap_up_seconds": WRAP_UP},
        )
    skills = {"1001": {"mandarin": 8}, "1002": {"mandarin": 3, "english": 6}}
    for agent_id, levels in skills.items():
        await client.request(
            "admin",
            "PUT",
            f"/api/routing/agents/{agent_id}",
            json={"name": f"agent {agent_id}", "skills": levels},
        )
    try:
        yield client
    finally:
        await platform.stop()


async def phones(pbx: SandboxPbx) -> list[sipp.SippProcess]:
    out: list[sipp.SippProcess] = []
    try:
        for agent in pbx.agents:
            phone = await sipp.start_agent_phone(port=agent.port, media_port=next(_ports), talk_ms=TALK_MS)
            out.append(phone)
    except BaseException:
        await stop_all(out)  # never leave a phone behind on the agents' ports
        raise
    return out


def place(pbx: SandboxPbx, number: str) -> asyncio.Task[sipp.SippResult]:
    port, media = ports()
    return asyncio.ensure_future(
        sipp.call(
            pbx_port=pbx.sip_port,
            dnis=pbx.hold_dnis,
            caller=sipp.Caller("张伟", number),
            port=port,
            media_port=media,
            timeout=90,
        )
    )


async def connected_to_1001(pbx: SandboxPbx, api: CallApi, number: str) -> asyncio.Task[sipp.SippResult]:
    """A caller talking to agent 1001 (the only ready agent)."""
    await api.agent("1001", "login")
    await api.agent("1001", "ready")
    caller = place(pbx, number)
    await api.wait_for_state("1001", "on_call")
    return caller


async def channels(pbx: SandboxPbx) -> list[list[str]]:
    """``core show channels concise``: name, context, exten, priority, state, application, ..."""
    text = await pbx.cli("core show channels concise")
    return [line.split("!") for line in text.splitlines() if "!" in line]


async def applications(pbx: SandboxPbx) -> dict[str, str]:
    """Each live channel's name prefix (``PJSIP/1001``, ``PJSIP/trunk``) → the application it runs."""
    return {c[0].rsplit("-", 1)[0]: c[5] for c in await channels(pbx)}


async def stop_all(procs: list[sipp.SippProcess]) -> None:
    for proc in procs:
        await proc.stop()


async def test_hold_then_resume(sandbox_pbx: SandboxPbx, api: CallApi) -> None:
    agent_phones = await phones(sandbox_pbx)
    try:
        caller = await connected_to_1001(sandbox_pbx, api, "13800000101")
        held = await api.ok("1001", "1001", "hold")
        assert held["state"] == "held"

        async def on_hold() -> bool:
            apps = await applications(sandbox_pbx)
            return apps.get("PJSIP/trunk") == "MusicOnHold" and apps.get("PJSIP/1001") == "Wait"

        await until(on_hold, "the caller on music on hold and the agent's leg waiting", api)
        assert (await api.state("1001"))["status"] == "on_call"
        assert (await api.control("1001", "1001", "hold")).status_code == 409  # already on hold
        # A supervisor may act for the agent; another agent may not.
        assert (await api.control("1002", "1001", "resume")).status_code == 403
        assert (await api.ok("admin", "1001", "resume"))["state"] == "talking"

        async def bridged() -> bool:
            text = await sandbox_pbx.cli("bridge show all")
            apps = await applications(sandbox_pbx)
            return "MusicOnHold" not in apps.values() and "Wait" not in apps.values() and " 2 " in text

        await until(bridged, "the caller and the agent bridged again", api)
        await asyncio.sleep(1)
        assert (await api.ok("1001", "1001", "hangup"))["state"] == "hung_up"
        row = await api.only_row("13800000101")
        assert (await caller).ok
    finally:
        await stop_all(agent_phones)
    assert row["agent"] == "1001"
    assert (await api.state("1001"))["status"] == "wrap_up"
    assert await channels(sandbox_pbx) == []


async def test_hangup_from_the_api(sandbox_pbx: SandboxPbx, api: CallApi) -> None:
    agent_phones = await phones(sandbox_pbx)
    try:
        caller = await connected_to_1001(sandbox_pbx, api, "13800000102")
        assert (await api.control("1002", "1002", "hangup")).status_code == 409  # 1002 has no call
        await api.ok("1001", "1001", "hangup")
        row = await api.only_row("13800000102")
        assert (await caller).ok  # the caller saw the PBX hang up
    finally:
        await stop_all(agent_phones)
    assert row["agent"] == "1001" and row["connected_at"]
    state = await api.state("1001")
    assert state["status"] == "wrap_up" and state["calls_handled"] == 1
    assert await channels(sandbox_pbx) == []


async def test_blind_transfer_to_an_agent(sandbox_pbx: SandboxPbx, api: CallApi) -> None:
    agent_phones = await phones(sandbox_pbx)
    try:
        caller = await connected_to_1001(sandbox_pbx, api, "13800000103")
        refused = await api.control("1001", "1001", "transfer", {"mode": "blind", "to": {"agent": "1002"}})
        assert refused.status_code == 409 and "not ready" in refused.text  # 1002 is logged out
        await api.agent("1002", "login")
        await api.agent("1002", "ready")
        result = await api.ok("1001", "1001", "transfer", {"mode": "blind", "to": {"agent": "1002"}})
        assert result["target"] == {"agent": "1002"}
        await api.wait_for_state("1002", "on_call")
        assert (await api.state("1001"))["status"] == "wrap_up"
        await api.ok("1002", "1002", "hangup")
        row = await api.only_row("13800000103")
        assert (await caller).ok
    finally:
        await stop_all(agent_phones)
    assert row["agent"] == "1002"
    assert (await api.state("1002"))["status"] == "wrap_up"
    assert (await api.state("1001"))["calls_handled"] == 1


async def test_blind_transfer_to_a_service(sandbox_pbx: SandboxPbx, api: CallApi) -> None:
    agent_phones = await phones(sandbox_pbx)
    try:
        caller = await connected_to_1001(sandbox_pbx, api, "13800000104")
        await api.agent("1002", "login")
        await api.agent("1002", "ready")
        # Routing chose 1001 for support (mandarin 8); sales needs english: only 1002 has it.
        await api.ok("1001", "1001", "transfer", {"mode": "blind", "to": {"service": "8101"}})
        await api.wait_for_state("1002", "on_call")
        assert (await api.state("1001"))["status"] == "wrap_up"
        decisions = await api.request("admin", "GET", "/api/routing/decisions")
        assert decisions[0]["service"] == "sales" and decisions[0]["agent_id"] == "1002"
        await api.ok("admin", "1002", "hangup")
        row = await api.only_row("13800000104")
        assert (await caller).ok
    finally:
        await stop_all(agent_phones)
    assert row["agent"] == "1002"


async def test_attended_transfer_completed(sandbox_pbx: SandboxPbx, api: CallApi) -> None:
    agent_phones = await phones(sandbox_pbx)
    try:
        caller = await connected_to_1001(sandbox_pbx, api, "13800000105")
        await api.agent("1002", "login")
        await api.agent("1002", "ready")
        result = await api.ok("1001", "1001", "transfer", {"mode": "attended", "to": {"agent": "1002"}})
        assert result["state"] == "consulting"
        assert (await api.state("1002"))["status"] == "reserved"

        async def consulting() -> bool:
            apps = await applications(sandbox_pbx)
            return (
                apps.get("PJSIP/trunk") == "MusicOnHold"
                and apps.get("PJSIP/1001") == "Dial"
                and "PJSIP/1002" in apps
            )

        await until(consulting, "the agent consulting the target", api)
        await asyncio.sleep(1.5)  # the target's phone answers after 200 ms; they talk a moment
        assert (await api.state("1001"))["status"] == "on_call"
        await api.ok("1001", "1001", "transfer/complete")
        await api.wait_for_state("1002", "on_call")
        assert (await api.state("1001"))["status"] == "wrap_up"
        await api.ok("1002", "1002", "hangup")
        row = await api.only_row("13800000105")
        assert (await caller).ok
    finally:
        await stop_all(agent_phones)
    assert row["agent"] == "1002"


async def test_attended_transfer_cancelled(sandbox_pbx: SandboxPbx, api: CallApi) -> None:
    agent_phones = await phones(sandbox_pbx)
    try:
        caller = await connected_to_1001(sandbox_pbx, api, "13800000107")
        await api.agent("1002", "login")
        await api.agent("1002", "ready")
        await api.ok("1001", "1001", "transfer", {"mode": "attended", "to": {"agent": "1002"}})

        async def consulting() -> bool:
            apps = await applications(sandbox_pbx)
            return apps.get("PJSIP/trunk") == "MusicOnHold" and "PJSIP/1002" in apps

        await until(consulting, "the agent consulting the target", api)
        await asyncio.sleep(1.0)
        assert (await api.ok("1001", "1001", "transfer/cancel"))["state"] == "talking"
        assert (await api.state("1002"))["status"] == "ready"

        async def back_with_the_caller() -> bool:
            apps = await applications(sandbox_pbx)
            return "PJSIP/1002" not in apps and "MusicOnHold" not in apps.values() and "PJSIP/1001" in apps

        await until(back_with_the_caller, "the agent back with the caller", api)
        assert (await api.state("1001"))["status"] == "on_call"
        await api.ok("1001", "1001", "hangup")
        row = await api.only_row("13800000107")
        assert (await caller).ok
    finally:
        await stop_all(agent_phones)
    assert row["agent"] == "1001"
    assert (await api.state("1001"))["status"] == "wrap_up"
    assert (await api.state("1002"))["status"] == "ready"
    assert await channels(sandbox_pbx) == []


async def test_transfer_to_an_outside_number(sandbox_pbx: SandboxPbx, api: CallApi) -> None:
    agent_phones = await phones(sandbox_pbx)
    outside = await sipp.start_agent_phone(port=TEST_PORTS["outside"], media_port=next(_ports), talk_ms=3000)
    try:
        caller = await connected_to_1001(sandbox_pbx, api, "13800000106")
        bad = await api.control("1001", "1001", "transfer", {"mode": "blind", "to": {"number": "+86 1380"}})
        assert bad.status_code == 422
        result = await api.ok(
            "1001", "1001", "transfer", {"mode": "blind", "to": {"number": "+8613800138000"}}
        )
        assert result["target"] == {"number": "8613800138000"}
        assert (await api.state("1001"))["status"] == "wrap_up"

        async def outside_rings() -> bool:
            return "PJSIP/outside" in await applications(sandbox_pbx)

        await until(outside_rings, "the outside number dialled", api)
        # The outside phone answers, talks 3 s and hangs up: the caller's call ends with it.
        row = await api.only_row("13800000106", timeout=30)
        assert (await caller).ok
    finally:
        await stop_all(agent_phones)
        await outside.stop()
    assert row["connected_at"] and row["ended_at"]
    assert row["agent"] == "1001"  # the last agent; the outside line is not one
    assert await channels(sandbox_pbx) == []
