"""The sandbox PBX for real: Asterisk 22 in its chroot, SIPp callers and agents' phones, AMI bytes.

The tests share one running instance (session fixture) and run in file order; the last one stops it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket

import pytest

from dialplans.render import Service
from sandbox import BootTimeoutError, PortInUseError, Sandbox
from sandbox.ami_probe import probe_fully_booted
from tests.support.sandbox import SandboxPbx, render_for, sandbox_test_settings, skip_unless_sandbox_possible
from tests.support.sipp import Caller, call, start_agent_phone, start_callers, start_ringing_phone

pytestmark = pytest.mark.sandbox

ZHANG_WEI = Caller("张伟", "13800138000")
LI_NA = Caller("李娜", "13900139000")


def _one(events: list[dict[str, str]], what: str) -> dict[str, str]:
    assert len(events) == 1, f"expected one {what}, got {len(events)}: {events}"
    return events[0]


async def test_status_reports_a_running_asterisk_22(sandbox_pbx: SandboxPbx) -> None:
    status = sandbox_pbx.sandbox.status()
    assert status.running
    assert status.pid is not None and status.pid > 1
    assert status.fully_booted is True
    assert status.asterisk_version is not None and status.asterisk_version.startswith("22.")
    assert (status.sip_port, status.ami_port) == (15060, 15038)
    assert status.instance_dir == sandbox_pbx.instance_dir
    assert "running" in status.describe()


async def test_up_is_idempotent(sandbox_pbx: SandboxPbx) -> None:
    before = sandbox_pbx.sandbox.status()
    said: list[str] = []
    again = await sandbox_pbx.sandbox.up(sandbox_pbx.files, progress=said.append)
    assert again.running and again.pid == before.pid
    assert any("already running" in line for line in said), said
    assert not any("starting" in line for line in said), said


async def test_secret_file_is_private_and_stable(sandbox_pbx: SandboxPbx) -> None:
    path = sandbox_pbx.sandbox.secret_path("ami")
    assert path.stat().st_mode & 0o777 == 0o600
    assert sandbox_pbx.sandbox.ensure_secret("ami") == sandbox_pbx.ami_secret
    assert sandbox_pbx.settings.effective_ami().resolved_secret().get_secret_value() == sandbox_pbx.ami_secret


async def test_cli_rx_reaches_the_instance(sandbox_pbx: SandboxPbx) -> None:
    version = await sandbox_pbx.cli("core show version")
    assert version.startswith("Asterisk 22.")
    endpoints = await sandbox_pbx.cli("pjsip show endpoints")
    assert "trunk" in endpoints and "1001" in endpoints and "1002" in endpoints


async def test_ami_probe_refuses_a_wrong_secret(sandbox_pbx: SandboxPbx) -> None:
    result = await asyncio.to_thread(
        probe_fully_booted,
        sandbox_pbx.ami_host,
        sandbox_pbx.ami_port,
        sandbox_pbx.ami_username,
        "wrong-secret",
        5.0,
    )
    assert not result.ok
    assert "refused" in result.reason


async def test_hold_call_carries_utf8_name_and_dnis(sandbox_pbx: SandboxPbx) -> None:
    capture = await sandbox_pbx.recorder(capture=True)
    platform = await sandbox_pbx.recorder(capture=False)
    try:
        result = await call(
            pbx_port=sandbox_pbx.sip_port,
            dnis=sandbox_pbx.hold_dnis,
            caller=ZHANG_WEI,
            port=15161,
            media_port=16000,
            hangup_after_ms=1500,
        )
        assert result.ok, result.errors or result.output[-2000:]
        assert result.calls_ok == 1
        new = await capture.wait_for(lambda m: m.get("Event") == "Newchannel" and m.get("Exten") == "8000")
        uid = new["Uniqueid"]
        await capture.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Uniqueid") == uid)
        await platform.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Uniqueid") == uid)
    finally:
        raw = await capture.close()
        seen_by_platform = await platform.close()

    # The caller's UTF-8 name arrives byte for byte, in the channel's CallerIDName.
    assert "张伟".encode() in raw
    assert new["CallerIDName"] == "张伟"
    assert new["CallerIDNum"] == "13800138000"
    assert new["Channel"].startswith("PJSIP/trunk-")
    assert new["Context"] == "from-trunk"
    assert new["Linkedid"] == uid
    events = [m for m in capture.events() if m.get("Uniqueid") == uid]
    names = [m["Event"] for m in events]
    arrived = _one([m for m in events if m.get("UserEvent") == "CallArrived"], "CallArrived")
    assert (arrived["DNIS"], arrived["Direction"], arrived["Mode"]) == ("8000", "inbound", "hold")
    waiting = _one([m for m in events if m.get("UserEvent") == "CallPhase"], "CallPhase")
    assert waiting["Phase"] == "waiting"
    # The order the call model relies on.
    order = [
        "Newchannel",
        "UserEvent",
        "Newstate",
        "UserEvent",
        "MusicOnHoldStart",
        "MusicOnHoldStop",
        "Hangup",
    ]
    relevant = [n for n in names if n in set(order)]
    assert relevant == order, names
    # Even a client that reads everything gets no event the PBX is told never to build or format
    # (variables set, hang-up requests), while the dialplan steps tests follow calls by remain.
    assert "Newexten" in names
    assert not set(names) & {"VarSet", "HangupRequest", "SoftHangupRequest", "TestEvent"}, names

    # The platform's own user sees the call without the dialplan and RTP noise.
    platform_names = {m["Event"] for m in parse_events(seen_by_platform)}
    assert {"Newchannel", "UserEvent", "Newstate", "MusicOnHoldStart", "Hangup"} <= platform_names
    assert not platform_names & {
        "VarSet",
        "Newexten",
        "RTCPSent",
        "RTCPReceived",
        "TestEvent",
        "SuccessfulAuth",
    }
    assert "张伟".encode() in seen_by_platform


def parse_events(raw: bytes) -> list[dict[str, str]]:
    from tests.support.sandbox import parse_messages

    return [m for m in parse_messages(raw) if "Event" in m]


async def test_direct_call_rings_the_agent_phone_and_bridges(sandbox_pbx: SandboxPbx) -> None:
    agent = sandbox_pbx.agents[0]
    phone = await start_agent_phone(port=agent.port, media_port=16100, talk_ms=1000, calls=1)
    capture = await sandbox_pbx.recorder(capture=True)
    try:
        result = await call(
            pbx_port=sandbox_pbx.sip_port,
            dnis=sandbox_pbx.direct_dnis,
            caller=LI_NA,
            port=15162,
            media_port=16010,
        )
        assert result.ok, result.errors or result.output[-2000:]
        phone_result = await phone.wait(20)
        assert phone_result.ok and phone_result.calls_ok == 1, (
            phone_result.errors or phone_result.output[-2000:]
        )
        caller_new = await capture.wait_for(
            lambda m: m.get("Event") == "Newchannel" and m.get("Exten") == "8001"
        )
        uid = caller_new["Uniqueid"]
        await capture.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Uniqueid") == uid)
    finally:
        await phone.stop()
        await capture.close()

    events = capture.events()
    dial = _one([m for m in events if m["Event"] == "DialBegin" and m.get("Uniqueid") == uid], "DialBegin")
    agent_channel = dial["DestChannel"]
    assert agent_channel.startswith(f"PJSIP/{agent.id}-")
    agent_new = _one(
        [m for m in events if m["Event"] == "Newchannel" and m["Channel"] == agent_channel], "agent leg"
    )
    # The agent's leg belongs to the caller's call: its Linkedid is the caller's Uniqueid.
    assert agent_new["Linkedid"] == uid
    assert agent_new["Uniqueid"] == dial["DestUniqueid"]
    dial_end = _one([m for m in events if m["Event"] == "DialEnd" and m.get("Uniqueid") == uid], "DialEnd")
    assert dial_end["DialStatus"] == "ANSWER"
    enters = [m for m in events if m["Event"] == "BridgeEnter"]
    bridged = {m["Channel"]: m["BridgeUniqueid"] for m in enters}
    assert bridged.get(caller_new["Channel"]) is not None
    assert bridged.get(caller_new["Channel"]) == bridged.get(agent_channel)
    assert caller_new["CallerIDName"] == "李娜"
    ringing = [m for m in events if m["Event"] == "DialState" and m.get("Uniqueid") == uid]
    assert ringing and ringing[0]["DialStatus"] == "RINGING"


async def test_caller_hanging_up_while_the_agent_phone_rings(sandbox_pbx: SandboxPbx) -> None:
    agent = sandbox_pbx.agents[0]
    phone = await start_ringing_phone(port=agent.port, media_port=16050, calls=1)
    capture = await sandbox_pbx.recorder(capture=False)
    try:
        result = await call(
            pbx_port=sandbox_pbx.sip_port,
            dnis=sandbox_pbx.direct_dnis,
            caller=Caller("王芳", "13700001111"),
            port=15165,
            media_port=16060,
            hangup_after_ms=1500,
        )
        assert result.ok, result.errors or result.output[-2000:]
        phone_result = await phone.wait(20)  # the PBX cancelled the ringing phone
        assert phone_result.ok and phone_result.calls_ok == 1, (
            phone_result.errors or phone_result.output[-2000:]
        )
        new = await capture.wait_for(
            lambda m: m.get("Event") == "Newchannel" and m.get("CallerIDNum") == "13700001111"
        )
        uid = new["Uniqueid"]
        await capture.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Uniqueid") == uid)
    finally:
        await phone.stop()
        await capture.close()
    events = capture.events()
    dial_end = _one([m for m in events if m["Event"] == "DialEnd" and m.get("Uniqueid") == uid], "DialEnd")
    assert dial_end["DialStatus"] == "CANCEL"
    assert not [m for m in events if m["Event"] == "BridgeEnter" and m.get("Linkedid") == uid]


async def test_unknown_dnis_is_answered_and_hung_up(sandbox_pbx: SandboxPbx) -> None:
    capture = await sandbox_pbx.recorder(capture=True)
    try:
        # The caller waits for the PBX to hang up: success means 200 OK, then a BYE from Asterisk.
        result = await call(
            pbx_port=sandbox_pbx.sip_port,
            dnis="5550000",
            caller=Caller("Bob", "15551230002"),
            port=15163,
            media_port=16020,
            timeout=30,
        )
        assert result.ok, result.errors or result.output[-2000:]
        new = await capture.wait_for(lambda m: m.get("Event") == "Newchannel" and m.get("Exten") == "5550000")
        await capture.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Uniqueid") == new["Uniqueid"])
    finally:
        await capture.close()
    events = [m for m in capture.events() if m.get("Uniqueid") == new["Uniqueid"]]
    arrived = _one([m for m in events if m.get("UserEvent") == "CallArrived"], "CallArrived")
    assert arrived["Mode"] == "unknown"
    assert any(m["Event"] == "Newstate" and m["ChannelStateDesc"] == "Up" for m in events)
    hangup = _one([m for m in events if m["Event"] == "Hangup"], "Hangup")
    assert hangup["Cause"] == "16"  # normal clearing, by the PBX


async def test_names_arrive_whole_and_ami_c_escapes_them(sandbox_pbx: SandboxPbx) -> None:
    # A ';' cannot pass through a SIPp injection file, so the support code puts names in the
    # scenario; and Asterisk's AMI writes CallerIDName with C escapes (ast_escape_c): the framing
    # layer must undo \' \? \\ \" and friends.
    callers = [Caller("Robert'); DROP TABLE call_logs;--", "15550001"), Caller("为什么?", "15550002")]
    capture = await sandbox_pbx.recorder(capture=False)
    try:
        proc = await start_callers(
            pbx_port=sandbox_pbx.sip_port,
            dnis=sandbox_pbx.hold_dnis,
            callers=callers,
            port=15164,
            media_port=16040,
            hangup_after_ms=500,
        )
        result = await proc.wait(30)
        assert result.calls_ok == 2, result.errors or result.output[-2000:]
        for number in ("15550001", "15550002"):
            await capture.wait_for(
                lambda m, n=number: m.get("Event") == "Hangup" and m.get("CallerIDNum") == n
            )
    finally:
        await capture.close()
    names = {m["CallerIDNum"]: m["CallerIDName"] for m in capture.events("Newchannel")}
    assert names["15550001"] == "Robert\\'); DROP TABLE call_logs;--"
    assert names["15550002"] == "为什么\\?"


async def test_agent_phone_address_is_not_taken_for_the_trunk(sandbox_pbx: SandboxPbx) -> None:
    # An INVITE from an agent's phone address is identified as that agent (context from-agents,
    # which refuses it), not as a trunk call, whatever order PJSIP tries its identify sections in.
    agent = sandbox_pbx.agents[1]
    result = await call(
        pbx_port=sandbox_pbx.sip_port,
        dnis=sandbox_pbx.hold_dnis,
        caller=Caller("X", "100"),
        port=agent.port,
        media_port=16030,
        hangup_after_ms=200,
        timeout=20,
    )
    assert not result.ok
    assert "403 Forbidden" in result.errors


async def test_platform_user_has_least_privilege(sandbox_pbx: SandboxPbx) -> None:
    rec = await sandbox_pbx.recorder(capture=False)
    actions = {
        "cmd": "Action: Command\r\nCommand: core show version",
        "update": "Action: UpdateConfig\r\nSrcFilename: manager.conf\r\nDstFilename: manager.conf",
        "create": "Action: CreateConfig\r\nFilename: evil.conf",
        "getconfig": "Action: GetConfig\r\nFilename: manager.conf",
        # Recording starts in the dialplan, so the platform's user has no `system` write: it may
        # not start MixMonitor itself, but it may mute one (pause for card capture).
        "mixmonitor": "Action: MixMonitor\r\nChannel: PJSIP/nobody-00000000\r\nFile: x.wav",
        "mute": "Action: MixMonitorMute\r\nChannel: PJSIP/nobody-00000000\r\nDirection: both\r\nState: 1",
        "channels": "Action: CoreShowChannels",
        "status": "Action: CoreStatus",
    }
    try:
        for action_id, action in actions.items():
            rec.writer.write(f"{action}\r\nActionID: {action_id}\r\n\r\n".encode())
        await rec.writer.drain()
        replies = {aid: await rec.wait_for(lambda m, aid=aid: m.get("ActionID") == aid) for aid in actions}
    finally:
        await rec.close()
    for denied in ("cmd", "update", "create", "getconfig", "mixmonitor"):
        assert replies[denied]["Response"] == "Error", replies[denied]
        assert "Permission denied" in replies[denied]["Message"], replies[denied]
    # Allowed, and failing only because the channel does not exist.
    assert replies["mute"]["Response"] == "Error", replies["mute"]
    assert "Permission denied" not in replies["mute"].get("Message", ""), replies["mute"]
    assert replies["channels"]["Response"] == "Success"
    assert replies["status"]["Response"] == "Success" and replies["status"]["CoreStartupTime"]


async def test_log_has_no_warnings_or_errors(sandbox_pbx: SandboxPbx) -> None:
    # Every module loads, every config file is there, and the calls above logged no complaint.
    log = (sandbox_pbx.instance_dir / "log" / "messages.log").read_text(encoding="utf-8")
    assert "modules will be loaded" in log
    complaints = [line for line in log.splitlines() if "WARNING[" in line or "ERROR[" in line]
    assert complaints == []


_APPLICATION = re.compile(r"^\s*(?:exten => [^,]+|same => n(?:\([a-z]+\))?),(?:\d+,)?([A-Za-z]+)\(", re.M)
_FUNCTION = re.compile(r"\$\{([A-Z_]+)\(")


async def test_every_application_and_function_the_dialplan_uses_is_loaded(sandbox_pbx: SandboxPbx) -> None:
    # modules.conf loads only what the dialplan needs: a function it uses but does not load fails at
    # call time (an expression silently evaluated empty), not at boot. Render every service kind and
    # feature, and check each name against what the running Asterisk has registered.
    services = (
        Service("8100", "hold", record_percent=50),
        Service("8101", "direct"),
        Service("8102", "ivr", fallback="voicemail"),
        Service("8103", "queue"),
    )
    dialplan = render_for(sandbox_pbx.sandbox, services)["extensions.conf"]
    applications = set(_APPLICATION.findall(dialplan))
    functions = set(_FUNCTION.findall(dialplan))
    # The patterns do find what they look for (an empty set would pass the checks below).
    assert {"Dial", "MixMonitor", "AGI", "Queue"} <= applications and "CUT" in functions
    app_lines = (await sandbox_pbx.cli("core show applications")).splitlines()
    function_lines = (await sandbox_pbx.cli("core show functions")).splitlines()
    registered_apps = {line.split(":")[0].strip().lower() for line in app_lines}
    registered_functions = {line.split()[0] for line in function_lines if line.strip()}
    assert sorted(a for a in applications if a.lower() not in registered_apps) == []
    assert sorted(f for f in functions if f not in registered_functions) == []


async def test_restart_after_a_crash_keeps_secret_and_config(sandbox_pbx: SandboxPbx) -> None:
    before = sandbox_pbx.sandbox.status()
    status = await sandbox_pbx.restart(kill=True)
    assert status.running and status.pid != before.pid
    assert sandbox_pbx.sandbox.status().fully_booted is True
    assert sandbox_pbx.sandbox.ensure_secret("ami") == sandbox_pbx.ami_secret
    rec = await sandbox_pbx.recorder(capture=False)  # the same secret still logs in
    await rec.close()


async def test_down_then_a_taken_port_gives_a_clear_error(sandbox_pbx: SandboxPbx) -> None:
    try:
        assert await sandbox_pbx.sandbox.down() is True
        assert not sandbox_pbx.sandbox.status().running
        assert await sandbox_pbx.sandbox.down() is False  # already down: a no-op
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            squatter.bind(("127.0.0.1", sandbox_pbx.sip_port))
            with pytest.raises(PortInUseError) as caught:
                await sandbox_pbx.sandbox.up(sandbox_pbx.files)
        message = str(caught.value)
        assert "127.0.0.1:15060/udp" in message and "SIP" in message and "already in use" in message
        assert "CTI_SANDBOX__SIP_PORT" in message
        assert f"pid {os.getpid()}" in message  # who holds it
        assert not sandbox_pbx.sandbox.status().running
    finally:
        status = await sandbox_pbx.ensure_up()
    assert status.running


async def test_a_pbx_that_never_boots_gives_the_reason_and_its_log() -> None:
    # Its own instance and ports, with AMI switched off in the rendered manager.conf: Asterisk runs
    # but never answers, so `up` must give up after boot_timeout, say why, show the log, and leave
    # nothing running.
    skip_unless_sandbox_possible()
    base = sandbox_test_settings(instance="broken")
    settings = base.model_copy(
        update={
            "sandbox": base.sandbox.model_copy(
                update={"sip_port": 15260, "agent_base_port": 15271, "boot_timeout": 3}
            ),
            "ami": base.ami.model_copy(update={"port": 15238}),
        }
    )
    sandbox = Sandbox(settings)
    files = render_for(sandbox)
    files["manager.conf"] = files["manager.conf"].replace("enabled = yes", "enabled = no")
    try:
        with pytest.raises(BootTimeoutError) as caught:
            await sandbox.up(files)
        message = str(caught.value)
        assert "did not report FullyBooted on AMI within 3 s" in message
        assert "does not accept connections" in message
        assert "messages.log" in message and "modules will be loaded" in message  # the log's tail
        assert not sandbox.status(probe=False).running
    finally:
        await sandbox.down()
        shutil.rmtree(sandbox.instance_dir, ignore_errors=True)
