"""Routing's subscription table: what it reads from the bus and how its mailbox coalesces.

Call changes coalesce per call (a slow router sees each call's newest state; the state's phase
history still shows a ring it did not see live), resyncs keep their order.
"""

from __future__ import annotations

from cti.bus import CALL_STATE_MESSAGES, Bus, Subscription, subscribe_to_calls

MESSAGE_TYPES: tuple[type, ...] = CALL_STATE_MESSAGES


def subscribe(bus: Bus, name: str = "routing", maxsize: int = 100_000) -> Subscription:
    """The subscription ``RoutingService`` expects (see ``cti.bus.subscribe_to_calls``)."""
    return subscribe_to_calls(bus, name, maxsize=maxsize)
