"""A minimal, blocking AMI check: is Asterisk up and fully booted?

Self-contained on purpose (stdlib sockets only): the sandbox must not depend on the platform's AMI
client, and this check has to work before and without it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """``ok`` means: the banner came, the login was accepted and ``FullyBooted`` was seen."""

    ok: bool
    reason: str
    banner: str | None = None


def _read_message(sock: socket.socket, buf: bytearray, deadline: float) -> bytes | None:
    """One AMI message (up to the blank line), or ``None`` when the deadline passes."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            message = bytes(buf[:end])
            del buf[: end + 4]
            return message
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        if not chunk:
            raise ConnectionError("Asterisk closed the AMI connection")
        buf += chunk


def _headers(message: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in message.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return headers


def probe_fully_booted(host: str, port: int, username: str, secret: str, timeout: float = 5.0) -> ProbeResult:
    """Connect, read the banner, log in, wait for ``Event: FullyBooted``, log off.

    Asterisk sends ``FullyBooted`` to every session that logs in after boot (and to those logged in
    when boot completes), to users that may read the ``system`` class.
    """
    if any(c in value for value in (username, secret) for c in "\r\n"):
        raise ValueError("AMI username and secret must not contain CR or LF")
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return ProbeResult(False, f"AMI {host}:{port} does not accept connections ({exc.strerror or exc})")
    buf = bytearray()
    with sock:
        try:
            # The banner is one line, not a blank-line-terminated message.
            while b"\r\n" not in buf:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    return ProbeResult(False, "AMI closed the connection before its banner")
                buf += chunk
            line, _, rest = bytes(buf).partition(b"\r\n")
            buf[:] = rest
            banner = line.decode("utf-8", "replace")
            if not banner.startswith("Asterisk Call Manager"):
                return ProbeResult(False, f"not an AMI banner: {banner!r}")
            sock.sendall(
                f"Action: Login\r\nActionID: probe-login\r\nUsername: {username}\r\nSecret: {secret}\r\n"
                "Events: on\r\n\r\n".encode()
            )
            logged_in = booted = False
            while not (logged_in and booted):
                message = _read_message(sock, buf, deadline)
                if message is None:
                    why = "no FullyBooted event" if logged_in else "no answer to Login"
                    return ProbeResult(False, f"{why} within {timeout:.0f} s", banner)
                headers = _headers(message)
                if headers.get("actionid") == "probe-login":
                    if headers.get("response", "").lower() != "success":
                        return ProbeResult(False, f"AMI login refused: {headers.get('message', '?')}", banner)
                    logged_in = True
                elif headers.get("event") == "FullyBooted":
                    booted = True
            sock.sendall(b"Action: Logoff\r\nActionID: probe-logoff\r\n\r\n")
            return ProbeResult(True, "fully booted", banner)
        except (OSError, ConnectionError) as exc:
            return ProbeResult(False, f"AMI connection failed: {exc}")
