"""What the live routing benchmarks share: a sandbox PBX instance of their own, an AMI recorder that
stamps every event with the moment it arrived, and a ``cti serve`` with agents configured for routing.

The instance and its ports come from ``CTI_TEST_INSTANCE`` and ``CTI_TEST_PORT_OFFSET`` (as in the
tests); the scripts default them to ``bench`` and 700 so a run never touches the default ports. Set
them before this module is imported: ``tests.support.sandbox`` reads them at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CTI_TEST_INSTANCE", "bench")
os.environ.setdefault("CTI_TEST_PORT_OFFSET", "700")

from benchmarks.call_figures import TimedEvent  # noqa: E402
from tests.support.platform import PlatformProcess  # noqa: E402
from tests.support.sandbox import TEST_PORTS, render_for, sandbox_test_settings  # noqa: E402

from dialplans.render import Agent, Service  # noqa: E402
from dialplans.wiring import sandbox_agents  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from sandbox.traffic import free_udp_port  # noqa: E402

#: The DNIS the platform routes (callers wait on hold until routing connects them).
ROUTED_DNIS = "8000"
#: Asterisk's own Queue() with its defaults (and ringinuse = no).
QUEUE_DNIS = "8005"
#: Asterisk's Queue() tuned for hand-off speed (see queue_vs_router.py).
TUNED_QUEUE_DNIS = "8006"
TUNED_QUEUE = (("retry", "1"),)

ADMIN = ("admin", "admin-password-1")
AGENT_PASSWORD = "agent-password-1"  # noqa: S105 - the benchmark's throwaway users


def rtp_ports() -> range:
    return range(TEST_PORTS["rtp_start"], TEST_PORTS["rtp_end"] + 1)


def sipp_ports(span: int = 4) -> int:
    """Free UDP ports for one SIPp (``span`` from the base), clear of the PBX's RTP range."""
    return free_udp_port(span, avoid=rtp_ports())


@dataclass
class BenchPbx:
    sandbox: Sandbox
    agents: tuple[Agent, ...]
    sip_port: int
    ami_port: int
    capture_user: str
    capture_secret: str
    ami_user: str = "cti"

    @property
    def secret_file(self) -> Path:
        return self.sandbox.secret_path("ami")


async def bench_pbx_up(
    agent_count: int, *, queue_settings: Sequence[tuple[str, str]] = TUNED_QUEUE
) -> BenchPbx:
    """Start (or reconfigure) the benchmark instance with ``agent_count`` agents' phones and the three
    services above."""
    base = sandbox_test_settings()
    settings = base.model_copy(
        update={"sandbox": base.sandbox.model_copy(update={"agent_count": agent_count})}
    )
    sandbox = Sandbox(settings)
    services = (
        Service(ROUTED_DNIS, "hold"),
        Service(QUEUE_DNIS, "queue"),
        Service(TUNED_QUEUE_DNIS, "queue", queue_settings=tuple(queue_settings)),
    )
    files = render_for(sandbox, services)
    await sandbox.up(files, progress=lambda line: print(f"[sandbox] {line}", file=sys.stderr))
    return BenchPbx(
        sandbox=sandbox,
        agents=sandbox_agents(settings),
        sip_port=settings.sandbox.sip_port,
        ami_port=settings.ami.port,
        capture_user=f"{settings.ami.username}-capture",
        capture_secret=sandbox.ensure_secret("capture"),
        ami_user=settings.ami.username,
    )


# -- AMI events with their arrival time ------------------------------------------------------------


@dataclass
class TimedRecorder:
    """An AMI session that keeps every event with the monotonic time its last byte was read.

    Both sides of a comparison are read through the same recorder, on the same loopback socket, so
    the clock's offset (Asterisk's write, the kernel, this loop) is common to both."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    events: list[TimedEvent] = field(default_factory=list)
    disconnects: int = 0
    _buf: bytes = b""
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int, username: str, secret: str) -> TimedRecorder:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        rec = cls(reader, writer)
        rec._task = asyncio.get_running_loop().create_task(rec._pump())
        login = f"Action: Login\r\nActionID: bench-login\r\nUsername: {username}\r\nSecret: {secret}\r\n\r\n"
        writer.write(login.encode())
        await writer.drain()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(e.get("ActionID") == "bench-login" for e in rec.events):
                return rec
            await asyncio.sleep(0.05)
        raise RuntimeError("AMI login of the benchmark recorder got no answer")

    async def _pump(self) -> None:
        while chunk := await self.reader.read(65536):
            now = time.monotonic()
            self._buf += chunk
            *frames, self._buf = self._buf.split(b"\r\n\r\n")
            for frame in frames:
                headers: dict[str, str] = {}
                for line in frame.decode("utf-8", "replace").split("\r\n"):
                    name, sep, value = line.partition(": ")
                    if sep:
                        headers.setdefault(name, value)
                if headers:
                    self.events.append(TimedEvent(now, headers))
        self.disconnects += 1

    def named(self, *names: str) -> list[TimedEvent]:
        return [e for e in self.events if e.get("Event") in names]

    def mark(self) -> int:
        return len(self.events)

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.write(b"Action: Logoff\r\n\r\n")
            await self.writer.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def wait_idle(rec: TimedRecorder, timeout: float = 60.0) -> None:
    """Until every channel that appeared has hung up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        created = {e["Uniqueid"] for e in rec.named("Newchannel")}
        gone = {e["Uniqueid"] for e in rec.named("Hangup")}
        if created <= gone:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"channels still up after {timeout:.0f} s")


# -- the platform ---------------------------------------------------------------------------------------


@dataclass
class RoutingPlatform:
    """``cti serve`` against the benchmark PBX, every agent configured and logged in."""

    platform: PlatformProcess
    tokens: dict[str, str]

    async def request(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with httpx.AsyncClient(base_url=self.platform.base_url, timeout=10.0, headers=headers) as c:
            response = await c.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    async def ready(self, agent_ids: Sequence[str]) -> None:
        for agent_id in agent_ids:
            await self.request(agent_id, "POST", f"/api/routing/agents/{agent_id}/login")
            await self.request(agent_id, "POST", f"/api/routing/agents/{agent_id}/ready")

    async def health(self) -> dict[str, Any]:
        return dict(await self.request("admin", "GET", "/api/health/details"))

    async def stop(self) -> None:
        await self.platform.stop()


async def start_platform(
    pbx: BenchPbx, state_dir: Path, *, wrap_up_seconds: int = 0, strategy: str = "longest_idle"
) -> RoutingPlatform:
    """A fresh ``cti serve`` (its own SQLite file) routing ``ROUTED_DNIS`` to every agent, no skills
    needed, the given wrap-up; the agents are not logged in yet."""
    platform = PlatformProcess.configure(
        state_dir,
        ami_port=pbx.ami_port,
        ami_secret_file=pbx.secret_file,
        pbx_id="bench",
        extra={
            "CTI_IVR__ENABLED": "false",
            "CTI_ROUTING__DEFAULT_WRAP_UP_SECONDS": str(wrap_up_seconds),
        },
    )
    await platform.add_user(*ADMIN, "admin")
    for agent in pbx.agents:
        await platform.add_user(agent.id, AGENT_PASSWORD, "agent")
    await platform.start()
    tokens: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10.0) as client:
        for user, password in (ADMIN, *((a.id, AGENT_PASSWORD) for a in pbx.agents)):
            response = await client.post("/api/auth/login", json={"username": user, "password": password})
            response.raise_for_status()
            tokens[user] = response.json()["access_token"]
    live = RoutingPlatform(platform, tokens)
    service = await live.request(
        "admin", "POST", "/api/services", json={"dnis": ROUTED_DNIS, "name": "bench"}
    )
    await live.request(
        "admin",
        "PUT",
        f"/api/routing/services/{service['id']}",
        json={"strategy": strategy, "wrap_up_seconds": wrap_up_seconds},
    )
    for agent in pbx.agents:
        await live.request(
            "admin",
            "PUT",
            f"/api/routing/agents/{agent.id}",
            json={"name": f"agent {agent.id}", "skills": {}},
        )
    return live
