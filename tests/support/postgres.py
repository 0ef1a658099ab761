"""A real PostgreSQL server for the test session (Debian's package), on 127.0.0.1 and a free port.

Use the fixtures by importing them into a ``conftest.py``::

    from tests.support.postgres import postgres_server, postgres_url  # noqa: F401

``postgres_server`` is the handle (``stop()``/``start()`` for fault tests, ``create_database()``
for isolated databases); ``postgres_url`` is an asyncpg SQLAlchemy URL of a fresh database.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` system user. Durability is switched off (fsync): this data lives for one session.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

_FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def _bin_dir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name),
        reverse=True,
    )
    found = shutil.which("pg_ctl")
    return candidates[0].parent if candidates else (Path(found).parent if found else None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory. Not thread-safe; one per test session."""

    def __init__(self, bin_dir: Path, base: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="cti-pg-", dir=base))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.log = self.base / "server.log"
        self.port = _free_port()
        self.user = "postgres"
        self._as_postgres: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            self._owner = (entry.pw_uid, entry.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        self.sockets.mkdir()
        for path in (self.base, self.sockets):
            if self._owner:
                os.chown(path, *self._owner)
        self.running = False

    def _run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*self._as_postgres, str(self.bin_dir / args[0]), *args[1:]]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            server_log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            output = f"{result.stdout}\n{result.stderr}\n{server_log}"
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{output}")
        return result

    def init(self) -> None:
        self._run(
            [
                "initdb",
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )

    def start(self) -> None:
        """Start (or restart after ``stop``) on the same port; returns when it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self.sockets} {_FAST}"
        self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"]
        )
        self.running = True

    def stop(self) -> None:
        """Fast shutdown: connections are cut at once, as in an outage."""
        if self.running:
            self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])
            self.running = False

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database, "-v",
             "ON_ERROR_STOP=1", "-At", "-c", sql]
        )  # fmt: skip
        return result.stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (optionally copied from ``template``); returns its asyncpg URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"unsafe database name {name!r}")
        clause = f" TEMPLATE {template}" if template else ""
        self.psql(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def cleanup(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.fail("PostgreSQL is not installed (Debian package postgresql; ./scripts/setup installs it)")
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """An empty database on the session's server (tests that need isolation create their own)."""
    return postgres_server.create_database("cti_test")
