"""The platform as a real process (``cti serve``) for end-to-end tests, and a TCP link we can cut.

``PlatformProcess`` runs ``.venv/bin/cti serve`` with its settings in ``CTI_*`` environment variables,
exactly as an operator would, so a test can SIGKILL it and start it again. ``CuttableLink`` is a
loopback TCP relay between the platform and Asterisk's AMI port: cutting it is how a test breaks the
AMI link mid-call, since a real Asterisk cannot be asked to drop one client's TCP connection on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
CTI = str(Path(sys.executable).parent / "cti")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PlatformProcess:
    """One ``cti serve`` process and an HTTP client logged in as its admin."""

    state_dir: Path
    env: dict[str, str]
    http_port: int
    proc: asyncio.subprocess.Process | None = None
    token: str | None = None
    log_path: Path = field(init=False)
    starts: int = 0

    def __post_init__(self) -> None:
        self.log_path = self.state_dir / "platform.log"

    @classmethod
    def configure(
        cls,
        state_dir: Path,
        *,
        ami_port: int,
        ami_secret_file: Path,
        pbx_id: str = "test",
        database_url: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> PlatformProcess:
        http_port = free_port()
        env = {
            **os.environ,
            "CTI_SETTINGS_FILE": str(state_dir / "none.toml"),
            "CTI_STATE_DIR": str(state_dir),
            "CTI_PBX_ID": pbx_id,
            "CTI_AMI__HOST": "127.0.0.1",
            "CTI_AMI__PORT": str(ami_port),
            "CTI_AMI__SECRET_FILE": str(ami_secret_file),
            "CTI_AMI__PING_INTERVAL": "1",
            "CTI_AMI__PING_TIMEOUT": "2",
            "CTI_AMI__RECONNECT_MAX": "1",
            "CTI_HTTP__PORT": str(http_port),
            "CTI_DEFAULT_REGION": "CN",
            "PYTHONUNBUFFERED": "1",
        }
        if database_url:
            env["CTI_DATABASE_URL"] = database_url
        env.update(extra or {})
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls(state_dir=state_dir, env=env, http_port=http_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def add_user(self, username: str, password: str, role: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            CTI, "users", "add", username, "--role", role, "--password-stdin",
            env=self.env, cwd=self.state_dir, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate(f"{password}\n".encode())
        if proc.returncode != 0:
            raise RuntimeError(f"cti users add failed: {out.decode(errors='replace')}")

    async def start(self, timeout: float = 60.0) -> None:
        """Start ``cti serve`` and wait until the AMI link is up and the call model resynced."""
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            CTI, "serve", env=self.env, cwd=self.state_dir, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.starts += 1
        await self.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"cti serve exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    response = await client.get("/api/health")
                    last = response.json()
                    if last.get("ami") == "up":
                        return dict(last)
                except (httpx.HTTPError, ValueError) as exc:
                    last = exc
                await asyncio.sleep(0.2)
        raise TimeoutError(f"platform not healthy after {timeout}s (last: {last}):\n{self.log_tail()}")

    async def login(self, username: str, password: str) -> str:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5.0) as client:
            response = await client.post("/api/auth/login", json={"username": username, "password": password})
            response.raise_for_status()
            self.token = str(response.json()["access_token"])
            return self.token

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.AsyncClient(base_url=self.base_url, timeout=10.0, headers=headers)

    async def kill(self) -> None:
        """SIGKILL: the platform dies without any chance to clean up."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class CuttableLink:
    """A loopback TCP relay to ``target_port`` that a test can cut (and refuse) on demand."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        self.accepted = 0
        self._cut_after: tuple[bytes, float] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for src, dst, upstream in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(src, dst, pair, upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        upstream: bool,
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
                if upstream and self._cut_after is not None and self._cut_after[0] in data:
                    # Asterisk has the request; its answer will never reach the client.
                    _, restore_after = self._cut_after
                    self._cut_after = None
                    self.cut()
                    asyncio.get_running_loop().call_later(restore_after, self.restore)
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            self._close_pair(pair)

    def _close_pair(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._pairs.discard(pair)
        for w in pair:
            with contextlib.suppress(Exception):
                w.transport.abort()

    def cut(self, *, refuse: bool = True) -> None:
        """Drop every relayed connection now; with ``refuse``, turn new ones away until ``restore``."""
        self.refusing = refuse
        for pair in list(self._pairs):
            self._close_pair(pair)

    def cut_after(self, marker: bytes, *, restore_after: float) -> None:
        """Cut the link right after the client sends bytes containing ``marker``; restore it later."""
        self._cut_after = (marker, restore_after)

    def restore(self) -> None:
        self.refusing = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class PlatformApi:
    """The platform over HTTP as several users at once (admin, supervisors, each agent), each signed
    in with ``login`` and named by user name in ``request``."""

    #: How long ``until`` waits when the caller gives no timeout.
    until_timeout = 30.0

    def __init__(self, platform: PlatformProcess) -> None:
        self.platform = platform
        self.tokens: dict[str, str] = {}

    async def login(self, username: str, password: str) -> None:
        async with httpx.AsyncClient(base_url=self.platform.base_url, timeout=5.0) as client:
            response = await client.post("/api/auth/login", json={"username": username, "password": password})
            response.raise_for_status()
            self.tokens[username] = response.json()["access_token"]

    async def raw(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response as it came, whatever its status."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with httpx.AsyncClient(base_url=self.platform.base_url, timeout=15.0, headers=headers) as c:
            return await c.request(method, path, **kwargs)

    async def request(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful answer; anything else fails the test, saying what came back."""
        response = await self.raw(who, method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def until(
        self, what: str, probe: Callable[[], Awaitable[Any]], timeout: float | None = None
    ) -> Any:
        """``probe()``'s first truthy answer within ``timeout`` seconds; else the test fails, with the
        platform's log."""
        timeout = self.until_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            found = await probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.platform.log_tail(120)}")
            await asyncio.sleep(0.25)
