"""``cti demo``: the call plan and the logins file on their own, then the whole demo for real (sandbox
PBX, platform, SIPp agents and callers) on its own instance and ports, driven only through its output
and the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.demo import (
    DEMO_IVR_WALKS,
    HOLD_SECONDS,
    CallPlan,
    IvrWalk,
    _known_callers,
    demo_logins,
    ivr_line,
    ivr_status,
    run_demo,
)
from cti.auth import Role
from cti.model import IvrRecord
from cti.settings import Settings, load_settings
from ivr.files import example_flows
from ivr.service import IvrFinished
from sandbox import Sandbox
from sandbox.procs import check_port_free
from sandbox.traffic import VOICE, Caller
from tests.support.platform import CTI, free_port
from tests.support.sandbox import skip_unless_sandbox_possible

KNOWN = [
    Caller("张伟", "+8613800138000"),
    Caller("Alice Smith", "+12015550123"),
    Caller("陈静", "+862087654321"),
    Caller("陈明", "+862087654321"),
]


def _chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.mark.parametrize("seed", range(25))
def test_every_round_of_the_plan_dials_every_service_once_with_one_unknown_caller(seed: int) -> None:
    plan = CallPlan(random.Random(seed), KNOWN, ["8001", "8002"], ["8009"])
    for _ in range(4):
        calls = [plan.next() for _ in range(3)]
        assert sorted(c.dnis for c in calls) == ["8001", "8002", "8009"]
        assert sum(not c.known for c in calls) == 1
        for c in calls:
            if c.dnis == "8009":
                assert c.hold_seconds is None  # the agent ends the call
            else:
                assert c.hold_seconds is not None and HOLD_SECONDS[0] <= c.hold_seconds <= HOLD_SECONDS[1]
            if c.known:
                assert c.caller in KNOWN
            else:
                assert c.caller.number not in {k.number for k in KNOWN}
                assert c.caller.number.startswith("+")


def test_each_round_opens_with_the_next_ivr_walk() -> None:
    walks = [IvrWalk(f"walk {i}", KNOWN[i], "4008001234", ((1000, "1"),), 30.0) for i in range(2)]
    plan = CallPlan(random.Random(3), KNOWN, ["8001", "8002"], ["8009"], walks)
    rounds = [[plan.next() for _ in range(4)] for _ in range(3)]
    assert [r[0].walk for r in rounds] == [walks[0], walks[1], walks[0]]
    for r in rounds:
        assert r[0].walk is not None and r[0].caller == r[0].walk.caller and r[0].dnis == "4008001234"
        assert sorted(c.dnis for c in r[1:]) == ["8001", "8002", "8009"] and not any(c.walk for c in r[1:])


def test_a_walk_due_while_its_ivr_is_closed_leaves_a_message_instead() -> None:
    walks = list(DEMO_IVR_WALKS)
    status = {"4008001234": "closed", "18005550100": "open"}
    plan = CallPlan(random.Random(3), KNOWN, ["8001"], [], walks, lambda dnis: status[dnis])
    rounds = [(plan.next(), plan.next()) for _ in walks]  # each: the walk, then the 8001 call
    firsts = [walk_call for walk_call, _ in rounds]
    for call, walk in zip(firsts, walks, strict=True):
        assert call.walk is not None and call.caller == walk.caller and call.dnis == walk.dnis
        if walk.dnis == "18005550100":
            assert call.walk == walk
        else:
            # No menu keys: the closed flow goes straight to its message; the caller speaks once
            # the closed message has played, then hangs up well within the message's limit.
            assert call.walk.keys == ((walk.closed_speak_ms, VOICE),)
            assert "finds it closed: leaves a message" in call.walk.what
            assert call.hold_seconds is not None and walk.closed_speak_ms / 1000 < call.hold_seconds < 30


def test_the_demo_flows_are_open_closed_or_on_holiday_by_their_own_clock() -> None:
    flows = example_flows()
    support, sales = flows["4008001234"], flows["18005550100"]
    # Support: 08:00-22:00 every day in Shanghai (UTC+8); closed 1-7 October.
    assert ivr_status(support, datetime(2026, 11, 23, 1, 0, tzinfo=UTC)) == "open"  # 09:00 Shanghai
    assert ivr_status(support, datetime(2026, 11, 22, 19, 0, tzinfo=UTC)) == "closed"  # 03:00
    assert ivr_status(support, datetime(2026, 10, 2, 4, 0, tzinfo=UTC)) == "holiday"
    # Sales: New York hours, shut on Sundays.
    assert ivr_status(sales, datetime(2026, 11, 23, 15, 0, tzinfo=UTC)) == "open"  # Mon 10:00 EST
    assert ivr_status(sales, datetime(2026, 11, 22, 15, 0, tzinfo=UTC)) == "closed"  # Sunday


def test_the_demo_walks_cover_both_languages_self_service_and_voicemail() -> None:
    walks = " / ".join(w.what for w in DEMO_IVR_WALKS)
    for part in ("English", "Mandarin", "self-service", "voicemail"):
        assert part in walks


def test_an_ivr_walk_is_shown_with_its_path_inputs_and_outcome() -> None:
    record = IvrRecord(
        path=("choose_language", "greeting", "hours", "main_menu", "balance_pin", "balance", "anything_else"),
        inputs=(("choose_language.language", "zh (customer record)"), ("balance_pin.pin", "****")),
        language="zh",
        outcome="hangup",
    )
    line = ivr_line(IvrFinished("1700000000.1", "4008001234", "客户服务热线", "+8613912345678", record))
    assert "IVR 4008001234 (客户服务热线): +8613912345678 in zh: choose_language → greeting" in line
    assert "balance_pin.pin=****; heard goodbye" in line


def test_known_callers_come_in_turn_before_any_repeats() -> None:
    plan = CallPlan(random.Random(7), KNOWN, ["8001", "8002"], ["8009"])
    known = [c.caller for c in (plan.next() for _ in range(6)) if c.known]
    assert len(known) == 4 and sorted(map(repr, known)) == sorted(map(repr, KNOWN))


def test_without_customers_or_agents_the_plan_still_calls() -> None:
    plan = CallPlan(random.Random(1), [], ["8001", "8002"])
    calls = [plan.next() for _ in range(10)]
    assert {c.dnis for c in calls} == {"8001", "8002"}
    assert not any(c.known for c in calls)
    with pytest.raises(ValueError, match="no DNIS"):
        CallPlan(random.Random(1), KNOWN, [])


def test_customers_whose_names_sipp_cannot_carry_are_left_out() -> None:
    phone = SimpleNamespace(e164="+8613800138000")
    customers = [
        SimpleNamespace(name="张伟", phones=[phone, SimpleNamespace(e164="+862161234567")]),
        SimpleNamespace(name='Say "hi"', phones=[phone]),
        SimpleNamespace(name="[x]", phones=[phone]),
    ]
    assert _known_callers(customers) == [Caller("张伟", "+8613800138000"), Caller("张伟", "+862161234567")]


def test_demo_logins_are_generated_once_and_readable_by_the_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = demo_logins(state)
    assert set(first) == set(Role)
    assert all(len(pw) >= 12 for pw in first.values())
    path = state / "demo-logins.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo_logins(state) == first
    path.write_text("not json")
    again = demo_logins(state)
    assert again != first and demo_logins(state) == again


async def test_the_demo_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert await run_demo(Settings(), calls_per_minute=6, duration=1) == 1
    assert "needs root" in capsys.readouterr().err


# -- the demo for real ---------------------------------------------------------------------------------

PORTS = {"sip": 16060, "ami": 16038, "agent_base": 16071, "rtp_start": 31000, "rtp_end": 31999}
PORTS["agi"] = 16573  # the demo's IVR (FastAGI), clear of the default 4573
PORTS["outside"] = 16069  # the demo campaign's customers (the outside endpoint), clear of the default 5069
AGENTS = 4


def _demo_env(tmp_path: Path, http_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "CTI_SETTINGS_FILE": str(tmp_path / "none.toml"),
        "CTI_STATE_DIR": str(tmp_path / "state"),
        "CTI_SANDBOX__INSTANCE": "demotest",
        "CTI_SANDBOX__SIP_PORT": str(PORTS["sip"]),
        "CTI_SANDBOX__AGENT_COUNT": str(AGENTS),
        "CTI_SANDBOX__AGENT_BASE_PORT": str(PORTS["agent_base"]),
        "CTI_SANDBOX__RTP_START": str(PORTS["rtp_start"]),
        "CTI_SANDBOX__RTP_END": str(PORTS["rtp_end"]),
        "CTI_SANDBOX__OUTSIDE_PORT": str(PORTS["outside"]),
        "CTI_AMI__PORT": str(PORTS["ami"]),
        "CTI_HTTP__PORT": str(http_port),
        "CTI_IVR__AGI_PORT": str(PORTS["agi"]),
        "PYTHONUNBUFFERED": "1",
    }


async def _until(ok: Any, timeout: float, output: Any) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, output()
        await asyncio.sleep(0.2)


def _demo_settings() -> Settings:
    """The demo instance's settings, as the subprocess sees them (for asking its Asterisk directly)."""
    base = load_settings()
    sandbox = base.sandbox.model_copy(
        update={"instance": "demotest", "sip_port": PORTS["sip"], "agent_base_port": PORTS["agent_base"]}
    )
    ami = base.ami.model_copy(update={"port": PORTS["ami"], "secret": None, "secret_file": None})
    return base.model_copy(update={"sandbox": sandbox, "ami": ami})


async def _pbx_down(env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        CTI, "pbx", "down", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode(errors="replace")


@pytest.mark.sandbox
async def test_cti_demo_places_simulated_calls_and_stops_cleanly(tmp_path: Path) -> None:
    skip_unless_sandbox_possible()
    http_port = free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    env = _demo_env(tmp_path, http_port)
    stderr_path = tmp_path / "demo.stderr"
    lines: list[str] = []
    started = time.monotonic()
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            CTI, "demo", "--duration", "25", "--calls-per-minute", "30",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True,
        )  # fmt: skip

    async def read_output() -> None:
        assert proc.stdout is not None
        while raw := await proc.stdout.readline():
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    reader = asyncio.create_task(read_output())

    def output() -> str:
        return "\n".join(lines) + "\n--- stderr ---\n" + stderr_path.read_text(errors="replace")[-3000:]

    try:
        # The first run on a machine builds the Asterisk root filesystem: minutes, not seconds.
        deadline = time.monotonic() + 900
        logins: dict[str, str] = {}
        while len(logins) < 3:
            assert time.monotonic() < deadline, f"no logins printed:\n{output()}"
            assert proc.returncode is None, f"cti demo exited early ({proc.returncode}):\n{output()}"
            for line in lines:
                if m := re.fullmatch(r"\s+(admin|supervisor|agent) / (\S+)", line):
                    logins[m[1]] = m[2]
            await asyncio.sleep(0.2)
        up_at = time.monotonic()
        text = "\n".join(lines)
        assert f"{base_url}/docs" in text and f"{base_url}/api/health" in text
        assert "/api/auth/login" in text and "Authorization: Bearer $TOKEN" in text

        rows: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as api:
            for role in ("agent", "supervisor"):
                response = await api.post(
                    "/api/auth/login", json={"username": role, "password": logins[role]}
                )
                assert response.status_code == 200, response.text
            response = await api.post(
                "/api/auth/login", json={"username": "admin", "password": logins["admin"]}
            )
            assert response.status_code == 200, response.text
            api.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            while proc.returncode is None:
                try:
                    response = await api.get("/api/calls", params={"limit": 1000})
                except httpx.TransportError:
                    # The demo's time is up: its HTTP server closes before the process exits, and
                    # the assertions below say which of the calls it was meant to show is missing.
                    break
                assert response.status_code == 200, response.text
                rows = response.json()
                chinese = [r for r in rows if _chinese(r["caller_name"]) and r["customer_id"] is not None]
                answered = [r for r in rows if r["agent"] and r["dnis"] == "8009" and r["ended_at"]]
                # The demo campaign's calls (ChannelIds ``dial-…``) carry ["campaign", "demo"] as path.
                walked = [r for r in rows if r["ivr_path"] and not r["linkedid"].startswith("dial-")]
                if chinese and answered and walked:
                    break
                await asyncio.sleep(0.5)
        assert chinese, f"no call log from a known customer with a Chinese name: {rows}\n{output()}"
        assert answered, f"no ended call log answered by an agent: {rows}\n{output()}"
        assert answered[0]["agent"] == "1001" and answered[0]["connected_at"] is not None
        # The demo campaign's calls (ChannelIds ``dial-…``) are outbound; the rest came in.
        inbound = [r for r in rows if not r["linkedid"].startswith("dial-")]
        assert {r["dnis"] for r in inbound} <= {"8001", "8002", "8009", "4008001234", "18005550100"}
        # The first caller walked the IVR: its path is on the call log and the output shows it.
        assert walked, f"no call log with an IVR path: {rows}\n{output()}"
        ivr_shown = re.compile(r"  IVR (4008001234|18005550100) \(.+\): \+\d+ in ")
        shown = [line for line in lines if ivr_shown.search(line)]
        assert shown and " → " in shown[0], output()
        assert any(" walks the IVR: " in line for line in lines), output()
        # The demo campaign: its pace explained, and its customers' outcomes as they settle.
        await _until(lambda: any(" campaign demo: +86139" in line for line in lines), 60, output)
        paces = [line for line in lines if " campaign demo pace: " in line]
        assert paces and "predictive" in paces[0] and "attempts" in paces[0], output()
        settled = [line for line in lines if " campaign demo: +86139" in line]
        assert re.search(r"\((busy|person|machine|hangs up|no answer)\) → [a-z_]+$", settled[0]), output()

        code = await asyncio.wait_for(proc.wait(), 90)
        await reader
        ran = time.monotonic() - up_at
        assert code == 0, output()
        assert 24 <= ran <= 60, f"ran {ran:.1f} s after printing the logins"
        assert "cti pbx down" in lines[-1], output()
        assert stat.S_IMODE((tmp_path / "state" / "demo-logins.json").stat().st_mode) == 0o600
        # Nothing left behind but the PBX itself: no channel in Asterisk, every phone's port free again.
        assert await Sandbox(_demo_settings()).cli_rx("core show channels concise") == ""
        for n in range(AGENTS):
            check_port_free("127.0.0.1", PORTS["agent_base"] + n, "agent", proto="udp", setting="-")
        print(f"cti demo: up after {up_at - started:.1f} s, exited {ran:.1f} s later")
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await _pbx_down(env)
