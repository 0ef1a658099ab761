"""End to end: SIPp callers pressing RFC 4733 keys → the real sandbox Asterisk → FastAGI → ``cti serve``.

The IVR runs the flows in ``tests/data/ivr`` (``desk.yaml`` on 8002, ``closed.yaml`` on 8004, no flow
on 8003). Asterisk, SIPp, the platform process, espeak-ng prompts and the database are all real;
results are read back over HTTP (call logs, voicemails, callbacks) and from the PBX's AMI events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import sipp
from tests.support.platform import PlatformProcess
from tests.support.sandbox import (
    IVR_AGI_PORT,
    IVR_CLOSED_DNIS,
    IVR_DNIS,
    IVR_NO_FLOW_DNIS,
    SIPP_PORT_BASE,
    SandboxPbx,
)

from ivr.files import load_flow_file
from ivr.prompts import text_sound_name

pytestmark = [pytest.mark.sandbox]

ADMIN = ("admin", "admin-password-1")
FLOWS = Path(__file__).resolve().parent.parent / "data" / "ivr"
DESK = load_flow_file(FLOWS / "desk.yaml")
#: A number no service answers: the dialplan says "not in service" (ss-noservice) and hangs up.
UNKNOWN_DNIS = "8999"
# Our own slice of the session's SIPp ports, clear of the other end-to-end modules.
_ports = itertools.count(SIPP_PORT_BASE + 5000, 8)


def sip_ports() -> tuple[int, int]:
    port = next(_ports)
    return port, port + 4


async def wait_for_agi(timeout: float = 120.0) -> None:
    """Until the FastAGI port accepts connections (prompts are built before it listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", IVR_AGI_PORT), timeout=0.5):
                return
        except OSError:
            await asyncio.sleep(0.3)
    raise TimeoutError(f"FastAGI not listening on {IVR_AGI_PORT}")


async def start_platform(pbx: SandboxPbx, tmp_path: Path) -> PlatformProcess:
    platform = PlatformProcess.configure(
        tmp_path / "platform",
        ami_port=pbx.ami_port,
        ami_secret_file=pbx.instance_dir / "ami.secret",
        extra={
            "CTI_SANDBOX__INSTANCE": pbx.settings.sandbox.instance,
            "CTI_SANDBOX__CACHE_DIR": str(pbx.settings.sandbox.cache_dir),
            "CTI_IVR__AGI_PORT": str(IVR_AGI_PORT),
            "CTI_IVR__FLOWS_DIR": str(FLOWS),
        },
    )
    await platform.add_user(*ADMIN, "admin")
    await platform.start()
    await platform.login(*ADMIN)
    await wait_for_agi()
    return platform


@pytest.fixture
async def platform(sandbox_pbx: SandboxPbx, tmp_path: Path):
    proc = await start_platform(sandbox_pbx, tmp_path)
    try:
        yield proc
    finally:
        await proc.stop()


async def create_customer(platform: PlatformProcess, name: str, number: str, language: str) -> dict[str, Any]:
    async with platform.client() as api:
        response = await api.post(
            "/api/customers",
            json={"name": name, "tier": "gold", "language": language, "phones": [{"number": number}]},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


async def wait_for(
    platform: PlatformProcess, path: str, check: Any, timeout: float = 30.0, **params: Any
) -> Any:
    deadline = time.monotonic() + timeout
    body: Any = None
    async with platform.client() as api:
        while time.monotonic() < deadline:
            response = await api.get(path, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            if check(body):
                return body
            await asyncio.sleep(0.3)
    raise AssertionError(f"{path}: condition not met, last {body}\n{platform.log_tail()}")


async def keys_call(
    pbx: SandboxPbx, dnis: str, caller: sipp.Caller, keys: list[tuple[int, str]], hold_ms: int
) -> sipp.SippResult:
    port, media = sip_ports()
    proc = await sipp.call_with_keys(
        pbx_port=pbx.sip_port,
        dnis=dnis,
        caller=caller,
        keys=keys,
        port=port,
        media_port=media,
        hold_ms=hold_ms,
    )
    return await proc.wait(120)


def ended_with_ivr(rows: list[dict[str, Any]]) -> bool:
    return len(rows) == 1 and rows[0]["ended_at"] is not None and rows[0]["ivr_path"]


def sound(prompt: str, language: str) -> str:
    """The sound name Asterisk is told to play for a prompt of the desk flow."""
    return text_sound_name(DESK.prompts[prompt].variants[language].text, language)  # type: ignore[union-attr]


def agi_commands(recorder: Any) -> list[str]:
    """The AGI commands Asterisk ran for the calls of this test, in order (AGIExecStart events)."""
    return [e["Command"] for e in recorder.events("AGIExecStart") if "Command" in e]


def streamed(commands: list[str]) -> list[str]:
    """The sound names of the STREAM FILE commands, in order."""
    return [c.split()[2].rsplit("/", 1)[-1] for c in commands if c.startswith("STREAM FILE ")]


def reached_waiting(recorder: Any) -> bool:
    return any(
        e.get("UserEvent") == "CallPhase" and e.get("Phase") == "waiting"
        for e in recorder.events("UserEvent")
    )


@pytest.fixture
async def recorder(sandbox_pbx: SandboxPbx):
    rec = await sandbox_pbx.recorder()
    try:
        yield rec
    finally:
        await rec.close()


async def test_english_caller_chooses_an_agent_and_waits(sandbox_pbx, platform):
    customer = await create_customer(platform, "Alice Smith", "+1 201-555-0123", "en")
    port, media = sip_ports()
    caller = await sipp.call_with_keys(
        pbx_port=sandbox_pbx.sip_port, dnis=IVR_DNIS, caller=sipp.Caller("Alice Smith", "+12015550123"),
        keys=[(1500, "2"), (1500, "0")], port=port, media_port=media, hold_ms=10000,
    )  # fmt: skip
    # While the caller waits for an agent, the live call already carries what the IVR learned.
    (live,) = await wait_for(
        platform, "/api/calls", lambda b: len(b) == 1 and b[0]["ivr_path"] and b[0]["ended_at"] is None,
        customer_id=customer["id"],
    )  # fmt: skip
    assert live["ivr_path"][-1] == "to_agent" and live["ivr_inputs"]["main_menu.choice"] == "0"
    result = await caller.wait(60)
    assert result.ok, result.output[-2000:]
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_path"][:2] == ["choose_language", "main_menu"] and row["ivr_path"][-1] == "to_agent"
    assert row["ivr_inputs"]["choose_language.language"] == "en"
    assert row["ivr_inputs"]["main_menu.choice"] == "0"


async def test_after_hours_caller_leaves_a_voicemail_on_their_record(sandbox_pbx, platform):
    customer = await create_customer(platform, "张伟", "+86 138 0013 8000", "zh-CN")
    # The caller speaks after the prompt and the beep, then hangs up.
    message = [(2500, sipp.VOICE)]
    result = await keys_call(
        sandbox_pbx, IVR_CLOSED_DNIS, sipp.Caller("张伟", "+8613800138000"), message, 11000
    )
    assert result.ok, result.output[-2000:]
    body = await wait_for(platform, f"/api/customers/{customer['id']}", lambda b: b["voicemails"])
    (message,) = body["voicemails"]
    assert message["duration_seconds"] > 0
    assert await asyncio.to_thread(lambda: Path(message["file_path"]).stat().st_size) > 0
    assert message["compressed_path"]
    assert await asyncio.to_thread(Path(message["compressed_path"]).exists)
    callbacks = await wait_for(platform, "/api/callbacks", lambda b: len(b) == 1)
    assert callbacks[0]["customer_id"] == customer["id"] and callbacks[0]["number_e164"] == "+8613800138000"


async def test_mandarin_caller_books_a_callback(sandbox_pbx, platform):
    customer = await create_customer(platform, "李娜", "+86 139 1234 5678", "zh-CN")
    # Chinese, then "callback" in the menu; the confirmation comes after the IVR has read the
    # caller's number back (about 6 s of speech that a key cannot interrupt).
    keys = [(1500, "1"), (1500, "2"), (8500, "1")]
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("李娜", "+8613912345678"), keys, 15000)
    assert result.ok, result.output[-2000:]
    callbacks = await wait_for(platform, "/api/callbacks", lambda b: len(b) == 1)
    assert callbacks[0]["customer_id"] == customer["id"] and callbacks[0]["status"] == "pending"
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_inputs"]["choose_language.language"] == "zh"
    assert row["ivr_path"][-1] == "booked"


async def test_silent_caller_ends_with_an_agent(sandbox_pbx, platform, recorder):
    customer = await create_customer(platform, "Bob", "+44 20 7946 0958", "en")
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("Bob", "+442079460958"), [], 25000)
    assert result.ok, result.output[-2000:]
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_path"] == ["choose_language", "main_menu", "to_agent"]
    # Silence at the language question keeps the record's language and goes on without a retry ...
    assert row["ivr_inputs"]["choose_language.retries_exhausted"] == "no input"
    assert row["ivr_inputs"]["main_menu.retries_exhausted"] == "no input"
    # ... the menu asks, says it heard nothing, asks once more (retries: 1), then hands over.
    sounds = streamed(agi_commands(recorder))
    menu, no_input, transferring = sound("menu", "en"), sound("no_input", "en"), sound("transferring", "en")
    assert [s for s in sounds if s in (menu, no_input, transferring)] == [menu, no_input, menu, transferring]
    assert sound("invalid", "en") not in sounds
    assert reached_waiting(recorder)


async def test_invalid_key_plays_the_invalid_prompt_and_the_retry_is_taken(sandbox_pbx, platform, recorder):
    customer = await create_customer(platform, "Carol White", "+1 415-555-0199", "en")
    # English, then 7 (not a choice), then 0 while the menu is asked again.
    keys = [(1500, "2"), (1500, "7"), (2500, "0")]
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("Carol White", "+14155550199"), keys, 9000)
    assert result.ok, result.output[-2000:]
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_path"] == ["choose_language", "main_menu", "to_agent"]
    assert row["ivr_inputs"]["main_menu.choice"] == "0"
    assert "main_menu.retries_exhausted" not in row["ivr_inputs"]
    sounds = streamed(agi_commands(recorder))
    menu, invalid = sound("menu", "en"), sound("invalid", "en")
    assert [s for s in sounds if s in (menu, invalid)] == [menu, invalid, menu]
    assert reached_waiting(recorder)


async def test_balance_is_read_from_the_customer_record_and_said_back(sandbox_pbx, platform, recorder):
    customer = await create_customer(platform, "Dan Brown", "+1 212-555-0142", "en")
    async with platform.client() as api:
        response = await api.put(
            f"/api/customers/{customer['id']}/self-service",
            json={"balance": {"amount": "1234.50", "currency": "USD"}},
        )
        assert response.status_code == 204, response.text
    keys = [(1500, "2"), (1500, "1")]
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("Dan Brown", "+12125550142"), keys, 20000)
    assert result.ok, result.output[-2000:]
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_path"] == ["choose_language", "main_menu", "balance", "goodbye"]
    assert row["ivr_inputs"]["main_menu.choice"] == "1"
    # The live call heard "Your balance is", then the amount from the record, then goodbye.
    sounds = streamed(agi_commands(recorder))
    amount = text_sound_name("1234.50 dollars", "en")
    said = [s for s in sounds if s in (sound("balance_is", "en"), amount, sound("bye", "en"))]
    assert said == [sound("balance_is", "en"), amount, sound("bye", "en")], sounds
    assert sound("not_found", "en") not in sounds


async def test_caller_leaves_a_message_from_the_menu(sandbox_pbx, platform, recorder):
    customer = await create_customer(platform, "王芳", "+86 135 0000 1234", "zh-CN")
    # 中文, then 3 (leave a message); the caller speaks after the prompt and the beep.
    keys = [(1500, "1"), (1500, "3"), (2500, sipp.VOICE)]
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("王芳", "+8613500001234"), keys, 25000)
    assert result.ok, result.output[-2000:]
    body = await wait_for(platform, f"/api/customers/{customer['id']}", lambda b: b["voicemails"])
    (message,) = body["voicemails"]
    assert message["duration_seconds"] > 0
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_path"] == ["choose_language", "main_menu", "message", "goodbye"]
    assert any(c.startswith("RECORD FILE ") for c in agi_commands(recorder))
    assert sound("bye", "zh") in streamed(agi_commands(recorder))


async def test_callback_to_another_number_typed_by_the_caller(sandbox_pbx, platform, recorder):
    customer = await create_customer(platform, "陈静", "+86 139 8765 4321", "zh-CN")
    # 中文, callback, then 2 ("another number") after the caller's own number is read back, then the
    # new number ended by #.
    typed = "13700137000"
    keys = [(1500, "1"), (1500, "2"), (8500, "2"), (2500, typed[0])]
    keys += [(300, k) for k in typed[1:]] + [(300, "#")]
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("陈静", "+8613987654321"), keys, 12000)
    assert result.ok, result.output[-2000:]
    callbacks = await wait_for(platform, "/api/callbacks", lambda b: len(b) == 1)
    assert callbacks[0]["customer_id"] == customer["id"]
    assert callbacks[0]["number_e164"] == "+86" + typed
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_path"] == ["choose_language", "main_menu", "callback", "booked"]
    assert row["ivr_inputs"]["callback.callback_number"] == typed
    sounds = streamed(agi_commands(recorder))
    assert sound("callback_enter", "zh") in sounds and sound("booked", "zh") in sounds


async def test_digit_flood_ends_in_a_defined_place(sandbox_pbx, platform, recorder):
    customer = await create_customer(platform, "Flood", "+1 303-555-0111", "en")
    # 40 keys none of the menus offers, as fast as SIPp sends them: a key's recording lasts 140 ms,
    # and SIPp stops a recording still playing when the next one starts (so 0 ms would send one key).
    flood = [(160 if i else 1500, k) for i, k in enumerate("98765*#4" * 5)]
    assert len(flood) == 40
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("Flood", "+13035550111"), flood, 15000)
    assert result.ok, result.output[-2000:]
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    # The language question takes one key and goes on; the menu takes one key per attempt; after
    # the last retry the caller goes to an agent. The rest of the flood is ignored.
    assert row["ivr_path"] == ["choose_language", "main_menu", "to_agent"]
    assert row["ivr_inputs"]["main_menu.retries_exhausted"] == "invalid input"
    commands = agi_commands(recorder)
    assert len(commands) < 20, commands  # a handful of commands, not one per key
    assert reached_waiting(recorder)
    async with platform.client() as api:
        assert (await api.get("/api/health")).json()["status"] == "ok"


async def test_unknown_dnis_hears_not_in_service_and_is_logged(sandbox_pbx, platform, recorder):
    port, media = sip_ports()
    proc = await sipp.call_with_keys(
        pbx_port=sandbox_pbx.sip_port, dnis=UNKNOWN_DNIS, keys=[], hold_ms=20000,
        caller=sipp.Caller("Wrong Number", "+8613600009999"), port=port, media_port=media,
    )  # fmt: skip
    result = await proc.wait(60)
    assert result.ok, result.output[-2000:]
    played = [
        e
        for e in recorder.events("Newexten")
        if e.get("Application") == "Playback" and e.get("Exten") == UNKNOWN_DNIS
    ]
    assert [e["AppData"] for e in played] == ["ss-noservice"]
    # The PBX hung up (the caller would have waited 20 s): the hang-up is the dialplan's own.
    hangups = [e for e in recorder.events("Hangup") if e.get("Exten") == UNKNOWN_DNIS]
    assert hangups and not recorder.events("AGIExecStart")
    rows = await wait_for(
        platform, "/api/calls", lambda b: len(b) == 1 and b[0]["ended_at"] is not None, ani="+8613600009999"
    )
    assert rows[0]["dnis"] == UNKNOWN_DNIS and not rows[0]["ivr_path"]


async def test_unknown_flow_and_a_stopped_fastagi_server_fall_back_to_waiting(sandbox_pbx, platform):
    recorder = await sandbox_pbx.recorder()
    try:
        port, media = sip_ports()
        no_flow = await sipp.call_with_keys(
            pbx_port=sandbox_pbx.sip_port, dnis=IVR_NO_FLOW_DNIS,
            caller=sipp.Caller("No Flow", "+8613700001111"),
            keys=[], port=port, media_port=media, hold_ms=4000,
        )  # fmt: skip
        # Three callers in the IVR, then the platform (and its FastAGI server) dies under them.
        in_ivr = []
        for i in range(3):
            port, media = sip_ports()
            in_ivr.append(
                await sipp.call_with_keys(
                    pbx_port=sandbox_pbx.sip_port, dnis=IVR_DNIS,
                    caller=sipp.Caller(f"Caller {i}", f"+861370000222{i}"),
                    keys=[], port=port, media_port=media, hold_ms=8000,
                )
            )  # fmt: skip
        await asyncio.sleep(2.0)
        await platform.kill()
        port, media = sip_ports()
        after = await sipp.call_with_keys(
            pbx_port=sandbox_pbx.sip_port, dnis=IVR_DNIS, caller=sipp.Caller("Late", "+8613700003333"),
            keys=[], port=port, media_port=media, hold_ms=4000,
        )  # fmt: skip
        results = [await p.wait(60) for p in (no_flow, *in_ivr, after)]
        # Every caller hung up themselves (the PBX dropped nobody) ...
        assert all(r.ok for r in results), [r.output[-1500:] for r in results if not r.ok]
        fallbacks = recorder.events("UserEvent")
        fell_back = [e for e in fallbacks if e.get("UserEvent") == "IvrFallback"]
        waiting = {
            e["Uniqueid"]
            for e in fallbacks
            if e.get("UserEvent") == "CallPhase" and e.get("Phase") == "waiting"
        }
        # ... and each of the five reached waiting through the fallback.
        assert len(fell_back) == 5, fell_back
        assert {e["Uniqueid"] for e in fell_back} <= waiting
    finally:
        await recorder.close()


def _cluster_pids(server: Any) -> list[int]:
    """The PostgreSQL server's processes: the postmaster (from its pid file) and its children."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The parent pid is the second field after the command, which sits in parentheses.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    return pids


@contextlib.contextmanager
def database_hangs(server: Any) -> Iterator[None]:
    """Every process of the real PostgreSQL server stopped (SIGSTOP): connections stay open and
    queries are accepted by the kernel but never answered, the way a hung database behaves."""
    pids = _cluster_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def test_a_lookup_that_never_returns_ends_in_the_fallback(
    sandbox_pbx, postgres_server, postgres_url, tmp_path, recorder
):
    platform = PlatformProcess.configure(
        tmp_path / "platform",
        ami_port=sandbox_pbx.ami_port,
        ami_secret_file=sandbox_pbx.instance_dir / "ami.secret",
        database_url=postgres_url,
        extra={
            "CTI_SANDBOX__INSTANCE": sandbox_pbx.settings.sandbox.instance,
            "CTI_SANDBOX__CACHE_DIR": str(sandbox_pbx.settings.sandbox.cache_dir),
            "CTI_IVR__AGI_PORT": str(IVR_AGI_PORT),
            "CTI_IVR__FLOWS_DIR": str(FLOWS),
            "CTI_IVR__STEP_TIMEOUT_SECONDS": "3",
        },
    )
    await platform.add_user(*ADMIN, "admin")
    await platform.start()
    try:
        await platform.login(*ADMIN)
        await wait_for_agi()
        customer = await create_customer(platform, "Erin Stall", "+1 617-555-0175", "en")
        async with platform.client() as api:
            response = await api.put(
                f"/api/customers/{customer['id']}/self-service",
                json={"balance": {"amount": "88.00", "currency": "USD"}},
            )
            assert response.status_code == 204, response.text
        # English at 1.5 s, "balance" at 8 s: by then the caller is known and the menu is waiting.
        port, media = sip_ports()
        caller = await sipp.call_with_keys(
            pbx_port=sandbox_pbx.sip_port, dnis=IVR_DNIS, caller=sipp.Caller("Erin Stall", "+16175550175"),
            keys=[(1500, "2"), (6500, "1")], port=port, media_port=media, hold_ms=20000,
        )  # fmt: skip
        await recorder.wait_for(
            lambda m: m.get("Event") == "AGIExecStart" and sound("menu", "en") in m.get("Command", ""), 15
        )
        with database_hangs(postgres_server):
            fell_back = await recorder.wait_for(
                lambda m: m.get("Event") == "UserEvent" and m.get("UserEvent") == "IvrFallback", 20
            )
            await recorder.wait_for(
                lambda m: m.get("UserEvent") == "CallPhase" and m.get("Phase") == "waiting", 5
            )
        result = await caller.wait(60)
        assert result.ok, result.output[-2000:]
        assert fell_back["DNIS"] == IVR_DNIS
        # The lookup was asked (the key was taken) but its answer never came: nothing was said back.
        sounds = streamed(agi_commands(recorder))
        assert sound("balance_is", "en") not in sounds and sound("bye", "en") not in sounds
        (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
        assert row["ivr_path"] == ["choose_language", "main_menu", "balance"]
    finally:
        await platform.stop()
