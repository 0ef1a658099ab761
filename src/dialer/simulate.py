"""A discrete-event simulator of one outbound campaign, driving the real pacers.

Seeded and pure (its randomness is a ``random.Random`` of the caller's seed; no clock, no I/O), so a
run is reproducible and two pacers can be compared on exactly the same customers: the n-th number
dialled behaves the same (answers or not, after how long, how long the conversation and the agent's
wrap-up last) whichever pacer dialled it and whenever.

The model, per dialled number: a person answers with ``live_answer_rate`` after a lognormal time
(if that time is within the ring time; else it rings out as no answer), an answering machine with
``machine_rate`` (the line is busy for ``amd_seconds`` more while AMD decides, then hangs up), a
busy tone with ``busy_rate`` (after ``busy_seconds``), otherwise no answer after ``ring_seconds``.
A person answered goes to the longest-ready agent; with none ready, the call waits for an agent to
free up for at most the safe-harbor 2 seconds, then gets the recorded message and counts as
abandoned. Talk and wrap-up times are lognormal. The pacer is asked after every event and at every
``tick``; dialling stops at the end of the shift and the calls still in the air are played out.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dialer.abandonment import AbandonmentLedger
from dialer.model import MIN_RING_SECONDS, SAFE_HARBOR_SECONDS, AbandonmentRule
from dialer.pacer import Pacer, PacingSnapshot, TrafficEstimate, TrafficObserver

_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # the ledger needs instants; any fixed origin does


@dataclass(frozen=True, slots=True)
class Traffic:
    """The simulated campaign: its agents and how its customers behave (means and spreads in s)."""

    agents: int = 10
    hours: float = 4.0
    live_answer_rate: float = 0.30
    machine_rate: float = 0.10
    busy_rate: float = 0.10
    answer_mean: float = 8.0
    answer_sd: float = 4.0
    talk_mean: float = 120.0
    talk_sd: float = 90.0
    wrap_mean: float = 15.0
    wrap_sd: float = 8.0
    ring_seconds: float = 25.0
    amd_seconds: float = 3.0
    busy_seconds: float = 4.0
    tick: float = 1.0
    cap: float = 0.03

    def __post_init__(self) -> None:
        if self.agents < 1 or self.hours <= 0:
            raise ValueError("at least one agent and a positive shift")
        if min(self.live_answer_rate, self.machine_rate, self.busy_rate) < 0 or (
            self.live_answer_rate + self.machine_rate + self.busy_rate > 1
        ):
            raise ValueError("the answer, machine and busy rates are shares that sum to at most 1")
        if self.ring_seconds < MIN_RING_SECONDS:
            raise ValueError(f"a number rings at least {MIN_RING_SECONDS} s")
        if min(self.answer_mean, self.talk_mean, self.wrap_mean, self.tick) <= 0:
            raise ValueError("means and the tick must be positive")


class _Fate(enum.Enum):
    LIVE = "live"
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no_answer"


@dataclass(frozen=True, slots=True)
class _Customer:
    fate: _Fate
    after: float  # seconds from dial to the fate
    talk: float
    wrap: float


def _lognormal(rng: random.Random, mean: float, sd: float) -> float:
    if sd <= 0:
        return mean
    sigma2 = math.log(1.0 + (sd / mean) ** 2)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2))


def _customers(traffic: Traffic, seed: int) -> Callable[[], _Customer]:
    rng = random.Random(seed)  # noqa: S311 - simulated customers, reproducible by seed; not secrets

    def draw() -> _Customer:
        u = rng.random()
        answer = _lognormal(rng, traffic.answer_mean, traffic.answer_sd)
        talk = _lognormal(rng, traffic.talk_mean, traffic.talk_sd)
        wrap = _lognormal(rng, traffic.wrap_mean, traffic.wrap_sd)
        if u < traffic.live_answer_rate:
            if answer <= traffic.ring_seconds:
                return _Customer(_Fate.LIVE, answer, talk, wrap)
            return _Customer(_Fate.NO_ANSWER, traffic.ring_seconds, talk, wrap)
        u -= traffic.live_answer_rate
        if u < traffic.machine_rate:
            detected = min(answer, traffic.ring_seconds) + traffic.amd_seconds
            return _Customer(_Fate.MACHINE, detected, talk, wrap)
        u -= traffic.machine_rate
        if u < traffic.busy_rate:
            return _Customer(_Fate.BUSY, traffic.busy_seconds, talk, wrap)
        return _Customer(_Fate.NO_ANSWER, traffic.ring_seconds, talk, wrap)

    return draw


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one simulated shift produced."""

    pacer: str
    seed: int
    agents: int
    hours: float
    dials: int
    live_answers: int
    abandoned: int
    talk_seconds: float
    decisions: int

    @property
    def abandonment_rate(self) -> float:
        return self.abandoned / self.live_answers if self.live_answers else 0.0

    @property
    def talk_minutes_per_agent_hour(self) -> float:
        return self.talk_seconds / 60.0 / (self.agents * self.hours)


class _Kind(enum.IntEnum):
    # Order among simultaneous events: agents free up before calls look for them.
    WRAP_END = 0
    TALK_END = 1
    RESOLVE = 2
    HARBOR = 3
    TICK = 4


def simulate(
    pacer: Pacer,
    traffic: Traffic,
    seed: int,
    *,
    name: str = "",
    prior: TrafficEstimate | None = None,
    rule: AbandonmentRule = AbandonmentRule.UK_24_HOURS,
) -> RunResult:
    """Run one shift of ``traffic`` paced by ``pacer``; the customers depend on ``seed`` only."""
    draw = _customers(traffic, seed)
    observer = TrafficObserver(prior)
    ledger = AbandonmentLedger(rule, traffic.cap)
    end = traffic.hours * 3600.0
    events: list[tuple[float, int, int, int]] = []  # (time, kind, sequence, subject)
    seq = 0

    def push(at: float, kind: _Kind, subject: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, int(kind), seq, subject))

    ready: deque[int] = deque(range(traffic.agents))  # longest-ready first
    talk_start: dict[int, float] = {}
    wrap_start: dict[int, float] = {}
    agent_call: dict[int, int] = {}
    ringing: dict[int, float] = {}  # call -> dialled at
    waiting: deque[tuple[int, float]] = deque()  # (call, answered at)
    waiting_ids: set[int] = set()
    calls: list[_Customer] = []
    talk_seconds = 0.0
    live = abandoned = decisions = 0

    def connect(agent: int, call: int, now: float) -> None:
        talk_start[agent] = now
        agent_call[agent] = call
        push(now + calls[call].talk, _Kind.TALK_END, agent)

    def decide(now: float) -> None:
        nonlocal decisions
        if now >= end:
            return
        snapshot = PacingSnapshot(
            ready=len(ready),
            talking=tuple(now - t for t in talk_start.values()),
            wrapping=tuple(now - t for t in wrap_start.values()),
            ringing=tuple(now - t for t in ringing.values()),
            waiting=len(waiting),
            traffic=observer.estimate(),
            abandonment=ledger.figures(_EPOCH + timedelta(seconds=now)),
        )
        decision = pacer.decide(snapshot, now)
        decisions += 1
        for _ in range(decision.dial):
            call = len(calls)
            calls.append(draw())
            ringing[call] = now
            push(now + calls[call].after, _Kind.RESOLVE, call)

    push(0.0, _Kind.TICK, 0)
    while events:
        now, kind, _, subject = heapq.heappop(events)
        if kind == _Kind.TICK:
            if now < end:
                push(now + traffic.tick, _Kind.TICK, 0)
        elif kind == _Kind.RESOLVE:
            customer = calls[subject]
            del ringing[subject]
            is_live = customer.fate is _Fate.LIVE
            observer.dial_ended(live=is_live, answer_seconds=customer.after if is_live else None)
            if is_live:
                live += 1
                if ready:
                    ledger.record(_EPOCH + timedelta(seconds=now), abandoned=False)
                    connect(ready.popleft(), subject, now)
                else:
                    waiting.append((subject, now))
                    waiting_ids.add(subject)
                    push(now + SAFE_HARBOR_SECONDS, _Kind.HARBOR, subject)
        elif kind == _Kind.HARBOR:
            if subject in waiting_ids:
                waiting_ids.discard(subject)
                waiting.remove(next(w for w in waiting if w[0] == subject))
                abandoned += 1
                answered_at = now - SAFE_HARBOR_SECONDS
                ledger.record(_EPOCH + timedelta(seconds=answered_at), abandoned=True)
        elif kind == _Kind.TALK_END:
            started = talk_start.pop(subject)
            talk_seconds += max(0.0, min(now, end) - started)
            observer.talk_ended(now - started)
            call = agent_call.pop(subject)
            wrap_start[subject] = now
            push(now + calls[call].wrap, _Kind.WRAP_END, subject)
        elif kind == _Kind.WRAP_END:
            observer.wrap_ended(now - wrap_start.pop(subject))
            if waiting:
                call, answered_at = waiting.popleft()
                waiting_ids.discard(call)
                ledger.record(_EPOCH + timedelta(seconds=answered_at), abandoned=False)
                connect(subject, call, now)
            else:
                ready.append(subject)
        decide(now)
    return RunResult(
        pacer=name or type(pacer).__name__,
        seed=seed,
        agents=traffic.agents,
        hours=traffic.hours,
        dials=len(calls),
        live_answers=live,
        abandoned=abandoned,
        talk_seconds=talk_seconds,
        decisions=decisions,
    )
