"""End to end: skills-based routing on the real sandbox Asterisk.

SIPp callers dial the hold DNIS, ``cti serve`` routes them, and SIPp phones on the agents' ports
answer (or let it ring). Agents log in and go ready over HTTP as their own users; the outcome is read
back from the call logs and routing's own views. Nothing is faked.

Agents: 1001 speaks mandarin at level 8, 1002 at level 3 and english at 6. The hold service needs
mandarin at level 1 or better and routes ``best_skill``, so 1001 is the first choice when both are
ready. The agents' dial timeout is lowered to a few seconds for this module (a ring-no-answer takes
that long) by re-rendering the test instance's configuration; the default is left alone.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support import sipp
from tests.support.platform import PlatformApi, PlatformProcess
from tests.support.sandbox import SIPP_PORT_BASE, SandboxPbx

from dialplans.render import PbxConfigParams

pytestmark = [pytest.mark.sandbox]

ADMIN = ("admin", "admin-password-1")
AGENT_PASSWORD = "agent-password-1"
DIAL_TIMEOUT = 5
DEFAULT_DIAL_TIMEOUT = PbxConfigParams.__dataclass_fields__["dial_timeout"].default
WRAP_UP = 8
_ports = itertools.count(SIPP_PORT_BASE + 3000, 8)  # this module's own slice of the SIPp ports


def ports() -> tuple[int, int]:
    port = next(_ports)
    return port, port + 4


@pytest.fixture(scope="module")
def routing_pbx(sandbox_pbx: SandboxPbx) -> Iterator[SandboxPbx]:
    """The test instance with a short ring time at the agents; restored to its own configuration after.

    Only the agents' dial timeout changes: the session's rendered files are taken as they are, so this
    module runs the same PBX as every other one, whatever services the session configured.
    """
    files = dict(sandbox_pbx.files)
    plan = files["extensions.conf"]
    for agent in sandbox_pbx.agents:
        line = f" same => n,Dial(PJSIP/{agent.id},{DEFAULT_DIAL_TIMEOUT},r)"  # in [cti-agents]
        assert line in plan, f"the dialplan no longer dials agent {agent.id} as expected"
        plan = plan.replace(line, line.replace(f",{DEFAULT_DIAL_TIMEOUT},", f",{DIAL_TIMEOUT},"))
    files["extensions.conf"] = plan
    asyncio.run(sandbox_pbx.sandbox.up(files))
    try:
        yield sandbox_pbx
    finally:
        asyncio.run(sandbox_pbx.sandbox.up(sandbox_pbx.files))


class Api(PlatformApi):
    """The platform over HTTP as its admin and as each agent."""

    async def agent(self, agent_id: str, action: str) -> dict[str, Any]:
        return dict(await self.request(agent_id, "POST", f"/api/routing/agents/{agent_id}/{action}"))

    async def state(self, agent_id: str) -> dict[str, Any]:
        return dict((await self.request("admin", "GET", f"/api/routing/agents/{agent_id}"))["state"])

    async def calls(self, **params: Any) -> list[dict[str, Any]]:
        return list(await self.request("admin", "GET", "/api/calls", params={"limit": 1000, **params}))

    async def wait_for_call(
        self, ani: str, *, connected: bool = True, timeout: float = 40.0
    ) -> dict[str, Any]:
        """The call log of ``ani`` once it ended (connected to an agent, if asked)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = await self.calls(ani=ani)
            if rows and rows[0]["ended_at"] and (rows[0]["connected_at"] or not connected):
                return rows[0]
            await asyncio.sleep(0.25)
        raise AssertionError(f"no finished call from {ani}: {rows}\n{self.platform.log_tail()}")

    async def wait_for_state(self, agent_id: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = await self.state(agent_id)
            if state["status"] == status:
                return state
            await asyncio.sleep(0.2)
        raise AssertionError(f"agent {agent_id} is {state}, not {status}\n{self.platform.log_tail()}")

    async def waiting(self) -> int:
        queues = await self.request("admin", "GET", "/api/routing/queues")
        return sum(len(q["waiting"]) for q in queues)


@pytest.fixture
async def api(routing_pbx: SandboxPbx, tmp_path: Path):
    platform = PlatformProcess.configure(
        tmp_path / "platform",
        ami_port=routing_pbx.ami_port,
        ami_secret_file=routing_pbx.instance_dir / "ami.secret",
        # The IVR's FastAGI server is not needed here, and its port may be another session's.
        extra={"CTI_IVR__ENABLED": "false", "CTI_ROUTING__DEFAULT_WRAP_UP_SECONDS": "0"},
    )
    await platform.add_user(*ADMIN, "admin")
    for agent in routing_pbx.agents:
        await platform.add_user(agent.id, AGENT_PASSWORD, "agent")
    await platform.start()
    client = Api(platform)
    await client.login(*ADMIN)
    for agent in routing_pbx.agents:
        await client.login(agent.id, AGENT_PASSWORD)
    service = await client.request(
        "admin", "POST", "/api/services", json={"dnis": routing_pbx.hold_dnis, "name": "support"}
    )
    await client.request(
        "admin",
        "PUT",
        f"/api/routing/services/{service['id']}",
        json={"needs": [{"skill": "mandarin", "min_level": 1}], "wrap_up_seconds": WRAP_UP},
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


async def phone(pbx: SandboxPbx, agent_id: str, *, answers: bool = True) -> sipp.SippProcess:
    (agent,) = [a for a in pbx.agents if a.id == agent_id]
    media = next(_ports)
    if answers:
        return await sipp.start_agent_phone(port=agent.port, media_port=media, talk_ms=2000)
    return await sipp.start_ringing_phone(port=agent.port, media_port=media)


def place(pbx: SandboxPbx, number: str, name: str = "张伟") -> asyncio.Task[sipp.SippResult]:
    """A caller who waits on hold until the agent ends the call (or 60 s)."""
    port, media = ports()
    return asyncio.ensure_future(
        sipp.call(
            pbx_port=pbx.sip_port,
            dnis=pbx.hold_dnis,
            caller=sipp.Caller(name, number),
            port=port,
            media_port=media,
        )
    )


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def go_ready(api: Api, *agents: str) -> None:
    for agent_id in agents:
        await api.agent(agent_id, "login")
        await api.agent(agent_id, "ready")


async def test_the_call_goes_to_the_best_skilled_ready_agent(routing_pbx: SandboxPbx, api: Api) -> None:
    phones = [await phone(routing_pbx, "1001"), await phone(routing_pbx, "1002")]
    try:
        await go_ready(api, "1001", "1002")
        caller = place(routing_pbx, "13800000001")
        row = await api.wait_for_call("13800000001")
        assert (await caller).ok
    finally:
        for p in phones:
            await p.stop()
    assert row["agent"] == "1001"
    assert ts(row["started_at"]) < ts(row["connected_at"]) < ts(row["ended_at"])
    decisions = await api.request("admin", "GET", "/api/routing/decisions")
    assert decisions[0]["agent_id"] == "1001" and decisions[0]["outcome"] == "connect"
    assert [c["agent_id"] for c in decisions[0]["candidates"]] == ["1001", "1002"]
    assert decisions[0]["call"].endswith(row["linkedid"])


async def test_a_call_waits_until_an_agent_becomes_ready(routing_pbx: SandboxPbx, api: Api) -> None:
    agent_phone = await phone(routing_pbx, "1002")
    try:
        await api.agent("1002", "login")
        caller = place(routing_pbx, "13800000002")
        deadline = time.monotonic() + 15
        while await api.waiting() == 0:
            assert time.monotonic() < deadline, api.platform.log_tail()
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        assert await api.waiting() == 1  # nobody ready: still waiting
        ready_at = datetime.now().astimezone()
        await api.agent("1002", "ready")
        row = await api.wait_for_call("13800000002")
        assert (await caller).ok
    finally:
        await agent_phone.stop()
    assert row["agent"] == "1002"
    assert ts(row["connected_at"]) >= ready_at
    assert await api.waiting() == 0


async def test_a_ring_no_answer_makes_the_agent_not_ready_and_the_call_reaches_the_other(
    routing_pbx: SandboxPbx, api: Api
) -> None:
    phones = [await phone(routing_pbx, "1001", answers=False), await phone(routing_pbx, "1002")]
    try:
        await go_ready(api, "1001", "1002")
        caller = place(routing_pbx, "13800000003")
        row = await api.wait_for_call("13800000003", timeout=DIAL_TIMEOUT + 40)
        assert (await caller).ok
    finally:
        for p in phones:
            await p.stop()
    assert row["agent"] == "1002"
    # The caller rang at 1001 for the whole dial timeout before reaching 1002.
    assert (ts(row["connected_at"]) - ts(row["started_at"])).total_seconds() >= DIAL_TIMEOUT
    state = await api.state("1001")
    assert state["status"] == "not_ready" and state["reason"] == "ring_no_answer"
    decisions = await api.request("admin", "GET", "/api/routing/decisions")
    assert [d["agent_id"] for d in decisions[:2]] == ["1002", "1001"]


async def test_an_agent_in_wrap_up_is_not_offered_a_call_until_it_ends(
    routing_pbx: SandboxPbx, api: Api
) -> None:
    agent_phone = await phone(routing_pbx, "1001")
    try:
        await go_ready(api, "1001")
        first = place(routing_pbx, "13800000004")
        row1 = await api.wait_for_call("13800000004")
        assert (await first).ok
        state = await api.wait_for_state("1001", "wrap_up")
        assert state["calls_handled"] == 1
        second = place(routing_pbx, "13800000005")
        await asyncio.sleep(3)
        assert (await api.state("1001"))["status"] == "wrap_up"
        assert await api.waiting() == 1
        row2 = await api.wait_for_call("13800000005", timeout=WRAP_UP + 30)
        assert (await second).ok
    finally:
        await agent_phone.stop()
    assert row2["agent"] == "1001"
    # Offered only once the service's wrap-up after the first call was over.
    assert (ts(row2["connected_at"]) - ts(row1["ended_at"])).total_seconds() >= WRAP_UP - 0.5


async def test_a_vip_caller_is_answered_before_a_caller_who_waited_longer(
    routing_pbx: SandboxPbx, api: Api
) -> None:
    await api.request(
        "admin",
        "POST",
        "/api/customers",
        json={"name": "王芳", "tier": "vip", "phones": [{"number": "+86 139 0000 0007"}]},
    )
    agent_phone = await phone(routing_pbx, "1001")
    try:
        await api.agent("1001", "login")
        regular = place(routing_pbx, "13800000006", "陈明")
        await asyncio.sleep(2)
        vip = place(routing_pbx, "13900000007", "王芳")
        deadline = time.monotonic() + 15
        while await api.waiting() < 2:
            assert time.monotonic() < deadline, api.platform.log_tail()
            await asyncio.sleep(0.2)
        await api.agent("1001", "ready")
        vip_row = await api.wait_for_call("13900000007")
        regular_row = await api.wait_for_call("13800000006", timeout=WRAP_UP + 40)
        assert (await vip).ok and (await regular).ok
    finally:
        await agent_phone.stop()
    assert vip_row["agent"] == regular_row["agent"] == "1001"
    assert ts(vip_row["connected_at"]) < ts(regular_row["connected_at"])
    assert ts(regular_row["started_at"]) < ts(vip_row["started_at"])
