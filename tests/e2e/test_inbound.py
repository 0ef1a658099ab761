"""End to end: SIPp callers → the real sandbox Asterisk 22 → ``cti serve`` → call logs over HTTP.

Nothing is faked here: Asterisk, SIPp callers and agent phones, the platform process and its
database are all real. Each test starts its own platform with a fresh database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support import sipp
from tests.support.platform import CuttableLink, PlatformProcess
from tests.support.sandbox import SIPP_PORT_BASE, SandboxPbx

pytestmark = [pytest.mark.sandbox]

ADMIN = ("admin", "admin-password-1")
_ports = itertools.count(SIPP_PORT_BASE, 8)


def sip_ports() -> tuple[int, int]:
    port = next(_ports)
    return port, port + 4


async def start_platform(
    pbx: SandboxPbx, tmp_path: Path, *, ami_port: int | None = None, database_url: str | None = None
) -> PlatformProcess:
    platform = PlatformProcess.configure(
        tmp_path / "platform",
        ami_port=ami_port or pbx.ami_port,
        ami_secret_file=pbx.instance_dir / "ami.secret",
        database_url=database_url,
    )
    await platform.add_user(*ADMIN, "admin")
    await platform.start()
    await platform.login(*ADMIN)
    async with platform.client() as api:
        for dnis, name, language in ((pbx.hold_dnis, "support", "zh-CN"), (pbx.direct_dnis, "sales", "en")):
            response = await api.post(
                "/api/services", json={"dnis": dnis, "name": name, "language": language}
            )
            assert response.status_code == 201, response.text
    return platform


async def create_customer(
    platform: PlatformProcess, name: str, number: str, tier: str = "vip"
) -> dict[str, Any]:
    async with platform.client() as api:
        response = await api.post(
            "/api/customers",
            json={"name": name, "tier": tier, "language": "zh-CN", "phones": [{"number": number}]},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


async def calls(platform: PlatformProcess, **params: Any) -> list[dict[str, Any]]:
    async with platform.client() as api:
        response = await api.get("/api/calls", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return list(response.json())


async def wait_for_calls(
    platform: PlatformProcess, count: int, *, ended: bool = True, timeout: float = 30.0, **params: Any
) -> list[dict[str, Any]]:
    """The call logs matching ``params`` once there are ``count`` of them (all ended, if asked)."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = await calls(platform, **params)
        if len(rows) >= count and (not ended or all(r["ended_at"] for r in rows)):
            return rows
        await asyncio.sleep(0.25)
    raise AssertionError(f"expected {count} call logs (ended={ended}), got {rows}\n{platform.log_tail()}")


async def live_calls(platform: PlatformProcess) -> int:
    async with platform.client() as api:
        return int((await api.get("/api/health")).json()["live_calls"])


def ts(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


@pytest.fixture
async def platform(sandbox_pbx: SandboxPbx, tmp_path: Path):
    proc = await start_platform(sandbox_pbx, tmp_path)
    try:
        yield proc
    finally:
        await proc.stop()


async def test_known_caller_with_a_chinese_name_gets_a_complete_call_log(sandbox_pbx, platform):
    customer = await create_customer(platform, "张伟", "+86 138 0013 8000")
    port, media = sip_ports()
    result = await sipp.call(
        pbx_port=sandbox_pbx.sip_port,
        dnis=sandbox_pbx.hold_dnis,
        caller=sipp.Caller("张伟", "+8613800138000"),
        port=port,
        media_port=media,
        hangup_after_ms=3000,
    )
    assert result.ok, result.output[-2000:]
    (row,) = await wait_for_calls(platform, 1, customer_id=customer["id"])
    assert row["pbx"] == "test"
    assert row["direction"] == "inbound"
    assert row["ani_raw"] == "+8613800138000"
    assert row["ani_e164"] == "+8613800138000"
    assert row["caller_name"] == "张伟"
    assert row["dnis"] == sandbox_pbx.hold_dnis
    assert row["customer_id"] == customer["id"]
    assert row["new_contact"] is False
    assert row["customer_match"] == "unique"
    services = {s["dnis"]: s["id"] for s in (await (platform.client()).get("/api/services")).json()}
    assert row["service_id"] == services[sandbox_pbx.hold_dnis]
    started, answered, ended = ts(row["started_at"]), ts(row["answered_at"]), ts(row["ended_at"])
    assert started <= answered < ended
    assert 2.5 <= (ended - started).total_seconds() <= 8
    assert row["connected_at"] is None and row["agent"] is None
    assert row["talk_seconds"] == 0
    assert row["wait_seconds"] == pytest.approx((ended - started).total_seconds(), abs=0.01)
    assert row["hangup_cause"] is not None  # 0 from Asterisk 22 when the caller hangs up on hold
    assert row["end_reason"] == "hangup"
    assert row["phase"] == "ended"
    # The same row is the customer's interaction history.
    async with platform.client() as api:
        detail = (await api.get(f"/api/customers/{customer['id']}")).json()
    assert [i["linkedid"] for i in detail["interactions"]] == [row["linkedid"]]
    assert await live_calls(platform) == 0


async def test_a_call_answered_by_an_agent_records_the_agent_and_talk_time(sandbox_pbx, platform):
    agent = sandbox_pbx.agents[0]
    phone = await sipp.start_agent_phone(port=agent.port, media_port=next(_ports), talk_ms=2000, calls=1)
    try:
        port, media = sip_ports()
        result = await sipp.call(
            pbx_port=sandbox_pbx.sip_port,
            dnis=sandbox_pbx.direct_dnis,
            caller=sipp.Caller("Alice Smith", "2025550123"),
            port=port,
            media_port=media,
        )
        assert result.ok, result.output[-2000:]
    finally:
        await phone.stop()
    (row,) = await wait_for_calls(platform, 1, ani="2025550123")
    assert row["agent"] == agent.id
    assert row["new_contact"] is True and row["customer_id"] is None
    started, connected, ended = ts(row["started_at"]), ts(row["connected_at"]), ts(row["ended_at"])
    assert started < connected < ended
    assert row["talk_seconds"] == pytest.approx(2.0, abs=1.0)
    assert row["wait_seconds"] == pytest.approx((connected - started).total_seconds(), abs=0.01)
    assert row["end_reason"] == "hangup"


async def test_an_unknown_caller_is_a_new_contact(sandbox_pbx, platform):
    port, media = sip_ports()
    result = await sipp.call(
        pbx_port=sandbox_pbx.sip_port,
        dnis=sandbox_pbx.hold_dnis,
        caller=sipp.Caller("陌生人", "13912345678"),
        port=port,
        media_port=media,
        hangup_after_ms=1000,
    )
    assert result.ok
    (row,) = await wait_for_calls(platform, 1, ani="13912345678")
    assert row["customer_id"] is None
    assert row["new_contact"] is True
    assert row["customer_match"] == "none:unknown_number"
    assert row["ani_e164"] == "+8613912345678"  # the default region of this platform is CN
    assert row["caller_name"] == "陌生人"


async def test_a_caller_who_hangs_up_while_the_agent_phone_rings(sandbox_pbx, platform):
    agent = sandbox_pbx.agents[0]
    phone = await sipp.start_ringing_phone(port=agent.port, media_port=next(_ports))
    try:
        port, media = sip_ports()
        result = await sipp.call(
            pbx_port=sandbox_pbx.sip_port,
            dnis=sandbox_pbx.direct_dnis,
            caller=sipp.Caller("王芳", "13700001111"),
            port=port,
            media_port=media,
            hangup_after_ms=2500,
        )
        assert result.ok, result.output[-2000:]
        (row,) = await wait_for_calls(platform, 1, ani="13700001111")
    finally:
        await phone.stop()
    assert row["connected_at"] is None
    assert row["talk_seconds"] == 0
    assert row["end_reason"] == "hangup"
    assert row["wait_seconds"] == pytest.approx(2.5, abs=1.5)
    assert await live_calls(platform) == 0


async def test_twenty_concurrent_calls_give_exactly_twenty_call_logs(sandbox_pbx, platform):
    callers = [sipp.Caller(f"客户{i:02d}", f"1380000{i:04d}") for i in range(20)]
    port, media = sip_ports()
    proc = await sipp.start_callers(
        pbx_port=sandbox_pbx.sip_port,
        dnis=sandbox_pbx.hold_dnis,
        callers=callers,
        port=port,
        media_port=media,
        hangup_after_ms=4000,
        rate=20,
        limit=20,
    )
    result = await proc.wait(60)
    assert result.calls_ok == 20, result.output[-2000:]
    rows = await wait_for_calls(platform, 20)
    await asyncio.sleep(1.0)  # nothing more may arrive
    rows = await calls(platform)
    assert len(rows) == 20
    assert sorted(r["ani_raw"] for r in rows) == sorted(c.number for c in callers)
    assert len({r["linkedid"] for r in rows}) == 20
    assert all(r["end_reason"] == "hangup" for r in rows)
    assert await live_calls(platform) == 0


async def test_sql_and_html_in_caller_names_and_junk_numbers_are_just_data(sandbox_pbx, platform):
    evil = [
        sipp.Caller("Robert'); DROP TABLE call_logs;--", "15550001"),
        sipp.Caller("<script>alert(1)</script>", "abc"),
    ]
    port, media = sip_ports()
    proc = await sipp.start_callers(
        pbx_port=sandbox_pbx.sip_port,
        dnis=sandbox_pbx.hold_dnis,
        callers=evil,
        port=port,
        media_port=media,
        hangup_after_ms=1000,
        rate=10,
    )
    assert (await proc.wait(30)).calls_ok == 2
    rows = await wait_for_calls(platform, 2)
    by_name = {r["caller_name"]: r for r in rows}
    assert set(by_name) == {c.name for c in evil}
    junk = by_name["<script>alert(1)</script>"]
    assert junk["ani_raw"] == "abc" and junk["ani_e164"] is None
    assert junk["new_contact"] is True and junk["customer_match"] == "none:invalid_number"


# ---------------------------------------------------------------------------------------------- faults


async def _hold_call(pbx: SandboxPbx, caller: sipp.Caller, seconds: float) -> sipp.SippProcess:
    port, media = sip_ports()
    return await sipp.start_callers(
        pbx_port=pbx.sip_port,
        dnis=pbx.hold_dnis,
        callers=[caller],
        port=port,
        media_port=media,
        hangup_after_ms=int(seconds * 1000),
    )


async def _wait_live(platform: PlatformProcess, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while await live_calls(platform) != count:
        assert time.monotonic() < deadline, f"expected {count} live calls\n{platform.log_tail()}"
        await asyncio.sleep(0.2)


async def test_ami_link_cut_and_restored_mid_call(sandbox_pbx, tmp_path):
    link = CuttableLink(sandbox_pbx.ami_port)
    await link.start()
    platform = await start_platform(sandbox_pbx, tmp_path, ami_port=link.port)
    try:
        short = await _hold_call(sandbox_pbx, sipp.Caller("短", "13800000001"), 3)
        long = await _hold_call(sandbox_pbx, sipp.Caller("长", "13800000002"), 9)
        await _wait_live(platform, 2)
        link.cut()
        assert (await short.wait(20)).calls_ok == 1  # ends while we cannot see it
        link.restore()
        await platform.wait_healthy(30)
        assert (await long.wait(30)).calls_ok == 1  # ends after the link is back
        rows = await wait_for_calls(platform, 2)
        reasons = {r["ani_raw"]: r["end_reason"] for r in rows}
        assert reasons == {"13800000001": "ended_while_ami_link_down", "13800000002": "hangup"}
        assert len(await calls(platform)) == 2
        assert await live_calls(platform) == 0
    finally:
        await platform.stop()
        await link.close()


async def test_asterisk_restarted_mid_call(sandbox_pbx, tmp_path):
    platform = await start_platform(sandbox_pbx, tmp_path)
    try:
        caller = await _hold_call(sandbox_pbx, sipp.Caller("李娜", "13800000003"), 30)
        await _wait_live(platform, 1)
        await sandbox_pbx.restart(kill=True)
        await platform.wait_healthy(60)
        (row,) = await wait_for_calls(platform, 1, timeout=30)
        assert row["end_reason"] == "ended_by_pbx_restart"
        assert row["ended_at"] is not None
        await caller.stop()
        assert await live_calls(platform) == 0
        assert len(await calls(platform)) == 1
    finally:
        await platform.stop()
        await sandbox_pbx.ensure_up()


async def test_platform_killed_and_started_again_mid_call(sandbox_pbx, tmp_path):
    platform = await start_platform(sandbox_pbx, tmp_path)
    try:
        gone = await _hold_call(sandbox_pbx, sipp.Caller("走了", "13800000004"), 3)
        stays = await _hold_call(sandbox_pbx, sipp.Caller("还在", "13800000005"), 10)
        await _wait_live(platform, 2)
        await wait_for_calls(platform, 2, ended=False)  # both rows exist, open
        await platform.kill()
        assert (await gone.wait(20)).calls_ok == 1  # ends while the platform is dead
        await platform.start()
        assert (await stays.wait(30)).calls_ok == 1
        rows = await wait_for_calls(platform, 2)
        by_ani = {r["ani_raw"]: r for r in rows}
        assert by_ani["13800000004"]["end_reason"] == "ended_while_platform_down"
        assert by_ani["13800000005"]["end_reason"] == "hangup"
        assert by_ani["13800000005"]["caller_name"] == "还在"
        assert len(await calls(platform)) == 2
        assert await live_calls(platform) == 0
    finally:
        await platform.stop()


@pytest.mark.postgres
async def test_database_unavailable_at_hangup(sandbox_pbx, postgres_server, tmp_path):
    url = postgres_server.create_database("e2e_outage")
    platform = await start_platform(sandbox_pbx, tmp_path, database_url=url)
    try:
        caller = await _hold_call(sandbox_pbx, sipp.Caller("赵敏", "13800000006"), 4)
        await _wait_live(platform, 1)
        await wait_for_calls(platform, 1, ended=False)
        await asyncio.to_thread(postgres_server.stop)
        assert (await caller.wait(20)).calls_ok == 1  # hangs up while the database is down
        await asyncio.sleep(1.0)
        await asyncio.to_thread(postgres_server.start)
        (row,) = await wait_for_calls(platform, 1, timeout=30)
        assert row["end_reason"] == "hangup"
        assert row["caller_name"] == "赵敏"
        assert len(await calls(platform)) == 1
    finally:
        await platform.stop()
        if not postgres_server.running:
            await asyncio.to_thread(postgres_server.start)


def spooled_ended(spool: Path) -> bool:
    try:
        return any(c["ended_at"] for c in json.loads(spool.read_text(encoding="utf-8"))["calls"])
    except (OSError, ValueError):
        return False


@pytest.mark.postgres
async def test_platform_killed_during_a_database_outage_loses_no_call_log(
    sandbox_pbx, postgres_server, tmp_path
):
    url = postgres_server.create_database("e2e_outage_kill")
    platform = await start_platform(sandbox_pbx, tmp_path, database_url=url)
    spool = platform.state_dir / "spool" / "call-logs-test.json"
    try:
        caller = await _hold_call(sandbox_pbx, sipp.Caller("钱多多", "13800000007"), 3)
        await _wait_live(platform, 1)
        await wait_for_calls(platform, 1, ended=False)
        await asyncio.to_thread(postgres_server.stop)
        assert (await caller.wait(20)).calls_ok == 1  # hangs up while the database is down
        deadline = time.monotonic() + 15
        while not spooled_ended(spool):  # the ended call is on disk, not only in memory
            assert time.monotonic() < deadline, platform.log_tail()
            await asyncio.sleep(0.2)
        await platform.kill()
        await asyncio.to_thread(postgres_server.start)
        await platform.start()
        (row,) = await wait_for_calls(platform, 1, timeout=30)
        # Its real end, not "ended while the platform was down": the spool outranks the resync.
        assert row["end_reason"] == "hangup"
        assert row["caller_name"] == "钱多多"
        assert len(await calls(platform)) == 1
    finally:
        await platform.stop()
        if not postgres_server.running:
            await asyncio.to_thread(postgres_server.start)


async def test_a_hung_asterisk_is_noticed_by_the_ping_deadline(sandbox_pbx, platform):
    pid = sandbox_pbx.sandbox.status(probe=False).pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the socket stays open, nothing answers: a hung Asterisk
    try:
        deadline = time.monotonic() + 15
        async with platform.client() as api:
            while (await api.get("/api/health")).json()["ami"] != "down":
                assert time.monotonic() < deadline, platform.log_tail()
                await asyncio.sleep(0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    await platform.wait_healthy(30)
    async with platform.client() as api:
        details = (await api.get("/api/health/details")).json()
    assert details["ami"]["counters"]["ping_timeouts"] >= 1
    assert details["calls"]["logins"] >= 2
