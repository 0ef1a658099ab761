"""End to end: the waiting caller's experience on the real sandbox Asterisk.

SIPp callers dial the hold DNIS and wait; ``cti serve`` tells them their position and expected wait
between pieces of music, carries out overflows to voicemail and to a callback, and dials queue
callbacks to a SIPp "customer" phone standing for the public network (the PBX's ``outside``
endpoint) when an agent frees. What Asterisk did is read from its own AMI events (the capture
user); what the platform filed is read back over HTTP. Nothing is faked.

The module re-renders the test instance with a short ring time at the agents and the outside phone
on this session's port, and restores the session's configuration after.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support import sipp
from tests.support.platform import PlatformApi, PlatformProcess
from tests.support.redis import RedisServer
from tests.support.sandbox import (
    IVR_AGI_PORT,
    IVR_DNIS,
    PORT_OFFSET,
    SIPP_PORT_BASE,
    TEST_SERVICES,
    AmiRecorder,
    SandboxPbx,
)

from dialplans.render import render_pbx_config
from dialplans.wiring import params_from_settings

pytestmark = [pytest.mark.sandbox]

ADMIN = ("admin", "admin-password-1")
AGENT_PASSWORD = "agent-password-1"
DIAL_TIMEOUT = 5
#: The phone standing for outside numbers: queue callbacks ring the customer here.
OUTSIDE_PORT = 15069 + PORT_OFFSET
ANNOUNCE_EVERY = 10
FLOWS = Path(__file__).resolve().parent.parent / "data" / "ivr"  # desk.yaml answers the IVR DNIS
HANDLE_SECONDS = 120
_ports = itertools.count(SIPP_PORT_BASE + 4000, 8)  # this module's own slice of the SIPp ports


def ports() -> tuple[int, int]:
    port = next(_ports)
    return port, port + 4


@pytest.fixture(scope="module")
def waiting_pbx(sandbox_pbx: SandboxPbx) -> Iterator[SandboxPbx]:
    sandbox = sandbox_pbx.sandbox
    params = params_from_settings(
        sandbox.settings,
        dirs=sandbox.inside_layout.asterisk_dirs(),
        ami_secret=sandbox.ensure_secret("ami"),
        capture_secret=sandbox.ensure_secret("capture"),
        services=TEST_SERVICES,
    )
    # The platforms of this module announce (every ANNOUNCE_EVERY s): so is their PBX rendered.
    files = render_pbx_config(
        replace(params, dial_timeout=DIAL_TIMEOUT, outside_port=OUTSIDE_PORT, wait_announcements=True)
    )
    asyncio.run(sandbox.up(files))
    try:
        yield sandbox_pbx
    finally:
        asyncio.run(sandbox.up(sandbox_pbx.files))


class Api(PlatformApi):
    """The platform over HTTP as its admin and as each agent."""

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("admin", "GET", path, params=params)

    async def agent(self, agent_id: str, action: str) -> None:
        await self.request(agent_id, "POST", f"/api/routing/agents/{agent_id}/{action}")

    async def waiting(self) -> list[dict[str, Any]]:
        return [w for q in await self.get("/api/routing/queues") for w in q["waiting"]]


async def start_platform(pbx: SandboxPbx, state: Path, extra: dict[str, str]) -> tuple[PlatformProcess, Api]:
    platform = PlatformProcess.configure(
        state,
        ami_port=pbx.ami_port,
        ami_secret_file=pbx.instance_dir / "ami.secret",
        extra={
            "CTI_IVR__ENABLED": "false",  # the IVR's FastAGI server is not needed here
            "CTI_SANDBOX__INSTANCE": pbx.settings.sandbox.instance,
            "CTI_SANDBOX__CACHE_DIR": str(pbx.settings.sandbox.cache_dir),
            "CTI_ROUTING__DEFAULT_WRAP_UP_SECONDS": "0",
            "CTI_ROUTING__ANNOUNCE_EVERY_SECONDS": str(ANNOUNCE_EVERY),
            "CTI_ROUTING__DEFAULT_HANDLE_SECONDS": str(HANDLE_SECONDS),
            "CTI_ROUTING__CALLBACK_RETRY_SECONDS": "3",
            **extra,
        },
    )
    if platform.starts == 0 and not (state / "users-added").exists():
        await platform.add_user(*ADMIN, "admin")
        for agent in pbx.agents:
            await platform.add_user(agent.id, AGENT_PASSWORD, "agent")
        (state / "users-added").touch()
    await platform.start()
    api = Api(platform)
    await api.login(*ADMIN)
    for agent in pbx.agents:
        await api.login(agent.id, AGENT_PASSWORD)
    return platform, api


async def configure(api: Api, pbx: SandboxPbx, **routing: Any) -> None:
    services = await api.get("/api/services")
    found = [s for s in services if s["dnis"] == pbx.hold_dnis]
    service = (
        found[0]
        if found
        else await api.request(
            "admin", "POST", "/api/services", json={"dnis": pbx.hold_dnis, "name": "support"}
        )
    )
    body = {"needs": [{"skill": "mandarin", "min_level": 1}], "wrap_up_seconds": 0, **routing}
    await api.request("admin", "PUT", f"/api/routing/services/{service['id']}", json=body)
    for agent_id, levels in {"1001": {"mandarin": 8}, "1002": {"mandarin": 3}}.items():
        await api.request(
            "admin",
            "PUT",
            f"/api/routing/agents/{agent_id}",
            json={"name": f"agent {agent_id}", "skills": levels},
        )


@pytest.fixture
async def platform_factory(waiting_pbx: SandboxPbx, tmp_path: Path):
    started: list[PlatformProcess] = []

    async def start(extra: dict[str, str] | None = None, **routing: Any) -> Api:
        platform, api = await start_platform(waiting_pbx, tmp_path / "platform", extra or {})
        started.append(platform)
        await configure(api, waiting_pbx, **routing)
        return api

    try:
        yield start
    finally:
        for platform in started:
            await platform.stop()


@pytest.fixture
async def sipps():
    """SIPp processes a test started, stopped at its end even when a later one failed to start."""
    started: list[sipp.SippProcess] = []
    try:
        yield started
    finally:
        await stop_all(*started)


@pytest.fixture
async def recorder(waiting_pbx: SandboxPbx):
    rec = await waiting_pbx.recorder()
    try:
        yield rec
    finally:
        await rec.close()


async def phone(pbx: SandboxPbx, agent_id: str, talk_ms: int = 2000) -> sipp.SippProcess:
    """The agent's auto-answering phone. Its port may still be held for a moment by the phone of a
    test that just ended (SIPp is stopped, then killed): try again for a few seconds."""
    (agent,) = [a for a in pbx.agents if a.id == agent_id]
    for attempt in range(5):
        try:
            return await sipp.start_agent_phone(port=agent.port, media_port=next(_ports), talk_ms=talk_ms)
        except RuntimeError:
            if attempt == 4:
                raise
            await asyncio.sleep(2)
    raise AssertionError("unreachable")


async def place(pbx: SandboxPbx, number: str, name: str = "张伟") -> sipp.SippProcess:
    """A caller who waits on hold until the PBX ends the call; ``wait()`` for the outcome."""
    port, media = ports()
    return await sipp.start_callers(
        pbx_port=pbx.sip_port,
        dnis=pbx.hold_dnis,
        callers=[sipp.Caller(name, number)],
        port=port,
        media_port=media,
    )


def announced(rec: AmiRecorder, ani: str) -> list[dict[str, str]]:
    return [
        e
        for e in rec.events("UserEvent")
        if e.get("UserEvent") == "WaitAnnounced" and e.get("CallerIDNum") == ani
    ]


async def stop_all(*procs: sipp.SippProcess) -> None:
    for proc in procs:
        await proc.stop()


# --- 1. position and expected wait ----------------------------------------------------------------


async def test_a_caller_waiting_with_no_agent_free_hears_their_position_and_expected_wait(
    waiting_pbx: SandboxPbx, platform_factory, recorder: AmiRecorder
) -> None:
    api = await platform_factory()
    lina = {"name": "李娜", "tier": "standard", "language": "zh", "phones": [{"number": "+86 138 0000 0013"}]}
    await api.request("admin", "POST", "/api/customers", json=lina)
    busy_phone = await phone(waiting_pbx, "1001", talk_ms=60_000)
    callers: list[sipp.SippProcess] = []
    try:
        await api.agent("1001", "login")
        await api.agent("1001", "ready")
        callers.append(await place(waiting_pbx, "13800000011"))  # talks to 1001 for a minute
        await api.until("1001 on the call", lambda: _status(api, "1001", "on_call"))
        callers.append(await place(waiting_pbx, "13800000012", "陈明"))
        await api.until("the second caller waiting", lambda: _count(api, 1))
        callers.append(await place(waiting_pbx, "13800000013", "李娜"))  # a Mandarin speaker, by her record
        line = await api.until("both callers waiting", lambda: _count(api, 2))
        # Each hears their place and the expected wait: one agent staffed, 120 s per call so far
        # (the setting, no call handled yet): 1 × 120 / 1 = 2 minutes, 2 × 120 / 1 = 4 minutes.
        second = await recorder.wait_for(
            lambda m: m in announced(recorder, "13800000012"), ANNOUNCE_EVERY + 10
        )
        third = await recorder.wait_for(
            lambda m: m in announced(recorder, "13800000013"), ANNOUNCE_EVERY + 10
        )
        assert (second["Position"], second["Minutes"], second["SaidIn"]) == ("1", "2", "en")
        assert (third["Position"], third["Minutes"], third["SaidIn"]) == ("2", "4", "zh")
        # English from Asterisk's sounds; Mandarin from a prompt synthesised in Mandarin.
        await recorder.wait_for(
            lambda m: m.get("Event") == "Newexten" and m.get("CallerIDNum") == "13800000012"
            and m.get("AppData") == "queue-holdtime", 10,
        )  # fmt: skip
        await recorder.wait_for(
            lambda m: m.get("Event") == "Newexten" and m.get("CallerIDNum") == "13800000013"
            and m.get("Application") == "Playback"
            and m.get("AppData", "").startswith("/srv/cti/sounds/ivr/ivr-"),
            10,
        )  # fmt: skip
        # A second round of announcements: the callers never left their places.
        await recorder.wait_for(lambda m: len(announced(recorder, "13800000012")) >= 2, ANNOUNCE_EVERY + 10)
        after = await api.waiting()
        assert [(w["call"], w["enqueued_at"]) for w in after] == [(w["call"], w["enqueued_at"]) for w in line]
        assert announced(recorder, "13800000012")[-1]["Position"] == "1"
    finally:
        await stop_all(busy_phone, *callers)


async def _status(api: Api, agent_id: str, status: str) -> bool:
    state = (await api.get(f"/api/routing/agents/{agent_id}"))["state"]
    return bool(state["status"] == status)


async def _count(api: Api, n: int) -> list[dict[str, Any]] | None:
    waiting = await api.waiting()
    return waiting if len(waiting) == n else None


# --- 2. overflow to voicemail and to a callback -----------------------------------------------------


async def test_past_the_maximum_wait_the_caller_leaves_a_voicemail_on_their_record(
    waiting_pbx: SandboxPbx, platform_factory, recorder: AmiRecorder
) -> None:
    api = await platform_factory(max_wait_seconds=3, overflow={"kind": "voicemail", "target": ""})
    wang = {"name": "王芳", "language": "zh", "phones": [{"number": "+86 139 0000 0021"}]}
    customer = await api.request("admin", "POST", "/api/customers", json=wang)
    port, media = ports()
    # Nobody logged in: after 3 s the caller is sent to voicemail, told so in Mandarin (her
    # language, from her record); she speaks after the beep.
    caller = await sipp.call_with_keys(
        pbx_port=waiting_pbx.sip_port, dnis=waiting_pbx.hold_dnis, caller=sipp.Caller("王芳", "13900000021"),
        keys=[(12_000, sipp.VOICE)], port=port, media_port=media, hold_ms=20_000,
    )  # fmt: skip
    try:
        body = await api.until(
            "the voicemail on the record",
            lambda: _voicemails(api, customer["id"]),
            timeout=60,
        )
    finally:
        await caller.stop()
    (message,) = body
    assert message["duration_seconds"] > 1.0
    assert Path(message["file_path"]).name.startswith("overflow-")
    decisions = await api.get("/api/routing/decisions")
    assert decisions[0]["outcome"] == "overflow" and decisions[0]["overflow"]["kind"] == "voicemail"
    assert message["call_key"] == decisions[0]["call"]
    callbacks = await api.get("/api/callbacks")
    assert [c["customer_id"] for c in callbacks] == [customer["id"]]
    (event,) = [e for e in recorder.events("UserEvent") if e.get("UserEvent") == "OverflowVoicemail"]
    # The message synthesised in Mandarin by the IVR's prompt builder, played from its sounds folder.
    assert event["Sound"].startswith("/srv/cti/sounds/ivr/ivr-"), event
    played = [
        e["AppData"] for e in recorder.events("Newexten")
        if e.get("Context") == "cti-overflow" and e.get("Application") == "Playback"
    ]  # fmt: skip
    assert played[0] == event["Sound"], played
    assert await api.waiting() == []


async def _voicemails(api: Api, customer_id: int) -> list[dict[str, Any]] | None:
    return (await api.get(f"/api/customers/{customer_id}"))["voicemails"] or None


async def test_past_the_maximum_wait_the_caller_is_promised_a_callback_that_keeps_their_place(
    waiting_pbx: SandboxPbx, platform_factory, recorder: AmiRecorder, sipps: list[sipp.SippProcess]
) -> None:
    api = await platform_factory(max_wait_seconds=4, overflow={"kind": "callback", "target": ""})
    customer_phone = await sipp.start_agent_phone(port=OUTSIDE_PORT, media_port=next(_ports), talk_ms=4000)
    sipps.append(customer_phone)
    agent_phone = await phone(waiting_pbx, "1001", talk_ms=3000)
    later: sipp.SippProcess | None = None
    try:
        await api.agent("1001", "login")  # logged in, not ready: busy for this line
        first = await place(waiting_pbx, "13800000031")
        (task,) = await api.until("the callback booked", lambda: _callbacks(api), timeout=30)
        assert task["status"] == "pending" and task["number_e164"] == "+8613800000031"
        # The caller was told and hung up politely, by the PBX.
        result = await first.wait(30)
        assert result.ok, result.output[-2000:]
        await recorder.wait_for(lambda m: m.get("UserEvent") == "OverflowCallback", 5)
        (waiting,) = await api.waiting()
        assert waiting["call"].endswith(f"callback-{task['id']}")
        # A caller who joins later waits behind the callback...
        later = await place(waiting_pbx, "13800000032")
        await api.until("the later caller waiting", lambda: _count(api, 2))
        line = await api.waiting()
        assert line[0]["call"].endswith(f"/callback-{task['id']}")
        # ... so when the agent frees, the customer is dialled first and connected to the agent.
        await api.agent("1001", "ready")
        done = await api.until("the callback done", lambda: _callbacks(api, "done"), timeout=40)
    finally:
        await stop_all(customer_phone, agent_phone, *([later] if later else []))
    (task,) = done
    linkedid = task["handled_call_key"].partition("/")[2]
    assert linkedid.startswith("cti-cb-")
    decisions = await api.get("/api/routing/decisions")
    connects = [d for d in decisions if d["outcome"] == "connect"]
    assert connects[-1]["call"].endswith(f"callback-{task['id']}") and connects[-1]["agent_id"] == "1001"
    row = await api.until("the callback's call log", lambda: _call_log(api, linkedid), timeout=20)
    assert row["agent"] == "1001" and row["connected_at"] is not None
    answered = await recorder.wait_for(lambda m: m.get("UserEvent") == "CallbackAnswered", 5)
    assert (answered["Agent"], answered["Task"]) == ("1001", str(task["id"]))


async def test_a_callback_is_dialled_while_its_agent_is_still_wrapping_up(
    waiting_pbx: SandboxPbx, platform_factory, recorder: AmiRecorder, sipps: list[sipp.SippProcess]
) -> None:
    # Wrap-up lasts 15 s and callbacks are dialled up to 10 s before it ends: the customer's phone
    # rings about 5 s into the agent's wrap-up.
    api = await platform_factory(
        {"CTI_ROUTING__CALLBACK_DIAL_AHEAD_SECONDS": "10"},
        max_wait_seconds=3, overflow={"kind": "callback", "target": ""}, wrap_up_seconds=15,
    )  # fmt: skip
    customer_phone = await sipp.start_agent_phone(port=OUTSIDE_PORT, media_port=next(_ports), talk_ms=3000)
    sipps.append(customer_phone)
    agent_phone = await phone(waiting_pbx, "1001", talk_ms=4000)
    sipps.append(agent_phone)
    await api.agent("1001", "login")
    await api.agent("1001", "ready")
    first = await place(waiting_pbx, "13800000061")  # talks to 1001 for 4 s
    sipps.append(first)
    await api.until("1001 on the first call", lambda: _status(api, "1001", "on_call"))
    second = await place(waiting_pbx, "13800000062")  # overflows to a callback after 3 s
    sipps.append(second)
    (task,) = await api.until("the callback booked", lambda: _callbacks(api), timeout=30)
    wrapping = await api.until("1001 wrapping up", lambda: _state_if(api, "1001", "wrap_up"))
    wrap_up_ends = datetime.fromisoformat(wrapping["wrap_up_until"])
    # The customer's phone rings (Asterisk's outbound channel, the ChannelId the platform chose)
    # while the agent is still wrapping up.
    ringing = await recorder.wait_for(
        lambda m: m.get("Event") == "Newstate" and m.get("Uniqueid", "").startswith("cti-cb-")
        and m.get("ChannelStateDesc") == "Ringing",
        30,
    )  # fmt: skip
    rang_at = datetime.now(UTC)
    assert rang_at < wrap_up_ends, (rang_at, wrap_up_ends)
    done = await api.until("the callback done", lambda: _callbacks(api, "done"), timeout=40)
    (task,) = done
    assert task["handled_call_key"].endswith(ringing["Uniqueid"])
    # Why, in the decision log: the agent was about to be free and this was their next call.
    (ahead,) = [d for d in await api.get("/api/routing/decisions") if d["trigger"] == "agent_about_free"]
    assert ahead["agent_id"] == "1001" and ahead["call"].endswith(f"callback-{task['id']}")
    assert ahead["rule"].startswith("dial_ahead: agent 1001's wrap-up ends in")
    # The agent was reserved for it during the wrap-up, and the customer answering ended the
    # wrap-up early: the agent's phone rang at once (docs/routing.md says why).
    history = (await api.get("/api/routing/agents/1001"))["state"]["history"]
    marks = [(m["status"], m["reason"]) for m in history]
    reserved = marks.index(("wrap_up", "reserved_ahead"))
    assert marks[reserved + 1] == ("reserved", "reserved_ahead")
    assert datetime.fromisoformat(history[reserved + 1]["at"]) < wrap_up_ends
    row = await api.until("the callback's call log", lambda: _call_log(api, ringing["Uniqueid"]), timeout=20)
    assert row["agent"] == "1001"


async def _state_if(api: Api, agent_id: str, status: str) -> dict[str, Any] | None:
    state = (await api.get(f"/api/routing/agents/{agent_id}"))["state"]
    return dict(state) if state["status"] == status else None


async def _callbacks(api: Api, status: str = "pending") -> list[dict[str, Any]] | None:
    return [c for c in await api.get("/api/callbacks") if c["status"] == status] or None


async def _call_log(api: Api, linkedid: str) -> dict[str, Any] | None:
    for row in await api.get("/api/calls", limit=100):
        if row["linkedid"] == linkedid and row["ended_at"]:
            return dict(row)
    return None


async def test_a_callback_booked_in_the_ivr_keeps_the_callers_place_and_is_dialled_when_an_agent_frees(
    waiting_pbx: SandboxPbx, platform_factory
) -> None:
    # The IVR of tests/data/ivr/desk.yaml on its DNIS: Chinese, "callback", confirm the own number.
    api = await platform_factory(
        {
            "CTI_IVR__ENABLED": "true",
            "CTI_IVR__AGI_PORT": str(IVR_AGI_PORT),
            "CTI_IVR__FLOWS_DIR": str(FLOWS),
        }
    )
    await api.request(
        "admin", "PUT", "/api/routing/agents/1001",
        json={"name": "agent 1001", "skills": {"mandarin": 8}, "languages": ["zh"]},
    )  # fmt: skip
    await api.until("the IVR listening", _agi_up, timeout=120)  # its prompts are built first
    port, media = ports()
    caller = await sipp.call_with_keys(
        pbx_port=waiting_pbx.sip_port, dnis=IVR_DNIS, caller=sipp.Caller("李娜", "+8613912345678"),
        keys=[(1500, "1"), (1500, "2"), (8500, "1")], port=port, media_port=media, hold_ms=15_000,
    )  # fmt: skip
    phones: list[sipp.SippProcess] = []
    try:
        phones.append(await sipp.start_agent_phone(port=OUTSIDE_PORT, media_port=next(_ports), talk_ms=3000))
        phones.append(await phone(waiting_pbx, "1001", talk_ms=2000))
        (task,) = await api.until("the callback booked", lambda: _callbacks(api), timeout=60)
        (waiting,) = await api.until("the callback in line", lambda: _count(api, 1), timeout=10)
        assert waiting["call"].endswith(f"/callback-{task['id']}") and waiting["language"] == "zh"
        assert (await caller.wait(30)).ok  # the IVR said goodbye and hung up
        await api.agent("1001", "login")
        await api.agent("1001", "ready")
        (done,) = await api.until("the callback done", lambda: _callbacks(api, "done"), timeout=40)
    finally:
        await stop_all(caller, *phones)
    assert done["id"] == task["id"] and done["number_e164"] == "+8613912345678"
    row = await api.until("its call log", lambda: _call_log(api, done["handled_call_key"].partition("/")[2]))
    assert row["agent"] == "1001"


async def _agi_up() -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", IVR_AGI_PORT), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


# --- 4. live state in Redis --------------------------------------------------------------------------


async def test_routing_with_its_live_state_in_redis_best_skill_and_ring_no_answer(
    waiting_pbx: SandboxPbx, platform_factory, redis_server: RedisServer, sipps: list[sipp.SippProcess]
) -> None:
    prefix = "cti:e2e-skill"
    api = await platform_factory(
        {"CTI_ROUTING__REDIS_URL": redis_server.url, "CTI_ROUTING__REDIS_PREFIX": prefix}
    )
    # 1001 (mandarin 8) is the best skill but never answers; 1002 (mandarin 3) does.
    (a1001,) = [a for a in waiting_pbx.agents if a.id == "1001"]
    ringing = await sipp.start_ringing_phone(port=a1001.port, media_port=next(_ports))
    sipps.append(ringing)
    answering = await phone(waiting_pbx, "1002")
    try:
        for agent_id in ("1001", "1002"):
            await api.agent(agent_id, "login")
            await api.agent(agent_id, "ready")
        caller = await place(waiting_pbx, "13800000041")
        row = await api.until("the call answered by 1002", lambda: _answered(api, "13800000041"), timeout=60)
        assert (await caller.wait(30)).ok
    finally:
        await stop_all(ringing, answering)
    assert row["agent"] == "1002"
    decisions = await api.get("/api/routing/decisions")
    assert [d["agent_id"] for d in decisions[:2]] == ["1002", "1001"]
    # What routing decided and the agents' states are in Redis, where another node would read them.
    import redis.asyncio as aioredis  # the test reads Redis itself, as a second node would

    client = aioredis.Redis.from_url(redis_server.url)
    try:
        state = await client.get(f"{prefix}:agent:1001")
        assert state is not None and b'"reason":"ring_no_answer"' in state
        assert await client.llen(f"{prefix}:decisions") >= 2
    finally:
        await client.aclose()


async def _answered(api: Api, ani: str) -> dict[str, Any] | None:
    rows = await api.get("/api/calls", ani=ani)
    return dict(rows[0]) if rows and rows[0]["ended_at"] and rows[0]["connected_at"] else None


async def test_the_callback_line_outlives_a_platform_restart_with_redis(
    waiting_pbx: SandboxPbx, platform_factory, redis_server: RedisServer, sipps: list[sipp.SippProcess]
) -> None:
    redis = {"CTI_ROUTING__REDIS_URL": redis_server.url, "CTI_ROUTING__REDIS_PREFIX": "cti:e2e-restart"}
    routing = {"max_wait_seconds": 3, "overflow": {"kind": "callback", "target": ""}}
    api = await platform_factory(redis, **routing)
    caller = await place(waiting_pbx, "13800000051")
    try:
        (task,) = await api.until("the callback booked", lambda: _callbacks(api), timeout=30)
        assert (await caller.wait(30)).ok
    finally:
        await caller.stop()
    (before,) = await api.waiting()
    await api.platform.stop()
    # A new platform process on the same database and Redis: the callback is still in line, with
    # the caller's place, and is dialled when an agent frees.
    api = await platform_factory(redis, **routing)
    (after,) = await api.until("the callback back in line", lambda: _count(api, 1))
    assert (after["call"], after["enqueued_at"]) == (before["call"], before["enqueued_at"])
    customer_phone = await sipp.start_agent_phone(port=OUTSIDE_PORT, media_port=next(_ports), talk_ms=3000)
    sipps.append(customer_phone)
    agent_phone = await phone(waiting_pbx, "1002", talk_ms=2000)
    try:
        await api.agent("1002", "login")
        await api.agent("1002", "ready")
        (done,) = await api.until("the callback done", lambda: _callbacks(api, "done"), timeout=40)
    finally:
        await stop_all(customer_phone, agent_phone)
    assert done["id"] == task["id"] and done["handled_call_key"]
