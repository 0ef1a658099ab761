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
    leg: str = ""  # the agent's channel of the next call

    @property
    def ms(self) -> float:
        return (self.rung_at - self.freed_at) * 1000


def handoffs(events: list[TimedEvent], agent_ids: list[str], settled: float) -> list[Handoff]:
    """Every moment an agent's conversation ended (the ``Hangup`` of an agent's channel that was
    answered: its ``DialEnd`` says ``ANSWER``) while a caller had been waiting at least ``settled``
    seconds (their channel up, not dialled to anyone yet), paired with the next channel to that
    agent's phone (``Newchannel``: Asterisk is about to send the INVITE). A ring the agent never
    answered (``ringall`` rings every free agent; one answers) frees nobody."""
    created: dict[str, float] = {}
    gone: dict[str, float] = {}
    dialled: dict[str, float] = {}  # caller channel -> its first DialBegin
    answered: set[str] = set()
    for e in events:
        name = e.get("Event")
        channel = e.get("Channel")
        if name == "Newchannel":
            created.setdefault(channel, e.at)
        elif name == "Hangup":
            gone.setdefault(channel, e.at)
        elif name == "DialBegin":
            dialled.setdefault(channel, e.at)
        elif name == "DialEnd" and e.get("DialStatus") == "ANSWER":
            answered.add(e.get("DestChannel"))
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
        for (_, leg), (next_at, next_leg) in itertools.pairwise(legs):
            freed = gone.get(leg)
            if leg in answered and freed is not None and next_at > freed and someone_waiting(freed):
                found.append(Handoff(agent, freed, next_at, next_leg))
    return found


def redirect_split(events: list[TimedEvent], found: list[Handoff], context: str) -> list[tuple[float, float]]:
    """For each hand-off whose caller was moved into ``context`` (the platform's redirect to the
    agent), the milliseconds from the agent being freed to Asterisk running the redirected caller's
    first step there (``Newexten``: the platform's share, AMI both ways included), and from there
    to the agent's channel (Asterisk's ``Dial``)."""
    caller_of = {e.get("DestChannel"): e.get("Channel") for e in events if e.get("Event") == "DialBegin"}
    entered: dict[str, list[float]] = {}
    for e in events:
        if e.get("Event") == "Newexten" and e.get("Context") == context:
            entered.setdefault(e.get("Channel"), []).append(e.at)
    split = []
    for h in found:
        times = [t for t in entered.get(caller_of.get(h.leg, ""), []) if h.freed_at <= t <= h.rung_at]
        if times:
            split.append(((times[0] - h.freed_at) * 1000, (h.rung_at - times[0]) * 1000))
    return split


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
    """For the calls that joined the line from ``since`` on: the waits of those connected (from
    joining the line to the first ``DialBegin`` to an agent's phone for them) and how many there
    were; and the handle time of every answered agent's leg (its ``DialBegin`` to its ``Hangup``:
    ringing and talking).

    A call joins the line when the dialplan says it waits for an agent: the ``CallPhase`` user event
    with ``Phase: waiting`` (the platform's line) or ``QueueCallerJoin`` (Asterisk's queue). What
    comes before (answering, announcements) is the same for both and is not waiting for an agent."""
    arrived: dict[str, float] = {}
    first_dial: dict[str, float] = {}
    leg_dialled: dict[str, float] = {}
    answered: set[str] = set()
    hung: dict[str, float] = {}
    agents = tuple(f"PJSIP/{a}-" for a in agent_ids)
    for e in events:
        name, channel = e.get("Event"), e.get("Channel")
        joins = name == "QueueCallerJoin" or (
            name == "UserEvent" and e.get("UserEvent") == "CallPhase" and e.get("Phase") == "waiting"
        )
        if joins and channel.startswith("PJSIP/trunk-"):
            arrived.setdefault(channel, e.at)
        elif name == "DialBegin" and e.get("DestChannel").startswith(agents):
            first_dial.setdefault(channel, e.at)
            leg_dialled.setdefault(e.get("DestChannel"), e.at)
        elif name == "DialEnd" and e.get("DialStatus") == "ANSWER":
            answered.add(e.get("DestChannel"))
        elif name == "Hangup":
            hung.setdefault(channel, e.at)
    counted = [c for c, at in arrived.items() if at >= since]
    waits = [first_dial[c] - arrived[c] for c in counted if c in first_dial]
    handles = [hung[leg] - at for leg, at in leg_dialled.items() if leg in answered and leg in hung]
    return waits, handles, len(counted)
