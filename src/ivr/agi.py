"""The FastAGI adapter: panoramisk's FastAGI application behind a hardened accept loop, and a typed
channel over one AGI session.

Asterisk runs ``AGI(agi://host:port/ivr)``, connects, sends ``agi_*`` variables up to a blank line,
then answers one line per command. Two of panoramisk's habits are unsafe for a phone line, so the
session start is ours and only routing and command I/O are panoramisk's:

* its ``handler`` reads the variables in a loop that never ends on EOF (a peer that closes early
  spins the event loop forever); ours stops at EOF and bounds the header block;
* it decodes the variables strictly: a caller name with broken UTF-8 raises before the route runs,
  and the caller would hear nothing; ours replaces bad bytes.

Endpoints are ``async def`` only: panoramisk wraps other callables with ``asyncio.coroutine``,
which Python 3.11 removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from panoramisk.fast_agi import Application, Request

log = logging.getLogger("ivr.agi")

MAX_HEADER_BYTES = 16 * 1024  # Asterisk sends about 1 KB of agi_* variables
HEADER_TIMEOUT_SECONDS = 5.0
_SAFE_ARG = re.compile(r"^[A-Za-z0-9_./#*-]*$")


class CommandFailed(Exception):
    """Asterisk answered ``result=-1``: the command failed (a missing sound file, say) or the caller
    is going away; the next command tells which."""


class ChannelGone(Exception):
    """The caller hung up (or the AGI session ended): no further command can reach the channel."""


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One command's answer: ``result`` (the number after ``result=``) and the data in parentheses."""

    result: str
    data: str = ""

    @property
    def code(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            return 0


def _arg(value: str) -> str:
    """An AGI command argument: a line of its own, split at spaces; only safe characters pass."""
    if not _SAFE_ARG.match(value):
        raise ValueError(f"unsafe AGI argument: {value!r}")
    return value or '""'


class AgiChannel:
    """The commands the IVR sends to one caller's channel. Every method raises :class:`ChannelGone`
    once the caller has hung up. Keys pressed are returned, never logged."""

    def __init__(self, request: Request, timeout: float = 660.0) -> None:
        self._request = request
        self._timeout = timeout
        self.env: dict[str, str] = dict(request.headers)

    async def command(self, *words: str) -> AgiReply:
        line = " ".join(words)
        try:
            raw: dict[str, Any] = await asyncio.wait_for(self._request.send_command(line), self._timeout)
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise ChannelGone(str(exc)) from exc
        if raw.get("error") == "AGIAppError":
            raise CommandFailed(words[0])
        if raw.get("error") == "AGIResultHangup" or raw.get("status_code") in (0, 511):
            raise ChannelGone(raw.get("msg") or "hung up")
        if raw.get("status_code") != 200:
            raise RuntimeError(
                f"AGI command {words[0]} refused: {raw.get('status_code')} {raw.get('msg', '')}"
            )
        value, data = raw.get("result", ("", ""))
        if value == "-1":
            raise ChannelGone("the command failed on a channel that is going away")
        return AgiReply(value, data)

    async def variable(self, expression: str) -> str:
        """``GET FULL VARIABLE``: an expression such as ``${CHANNEL(linkedid)}`` evaluated on the channel."""
        reply = await self.command("GET FULL VARIABLE", expression)
        return reply.data if reply.result == "1" else ""

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET VARIABLE", _arg(name), _arg(value))

    async def stream(self, path: str, escape: str = "") -> str:
        """Play ``path`` (no suffix); a key among ``escape`` stops it and is returned."""
        try:
            reply = await self.command("STREAM FILE", _arg(path), f'"{escape}"' if escape else '""')
        except CommandFailed:
            # A sound Asterisk cannot play is silence, not the end of the call.
            log.warning("Asterisk could not play %s", path.rsplit("/", 1)[-1])
            await self.command("NOOP")
            return ""
        return chr(reply.code) if reply.code > 0 else ""

    async def wait_for_digit(self, timeout_ms: int) -> str:
        try:
            reply = await self.command("WAIT FOR DIGIT", str(int(timeout_ms)))
        except CommandFailed as exc:
            # WAIT FOR DIGIT answers -1 only when the channel is going away: the caller left.
            raise ChannelGone("hung up while the IVR waited for a key") from exc
        return chr(reply.code) if reply.code > 0 else ""

    async def say(self, kind: str, value: str, escape: str = "") -> None:
        """``SAY NUMBER`` / ``SAY DIGITS`` / ``SAY ALPHA`` in the channel's language."""
        await self.command(f"SAY {kind}", _arg(value), f'"{escape}"' if escape else '""')

    async def record(self, path: str, *, max_ms: int, beep: bool, silence_seconds: int = 5) -> None:
        """Record into ``path``.wav until ``#``, ``silence_seconds`` of silence or ``max_ms``."""
        words = ["RECORD FILE", _arg(path), "wav", '"#"', str(max_ms)]
        if beep:
            words.append("BEEP")
        words.append(f"s={silence_seconds}")
        await self.command(*words)


Endpoint = Callable[[AgiChannel], Awaitable[None]]


class FastAgiServer:
    """Serves FastAGI on ``host:port`` and runs ``endpoint`` for the script ``route`` (``ivr``).

    ``run()`` listens until cancelled; ``ready`` is set once the socket is bound (``port`` then holds
    the bound port, useful with port 0). Sessions in progress are cancelled with it: their callers
    then take the dialplan's fallback.
    """

    def __init__(self, host: str, port: int, endpoint: Endpoint, route: str = "ivr") -> None:
        self.host = host
        self.port = port
        self.route = route
        self.ready = asyncio.Event()
        self.sessions = 0
        self.failures = 0
        self._endpoint = endpoint
        self._tasks: set[asyncio.Task[None]] = set()
        self._app = Application(default_encoding="utf-8")
        self._app.add_route(route, self._serve_request)

    async def _serve_request(self, request: Request) -> None:
        self.sessions += 1
        try:
            await self._endpoint(AgiChannel(request))
        except ChannelGone:
            pass
        except Exception:
            self.failures += 1
            log.exception("IVR session failed; the dialplan's fallback takes the caller")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            headers = await asyncio.wait_for(read_agi_headers(reader), HEADER_TIMEOUT_SECONDS)
            if headers is None:
                return
            script = headers.get("agi_network_script", "")
            route = self._app._route.get(script)
            if route is None:
                log.warning("FastAGI request for unknown script %r", script[:64])
                return
            await route(Request(self._app, headers, reader, writer, encoding="utf-8"))
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def run(self) -> None:
        server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(server.sockets[0].getsockname()[1])
        self.ready.set()
        log.info("FastAGI on %s:%d", self.host, self.port)
        try:
            async with server:
                await server.serve_forever()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def read_agi_headers(reader: asyncio.StreamReader) -> OrderedDict[str, str] | None:
    """The ``agi_*`` variables up to the blank line; ``None`` if the peer closed first or sent more
    than :data:`MAX_HEADER_BYTES`. Bad UTF-8 (a caller name cut by the SIP stack) is replaced."""
    try:
        head = await reader.readuntil(b"\n\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    if len(head) > MAX_HEADER_BYTES:
        return None
    lines = head.decode("utf-8", "replace").split("\n")
    return OrderedDict(line.split(": ", 1) for line in lines if ": " in line)
