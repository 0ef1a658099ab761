"""The websocket ``/ws`` of the real platform app served by uvicorn, with real websocket clients.

The platform is built in process (SQLite, no Asterisk): offers are handed to routing's offer hook
and other messages published on its bus, the way routing and the call service do, so what is tested
is the hub, the tickets, the origin check, the limits and the message contract, end to end through
a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.compose import Platform
from crm import db as crm_db
from crm import service as crm_service
from cti.auth import Principal, Role, issue_token
from cti.model import (
    AgentOffered,
    AgentStateChanged,
    CallChange,
    CallClassification,
    CallControlled,
    CallKey,
    CallPhase,
    CallSnapshot,
    ChangeKind,
    Direction,
    IvrRecord,
    RecordingChanged,
    RecordingState,
)
from cti.settings import Settings
from screenpop.service import SpyError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, platform: Platform, port: int) -> None:
        self.platform = platform
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.origin = self.base

    def token(self, username: str, role: Role) -> str:
        return issue_token(Principal(1, username, role), self.platform.token_secret, 600, datetime.now(UTC))

    async def ticket(self, username: str, role: Role) -> str:
        async with httpx.AsyncClient(base_url=self.base) as client:
            r = await client.post(
                "/api/ws-ticket", headers={"Authorization": f"Bearer {self.token(username, role)}"}
            )
            r.raise_for_status()
            return str(r.json()["ticket"])

    async def console(self, username: str, role: Role, **kwargs: Any) -> websockets.ClientConnection:
        ticket = await self.ticket(username, role)
        return await websockets.connect(
            f"ws://127.0.0.1:{self.port}/ws?ticket={ticket}", origin=self.origin, **kwargs
        )


@pytest.fixture
async def served(tmp_path: Path):
    port = free_port()
    settings = Settings(state_dir=tmp_path, http={"host": "127.0.0.1", "port": port})
    platform = Platform(settings)
    await crm_db.migrate_async(platform.database_url)
    server = uvicorn.Server(
        uvicorn.Config(platform.http, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    web = asyncio.create_task(server.serve())
    consoles = asyncio.create_task(platform.consoles.run())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    try:
        yield Served(platform, port)
    finally:
        server.should_exit = True
        consoles.cancel()
        done, _ = await asyncio.wait({web}, timeout=5)
        if not done:  # a connection a failed test left open must not hang the session
            server.force_exit = True
            web.cancel()
        await asyncio.gather(web, consoles, return_exceptions=True)
        await platform.engine.dispose()


def snapshot(linkedid: str = "1700000000.1", *, customer_id: int | None = None, agent: str | None = None,
             phase: CallPhase = CallPhase.WAITING) -> CallSnapshot:  # fmt: skip
    now = datetime.now(UTC)
    return CallSnapshot(
        key=CallKey("pbx1", linkedid),
        phase=phase,
        direction=Direction.INBOUND,
        started_at=now,
        ani="13800138000",
        caller_name="张伟",
        dnis="8001",
        anchor_channel="PJSIP/trunk-00000001",
        anchor_uniqueid=linkedid,
        agent=agent,
        classification=CallClassification(
            ani_e164="+8613800138000",
            customer_id=customer_id,
            customer_name="张伟" if customer_id else None,
            customer_tier="vip" if customer_id else None,
            new_contact=customer_id is None,
            customer_match="unique" if customer_id else "none:unknown_number",
            service_id=1,
            service_name="support",
            language="zh-CN",
        ),
        ivr=IvrRecord(path=("menu", "billing"), inputs=(("menu", "2"), ("pin", "****"))),
        channels=("PJSIP/trunk-00000001", f"PJSIP/{agent}-0000000a") if agent else ("PJSIP/trunk-00000001",),
    )


def offer(agent_id: str, linkedid: str, customer_id: int | None = None) -> AgentOffered:
    return AgentOffered(
        call=snapshot(linkedid, customer_id=customer_id),
        agent_id=agent_id,
        service="support",
        rule="best_skill",
        waited_seconds=3.5,
        candidates=((agent_id, 8, 12.0),),
        candidates_total=1,
        relaxed=False,
        at=datetime.now(UTC),
    )


async def next_of(ws: websockets.ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if message["type"] == kind:
            return dict(message)


async def test_a_console_gets_hello_then_the_full_state(served: Served) -> None:
    async with await served.console("1001", Role.AGENT) as ws:
        hello = json.loads(await ws.recv())
        assert hello == {"type": "hello", "user": "1001", "role": "agent", "agent_id": "1001"}
        state = json.loads(await ws.recv())
        assert state["type"] == "state" and state["pop"] is None and state["agent"] is None


async def test_the_pop_reaches_only_the_offered_agent_with_the_customer_card(served: Served) -> None:
    """A cache miss (the call was never seen waiting): the first pop carries what the call knows of
    the customer, the second the whole card."""
    customer = await crm_service.create_customer(
        served.platform.sessionmaker,
        crm_service.NewCustomer(name="张伟", tier="vip", language="zh-CN", notes="<b>不要</b> 推销",
                                phones=[crm_service.NewPhone("+8613800138000")]),
        default_region="CN",
    )  # fmt: skip
    async with await served.console("1001", Role.AGENT) as a1, await served.console("1002", Role.AGENT) as a2:
        await next_of(a1, "state")
        await next_of(a2, "state")
        served.platform.routing.on_offer(offer("1001", "1700000000.7", customer.id))
        first = await next_of(a1, "screenpop")
        assert first["call"]["caller_name"] == "张伟"
        assert first["call"]["ivr_path"] == ["menu", "billing"]
        assert first["call"]["ivr_inputs"] == {"menu": "2", "pin": "****"}
        assert first["customer"]["tier"] == "vip" and first["customer"]["partial"] is True
        assert "best_skill" in first["reason"] and first["waited_seconds"] == 3.5
        full = await next_of(a1, "screenpop")
        assert full["customer"]["name"] == "张伟" and full["customer"]["notes"] == "<b>不要</b> 推销"
        assert "interactions" in full["customer"]
        with pytest.raises(TimeoutError):
            await next_of(a2, "screenpop", timeout=0.5)
    # A console that reconnects gets the pop back in its full state.
    async with await served.console("1001", Role.AGENT) as again:
        state = await next_of(again, "state")
        assert state["pop"]["call"]["linkedid"] == "1700000000.7"
        assert state["pop"]["customer"]["name"] == "张伟"


async def read_ahead(served: Served, count: int, timeout: float = 10.0) -> None:
    """Wait until ``count`` cards have been read ahead into the screen-pop's cache."""
    health = served.platform.consoles.service.health
    deadline = time.monotonic() + timeout
    while health.cards_read_ahead < count:
        assert time.monotonic() < deadline, f"{health.cards_read_ahead} cards read ahead, wanted {count}"
        await asyncio.sleep(0.02)


async def vip(served: Served) -> int:
    customer = await crm_service.create_customer(
        served.platform.sessionmaker,
        crm_service.NewCustomer(name="张伟", tier="vip", language="zh-CN", notes="老客户",
                                phones=[crm_service.NewPhone("+8613800138000")]),
        default_region="CN",
    )  # fmt: skip
    return customer.id


async def test_a_waiting_callers_card_is_read_ahead_and_the_first_pop_carries_it(served: Served) -> None:
    customer_id = await vip(served)
    service = served.platform.consoles.service
    async with await served.console("1001", Role.AGENT) as ws:
        await next_of(ws, "state")
        served.platform.bus.publish(
            CallChange(ChangeKind.UPDATED, snapshot("1700000005.1", customer_id=customer_id))
        )
        await read_ahead(served, 1)
        served.platform.routing.on_offer(offer("1001", "1700000005.1", customer_id))
        pop = await next_of(ws, "screenpop")
        assert "partial" not in pop["customer"]
        assert pop["customer"]["notes"] == "老客户" and "interactions" in pop["customer"]
        assert [p["e164"] for p in pop["customer"]["phones"]] == ["+8613800138000"]
        with pytest.raises(TimeoutError):  # no second message: the first one was whole
            await next_of(ws, "screenpop", timeout=0.5)
        assert service.health.card_hits == 1 and service.health.card_misses == 0


async def test_a_card_changed_while_the_caller_waits_is_read_again(served: Served) -> None:
    customer_id = await vip(served)
    async with await served.console("1001", Role.AGENT) as ws:
        await next_of(ws, "state")
        served.platform.bus.publish(
            CallChange(ChangeKind.UPDATED, snapshot("1700000006.1", customer_id=customer_id))
        )
        await read_ahead(served, 1)
        # A supervisor adds a phone through the real route while the caller waits.
        async with httpx.AsyncClient(base_url=served.base) as client:
            r = await client.post(
                f"/api/customers/{customer_id}/phones",
                json={"number": "+8613900139000", "label": "mobile"},
                headers={"Authorization": f"Bearer {served.token('boss', Role.SUPERVISOR)}"},
            )
            assert r.status_code == 201, r.text
        await read_ahead(served, 2)
        served.platform.routing.on_offer(offer("1001", "1700000006.1", customer_id))
        pop = await next_of(ws, "screenpop")
        assert "partial" not in pop["customer"]
        assert sorted(p["e164"] for p in pop["customer"]["phones"]) == ["+8613800138000", "+8613900139000"]


async def test_a_card_changed_with_no_caller_waiting_is_dropped_and_the_pop_falls_back(
    served: Served,
) -> None:
    customer_id = await vip(served)
    service = served.platform.consoles.service
    async with await served.console("1001", Role.AGENT) as ws:
        await next_of(ws, "state")
        waiting = snapshot("1700000007.1", customer_id=customer_id)
        served.platform.bus.publish(CallChange(ChangeKind.UPDATED, waiting))
        await read_ahead(served, 1)
        # That caller hangs up: the card is dropped (their history changed) and not read again.
        served.platform.bus.publish(CallChange(ChangeKind.ENDED, waiting))
        deadline = time.monotonic() + 5
        while service.cards.get(customer_id, asyncio.get_running_loop().time()) is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        # The next call of theirs is offered at once (never seen waiting): partial, then whole.
        served.platform.routing.on_offer(offer("1001", "1700000007.2", customer_id))
        first = await next_of(ws, "screenpop")
        assert first["customer"]["partial"] is True
        full = await next_of(ws, "screenpop")
        assert full["customer"]["notes"] == "老客户" and "partial" not in full["customer"]
        assert service.health.card_misses == 1 and service.health.card_hits == 0


async def test_agent_states_reach_the_agent_and_supervisors_live(served: Served) -> None:
    async with (
        await served.console("1001", Role.AGENT) as agent,
        await served.console("boss", Role.SUPERVISOR) as boss,
    ):
        await next_of(agent, "state")
        await next_of(boss, "state")
        served.platform.bus.publish(AgentStateChanged("1001", "ready", datetime.now(UTC)))
        assert (await next_of(agent, "agent_state"))["status"] == "ready"
        assert (await next_of(boss, "agent_state"))["agent_id"] == "1001"
        wall = await next_of(boss, "wallboard", timeout=5)
        assert {"services", "agents", "agents_by_state", "alerts"} <= set(wall)
        served.platform.bus.publish(
            CallChange(ChangeKind.UPDATED, snapshot("1700000000.9", agent="1001", phase=CallPhase.TALKING))
        )
        call = await next_of(agent, "call")
        assert call["call"]["phase"] == "talking" and call["call"]["agent"] == "1001"
        key = CallKey("pbx1", "1700000000.9")
        now = datetime.now(UTC)
        served.platform.bus.publish(CallControlled(key, "1001", "hold", "held", None, now))
        held = await next_of(agent, "call_control")
        assert held["state"] == "held" and held["call"] == "pbx1/1700000000.9"
        assert (await next_of(boss, "call_control"))["agent_id"] == "1001"
        served.platform.bus.publish(RecordingChanged(key, "PJSIP/1001-0000000a", RecordingState.PAUSED, now))
        assert (await next_of(agent, "recording"))["state"] == "paused"


async def test_the_wallboard_counts_agents_by_state_in_each_service_they_can_take(served: Served) -> None:
    """Through the real routes: two services, one needing a skill; an agent counts in every service
    whose always-needed skills they hold (routing's rule for staffing a line)."""
    admin = {"Authorization": f"Bearer {served.token('admin', Role.ADMIN)}"}
    async with httpx.AsyncClient(base_url=served.base, headers=admin) as client:
        for dnis, name in (("8001", "support"), ("8002", "vip")):
            r = await client.post("/api/services", json={"dnis": dnis, "name": name})
            assert r.status_code == 201, r.text
            needs = [{"skill": "vip", "min_level": 5}, {"skill": "mandarin", "optional": True}]
            routing = {"needs": needs if name == "vip" else []}
            r = await client.put(f"/api/routing/services/{r.json()['id']}", json=routing)
            assert r.status_code == 200, r.text
        for agent, skills, active in (
            ("1001", {"vip": 2}, True),
            ("1002", {}, True),
            ("1003", {"vip": 9}, False),
        ):
            r = await client.put(
                f"/api/routing/agents/{agent}",
                json={"name": f"agent {agent}", "skills": skills, "active": active},
            )
            assert r.status_code == 200, r.text
        for path in ("login", "ready"):
            r = await client.post(
                f"/api/routing/agents/1001/{path}",
                headers={"Authorization": f"Bearer {served.token('1001', Role.AGENT)}"},
            )
            assert r.status_code == 200, r.text
    async with await served.console("boss", Role.SUPERVISOR) as boss:
        await next_of(boss, "state")
        wall = await next_of(boss, "wallboard", timeout=10)
    rows = {row["service"]: row for row in wall["services"]}
    # 1001 (vip at level 2: the need's level is for choosing, not for working the line) is ready in
    # both; 1002 (no skill) only in support; 1003 is inactive and counts in neither.
    assert rows["support"]["agents_by_state"] == {"ready": 1, "logged_out": 1}
    assert rows["vip"]["agents_by_state"] == {"ready": 1}
    assert wall["agents_by_state"] == {"ready": 1, "logged_out": 2}
    assert {a["id"]: a["services"] for a in wall["agents"]} == {
        "1001": ["support", "vip"],
        "1002": ["support"],
        "1003": [],
    }


async def test_the_charts_fill_at_the_answer_and_when_the_agent_finishes(served: Served) -> None:
    """The call log writer stores the calls the bus carries; the wallboard's intervals count a call
    answered at once (before it ends), and its handle time when the agent's wrap-up is over."""
    admin = {"Authorization": f"Bearer {served.token('admin', Role.ADMIN)}"}
    async with httpx.AsyncClient(base_url=served.base, headers=admin) as client:
        r = await client.post(
            "/api/services", json={"dnis": "8001", "name": "support", "time_zone": "Asia/Shanghai"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["id"] == 1  # the id the snapshots carry
        r = await client.put("/api/routing/services/1", json={})
        assert r.status_code == 200, r.text
    writer = asyncio.create_task(served.platform.call_log.run())
    bus = served.platform.bus
    now = datetime.now(UTC)
    talking = replace(
        snapshot("1700000010.1", agent="1001", phase=CallPhase.TALKING),
        started_at=now - timedelta(seconds=30), connected_at=now - timedelta(seconds=25),
    )  # fmt: skip
    key = str(talking.key)
    try:
        async with await served.console("boss", Role.SUPERVISOR) as boss:
            await next_of(boss, "state")
            bus.publish(CallChange(ChangeKind.UPDATED, talking))
            bus.publish(AgentStateChanged("1001", "on_call", now, call=key, service="support"))

            async def support_row(check: Any) -> dict[str, Any]:
                deadline = time.monotonic() + 20
                while True:
                    wall = await next_of(boss, "wallboard", timeout=10)
                    row = next((s for s in wall["services"] if s["service"] == "support"), None)
                    if row is not None and check(row):
                        return dict(row)
                    assert time.monotonic() < deadline, wall["services"]

            row = await support_row(lambda r: r["answered"] == 1)
            (interval,) = row["intervals"]["rows"]
            assert interval["answered"] == 1 and interval["service_level"] == 1.0
            assert interval["asa_seconds"] == 5.0 and interval["aht_seconds"] is None
            assert row["intervals"]["time_zone"] == "Asia/Shanghai"
            assert row["intervals"]["current"] - interval["index"] in (0, 1)  # 25 s ago
            # The caller hangs up after 10 s of talk; the agent wraps up for a while, then is done.
            ended = replace(talking, phase=CallPhase.WRAP_UP, ended_at=now - timedelta(seconds=15))
            bus.publish(CallChange(ChangeKind.ENDED, ended))
            bus.publish(AgentStateChanged("1001", "wrap_up", now - timedelta(seconds=15), call=key))
            bus.publish(AgentStateChanged("1001", "ready", now - timedelta(seconds=13)))
            row = await support_row(lambda r: r["handled"] == 1)
            assert row["aht_seconds"] == 12.0  # 10 s of talk + 2 s of wrap-up
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_a_ticket_is_single_use_and_the_origin_is_checked(served: Served) -> None:
    ticket = await served.ticket("1001", Role.AGENT)
    url = f"ws://127.0.0.1:{served.port}/ws?ticket={ticket}"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    async with await websockets.connect(url, origin=served.origin) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
    for bad in (url, f"ws://127.0.0.1:{served.port}/ws?ticket=forged", f"ws://127.0.0.1:{served.port}/ws"):
        with pytest.raises(InvalidStatus) as used:
            await websockets.connect(bad, origin=served.origin)
        assert used.value.response.status_code == 403


async def test_oversized_and_flooding_consoles_are_closed(served: Served) -> None:
    async with await served.console("1001", Role.AGENT) as ws:
        await next_of(ws, "state")
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_of(ws, "pong"))["type"] == "pong"
        await ws.send("x" * 5000)
        assert await close_code(ws) == 1009
    async with await served.console("1001", Role.AGENT) as ws:
        await next_of(ws, "state")
        with contextlib.suppress(ConnectionClosed):
            for _ in range(200):
                await ws.send('{"type":"ping"}')
        assert await close_code(ws) == 1008


async def close_code(ws: websockets.ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 20)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def stalled_console(served: Served, username: str) -> socket.socket:
    """A real websocket client that completes the handshake and then never reads again."""
    ticket = await served.ticket(username, Role.AGENT)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", served.port))
    sock.sendall(
        (
            f"GET /ws?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {served.origin}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.to_thread(sock.recv, 1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


async def test_a_console_that_stops_reading_delays_no_other_and_is_dropped(served: Served) -> None:
    stalled = await stalled_console(served, "1001")
    try:
        async with await served.console("1002", Role.AGENT) as reader:
            await next_of(reader, "state")
            hub = served.platform.consoles.hub
            # 1001's console never reads, so its socket and then its queue fill up. 1002 must get
            # every one of its pops promptly all the same.
            delays = []
            for i in range(400):
                # Enough for the stalled console to fill the kernel's socket buffers (megabytes on
                # loopback) and then its own queue.
                for j in range(20):
                    served.platform.routing.on_offer(offer("1001", f"1700000001.{i * 20 + j}"))
                sent = time.monotonic()
                served.platform.routing.on_offer(offer("1002", f"1700000002.{i}"))
                pop = await next_of(reader, "screenpop", timeout=2.0)
                assert pop["call"]["linkedid"] == f"1700000002.{i}"
                delays.append(time.monotonic() - sent)
            assert hub.stats.dropped_consoles == 1
            assert {c.agent_id for c in hub.consoles} == {"1002"}
            delays.sort()
            assert delays[len(delays) // 2] < 0.5, delays[-10:]
    finally:
        stalled.close()


async def test_a_call_dialled_to_the_agent_directly_pops_as_it_rings(served: Served) -> None:
    async with await served.console("1001", Role.AGENT) as ws:
        await next_of(ws, "state")
        ringing = snapshot("1700000003.1", agent="1001", phase=CallPhase.RINGING_AGENT)
        served.platform.bus.publish(CallChange(ChangeKind.UPDATED, ringing))
        pop = await next_of(ws, "screenpop")
        assert pop["call"]["linkedid"] == "1700000003.1" and pop["rule"] == "direct"
        assert pop["call"]["caller_name"] == "张伟" and "directly" in pop["reason"]
        assert (await next_of(ws, "call"))["call"]["phase"] == "ringing_agent"
        # The same call again (talking now) does not pop twice.
        served.platform.bus.publish(
            CallChange(ChangeKind.UPDATED, snapshot("1700000003.1", agent="1001", phase=CallPhase.TALKING))
        )
        assert (await next_of(ws, "call"))["call"]["phase"] == "talking"
        with pytest.raises(TimeoutError):
            await next_of(ws, "screenpop", timeout=0.5)
        # A supervisor's spy call ringing the agent's own phone (used as the supervisor's) is no
        # call of the agent's: no pop, and it does not become their current call.
        spy = replace(
            snapshot("spy-0123456789abcdef", agent="1001", phase=CallPhase.RINGING_AGENT),
            anchor_uniqueid="spy-0123456789abcdef",
        )
        served.platform.bus.publish(CallChange(ChangeKind.UPDATED, spy))
        with pytest.raises(TimeoutError):
            await next_of(ws, "screenpop", timeout=0.5)
        assert served.platform.consoles.service.agent_calls["1001"].call.key.linkedid == "1700000003.1"


class RecordingSink:
    """Stands in for the AMI link only to read the Originate a spy request writes; listening against
    the real Asterisk is covered end to end (tests/e2e/test_console.py)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    async def send(self, action: str, headers: Any = None) -> dict[str, str]:
        self.sent.append((action, dict(headers or {})))
        return {"Response": "Success"}


@pytest.mark.parametrize(("mode", "options"), [("listen", "q"), ("whisper", "qw"), ("barge", "qB")])
async def test_spy_originates_chanspy_on_the_agents_own_channel(
    served: Served, mode: str, options: str
) -> None:
    service = served.platform.consoles.service
    sink = RecordingSink()
    service.actions = sink
    with pytest.raises(SpyError) as none:
        await service.spy("1001", mode, "1002")
    assert none.value.status == 409
    talking = snapshot("1700000004.1", agent="1001", phase=CallPhase.TALKING)
    service.handle(CallChange(ChangeKind.UPDATED, talking))
    result = await service.spy("1001", mode, "1002")
    ((action, headers),) = sink.sent
    assert action == "Originate" and headers["Channel"] == "PJSIP/1002"
    assert headers["Application"] == "ChanSpy" and headers["Data"] == f"PJSIP/1001-0000000a,{options}"
    assert result["channel"] == "PJSIP/1001-0000000a"
    for bad_mode, phone in (("eavesdrop", "1002"), (mode, "1002&PJSIP/666"), (mode, "1001")):
        with pytest.raises(SpyError) as refused:
            await service.spy("1001", bad_mode, phone)
        assert refused.value.status == 422
    assert len(sink.sent) == 1
    # Transferred to 1002: the call is 1002's now, and 1001 has no call to spy on.
    service.handle(
        CallChange(ChangeKind.UPDATED, snapshot("1700000004.1", agent="1002", phase=CallPhase.TALKING))
    )
    with pytest.raises(SpyError) as moved:
        await service.spy("1001", mode, "1003")
    assert moved.value.status == 409
    assert (await service.spy("1002", mode, "1003"))["channel"] == "PJSIP/1002-0000000a"
