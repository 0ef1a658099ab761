"""Small process and socket helpers of the sandbox: run a command streaming its output, find who holds
a port, check that a pid is still the Asterisk we started."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .model import PortInUseError


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    tail: tuple[str, ...]
    lines: int


async def run_streaming(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None] | None = None,
    log_file: Path | None = None,
    env: dict[str, str] | None = None,
    tail_lines: int = 60,
) -> CommandResult:
    """Run ``argv`` to completion, feeding each output line (stdout and stderr merged) to ``on_line``.

    The whole output is appended to ``log_file`` when given; the last ``tail_lines`` lines come back
    for error messages.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=tail_lines)
    count = 0
    log = log_file.open("a", encoding="utf-8") if log_file is not None else None
    try:
        if log is not None:
            log.write(f"$ {' '.join(argv)}\n")
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            count += 1
            tail.append(line)
            if log is not None:
                log.write(line + "\n")
            if on_line is not None:
                on_line(line)
        returncode = await proc.wait()
    except BaseException:
        # Cancelled or failed while reading: never leave the child behind.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    finally:
        if log is not None:
            log.close()
    return CommandResult(returncode=returncode, tail=tuple(tail), lines=count)


def _socket_holders(port: int, proto: str) -> list[str]:
    """Best effort: ``"pid 123 (sipp)"`` for every process holding a local ``proto`` socket on ``port``."""
    inodes: set[str] = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10:
                continue
            local = fields[1]
            if int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    inodes.discard("0")
    if not inodes:
        return []
    holders: list[str] = []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        links = set()
        for fd in fds:
            with contextlib.suppress(OSError):  # closed meanwhile (the directory listing's own, say)
                links.add(os.readlink(fd))
        if links & wanted:
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                comm = "?"
            holders.append(f"pid {entry.name} ({comm})")
    return holders


def check_port_free(host: str, port: int, kind: str, *, proto: str, setting: str) -> None:
    """Raise ``PortInUseError`` naming the port, its use and its holder if ``host:port`` cannot be bound.

    ``proto`` is ``"udp"`` or ``"tcp"``; ``setting`` is the settings variable that moves the port.
    """
    sock_type = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, sock_type) as sock:
        if proto == "tcp":
            # A listener we stopped a moment ago leaves TIME_WAIT sockets; they do not stop a new bind.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            holders = _socket_holders(port, proto)
            who = f" by {', '.join(holders)}" if holders else " by another program"
            raise PortInUseError(
                f"the {kind} port {host}:{port}/{proto} is already in use{who}: stop that program or "
                f"choose another port ({setting})"
            ) from exc


def read_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _state(stat_path: Path) -> str | None:
    try:
        stat = stat_path.read_text()
    except OSError:
        return None
    # The state is the field after the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[1].split()[0]


def is_zombie_or_gone(pid: int) -> bool:
    """True when process ``pid`` is gone or a zombie whose threads have all exited (reaping it if it
    is our own child).

    A multithreaded process's main thread turns zombie before its other threads have exited, and
    those still hold its sockets: only when no other thread is left are its ports free again.
    """
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    state = _state(Path(f"/proc/{pid}/stat"))
    if state is None:
        return True
    if state not in ("Z", "X"):
        return False
    try:
        tasks = [t for t in os.listdir(f"/proc/{pid}/task") if t != str(pid)]
    except OSError:
        return True
    return not tasks
