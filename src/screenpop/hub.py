"""The websocket hub: who is connected, and a bounded send queue for each console.

Fan-out never waits on a console. ``send`` puts already-encoded text into each addressed console's
own queue without blocking; the console's writer task drains it onto its socket. A console whose
queue is full (it stopped reading, or reads slower than messages come) is dropped: its queue is
closed and its connection ended, so it reconnects and gets the full current state, and nobody
else ever waits for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cti.auth import Principal, Role
from screenpop.model import encode

#: Messages a console may have waiting before it counts as stalled.
DEFAULT_QUEUE = 256


class Console:
    """One connected console. ``agent_id`` is set when the user is an agent (their username is the
    agent id); ``supervisor`` when their role includes supervising."""

    def __init__(self, principal: Principal, *, queue_size: int = DEFAULT_QUEUE) -> None:
        self.principal = principal
        self.agent_id = principal.username if principal.username.isdigit() else None
        self.supervisor = principal.role.includes(Role.SUPERVISOR)
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.dropped = False
        self.gone = asyncio.Event()  # set when the hub drops the console (the socket must close)

    def offer(self, text: str) -> bool:
        """Queue ``text`` without waiting; a full queue drops the console. True if queued."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            self.gone.set()
            return False


@dataclass
class HubStats:
    connected: int = 0
    sent: int = 0
    dropped_consoles: int = 0


@dataclass
class Hub:
    """Consoles by agent and the supervisors' set; ``send_*`` encode a message once for everyone."""

    queue_size: int = DEFAULT_QUEUE
    consoles: set[Console] = field(default_factory=set)
    stats: HubStats = field(default_factory=HubStats)

    def connect(self, principal: Principal) -> Console:
        console = Console(principal, queue_size=self.queue_size)
        self.consoles.add(console)
        self.stats.connected = len(self.consoles)
        return console

    def disconnect(self, console: Console) -> None:
        self.consoles.discard(console)
        self.stats.connected = len(self.consoles)

    def _deliver(self, consoles: list[Console], message: dict[str, Any] | str) -> int:
        text = message if isinstance(message, str) else encode(message)
        queued = 0
        for console in consoles:
            if console.offer(text):
                queued += 1
            elif console.dropped and console in self.consoles:
                self.stats.dropped_consoles += 1
                self.disconnect(console)
        self.stats.sent += queued
        return queued

    def send_to_agent(self, agent_id: str, message: dict[str, Any] | str) -> int:
        """Queue ``message`` for every console of ``agent_id``; returns how many took it."""
        return self._deliver([c for c in self.consoles if c.agent_id == agent_id], message)

    def send_to_supervisors(self, message: dict[str, Any] | str) -> int:
        return self._deliver([c for c in self.consoles if c.supervisor], message)

    def has_supervisors(self) -> bool:
        return any(c.supervisor for c in self.consoles)
