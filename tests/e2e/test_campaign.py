"""End to end: progressive and predictive campaigns dialled by ``cti serve`` on the real sandbox.

One platform for the module. The campaign loop dials SIPp "customers" through the PBX's outside
endpoint (one SIPp answers every number; the number's last digit says how the customer behaves:
``sandbox.traffic.CUSTOMER_BEHAVIOURS``), AMD listens to what they send, routing redirects answered
people to the SIPp agent phones, and the attempts, the leads' retry schedule and the call log are
read back over HTTP. Nothing is faked.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from tests.support import sipp
from tests.support.platform import PlatformApi, PlatformProcess
from tests.support.sandbox import SIPP_PORT_BASE, TEST_PORTS, SandboxPbx

from sandbox.traffic import Customers, start_customers

pytestmark = [pytest.mark.sandbox, pytest.mark.asyncio(loop_scope="module")]

ADMIN = ("admin", "admin-password-1")
AGENT_PASSWORD = "agent-password-1"
_ports = itertools.count(SIPP_PORT_BASE + 6000, 8)  # this module's own slice of the SIPp ports
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Api(PlatformApi):
    until_timeout = 60.0

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("admin", "GET", path, params=params)

    async def agent(self, agent_id: str, action: str) -> None:
        await self.request(agent_id, "POST", f"/api/routing/agents/{agent_id}/{action}")

    async def leads(self, campaign: str) -> dict[str, dict[str, Any]]:
        rows = await self.get(f"/api/dialer/campaigns/{campaign}/leads", limit=1000)
        return {row["phone"]: row for row in rows}

    async def attempts(self, lead_id: int) -> list[dict[str, Any]]:
        return list(await self.get(f"/api/dialer/leads/{lead_id}/attempts"))

    async def settled(
        self, campaign: str, phones: list[str], timeout: float = 90.0
    ) -> dict[str, dict[str, Any]]:
        """The leads of ``phones`` once none is ``new`` or ``dialling`` (settled, or refused)."""

        async def probe() -> dict[str, dict[str, Any]] | None:
            leads = await self.leads(campaign)
            if all(leads[p]["status"] in ("scheduled", "done") for p in phones):
                return leads
            return None

        return dict(await self.until(f"leads of {campaign} settled", probe, timeout))

    async def calls(self) -> dict[str, dict[str, Any]]:
        rows = await self.get("/api/calls", limit=1000)
        return {row["linkedid"]: row for row in rows}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def customers(
    sandbox_pbx: SandboxPbx, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Customers]:
    phone = await start_customers(
        port=TEST_PORTS["outside"], media_port=next(_ports), log_dir=tmp_path_factory.mktemp("customers")
    )
    try:
        yield phone
    finally:
        await phone.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent_phones(sandbox_pbx: SandboxPbx) -> AsyncIterator[list[sipp.SippProcess]]:
    phones: list[sipp.SippProcess] = []
    try:
        for agent in sandbox_pbx.agents:
            phones.append(
                await sipp.start_agent_phone(port=agent.port, media_port=next(_ports), talk_ms=3000)
            )
        yield phones
    finally:
        for phone in phones:
            await phone.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(
    sandbox_pbx: SandboxPbx,
    customers: Customers,
    agent_phones: list[sipp.SippProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Api]:
    platform = PlatformProcess.configure(
        tmp_path_factory.mktemp("platform"),
        ami_port=sandbox_pbx.ami_port,
        ami_secret_file=sandbox_pbx.instance_dir / "ami.secret",
        extra={
            "CTI_IVR__ENABLED": "false",  # the IVR's FastAGI server is not needed here
            "CTI_SANDBOX__INSTANCE": sandbox_pbx.settings.sandbox.instance,
            "CTI_SANDBOX__CACHE_DIR": str(sandbox_pbx.settings.sandbox.cache_dir),
            "CTI_ROUTING__DEFAULT_WRAP_UP_SECONDS": "0",
        },
    )
    await platform.add_user(*ADMIN, "admin")
    for agent in sandbox_pbx.agents:
        await platform.add_user(agent.id, AGENT_PASSWORD, "agent")
    await platform.start()
    try:
        client = await _configured(platform, sandbox_pbx)
        yield client
    finally:
        await platform.stop()


async def _configured(platform: PlatformProcess, sandbox_pbx: SandboxPbx) -> Api:
    client = Api(platform)
    await client.login(*ADMIN)
    for agent in sandbox_pbx.agents:
        await client.login(agent.id, AGENT_PASSWORD)
    service = await client.request(
        "admin", "POST", "/api/services", json={"dnis": sandbox_pbx.hold_dnis, "name": "outreach"}
    )
    await client.request(
        "admin", "PUT", f"/api/routing/services/{service['id']}", json={"wrap_up_seconds": 0}
    )
    for agent in sandbox_pbx.agents:
        await client.request(
            "admin",
            "PUT",
            f"/api/routing/agents/{agent.id}",
            json={"name": f"agent {agent.id}", "skills": {}},
        )
        await client.agent(agent.id, "login")
    return client


def window_now() -> dict[str, Any]:
    """A calling window open now in Shanghai (and so closed in New York, 12 or 13 hours behind)."""
    local = datetime.now(SHANGHAI)
    start = local.replace(minute=0)
    end = min(start + timedelta(hours=3), local.replace(hour=23, minute=59))
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "weekdays": [1, 2, 3, 4, 5, 6, 7]}


async def campaign(
    api: Api, pbx: SandboxPbx, campaign_id: str, mode: str, phones: list[str], **settings: Any
) -> dict[str, dict[str, Any]]:
    body = {
        "name": f"campaign {campaign_id}",
        "service": pbx.hold_dnis,
        "caller_id": "+862161234567",
        "mode": mode,
        "window": window_now(),
        "ring_seconds": 15,
        "amd": True,
        "active": False,
        **settings,
    }
    await api.request("admin", "PUT", f"/api/dialer/campaigns/{campaign_id}", json=body)
    csv = "phone,name\n" + "".join(f"{p},customer {p[-2:]}\n" for p in phones)
    result = await api.request(
        "admin",
        "POST",
        f"/api/dialer/campaigns/{campaign_id}/leads",
        params={"region": "CN"},
        content=csv.encode(),
    )
    assert result["rejected"] == 0, result
    return await api.leads(campaign_id)


async def start(api: Api, pbx: SandboxPbx, campaign_id: str, *, active: bool = True) -> None:
    """Start (or stop) a campaign: PUT it back as it is stored, with ``active``."""
    stored = await api.get(f"/api/dialer/campaigns/{campaign_id}")
    keys = (
        "name", "service", "caller_id", "mode", "window", "max_attempts", "ring_seconds", "amd",
        "machine_policy", "abandonment_rule", "abandonment_cap", "consent", "registries",
        "registry_max_age_days",
    )  # fmt: skip
    body = {k: stored[k] for k in keys} | {"active": active}
    await api.request("admin", "PUT", f"/api/dialer/campaigns/{campaign_id}", json=body)


async def ready(api: Api, *agents: str) -> None:
    """Make the agents ready (logged in first if they are not), waiting out a call or wrap-up."""
    for agent_id in agents:
        state = (await api.get(f"/api/routing/agents/{agent_id}"))["state"]["status"]
        if state == "logged_out":
            await api.agent(agent_id, "login")
            state = "not_ready"
        if state == "not_ready":
            await api.agent(agent_id, "ready")
        await api.until(f"agent {agent_id} ready", lambda a=agent_id: _status(api, a, "ready"))


async def not_ready(api: Api, *agents: str) -> None:
    for agent_id in agents:
        if not await _status(api, agent_id, "not_ready"):
            await api.agent(agent_id, "not-ready")


async def test_progressive_campaign_places_connects_and_settles_every_kind_of_customer(
    sandbox_pbx: SandboxPbx, api: Api, customers: Customers
) -> None:
    person, busy, no_answer, hangs_up, machine = (f"+861390000001{d}" for d in "12345")
    on_dnc, new_york = "+8613900000121", "+12125550131"
    added = await api.raw(
        "admin", "POST", "/api/dialer/do-not-call", json={"number": on_dnc, "reason": "asked"}
    )
    assert added.status_code < 300, added.text
    # The person is a known customer: their campaign call goes on their record.
    known = await api.request(
        "admin", "POST", "/api/customers", json={"name": "陈静", "phones": [{"number": person}]}
    )
    leads = await campaign(
        api,
        sandbox_pbx,
        "progressive",
        "progressive",
        [person, busy, no_answer, hangs_up, machine, on_dnc, new_york],
    )
    await ready(api, "1001", "1002")
    started = datetime.now(UTC)
    await start(api, sandbox_pbx, "progressive")
    dialled = [person, busy, no_answer, hangs_up, machine]
    leads = await api.settled("progressive", [*dialled, on_dnc, new_york], timeout=120)
    await start(api, sandbox_pbx, "progressive", active=False)
    outcomes: dict[str, str] = {}
    channels: dict[str, str] = {}
    for phone in dialled:
        (attempt,) = await api.attempts(leads[phone]["id"])
        outcomes[phone] = attempt["outcome"]
        channels[phone] = attempt["channel_id"]
    assert outcomes == {
        person: "connected",
        busy: "busy",
        no_answer: "no_answer",
        hangs_up: "abandoned",  # answered by a person and not connected: counted on the safe side
        machine: "machine",
    }, api.platform.log_tail(150)
    # Retry rules (the defaults): connected is final; busy again in 15 minutes, no answer in 2 hours,
    # machine in 4, abandoned in 1.
    assert leads[person]["status"] == "done"
    for phone, delay in ((busy, 15), (no_answer, 120), (machine, 240), (hangs_up, 60)):
        assert leads[phone]["status"] == "scheduled"
        due = datetime.fromisoformat(leads[phone]["next_attempt_at"])
        assert started + timedelta(minutes=delay) - timedelta(seconds=5) < due
        assert due < datetime.now(UTC) + timedelta(minutes=delay)
    # Never dialled: on the do-not-call list (closed), outside its calling window (for its opening).
    assert await api.attempts(leads[on_dnc]["id"]) == []
    assert leads[on_dnc]["status"] == "done" and "do-not-call" in leads[on_dnc]["done_reason"]
    assert await api.attempts(leads[new_york]["id"]) == []
    assert leads[new_york]["status"] == "scheduled"
    opening = datetime.fromisoformat(leads[new_york]["next_attempt_at"]).astimezone(
        ZoneInfo("America/New_York")
    )
    assert opening.strftime("%H:%M") == window_now()["start"]
    invites = customers.invites()
    assert {p.lstrip("+"): invites.get(p.lstrip("+")) for p in dialled} == {p.lstrip("+"): 1 for p in dialled}
    assert on_dnc.lstrip("+") not in invites and new_york.lstrip("+") not in invites
    # The call log: each attempt's ChannelId is its call's key; the person's call reached an agent.
    calls = await api.until("campaign calls in the call log", lambda: _calls_with(api, channels.values()))
    assert calls[channels[person]]["agent"] in ("1001", "1002")
    assert calls[channels[person]]["connected_at"] is not None
    # Every attempt is an outbound call whose ANI is the number dialled (not the number shown to
    # the customer), so the person's call is on their record.
    for phone in dialled:
        row = calls[channels[phone]]
        assert (row["direction"], row["ani_e164"]) == ("outbound", phone)
    assert calls[channels[person]]["customer_id"] == known["id"]
    for phone in (hangs_up, machine):
        assert (
            calls[channels[phone]]["answered_at"] is not None
            and calls[channels[phone]]["connected_at"] is None
        )
    live = await api.get("/api/dialer/campaigns/progressive/live")
    assert live["mode"] == "progressive" and live["attempts_24h"] == 5 and live["contacts_24h"] == 1
    assert live["live_answers_24h"] == 2 and live["abandoned_24h"] == 1


async def _calls_with(api: Api, channel_ids: Any) -> dict[str, dict[str, Any]] | None:
    calls = await api.calls()
    wanted = list(channel_ids)
    if all(c in calls and calls[c]["ended_at"] for c in wanted):
        return calls
    return None


async def test_predictive_campaign_connects_and_plays_the_safe_harbor_when_no_agent_is_free(
    sandbox_pbx: SandboxPbx, api: Api, customers: Customers
) -> None:
    person, busy, hangs_up = (f"+861390000002{d}" for d in "124")
    late = "+8613900000226"  # a person who answers after 5 s of ringing
    recorder = await sandbox_pbx.recorder()
    try:
        leads = await campaign(api, sandbox_pbx, "predictive", "predictive", [person, busy, hangs_up])
        await ready(api, "1001")
        await not_ready(api, "1002")
        await start(api, sandbox_pbx, "predictive")
        leads = await api.settled("predictive", [person, busy, hangs_up])
        got = {p: (await api.attempts(leads[p]["id"]))[0]["outcome"] for p in (person, busy, hangs_up)}
        assert got == {person: "connected", busy: "busy", hangs_up: "abandoned"}, api.platform.log_tail(150)
        live = await api.get("/api/dialer/campaigns/predictive/live")
        assert live["mode"] == "predictive" and live["running"] and "predictive" in live["reason"]

        # Now the only ready agent goes not ready while the late customer's phone rings: the person
        # who answers finds no agent, hears the safe-harbor message within 2 s, and is abandoned.
        await api.until("agent 1001 ready again", lambda: _status(api, "1001", "ready"))
        csv = f"phone\n{late}\n"
        await api.request(
            "admin",
            "POST",
            "/api/dialer/campaigns/predictive/leads",
            params={"region": "CN"},
            content=csv.encode(),
        )
        lead = (await api.leads("predictive"))[late]
        pending = await api.until("the late customer dialled", lambda: _pending(api, lead["id"]))
        await not_ready(api, "1001")
        leads = await api.settled("predictive", [late])
        (attempt,) = await api.attempts(leads[late]["id"])
        assert attempt["outcome"] == "abandoned" and attempt["channel_id"] == pending["channel_id"]
        safe_harbor = recorder.events("UserEvent")
        played = [
            e
            for e in safe_harbor
            if e.get("UserEvent") == "CampaignSafeHarbor" and e.get("Linkedid") == attempt["channel_id"]
        ]
        assert played, "no safe-harbor message for the abandoned call"
        plays = [
            e
            for e in recorder.events("Newexten")
            if e.get("Linkedid") == attempt["channel_id"] and e.get("Application") == "Playback"
        ]
        assert plays and "ivr-" in plays[0].get("AppData", ""), plays
        rang = [e for e in recorder.events("DialBegin") if e.get("Linkedid") == attempt["channel_id"]]
        assert rang == []  # no agent's phone rang for it
    finally:
        await recorder.close()
        await ready(api, "1001", "1002")


async def _status(api: Api, agent_id: str, status: str) -> bool:
    state = (await api.get(f"/api/routing/agents/{agent_id}"))["state"]
    return bool(state["status"] == status)


async def _pending(api: Api, lead_id: int) -> dict[str, Any] | None:
    attempts = await api.attempts(lead_id)
    return attempts[0] if attempts and attempts[0]["outcome"] == "pending" else None


async def test_a_stale_registry_list_stops_the_campaign(
    sandbox_pbx: SandboxPbx, api: Api, customers: Customers
) -> None:
    number = "+8613900000311"
    await api.request(
        "admin", "PUT", "/api/dialer/registries/national",
        json={"published_on": (date.today() - timedelta(days=60)).isoformat(), "numbers": ["+8613900000399"]},
    )  # fmt: skip
    leads = await campaign(api, sandbox_pbx, "stale", "progressive", [number], registries=["national"])
    await start(api, sandbox_pbx, "stale")

    async def stopped() -> dict[str, Any] | None:
        response = await api.raw("admin", "GET", "/api/dialer/campaigns/stale/live")
        body = response.json() if response.status_code == 200 else None
        return body if body and not body["running"] else None

    live = await api.until("the stale campaign's pace", stopped, timeout=30)
    assert "national" in live["reason"] and "60 days old" in live["reason"]
    await asyncio.sleep(3)  # a few more passes: still nothing dialled
    assert await api.attempts(leads[number]["id"]) == []
    assert number.lstrip("+") not in customers.invites()


async def test_a_callback_booked_for_one_agent_is_dialled_for_that_agent_only(
    sandbox_pbx: SandboxPbx, api: Api, customers: Customers
) -> None:
    person = "+8613900000511"
    leads = await campaign(api, sandbox_pbx, "callbacks", "progressive", [person])
    await ready(api, "1001")
    await not_ready(api, "1002")
    await start(api, sandbox_pbx, "callbacks")
    try:
        leads = await api.settled("callbacks", [person])
        (first,) = await api.attempts(leads[person]["id"])
        assert first["outcome"] == "connected", api.platform.log_tail(150)
        calls = await api.until("the first call logged", lambda: _calls_with(api, [first["channel_id"]]))
        row = calls[first["channel_id"]]
        assert row["agent"] == "1001"
        # 1001 steps away; the customer asked 1001 to call back in a moment; 1002 is ready.
        await api.until("agent 1001 back from the call", lambda: _status(api, "1001", "ready"))
        await not_ready(api, "1001")
        await ready(api, "1002")
        at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        done = await api.request(
            "1001", "POST", f"/api/dialer/calls/{row['pbx']}/{first['channel_id']}/disposition",
            json={"disposition": "callback", "at": at, "callback_for": "me"},
        )  # fmt: skip
        assert done["next_step"] == "scheduled" and done["callback_agent"] == "1001"

        async def waiting() -> dict[str, Any] | None:
            live = await api.get("/api/dialer/campaigns/callbacks/live")
            return live if "1 callbacks waiting" in live["reason"] else None

        await api.until("the callback due and waiting for 1001", waiting, timeout=30)
        assert len(await api.attempts(leads[person]["id"])) == 1  # not given to the ready 1002
        await ready(api, "1001")

        async def second_ended() -> dict[str, Any] | None:
            attempts = await api.attempts(leads[person]["id"])
            return attempts[1] if len(attempts) == 2 and attempts[1]["outcome"] != "pending" else None

        second = await api.until("the callback dialled and ended", second_ended)
        assert second["outcome"] == "connected", api.platform.log_tail(150)
        calls = await api.until("the callback logged", lambda: _calls_with(api, [second["channel_id"]]))
        assert calls[second["channel_id"]]["agent"] == "1001"
        assert customers.invites().get(person.lstrip("+")) == 2
    finally:
        await start(api, sandbox_pbx, "callbacks", active=False)
        await ready(api, "1001", "1002")


async def test_a_restart_mid_campaign_dials_no_number_twice(
    sandbox_pbx: SandboxPbx, api: Api, customers: Customers
) -> None:
    ringing = ["+8613900000413", "+8613900000423"]  # ring until the campaign's 15 s are up
    people = ["+8613900000411", "+8613900000421"]
    leads = await campaign(api, sandbox_pbx, "restart", "progressive", ringing)
    await ready(api, "1001", "1002")
    await start(api, sandbox_pbx, "restart")
    first = [await api.until("dialled", lambda lead=leads[p]: _pending(api, lead["id"])) for p in ringing]
    await api.platform.kill()  # as a crash, mid-ring
    csv = "phone\n" + "".join(f"{p}\n" for p in people)
    await api.platform.start()
    for who in ("admin", "1001", "1002"):
        await api.login(who, ADMIN[1] if who == "admin" else AGENT_PASSWORD)
    await ready(api, "1001", "1002")  # routing's states live in memory here: a new start logs them out
    await api.request(
        "admin", "POST", "/api/dialer/campaigns/restart/leads", params={"region": "CN"}, content=csv.encode()
    )
    leads = await api.settled("restart", [*ringing, *people], timeout=90)
    attempts = {p: await api.attempts(leads[p]["id"]) for p in [*ringing, *people]}
    # The calls ringing at the crash were found again by their ChannelId and followed to their end.
    for phone, before in zip(ringing, first, strict=True):
        (attempt,) = attempts[phone]
        assert attempt["channel_id"] == before["channel_id"] and attempt["outcome"] == "no_answer"
    for phone in people:
        assert [a["outcome"] for a in attempts[phone]] == ["connected"]
    # The calls found again count as ringing: two agents, so no new lead was dialled before one ended.
    first_end = min(datetime.fromisoformat(attempts[p][0]["ended_at"]) for p in ringing)
    for phone in people:
        assert datetime.fromisoformat(attempts[phone][0]["dialled_at"]) >= first_end
    channel_ids = [a["channel_id"] for rows in attempts.values() for a in rows]
    assert len(channel_ids) == len(set(channel_ids)) == 4
    invites = customers.invites()
    assert {p.lstrip("+"): invites.get(p.lstrip("+")) for p in [*ringing, *people]} == {
        p.lstrip("+"): 1 for p in [*ringing, *people]
    }
