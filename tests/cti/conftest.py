"""Fixtures for the AMI client tests: the scripted AMI server and clients running against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from cti.ami import AmiClient
from cti.framing import frame_event_name, parse_frame
from cti.settings import AmiSettings
from tests.support.ami_server import FakeAmi

SECRET = "s3cret-铁-never-logged"


def decode(frame_bytes: bytes) -> object | None:
    """A stand-in for the call model's translator: skips VarSet, fails on Boom, parses the rest."""
    name = frame_event_name(frame_bytes)
    if name == b"VarSet":
        return None
    if name == b"Boom":
        raise KeyError("Boom handler is broken")
    return parse_frame(frame_bytes)


def settings(server: FakeAmi, **overrides: Any) -> AmiSettings:
    values: dict[str, Any] = dict(
        host="127.0.0.1",
        port=server.port,
        username="cti",
        secret=SecretStr(SECRET),
        ping_interval=60.0,
        ping_timeout=1.0,
        connect_timeout=2.0,
        action_timeout=2.0,
        reconnect_min=0.02,
        reconnect_max=0.1,
    )
    values.update(overrides)
    return AmiSettings(**values)


@pytest.fixture
async def server() -> AsyncIterator[FakeAmi]:
    async with FakeAmi(secret=SECRET) as fake:
        yield fake


Factory = Callable[..., AmiClient]


@pytest.fixture
async def start(server: FakeAmi) -> AsyncIterator[Factory]:
    """Builds clients running ``run()`` in a task; on teardown closes them and proves nothing leaked."""
    before = asyncio.all_tasks()
    clients: list[tuple[AmiClient, asyncio.Task[None]]] = []

    def make(decode_event: Callable[[bytes], object | None] = decode, **overrides: Any) -> AmiClient:
        client = AmiClient(settings(server, **overrides), decode_event=decode_event)
        clients.append((client, asyncio.create_task(client.run(), name="test-ami-run")))
        return client

    yield make
    for client, task in clients:
        await client.close()
        await client.close()  # idempotent
        assert task.done()
        assert task.exception() is None
    await server.stop()
    leaked = asyncio.all_tasks() - before - {asyncio.current_task()}
    assert not leaked
