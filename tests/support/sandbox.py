"""pytest fixtures for the real sandbox Asterisk, and an AMI byte recorder to look at what it says.

``sandbox_pbx`` (session scope) builds the cached root filesystem if needed and runs a dedicated
instance named ``test`` on non-default ports (SIP 15060, AMI 15038, agents' phones 15071 and 15072,
RTP 30000-30999), so it can run beside a demo on the defaults. The capture user is enabled so tests can
see every AMI event. Tests that use it are marked ``@pytest.mark.sandbox``.

Import the fixture into a ``conftest.py`` (``from tests.support.sandbox import sandbox_pbx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cti.settings import Settings, load_settings
from dialplans.render import Agent, Service, render_pbx_config
from dialplans.wiring import params_from_settings, sandbox_agents
from sandbox import Sandbox, SandboxStatus

#: The test instance's services: one of each mode.
HOLD_DNIS = "8000"
DIRECT_DNIS = "8001"
IVR_DNIS = "8002"  # runs the IVR over FastAGI (tests/data/ivr/desk.yaml)
IVR_NO_FLOW_DNIS = "8003"  # an IVR service no flow serves: the dialplan's fallback takes it
IVR_CLOSED_DNIS = "8004"  # an IVR whose flow is always closed (tests/data/ivr/closed.yaml)
TEST_SERVICES: tuple[Service, ...] = (
    Service(HOLD_DNIS, "hold"),
    Service(DIRECT_DNIS, "direct"),
    Service(IVR_DNIS, "ivr"),
    Service(IVR_NO_FLOW_DNIS, "ivr"),
    Service(IVR_CLOSED_DNIS, "ivr"),
)

# Two test sessions can run side by side on one machine when the second sets CTI_TEST_INSTANCE and
# CTI_TEST_PORT_OFFSET (a multiple of 100, at most 800): its PBX, agents' phones, RTP and SIPp ports
# all move. SIPp's slices take 7,000 ports from SIPP_PORT_BASE, which must stay under 65536.
TEST_INSTANCE = os.environ.get("CTI_TEST_INSTANCE", "test")
PORT_OFFSET = int(os.environ.get("CTI_TEST_PORT_OFFSET", "0"))
if not (0 <= PORT_OFFSET <= 800 and PORT_OFFSET % 100 == 0):
    raise ValueError(f"CTI_TEST_PORT_OFFSET must be 0, 100, ... or 800, not {PORT_OFFSET}")
TEST_PORTS = {
    "sip": 15060 + PORT_OFFSET,
    "ami": 15038 + PORT_OFFSET,
    "agent_base": 15071 + PORT_OFFSET,
    "outside": 15069 + PORT_OFFSET,
    "rtp_start": 30000 + 10 * PORT_OFFSET,
    "rtp_end": 30999 + 10 * PORT_OFFSET,
}
#: The first of the ports this session's SIPp processes may use (each test module takes its own slice).
SIPP_PORT_BASE = 42000 + 20 * PORT_OFFSET
#: The FastAGI port the test instance's dialplan calls for IVR services.
IVR_AGI_PORT = 14573 + PORT_OFFSET


def sandbox_test_settings(base: Settings | None = None, *, instance: str = TEST_INSTANCE) -> Settings:
    """The test instance's settings: the environment's settings (cache dir, suite, mirror) with the
    test instance name and ports."""
    base = base or load_settings()
    sandbox = base.sandbox.model_copy(
        update={
            "instance": instance,
            "sip_host": "127.0.0.1",
            "sip_port": TEST_PORTS["sip"],
            "trunk_match": "127.0.0.1",
            "agent_count": 2,
            "agent_base_port": TEST_PORTS["agent_base"],
            "outside_port": TEST_PORTS["outside"],
            "rtp_start": TEST_PORTS["rtp_start"],
            "rtp_end": TEST_PORTS["rtp_end"],
        }
    )
    ami = base.ami.model_copy(
        update={"host": "127.0.0.1", "port": TEST_PORTS["ami"], "secret": None, "secret_file": None}
    )
    ivr = base.ivr.model_copy(update={"agi_host": "127.0.0.1", "agi_port": IVR_AGI_PORT})
    return base.model_copy(update={"sandbox": sandbox, "ami": ami, "ivr": ivr})


def render_for(
    sandbox: Sandbox, services: Sequence[Service] = TEST_SERVICES, *, capture: bool = True, verbose: int = 0
) -> dict[str, str]:
    """What the composition root does for ``cti pbx up``: secrets, parameters, rendered files."""
    params = params_from_settings(
        sandbox.settings,
        dirs=sandbox.inside_layout.asterisk_dirs(),
        ami_secret=sandbox.ensure_secret("ami"),
        capture_secret=sandbox.ensure_secret("capture") if capture else None,
        services=services,
        verbose=verbose,
    )
    return render_pbx_config(params)


@dataclass
class SandboxPbx:
    """The running test instance, as the fixture yields it."""

    settings: Settings
    sandbox: Sandbox
    files: dict[str, str]
    ami_secret: str
    capture_username: str
    capture_secret: str
    agents: tuple[Agent, ...]
    status: SandboxStatus
    hold_dnis: str = HOLD_DNIS
    direct_dnis: str = DIRECT_DNIS

    @property
    def sip_port(self) -> int:
        return self.settings.sandbox.sip_port

    @property
    def ami_port(self) -> int:
        return self.settings.ami.port

    @property
    def ami_host(self) -> str:
        return self.settings.ami.host

    @property
    def ami_username(self) -> str:
        return self.settings.ami.username

    @property
    def instance_dir(self) -> Path:
        return self.sandbox.instance_dir

    async def restart(self, *, kill: bool = True) -> SandboxStatus:
        """Kill Asterisk (SIGKILL by default, as a crash) and start it again on the same config."""
        self.status = await self.sandbox.restart(kill=kill)
        return self.status

    async def ensure_up(self) -> SandboxStatus:
        """Start the instance again if a test stopped it."""
        self.status = await self.sandbox.up(self.files)
        return self.status

    async def cli(self, command: str) -> str:
        return await self.sandbox.cli_rx(command)

    async def recorder(self, *, capture: bool = True) -> AmiRecorder:
        """A connected AMI recorder: the capture user (every class) or the platform's user."""
        if capture:
            return await AmiRecorder.connect(
                self.ami_host, self.ami_port, self.capture_username, self.capture_secret
            )
        return await AmiRecorder.connect(self.ami_host, self.ami_port, self.ami_username, self.ami_secret)


def skip_unless_sandbox_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("the sandbox PBX needs root (it builds a chroot and starts Asterisk in it)")
    for tool in ("debootstrap", "unshare", "chroot", "sipp"):
        if shutil.which(tool) is None:
            pytest.skip(f"the sandbox PBX needs {tool} (run ./scripts/setup)")


@pytest.fixture(scope="session")
def sandbox_pbx() -> Iterator[SandboxPbx]:
    """Build (cached) and start the ``test`` instance; stop it at the end of the session."""
    skip_unless_sandbox_possible()
    settings = sandbox_test_settings()
    sandbox = Sandbox(settings)
    files = render_for(sandbox)
    started = time.monotonic()
    status = asyncio.run(sandbox.up(files, progress=lambda line: print(f"[sandbox] {line}", flush=True)))
    print(f"[sandbox] up in {time.monotonic() - started:.1f} s", flush=True)
    pbx = SandboxPbx(
        settings=settings,
        sandbox=sandbox,
        files=files,
        ami_secret=sandbox.ensure_secret("ami"),
        capture_username=f"{settings.ami.username}-capture",
        capture_secret=sandbox.ensure_secret("capture"),
        agents=sandbox_agents(settings),
        status=status,
    )
    try:
        yield pbx
    finally:
        asyncio.run(sandbox.down())


# -- AMI recording -------------------------------------------------------------------------------------


def parse_messages(data: bytes) -> list[dict[str, str]]:
    """AMI messages of a byte stream (UTF-8), each as its headers (first occurrence wins)."""
    messages = []
    for raw in data.split(b"\r\n\r\n"):
        headers: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(": ")
            if sep:
                headers.setdefault(name, value)
        if headers:
            messages.append(headers)
    return messages


@dataclass
class AmiRecorder:
    """Records the raw bytes an AMI user receives, from the banner on."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    data: bytearray = field(default_factory=bytearray)
    _task: asyncio.Task[None] | None = None
    _grew: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(
        cls, host: str, port: int, username: str, secret: str, timeout: float = 5.0
    ) -> AmiRecorder:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        rec = cls(reader, writer)
        rec._task = asyncio.get_running_loop().create_task(rec._pump())
        login_action = (
            f"Action: Login\r\nActionID: rec-login\r\nUsername: {username}\r\nSecret: {secret}\r\n\r\n"
        )
        writer.write(login_action.encode())
        await writer.drain()
        login = await rec.wait_for(lambda m: m.get("ActionID") == "rec-login", timeout)
        if login.get("Response") != "Success":
            await rec.close()
            raise RuntimeError(f"AMI login as {username} refused: {login}")
        return rec

    async def _pump(self) -> None:
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                break
            self.data += chunk
            self._grew.set()

    def messages(self) -> list[dict[str, str]]:
        return parse_messages(bytes(self.data))

    def events(self, name: str | None = None) -> list[dict[str, str]]:
        return [m for m in self.messages() if "Event" in m and (name is None or m["Event"] == name)]

    async def wait_for(
        self, predicate: Callable[[dict[str, str]], bool], timeout: float = 10.0
    ) -> dict[str, str]:
        """The first message (already received or arriving within ``timeout``) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages():
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = [m.get("Event", m.get("Response", "?")) for m in self.messages()]
                raise TimeoutError(f"no matching AMI message within {timeout} s; got {names[-40:]}")
            self._grew.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grew.wait(), remaining)

    async def close(self) -> bytes:
        """Log off, stop recording, and return everything received."""
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.write(b"Action: Logoff\r\nActionID: rec-logoff\r\n\r\n")
            await self.writer.drain()
            with contextlib.suppress(TimeoutError):
                await self.wait_for(lambda m: m.get("ActionID") == "rec-logoff", 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        return bytes(self.data)
