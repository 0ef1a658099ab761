"""A scripted AMI server speaking Asterisk's manager protocol on 127.0.0.1, port 0.

Why a fake and not the sandbox Asterisk: the failures the AMI client must survive cannot be produced
on demand by a real Asterisk: a manager that keeps its socket open and answers nothing (a hung PBX),
a connection that drops exactly after an Originate was written and before it is answered, a frame
cut at an arbitrary byte, a login refused a given number of times. Everything else follows the real
protocol as Asterisk 22 writes it (banner, ``Login`` checked against the secret and followed by
``FullyBooted``, ``Ping`` answered with ``Ping: Pong`` and a timestamp, ``CoreShowChannels`` answered
with an event list, ``Logoff`` with ``Goodbye``, an error and a closed socket after a failed login).
The end-to-end tests run the same client against the real sandbox Asterisk.

The parsing here is deliberately naive and independent of ``cti.framing``, so that a framing bug in
the client cannot be mirrored by the server that tests it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

BANNER = b"Asterisk Call Manager/9.0.0\r\n"


@dataclass
class ReceivedAction:
    """One action as the server read it off the wire."""

    connection: int  # 1-based, in order of acceptance
    raw: bytes
    headers: dict[str, str]

    @property
    def action(self) -> str:
        return self.headers.get("Action", "")

    @property
    def action_id(self) -> str:
        return self.headers.get("ActionID", "")


@dataclass(eq=False)
class _Conn:
    number: int
    writer: asyncio.StreamWriter
    logged_in: bool = False
    silent: bool = False
    held: list[ReceivedAction] = field(default_factory=list)


def _naive_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8").split("\r\n"):
        key, _, value = line.partition(": ")
        headers[key] = f"{headers[key]}\n{value}" if key in headers else value
    return headers


def frame(*lines: str) -> bytes:
    """One AMI frame from ``Key: Value`` lines."""
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class FakeAmi:
    """The server. Use ``async with FakeAmi(...) as server`` or ``start()``/``stop()``.

    Knobs, changeable at any time:

    * ``refuse_logins``: answer ``Login`` with ``Authentication failed`` and close, as Asterisk does;
    * ``hold``: action names recorded but not answered until ``release()``;
    * ``drop_after``: action names after whose receipt the connection is dropped, unanswered;
    * ``fail``: action name -> message, answered ``Response: Error``;
    * ``channels``: the items ``CoreShowChannels`` lists; ``list_interleave``: an unrelated frame
      written between the list items, as a busy Asterisk does.
    """

    def __init__(
        self,
        *,
        username: str = "cti",
        secret: str = "s3cret",  # noqa: S107 - the fake server's own test secret
        banner: bytes = BANNER,
    ) -> None:
        self.username = username
        self.secret = secret
        self.banner = banner
        self.refuse_logins = False
        self.hold: set[str] = set()
        self.drop_after: set[str] = set()
        self.fail: dict[str, str] = {}
        self.channels: list[dict[str, str]] = []
        self.list_interleave: bytes | None = None
        self.received: list[ReceivedAction] = []
        self.connection_times: list[float] = []
        self._conns: list[_Conn] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> FakeAmi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------ what the server saw

    def actions(self, name: str | None = None) -> list[ReceivedAction]:
        return [a for a in self.received if name is None or a.action.lower() == name.lower()]

    @property
    def live_connections(self) -> int:
        return sum(1 for c in self._conns if not c.writer.is_closing())

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked whenever the server sees something."""
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                try:
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()
                except TimeoutError:
                    pass

    async def wait_action(self, name: str, count: int = 1, within: float = 5.0) -> ReceivedAction:
        await self.wait_until(lambda: len(self.actions(name)) >= count, within)
        return self.actions(name)[count - 1]

    # ------------------------------------------------------------ what the server does

    def _current(self) -> _Conn:
        live = [c for c in self._conns if c.logged_in and not c.writer.is_closing()]
        if not live:
            raise RuntimeError("no logged-in client")
        return live[-1]

    async def push(self, data: bytes, *, cuts: Iterable[int] = (), pause: float = 0.0) -> None:
        """Write ``data`` to the current client, cut at the given byte offsets with a pause between
        the pieces (each piece is flushed, so the client reads them separately)."""
        conn = self._current()
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            conn.writer.write(data[start:cut])
            await conn.writer.drain()
            start = cut
            if pause and start < len(data):
                await asyncio.sleep(pause)

    def hang(self) -> None:
        """The current connections stay open and answer nothing, like a hung Asterisk. New
        connections behave normally again."""
        for conn in self._conns:
            conn.silent = True

    def drop(self) -> None:
        """Reset every open connection at once (no Goodbye)."""
        for conn in self._conns:
            if not conn.writer.is_closing():
                conn.writer.transport.abort()

    def release(self, *, reverse: bool = False) -> None:
        """Answer the held actions of the current connection (in reverse order if asked)."""
        conn = self._current()
        held, conn.held = conn.held, []
        for action in reversed(held) if reverse else held:
            conn.writer.write(self._answer(conn, action))

    # ------------------------------------------------------------ protocol

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(len(self._conns) + 1, writer)
        self._conns.append(conn)
        self.connection_times.append(time.monotonic())
        self._changed.set()
        buf = b""
        try:
            writer.write(self.banner)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                *raws, buf = buf.split(b"\r\n\r\n")
                for raw in raws:
                    if raw:
                        self._on_action(conn, raw)
                if writer.is_closing():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            self._changed.set()
            self._tasks.discard(task)

    def _on_action(self, conn: _Conn, raw: bytes) -> None:
        action = ReceivedAction(conn.number, raw, _naive_headers(raw))
        self.received.append(action)
        self._changed.set()
        if conn.silent:
            return
        name = action.action
        if name in self.drop_after:
            conn.writer.transport.abort()
            return
        if name in self.hold:
            conn.held.append(action)
            return
        conn.writer.write(self._answer(conn, action))
        if name == "Logoff" or (name == "Login" and not conn.logged_in):
            conn.writer.close()

    def _answer(self, conn: _Conn, action: ReceivedAction) -> bytes:
        name, aid = action.action, action.action_id
        if name == "Login":
            ok = (
                not self.refuse_logins
                and action.headers.get("Username") == self.username
                and action.headers.get("Secret") == self.secret
            )
            if not ok:
                return frame("Response: Error", f"ActionID: {aid}", "Message: Authentication failed")
            conn.logged_in = True
            return frame("Response: Success", f"ActionID: {aid}", "Message: Authentication accepted") + frame(
                "Event: FullyBooted",
                "Privilege: system,all",
                "Uptime: 12",
                "LastReload: 12",
                "Status: Fully Booted",
            )
        if not conn.logged_in:
            return frame("Response: Error", f"ActionID: {aid}", "Message: Authentication Required")
        if name in self.fail:
            return frame("Response: Error", f"ActionID: {aid}", f"Message: {self.fail[name]}")
        if name == "Ping":
            return frame(
                "Response: Success", f"ActionID: {aid}", "Ping: Pong", f"Timestamp: {time.time():.6f}"
            )
        if name == "Logoff":
            return frame("Response: Goodbye", f"ActionID: {aid}", "Message: Thanks for all the fish.")
        if name == "Originate":
            return frame("Response: Success", f"ActionID: {aid}", "Message: Originate successfully queued")
        if name == "CoreShowChannels":
            out = [
                frame(
                    "Response: Success",
                    f"ActionID: {aid}",
                    "EventList: start",
                    "Message: Channels will follow",
                )
            ]
            for channel in self.channels:
                out.append(
                    frame(
                        "Event: CoreShowChannel",
                        f"ActionID: {aid}",
                        *(f"{k}: {v}" for k, v in channel.items()),
                    )
                )
                if self.list_interleave is not None:
                    out.append(self.list_interleave)
            out.append(
                frame(
                    "Event: CoreShowChannelsComplete",
                    f"ActionID: {aid}",
                    "EventList: Complete",
                    f"ListItems: {len(self.channels)}",
                )
            )
            return b"".join(out)
        return frame("Response: Success", f"ActionID: {aid}")
