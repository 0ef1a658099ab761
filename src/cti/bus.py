"""The in-process bus where capabilities meet.

``publish`` never blocks and never waits on a subscriber: each subscriber has its own bounded
mailbox. Two kinds of mailbox:

* ``subscribe(..., coalesce=key)``: messages that carry a whole state (a ``CallSnapshot``) replace an
  older message with the same key still in the mailbox, so a slow consumer sees the latest state and
  never loses a call, with memory bounded by the number of distinct keys in flight.
* otherwise a FIFO of ``maxsize``; when full the new message is dropped, counted, and the
  subscriber's ``overflowed`` flag is raised so it can resync from the source of truth.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from cti.model import CallChange, LiveCallsResynced


class Subscription:
    """One subscriber's mailbox. Iterate with ``await sub.get()`` or ``async for``."""

    def __init__(self, name: str, maxsize: int, coalesce: Callable[[Any], Hashable | None] | None) -> None:
        self.name = name
        self.maxsize = maxsize
        self._coalesce = coalesce
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._seq = 0
        self._ready = asyncio.Event()
        self.dropped = 0
        self.overflowed = False
        self.closed = False

    def offer(self, message: Any) -> None:
        key = self._coalesce(message) if self._coalesce is not None else None
        if key is not None and key in self._items:
            self._items[key] = message  # keeps its place in line, carries the newest state
            return
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            self.overflowed = True
            return
        if key is None:
            self._seq += 1
            key = ("_seq", self._seq)
        self._items[key] = message
        self._ready.set()

    async def get(self) -> Any:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        _, message = self._items.popitem(last=False)
        return message

    def get_nowait(self) -> Any | None:
        if not self._items:
            return None
        return self._items.popitem(last=False)[1]

    def pending(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        return await self.get()


class Bus:
    """Fan-out of typed messages to named subscribers, filtered by message type."""

    def __init__(self) -> None:
        self._subs: list[tuple[tuple[type, ...], Subscription]] = []

    def subscribe(
        self,
        name: str,
        types: tuple[type, ...],
        *,
        maxsize: int = 10_000,
        coalesce: Callable[[Any], Hashable | None] | None = None,
    ) -> Subscription:
        sub = Subscription(name, maxsize, coalesce)
        self._subs.append((types, sub))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs = [(t, s) for t, s in self._subs if s is not sub]
        sub.close()

    def publish(self, message: Any) -> None:
        for types, sub in self._subs:
            if isinstance(message, types):
                sub.offer(message)

    def stats(self) -> dict[str, dict[str, int]]:
        return {s.name: {"pending": s.pending(), "dropped": s.dropped} for _, s in self._subs}


CALL_STATE_MESSAGES: tuple[type, ...] = (CallChange, LiveCallsResynced)


def by_call(message: object) -> Hashable | None:
    """The coalescing key of call-state mailboxes: one pending snapshot per call; resyncs keep order."""
    return message.call.key if isinstance(message, CallChange) else None


def subscribe_to_calls(bus: Bus, name: str, *, maxsize: int = 100_000) -> Subscription:
    """A mailbox of call changes, coalesced per call (a slow consumer sees each call's newest state
    and never loses a call), and of resyncs in order. Subscribe before the call service runs, so no
    call published earlier is missed."""
    return bus.subscribe(name, CALL_STATE_MESSAGES, maxsize=maxsize, coalesce=by_call)
