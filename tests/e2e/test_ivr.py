"""End to end: SIPp callers pressing RFC 4733 keys → the real sandbox Asterisk → FastAGI → ``cti serve``.

The IVR runs the flows in ``tests/data/ivr`` (``desk.yaml`` on 8002, ``closed.yaml`` on 8004, no flow
on 8003). Asterisk, SIPp, the platform process, espeak-ng prompts and the database are all real;
results are read back over HTTP (call logs, voicemails, callbacks) and from the PBX's AMI events.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
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

pytestmark = [pytest.mark.sandbox]

ADMIN = ("admin", "admin-password-1")
FLOWS = Path(__file__).resolve().parent.parent / "data" / "ivr"
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


async def test_english_caller_chooses_an_agent_and_waits(sandbox_pbx, platform):
    customer = await create_customer(platform, "Alice Smith", "+1 201-555-0123", "en")
    result = await keys_call(
        sandbox_pbx, IVR_DNIS, sipp.Caller("Alice Smith", "+12015550123"), [(1500, "2"), (1500, "0")], 6000
    )
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


async def test_silent_caller_ends_with_an_agent(sandbox_pbx, platform):
    customer = await create_customer(platform, "Bob", "+44 20 7946 0958", "en")
    result = await keys_call(sandbox_pbx, IVR_DNIS, sipp.Caller("Bob", "+442079460958"), [], 25000)
    assert result.ok, result.output[-2000:]
    (row,) = await wait_for(platform, "/api/calls", ended_with_ivr, customer_id=customer["id"])
    assert row["ivr_path"][-1] == "to_agent"
    assert row["ivr_inputs"]["main_menu.retries_exhausted"] == "no input"


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
