"""Figures of the live routing benchmarks, from AMI events stamped with their arrival time. Pure: no
I/O, no clock; the scripts record the events and call these.

Channel names are Asterisk's: ``PJSIP/trunk-…`` for callers, ``PJSIP/<agent id>-…`` for an agent's
phone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class TimedEvent:
    at: float  # time.monotonic() when its bytes arrived
    headers: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def get(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method; ``nan`` for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-int(q * len(ordered) * 1000) // 1000)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Handoff:
    agent: str
    freed_at: float
    rung_at: float

    @property
    def ms(self) -> float:
        return (self.rung_at - self.freed_at) * 1000


def handoffs(events: list[TimedEvent], agent_ids: list[str], settled: float) -> list[Handoff]:
    """The hand-offs in ``events`` (see the module's docstring)."""
    created: dict[str, float] = {}
    gone: dict[str, float] = {}
    dialled: dict[str, float] = {}  # caller channel -> its first DialBegin
    for e in events:
        name = e.get("Event")
        channel = e.get("Channel")
        if name == "Newchannel":
            created.setdefault(channel, e.at)
        elif name == "Hangup":
            gone.setdefault(channel, e.at)
        elif name == "DialBegin":
            dialled.setdefault(channel, e.at)
    callers = [c for c in created if c.startswith("PJSIP/trunk-")]

    def someone_waiting(at: float) -> bool:
        return any(
            created[c] <= at - settled
            and dialled.get(c, float("inf")) > at
            and gone.get(c, float("inf")) > at
            for c in callers
        )

    found: list[Handoff] = []
    for agent in agent_ids:
        legs = sorted((t, c) for c, t in created.items() if c.startswith(f"PJSIP/{agent}-"))
        for (_, leg), (next_at, _) in itertools.pairwise(legs):
            freed = gone.get(leg)
            if freed is not None and next_at > freed and someone_waiting(freed):
                found.append(Handoff(agent, freed, next_at))
    return found


def summary(found: list[Handoff]) -> dict[str, Any]:
    ms = [h.ms for h in found]
    return {
        "handoffs": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p90_ms": round(percentile(ms, 0.90), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        "mean_ms": round(sum(ms) / len(ms), 1) if ms else None,
    }


def call_figures(
    events: list[TimedEvent], agent_ids: list[str], since: float
) -> tuple[list[float], list[float], int]:
    """The waits of the calls that arrived from ``since`` on and were connected, the handle times
    of every agent's leg, and how many calls arrived from ``since`` on."""
    arrived: dict[str, float] = {}
    seized: dict[str, tuple[float, str]] = {}
    hung: dict[str, float] = {}
    agents = tuple(f"PJSIP/{a}-" for a in agent_ids)
    for e in events:
        name, channel = e.get("Event"), e.get("Channel")
        if name == "Newchannel" and channel.startswith("PJSIP/trunk-"):
            arrived.setdefault(channel, e.at)
        elif name == "DialBegin" and e.get("DestChannel").startswith(agents):
            seized.setdefault(channel, (e.at, e.get("DestChannel")))
        elif name == "Hangup":
            hung.setdefault(channel, e.at)
    counted = [c for c, at in arrived.items() if at >= since]
    waits = [seized[c][0] - arrived[c] for c in counted if c in seized]
    handles = [hung[leg] - at for at, leg in seized.values() if leg in hung]
    return waits, handles, len(counted)
