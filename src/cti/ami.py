"""The AMI client: one hardened connection to Asterisk's manager interface (the I/O edge).

It implements ``cti.ports.ActionSink`` and feeds the call model through ``events``. Guarantees (each
one is proven in ``tests/cti/test_ami_client.py``; docs/ami-link.md explains why they matter):

* Reading never waits on anyone. Bytes are framed and dispatched inside the protocol callback, so the
  socket drains as fast as the loop runs (Asterisk drops a manager client that does not drain within
  its write timeout). Events go to a bounded queue with ``put_nowait``; on overflow they are dropped
  and counted, then exactly one ``ResyncNeeded`` tells the consumer to rebuild its state.
* A failing ``decode_event`` costs that one frame: it is counted and logged once per kind, and the link
  and the rest of the read go on.
* An action is written once, or not at all. ``send`` on a link that is down raises
  ``cti.ports.LinkDown`` and nothing is queued. If the link drops while an action awaits its answer,
  a non-idempotent one raises ``ActionOutcomeUnknown`` and an idempotent one ``cti.ports.LinkDown``;
  nothing is re-sent after a reconnect.
* A hung Asterisk (socket open, nothing answered) is found by a ``Ping`` with a deadline; the link is
  then aborted and re-established with exponential backoff and jitter.
* The secret is only ever written to the socket: no log line, exception or ``repr`` carries it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from cti import ports
from cti.actions import encode_action, safe_to_retry
from cti.framing import AmiFramer, ParseStats, frame_action_id, frame_event_name, parse_frame
from cti.ports import ActionFailed, ActionOutcomeUnknown
from cti.settings import AmiSettings

log = logging.getLogger("cti.ami")

Headers = Mapping[str, str] | Iterable[tuple[str, str]] | None

_NAME = re.compile(r"[A-Za-z0-9_.]{1,32}")
_CLIENT_MANAGED = frozenset({"login", "logoff", "challenge"})
_RETIRED_LISTS_KEPT = 32
_DISTINCT_ERRORS_LOGGED = 256


@dataclass(frozen=True, slots=True)
class LinkUp:
    """Logged in (again). Whatever the consumer knew of Asterisk's state is stale: rebuild it
    (``CoreShowChannels``, ``QueueStatus``) before applying the events that follow."""

    generation: int
    banner: str


@dataclass(frozen=True, slots=True)
class LinkDown:
    """Marker: the link of ``generation`` ended; events resume after the next ``LinkUp``.

    Not to be confused with the exception ``cti.ports.LinkDown`` that ``send`` raises; import this
    one under another name (``from cti.ami import LinkDown as LinkDownMarker``) where both are used.
    """

    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class ResyncNeeded:
    """``dropped`` events were lost just before this marker; rebuild state as after ``LinkUp``."""

    reason: str
    dropped: int


Marker = LinkUp | LinkDown | ResyncNeeded


@dataclass(slots=True)
class AmiCounters:
    """Cumulative over the client's life, across reconnects."""

    frames: int = 0
    events_delivered: int = 0
    events_skipped: int = 0  # decode_event returned None, or an event came before login
    events_dropped: int = 0  # lost to a full queue
    oversized_frames: int = 0
    too_many_headers: int = 0
    malformed_lines: int = 0  # in frames this client parsed (responses, list items)
    invalid_utf8_frames: int = 0
    queue_overflows: int = 0  # overflow episodes; each ends with one ResyncNeeded or a link marker
    resyncs_requested: int = 0
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    login_failures: int = 0
    ping_timeouts: int = 0
    handler_errors: int = 0
    actions_sent: int = 0
    unmatched_responses: int = 0  # late (after a timeout) or unknown ActionID
    late_list_events: int = 0  # items of a list that had already completed or timed out

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class EventQueue(asyncio.Queue[object]):
    """An ``asyncio.Queue`` that tells the client when a consumer takes an item, so an overflow can
    end (with its ``ResyncNeeded``) even if no further event arrives to notice the free room."""

    def __init__(self, maxsize: int, on_get: Callable[[], None]) -> None:
        super().__init__(maxsize)
        self._on_get = on_get

    def _get(self) -> object:
        item = super()._get()
        self._on_get()
        return item


@dataclass(slots=True, eq=False)
class _Pending:
    action: str
    action_id: str
    future: asyncio.Future[Any]
    events: list[dict[str, str]] | None  # the list items, for an event-list action
    on_success: Callable[[dict[str, str]], None] | None = None
    response: dict[str, str] | None = None


class _Link(asyncio.Protocol):
    """One TCP connection and the actions in flight on it."""

    def __init__(self, client: AmiClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.pending: dict[bytes, _Pending] = {}
        self.list_ids: set[bytes] = set()
        self.retired_lists: dict[bytes, None] = {}  # insertion-ordered, bounded
        self.up = False
        self.generation = 0
        self.reason: str | None = None
        self.banner_seen: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client._on_data(self, data)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "connection closed by Asterisk" if exc is None else f"connection error: {exc!r}"
        self.client._lose(self, reason)


class AmiClient:
    """A self-healing AMI connection. Start ``run()`` in a task; stop with ``close()``.

    ``events`` receives, in stream order, whatever ``decode_event`` returned for each event frame
    (``None`` results are skipped), interleaved with the markers ``LinkUp``, ``LinkDown`` and
    ``ResyncNeeded``.
    ``decode_event`` runs inside the read path: it must be quick and must not block.
    """

    def __init__(
        self,
        settings: AmiSettings,
        *,
        decode_event: Callable[[bytes], object | None],
        name: str = "ami",
    ) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError("name must be 1-32 letters, digits, '_' or '.' (it prefixes every ActionID)")
        self.settings = settings
        self.name = name
        self._decode_event = decode_event
        self.events: asyncio.Queue[object] = EventQueue(settings.event_queue_size, self._on_consumer_get)
        self.counters = AmiCounters()
        self.parse_stats = ParseStats()
        self.connected = False
        self.generation = 0
        self._framer = AmiFramer(settings.max_frame_bytes, settings.max_headers)
        self._link: _Link | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._run_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._overflow_dropped = 0
        self._flush_scheduled = False
        self._errors_seen: set[tuple[str, bytes]] = set()
        self._rng = random.Random()  # noqa: S311 - jitter spreads reconnects; nothing secret

    def __repr__(self) -> str:
        s = self.settings
        state = "connected" if self.connected else "closed" if self._closing else "down"
        return f"<AmiClient {self.name} {s.username}@{s.host}:{s.port} {state} generation={self.generation}>"

    # ----------------------------------------------------------------- public API

    async def run(self) -> None:
        """Connect, log in and serve; reconnect on any loss. Returns only after ``close()``.

        Network and login errors never escape: they are logged, counted and retried after
        ``reconnect_min``, doubling up to ``reconnect_max``, each delay jittered by ±20 %.
        """
        if self._run_task is not None:
            raise RuntimeError("AmiClient.run() is already running or has run")
        if self._closing:
            return
        self._run_task = asyncio.current_task()
        s = self.settings
        delay = s.reconnect_min
        attempts = 0
        try:
            while not self._closing:
                if attempts:
                    self.counters.reconnects += 1
                attempts += 1
                try:
                    logged_in = await self._session()
                except Exception:
                    # A bug, not the network: the link must still heal, so it is logged and retried.
                    log.exception("%s: unexpected error in the AMI session", self.name)
                    logged_in = False
                if self._closing:
                    break
                if logged_in:
                    delay = s.reconnect_min
                pause = min(s.reconnect_max, delay * self._rng.uniform(0.8, 1.2))
                log.info("%s: reconnecting in %.2fs", self.name, pause, extra={"ami_link": self.name})
                await asyncio.sleep(pause)
                delay = min(s.reconnect_max, delay * 2)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # Swallow only the cancellation close() asked for, so an outer TaskGroup still works.
            if not (self._closing and task is not None and task.uncancel() == 0):
                raise
        finally:
            if self._link is not None:
                self._lose(self._link, "client stopped")
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)

    async def wait_connected(self, timeout: float) -> None:
        """Return once logged in; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    async def send(
        self,
        action: str,
        headers: Headers = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, str]:
        """Write ``action`` once and return Asterisk's response headers.

        Raises ``ValueError`` for an invalid action (nothing written), ``cti.ports.LinkDown`` if the
        link is not up (nothing written, nothing queued) or dropped before the answer of an
        idempotent action, ``ActionOutcomeUnknown`` if it dropped before the answer of any other action,
        ``ActionFailed`` on ``Response: Error``, ``TimeoutError`` after ``timeout`` (default
        ``action_timeout``); for a non-idempotent action a timeout also leaves the outcome unknown.
        """
        result: dict[str, str] = await self._submit(action, headers, timeout, collect=False)
        return result

    async def send_list(
        self,
        action: str,
        headers: Headers = None,
        *,
        timeout: float | None = None,
    ) -> tuple[dict[str, str], list[dict[str, str]]]:
        """Send an event-list action (``CoreShowChannels``, ``Status``, ``QueueStatus`` ...).

        Returns the response and the parsed events carrying its ActionID, in order, up to and
        excluding the closing ``EventList: Complete`` event. Same errors as ``send``; ``timeout``
        bounds the whole list.
        """
        result: tuple[dict[str, str], list[dict[str, str]]] = await self._submit(
            action, headers, timeout, collect=True
        )
        return result

    async def close(self) -> None:
        """Log off, close the link, stop ``run()`` and every task it owns. Idempotent."""
        if not self._closing:
            self._closing = True
            link = self._link
            if link is not None and link.reason is None and link.transport is not None:
                if link.up:
                    link.transport.write(encode_action("Logoff", (), self._next_action_id()))
                link.transport.close()
                self._lose(link, "closed by client", abort=False)
            task = self._run_task
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait({task})

    # ----------------------------------------------------------------- connection life

    async def _session(self) -> bool:
        """One connection: connect, log in, serve until lost. True if the login succeeded."""
        s = self.settings
        loop = asyncio.get_running_loop()
        self._framer.reset()
        link = _Link(self, loop)
        self._link = link
        keepalive: asyncio.Task[None] | None = None
        try:
            try:
                async with asyncio.timeout(s.connect_timeout):
                    await loop.create_connection(lambda: link, s.host, s.port)
            except (OSError, TimeoutError) as exc:
                self.counters.connect_failures += 1
                log.warning(
                    "%s: cannot connect to %s:%s: %s",
                    self.name,
                    s.host,
                    s.port,
                    exc or type(exc).__name__,
                    extra={"ami_link": self.name},
                )
                return False
            self.counters.connects += 1
            if not await self._login(link):
                self.counters.login_failures += 1
                return False
            keepalive = asyncio.create_task(self._keepalive(link), name=f"{self.name}-keepalive")
            self._tasks.add(keepalive)
            keepalive.add_done_callback(self._tasks.discard)
            await link.lost
            return True
        finally:
            self._lose(link, "session ended")
            if keepalive is not None and not keepalive.done():
                keepalive.cancel()
                await asyncio.wait({keepalive})
            if self._link is link:
                self._link = None

    async def _login(self, link: _Link) -> bool:
        s = self.settings
        await asyncio.wait(
            {link.banner_seen, link.lost}, timeout=s.connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not link.banner_seen.done():
            why = link.reason or f"no banner within {s.connect_timeout:g}s"
            log.warning("%s: login not attempted: %s", self.name, why, extra={"ami_link": self.name})
            return False
        action_id = self._next_action_id()
        try:
            secret = s.resolved_secret()
            data = encode_action(
                "Login",
                (("Username", s.username), ("Secret", secret.get_secret_value()), ("Events", "on")),
                action_id,
            )
        except (RuntimeError, OSError, ValueError) as exc:
            # These messages name the setting or the header, never the secret's value.
            log.error("%s: login not attempted: %s", self.name, exc, extra={"ami_link": self.name})
            return False
        try:
            await self._request(
                link,
                "Login",
                data,
                action_id,
                s.action_timeout,
                collect=False,
                on_success=lambda _fields: self._link_up(link),
            )
        except ActionFailed as exc:
            log.error(
                "%s: Asterisk refused the login of user %r: %s",
                self.name,
                s.username,
                exc.message,
                extra={"ami_link": self.name},
            )
            return False
        except (ports.LinkDown, ActionOutcomeUnknown, TimeoutError):
            log.warning(
                "%s: login not answered: %s",
                self.name,
                link.reason or "timeout",
                extra={"ami_link": self.name},
            )
            return False
        return True

    def _link_up(self, link: _Link) -> None:
        # Runs inside the read path, as the Login response is dispatched, so that LinkUp precedes
        # the events that follow that response in the same read.
        self.generation += 1
        link.generation = self.generation
        link.up = True
        self.connected = True
        self._connected.set()
        banner = self._framer.banner or ""
        self._put_marker(LinkUp(self.generation, banner))
        log.info(
            "%s: logged in to %s (generation %d)",
            self.name,
            banner or "a peer without banner",
            self.generation,
            extra={"ami_link": self.name},
        )

    def _lose(self, link: _Link, reason: str, *, abort: bool = True) -> None:
        """End ``link`` once: fail its pending actions, emit the ``LinkDown`` marker if it was up."""
        if link.reason is not None:
            return
        link.reason = reason
        if abort and link.transport is not None:
            link.transport.abort()
        pending = list(link.pending.values())
        link.pending.clear()
        link.list_ids.clear()
        for entry in pending:
            if not entry.future.done():
                entry.future.set_exception(self._loss_error(entry, reason))
        if link.up:
            link.up = False
            self.connected = False
            self._connected.clear()
            self._put_marker(LinkDown(link.generation, reason))
            log.warning(
                "%s: link of generation %d lost: %s",
                self.name,
                link.generation,
                reason,
                extra={"ami_link": self.name},
            )
        if not link.lost.done():
            link.lost.set_result(None)

    @staticmethod
    def _loss_error(entry: _Pending, reason: str) -> Exception:
        if safe_to_retry(entry.action) or entry.action == "Login":
            return ports.LinkDown(
                f"AMI link lost before {entry.action} was answered ({reason}); safe to retry"
            )
        return ActionOutcomeUnknown(
            f"{entry.action} (ActionID {entry.action_id}) was written but the AMI link dropped before "
            f"Asterisk answered ({reason}); it is not re-sent"
        )

    async def _keepalive(self, link: _Link) -> None:
        s = self.settings
        while link.reason is None:
            await asyncio.sleep(s.ping_interval)
            if link.reason is not None:
                return
            action_id = self._next_action_id()
            data = encode_action("Ping", (), action_id)
            try:
                await self._request(link, "Ping", data, action_id, s.ping_timeout, collect=False)
            except TimeoutError:
                self.counters.ping_timeouts += 1
                self._lose(link, f"Ping unanswered for {s.ping_timeout:g}s: Asterisk is hung or unreachable")
                return
            except (ports.LinkDown, ActionOutcomeUnknown):
                return
            except ActionFailed:
                pass  # an answer, even an error, proves Asterisk is alive

    # ----------------------------------------------------------------- actions

    def _next_action_id(self) -> str:
        return f"{self.name}-{self.generation}-{next(self._ids)}"

    async def _submit(
        self,
        action: str,
        headers: Headers,
        timeout: float | None,
        *,
        collect: bool,
    ) -> Any:
        if isinstance(action, str) and action.lower() in _CLIENT_MANAGED:
            raise ValueError(f"{action} is managed by the AMI client itself")
        action_id = self._next_action_id()
        data = encode_action(action, () if headers is None else headers, action_id)
        link = self._link
        if link is None or not link.up or link.reason is not None or link.transport is None:
            raise ports.LinkDown(f"AMI link is down; {action} was not sent")
        if link.transport.is_closing():
            raise ports.LinkDown(f"AMI link is closing; {action} was not sent")
        deadline = self.settings.action_timeout if timeout is None else timeout
        return await self._request(link, action, data, action_id, deadline, collect=collect)

    async def _request(
        self,
        link: _Link,
        action: str,
        data: bytes,
        action_id: str,
        timeout: float,
        *,
        collect: bool,
        on_success: Callable[[dict[str, str]], None] | None = None,
    ) -> Any:
        assert link.transport is not None
        key = action_id.encode("ascii")
        entry = _Pending(
            action, action_id, asyncio.get_running_loop().create_future(), [] if collect else None, on_success
        )
        link.pending[key] = entry
        if collect:
            link.list_ids.add(key)
        link.transport.write(data)
        self.counters.actions_sent += 1
        try:
            async with asyncio.timeout(timeout):
                return await entry.future
        except TimeoutError:
            raise TimeoutError(f"{action} (ActionID {action_id}) not answered within {timeout:g}s") from None
        finally:
            if link.pending.get(key) is entry:
                del link.pending[key]
            if collect:
                self._retire_list(link, key)

    @staticmethod
    def _retire_list(link: _Link, key: bytes) -> None:
        link.list_ids.discard(key)
        link.retired_lists[key] = None
        if len(link.retired_lists) > _RETIRED_LISTS_KEPT:
            del link.retired_lists[next(iter(link.retired_lists))]

    # ----------------------------------------------------------------- the read path

    def _on_data(self, link: _Link, data: bytes) -> None:
        if link.reason is not None:
            return
        framer = self._framer
        frames = framer.feed(data)
        counters = self.counters
        counters.frames = framer.frames
        counters.oversized_frames = framer.oversized
        counters.too_many_headers = framer.too_many_headers
        if not framer.awaiting_banner and not link.banner_seen.done():
            link.banner_seen.set_result(None)
        for frame in frames:
            try:
                self._on_frame(link, frame)
            except Exception as exc:
                self._handler_error(exc, frame)
        counters.malformed_lines = self.parse_stats.malformed_lines
        counters.invalid_utf8_frames = self.parse_stats.invalid_utf8_frames

    def _on_frame(self, link: _Link, frame: bytes) -> None:
        if frame.startswith(b"Event: "):
            if link.list_ids or link.retired_lists:
                key = frame_action_id(frame)
                if key is not None:
                    entry = link.pending.get(key)
                    if entry is not None and entry.events is not None:
                        self._collect(link, key, entry, frame)
                        return
                    if key in link.retired_lists:
                        self.counters.late_list_events += 1
                        return
            if not link.up:
                self.counters.events_skipped += 1
                return
            item = self._decode_event(frame)
            if item is None:
                self.counters.events_skipped += 1
            else:
                self._deliver(item)
            return
        key = frame_action_id(frame)
        entry = link.pending.get(key) if key is not None else None
        if entry is None:
            self.counters.unmatched_responses += 1
            return
        assert key is not None
        response = parse_frame(frame, self.parse_stats)
        if response.get("Response", "").lower() == "error":
            self._finish(link, key, entry)
            if not entry.future.done():
                entry.future.set_exception(ActionFailed(entry.action, response.get("Message", "")))
        elif entry.events is not None:
            entry.response = response
        else:
            self._finish(link, key, entry)
            if entry.on_success is not None:
                entry.on_success(response)
            if not entry.future.done():
                entry.future.set_result(response)

    def _collect(self, link: _Link, key: bytes, entry: _Pending, frame: bytes) -> None:
        assert entry.events is not None
        item = parse_frame(frame, self.parse_stats)
        if item.get("EventList", "").lower() != "complete":
            entry.events.append(item)
            return
        self._finish(link, key, entry)
        if not entry.future.done():
            entry.future.set_result((entry.response or {}, entry.events))

    def _finish(self, link: _Link, key: bytes, entry: _Pending) -> None:
        if link.pending.get(key) is entry:
            del link.pending[key]
        if entry.events is not None:
            self._retire_list(link, key)

    def _handler_error(self, exc: Exception, frame: bytes) -> None:
        self.counters.handler_errors += 1
        name = frame_event_name(frame) or frame[:16].partition(b"\r\n")[0]
        kind = (type(exc).__qualname__, name)
        if kind in self._errors_seen or len(self._errors_seen) >= _DISTINCT_ERRORS_LOGGED:
            log.debug("%s: handler failed again on %r: %r", self.name, name, exc)
            return
        self._errors_seen.add(kind)
        log.error(
            "%s: handling a %s frame failed (%s); the frame is skipped, the link goes on; "
            "further errors of this kind are logged at debug level",
            self.name,
            name.decode("utf-8", "replace"),
            type(exc).__name__,
            exc_info=exc,
            extra={"ami_link": self.name},
        )

    # ----------------------------------------------------------------- the event queue

    def _deliver(self, item: object) -> None:
        queue = self.events
        if self._overflow_dropped:
            room = queue.maxsize - queue.qsize()
            if room < 2:
                # The marker must count every event lost before it, this one included.
                self._overflow_dropped += 1
                self.counters.events_dropped += 1
                if room == 1:
                    self._end_overflow()
                return
            self._end_overflow()
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self._overflow_dropped = 1
            self.counters.queue_overflows += 1
            self.counters.events_dropped += 1
            log.warning(
                "%s: event queue full (%d); dropping events until the consumer catches up, then resync",
                self.name,
                queue.maxsize,
                extra={"ami_link": self.name},
            )
            return
        self.counters.events_delivered += 1

    def _end_overflow(self) -> None:
        dropped, self._overflow_dropped = self._overflow_dropped, 0
        self.events.put_nowait(ResyncNeeded("event queue overflow", dropped))
        self.counters.resyncs_requested += 1
        log.warning(
            "%s: %d events dropped; resync requested", self.name, dropped, extra={"ami_link": self.name}
        )

    def _on_consumer_get(self) -> None:
        # Deferred, not done inside the queue's own get(), to keep the queue's bookkeeping simple.
        if self._overflow_dropped and not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # drained from outside the loop (after shutdown): nothing to tell
                return
            self._flush_scheduled = True
            loop.call_soon(self._flush_overflow)

    def _flush_overflow(self) -> None:
        self._flush_scheduled = False
        if self._overflow_dropped and not self.events.full():
            self._end_overflow()

    def _put_marker(self, marker: Marker) -> None:
        """Enqueue a link marker even if the queue is full, by dropping the oldest items.

        A pending overflow is folded in: ``LinkUp`` already means "rebuild everything", and
        ``LinkDown`` is always followed by a ``LinkUp`` before further events.
        """
        self._overflow_dropped = 0
        queue = self.events
        while queue.full():
            queue.get_nowait()
            self.counters.events_dropped += 1
        queue.put_nowait(marker)
