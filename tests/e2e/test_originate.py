"""Originate against the real sandbox Asterisk, with the AMI link cut right after the request.

The platform's AMI client talks to Asterisk through a relay that is cut the moment the Originate has
passed: Asterisk creates the channel, the answer is lost. The client must not send it again; the
reconciliation finds the channel by its pre-assigned ChannelId, and the agent's phone rings once.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from tests.support import sipp
from tests.support.platform import CuttableLink
from tests.support.sandbox import SIPP_PORT_BASE, SandboxPbx

from cti.ami import AmiClient
from cti.events import decode_event
from cti.originate import OriginateOutcome, OriginateRequest, originate
from cti.settings import AmiSettings

pytestmark = [pytest.mark.sandbox]


def client_for(pbx: SandboxPbx, port: int) -> AmiClient:
    settings = AmiSettings(
        host="127.0.0.1", port=port, username=pbx.ami_username, secret_file=pbx.instance_dir / "ami.secret",
        reconnect_min=0.1, reconnect_max=0.5, ping_interval=5, ping_timeout=3,
    )  # fmt: skip
    return AmiClient(settings, decode_event=decode_event, name="originate_test")


async def newchannels_for(recorder, device: str) -> int:
    return sum(
        1
        for m in recorder.events()
        if m.get("Event") == "Newchannel" and f"/{device}-" in m.get("Channel", "")
    )


@pytest.mark.parametrize("cut", [False, True], ids=["link-up", "link-cut-after-originate"])
async def test_originate_rings_the_agent_once(sandbox_pbx: SandboxPbx, cut: bool) -> None:
    agent = sandbox_pbx.agents[1]
    async with contextlib.AsyncExitStack() as stack:
        phone = await sipp.start_agent_phone(
            port=agent.port, media_port=SIPP_PORT_BASE + 1000 + 10 * cut, talk_ms=3000, calls=1
        )
        stack.push_async_callback(phone.stop)
        link = CuttableLink(sandbox_pbx.ami_port)
        await link.start()
        stack.push_async_callback(link.close)
        recorder = await sandbox_pbx.recorder()
        stack.push_async_callback(recorder.close)
        client = client_for(sandbox_pbx, link.port)
        runner = asyncio.create_task(client.run())
        stack.push_async_callback(asyncio.gather, runner, return_exceptions=True)
        stack.push_async_callback(client.close)
        await client.wait_connected(10)
        if cut:
            link.cut_after(b"Action: Originate", restore_after=0.5)
        request = OriginateRequest(channel=f"PJSIP/{agent.id}", context="cti-wait", exten="s")
        result = await originate(client, request, reconcile_within=15)
        expected = OriginateOutcome.LIVE_AFTER_LOSS if cut else OriginateOutcome.ACCEPTED
        assert result.outcome is expected, result
        assert (await phone.wait(20)).calls_ok == 1
        await asyncio.sleep(0.5)
        assert await newchannels_for(recorder, agent.id) == 1
        assert link.accepted == (2 if cut else 1)
