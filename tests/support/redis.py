"""A real Redis server for the test session (Debian's ``redis-server``), on 127.0.0.1 and a free port.

Use the fixture by importing it into a ``conftest.py``::

    from tests.support.redis import redis_server  # noqa: F401

The server keeps nothing on disk (``--save ''``, no append-only file): its data lives for one
session. Tests that share it isolate themselves by key prefix or with ``flushall()``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process in a temporary directory."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.base = Path(tempfile.mkdtemp(prefix="cti-redis-"))
        self.log = self.base / "redis.log"
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start and return once it accepts connections."""
        command = [
            self.binary,
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.base),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self._process.returncode}):\n{self._log_tail()}")
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server gave no answer on {self.url} in {timeout} s:\n{self._log_tail()}")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server); the Redis tests need it")
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
