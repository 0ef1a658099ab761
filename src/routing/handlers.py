"""Routing's subscription table: what it reads from the bus and how its mailbox coalesces.

Call changes coalesce per call (a slow router sees each call's newest state; the state's phase
history still shows a ring it did not see live), resyncs keep their order.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from cti.bus import Bus, Subscription
from cti.model import CallChange, LiveCallsResynced

MESSAGE_TYPES: tuple[type, ...] = (CallChange, LiveCallsResynced)


def coalesce_key(message: Any) -> Hashable | None:
    return message.call.key if isinstance(message, CallChange) else None


def subscribe(bus: Bus, name: str = "routing", maxsize: int = 100_000) -> Subscription:
    """The subscription ``RoutingService`` expects. Subscribe before the call service runs, so that
    no call published earlier is missed."""
    return bus.subscribe(name, MESSAGE_TYPES, maxsize=maxsize, coalesce=coalesce_key)
