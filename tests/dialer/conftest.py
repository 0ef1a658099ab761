"""Fixtures the dialer's I/O tests share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from cti.ami import AmiClient
from cti.framing import parse_frame
from cti.settings import AmiSettings
from tests.support.ami_server import FakeAmi


@pytest.fixture
async def ami() -> AsyncIterator[tuple[FakeAmi, AmiClient]]:
    """Our real AMI client logged in to the scripted AMI server (answers and events on cue)."""
    async with FakeAmi(secret="s3cret") as fake:
        settings = AmiSettings(
            host="127.0.0.1", port=fake.port, username="cti", secret=SecretStr("s3cret"), ping_interval=60.0,
            ping_timeout=1.0, connect_timeout=2.0, action_timeout=2.0, reconnect_min=0.02, reconnect_max=0.1,
        )  # fmt: skip
        client = AmiClient(settings, decode_event=parse_frame)
        task = asyncio.create_task(client.run())
        await client.wait_connected(5)
        try:
            yield fake, client
        finally:
            await client.close()
            await task
