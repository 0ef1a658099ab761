"""Routing policy: which ready agent takes which waiting call. Pure: no I/O, no clock (pass ``now``).

What "one routing decision" is. The router keeps a ``RoutingBoard`` (an in-memory index of agents
and waiting calls, updated as they change) in equilibrium: after every change no ready agent can take
any waiting call. Only three things break that, and each is one decision:

* a call arrives (``RoutingBoard.call_arrived``): choose the agent for it among the ready agents;
* an agent becomes ready (``RoutingBoard.agent_freed``): choose the call for them among the waiting;
* time passes: a relaxation step or a max wait falls due (``RoutingBoard.next_change_at`` says
  when) and ``RoutingBoard.timer`` decides for the calls whose routing widened, matching what now
  fits and overflowing what waited too long.

A full round (``RoutingBoard.round``, or ``decide`` from plain lists) weighs every waiting call
against every ready agent: for start-up and resync, when the equilibrium is not known.

The board indexes ready agents by skill and by language, and waiting calls by one skill they always
need (their *anchor*), so a decision looks only at the ready agents of the call's least-held skill, or
at the calls anchored at the freed agent's skills, never at every agent times every call.

Rules, in order:

1. Candidates are READY, hold every needed skill at or above its (possibly relaxed) minimum level,
   speak the call's language unless that was relaxed, are not in the call's avoid list (they let it
   ring out) and are under their maximum occupancy.
2. Calls rank by priority (higher first), then by seconds waited since ``enqueued_at`` times their
   service's weight (more first): a VIP call jumps the line, and a service with twice the weight
   is served as if its callers had waited twice as long. Relaxation never changes ``enqueued_at``.
3. The service's strategy picks among candidates: ``best_skill`` (highest sum of the agent's levels
   in the needed skills, ties by longest idle), ``longest_idle``, ``least_occupied`` (least talk
   time today, ties by longest idle). The agent id breaks any remaining tie, so decisions repeat.
4. A call past its service's max wait with no candidate overflows to the service's target.

Each ``Decision`` records why: the trigger, the rule, the relaxation applied, the wait, and the best
candidates with their scores.
"""

from __future__ import annotations

import bisect
import enum
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cti.model import CallKey
from routing.model import (
    NOT_RELAXED,
    Agent,
    AgentState,
    AgentStatus,
    Overflow,
    Relaxed,
    ServiceRouting,
    Strategy,
    WaitingCall,
)

TOP_CANDIDATES = 5  # candidates kept in a decision record: enough to explain it, small enough to log


class Trigger(enum.StrEnum):
    CALL_ARRIVED = "call_arrived"
    AGENT_FREED = "agent_freed"
    TIMER = "timer"  # a relaxation step or a max wait fell due
    ROUND = "round"
    AGENT_ABOUT_FREE = "agent_about_free"  # in wrap-up, within a queue callback's dial-ahead time


class Outcome(enum.StrEnum):
    CONNECT = "connect"  # reserve the agent and ring their phone
    OVERFLOW = "overflow"  # send the call to the service's overflow target


RULES: Mapping[Strategy, str] = {
    Strategy.BEST_SKILL: (
        "best_skill: highest sum of the agent's levels in the needed skills, ties by longest idle"
    ),
    Strategy.LONGEST_IDLE: "longest_idle: the agent available the longest",
    Strategy.LEAST_OCCUPIED: "least_occupied: least talk time today, ties by longest idle",
}
AGENT_FREED_RULE = "agent_freed: the first call the agent can take, by priority then waited seconds × weight"
OVERFLOW_RULE = "overflow: max wait passed with no agent able to take the call"
DIAL_AHEAD_RULE = (
    "dial_ahead: agent {agent}'s wrap-up ends in {left:.1f} s, within the service's {lead:g} s "
    "dial-ahead, and this queue callback is the call they would take when free (by priority, then "
    "waited seconds × weight); they are reserved for it and the customer is dialled now"
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An agent considered for a call, with every score a strategy reads."""

    agent_id: str
    skill_score: int  # sum of the agent's levels in the call's needed skills
    idle_seconds: float
    talk_seconds: float


@dataclass(frozen=True, slots=True)
class Decision:
    """One routing decision and its reasons.

    ``candidates`` are the best ``TOP_CANDIDATES`` (best first) of ``candidates_total`` agents who
    could take the call; for an ``agent_freed`` decision it is the freed agent, and
    ``calls_considered`` says how many waiting calls were weighed for them.
    """

    at: datetime
    trigger: Trigger
    outcome: Outcome
    call: CallKey
    service: str
    rule: str
    relaxed: Relaxed
    waited_seconds: float
    agent_id: str | None = None
    overflow: Overflow | None = None
    candidates: tuple[Candidate, ...] = ()
    candidates_total: int = 0
    calls_considered: int = 0


class _AgentEntry:
    __slots__ = ("agent", "free_ts", "id", "idle_ts", "languages", "limit", "skills", "state", "talk")

    def __init__(self, agent: Agent, state: AgentState) -> None:
        self.agent = agent
        self.state = state
        self.id = agent.id
        self.skills: dict[str, int] = dict(agent.skills)
        self.languages = agent.languages
        self.limit = agent.max_occupancy
        self.talk = state.talk_seconds
        self.idle_ts = (state.idle_since or state.since).timestamp()
        until = state.wrap_up_until
        self.free_ts = until.timestamp() if until is not None else 0.0


_Needs = tuple[tuple[str, int], ...]


class _CallEntry:
    __slots__ = (
        "anchor", "avoid", "call", "enq_ts", "language", "max_wait", "needs_at", "priority", "seq",
        "service", "steps", "svc_ts", "weight",
    )  # fmt: skip

    def __init__(self, call: WaitingCall, service: ServiceRouting, seq: int) -> None:
        self.call = call
        self.service = service
        self.seq = seq
        self.priority = call.priority
        self.enq_ts = call.enqueued_at.timestamp()
        self.svc_ts = call.in_service_since.timestamp()
        self.weight = service.weight
        self.language = call.language
        self.avoid = call.avoid
        self.max_wait = service.max_wait_seconds
        self.steps: tuple[tuple[float, Relaxed], ...] = service.relaxed_steps()
        levels = (NOT_RELAXED, *(relaxed for _, relaxed in self.steps))
        self.needs_at: tuple[_Needs, ...] = tuple(
            tuple(
                (need.skill, relaxed.min_level(need))
                for need in call.needs
                if not (need.optional and relaxed.drop_optional)
            )
            for relaxed in levels
        )
        always = sorted(need.skill for need in call.needs if not need.optional)
        self.anchor: str | None = always[0] if always else None

    def relaxation(self, now_ts: float) -> int:
        waited = now_ts - self.svc_ts
        level = 0
        for after, _ in self.steps:
            if waited < after:
                break
            level += 1
        return level

    def relaxed(self, level: int) -> Relaxed:
        return self.steps[level - 1][1] if level else NOT_RELAXED

    def rank(self, now_ts: float) -> tuple[int, float, float, int]:
        return (self.priority, (now_ts - self.enq_ts) * self.weight, -self.enq_ts, -self.seq)

    def changes(self) -> list[tuple[float, int]]:
        """The moments its routing widens: each relaxation step and the max wait."""
        moments = [self.svc_ts + after for after, _ in self.steps]
        if self.max_wait is not None:
            moments.append(self.svc_ts + self.max_wait)
        return [(moment, self.seq) for moment in moments]


class RoutingBoard:
    """The router's index of agents and waiting calls. Pure and single-threaded: the caller feeds it
    every change (``put_agent``, ``put_call``, ``remove_call``) and asks it for decisions, which
    never change the board; the caller applies a decision (reserve the agent, take the call off)
    and feeds those changes back."""

    def __init__(self, services: Mapping[str, ServiceRouting] | None = None) -> None:
        self._services: dict[str, ServiceRouting] = dict(services or {})
        self._agents: dict[str, _AgentEntry] = {}
        self._ready: dict[str, _AgentEntry] = {}
        self._ready_by_skill: dict[str, dict[str, _AgentEntry]] = {}
        self._ready_by_language: dict[str, dict[str, _AgentEntry]] = {}
        self._wrapping: dict[str, _AgentEntry] = {}  # in wrap-up with a deadline: about to be free
        self._calls: dict[CallKey, _CallEntry] = {}
        self._calls_by_anchor: dict[str | None, dict[CallKey, _CallEntry]] = {}
        self._by_seq: dict[int, _CallEntry] = {}
        self._changes: list[tuple[float, int]] = []  # (moment, call seq), sorted: the timer's agenda
        self._seq = 0

    # --- feeding the board -----------------------------------------------------------------------

    def service(self, name: str) -> ServiceRouting:
        """The service's routing; a service nobody configured routes by the defaults."""
        found = self._services.get(name)
        if found is None:
            found = self._services[name] = ServiceRouting(name)
        return found

    def set_service(self, service: ServiceRouting) -> None:
        self._services[service.name] = service
        for entry in [e for e in self._calls.values() if e.call.service == service.name]:
            self.put_call(entry.call)

    def put_agent(self, agent: Agent, state: AgentState) -> None:
        if agent.id != state.agent_id:
            raise ValueError(f"state of agent {state.agent_id} given for agent {agent.id}")
        self.remove_agent(agent.id)
        entry = _AgentEntry(agent, state)
        self._agents[agent.id] = entry
        if state.status is AgentStatus.READY:
            self._ready[agent.id] = entry
            for skill in entry.skills:
                self._ready_by_skill.setdefault(skill, {})[agent.id] = entry
            for language in entry.languages:
                self._ready_by_language.setdefault(language, {})[agent.id] = entry
        elif state.status is AgentStatus.WRAP_UP and state.wrap_up_until is not None:
            self._wrapping[agent.id] = entry

    def remove_agent(self, agent_id: str) -> None:
        entry = self._agents.pop(agent_id, None)
        self._wrapping.pop(agent_id, None)
        if entry is None or self._ready.pop(agent_id, None) is None:
            return
        for skill in entry.skills:
            self._ready_by_skill[skill].pop(agent_id, None)
        for language in entry.languages:
            self._ready_by_language[language].pop(agent_id, None)

    def put_call(self, call: WaitingCall) -> None:
        """Add a waiting call, or replace it (same key) keeping nothing but what ``call`` says."""
        self.remove_call(call.key)
        self._seq += 1
        entry = _CallEntry(call, self.service(call.service), self._seq)
        self._calls[call.key] = entry
        self._calls_by_anchor.setdefault(entry.anchor, {})[call.key] = entry
        self._by_seq[entry.seq] = entry
        for change in entry.changes():
            bisect.insort(self._changes, change)

    def remove_call(self, key: CallKey) -> WaitingCall | None:
        entry = self._calls.pop(key, None)
        if entry is None:
            return None
        del self._calls_by_anchor[entry.anchor][key]
        del self._by_seq[entry.seq]
        for change in entry.changes():
            at = bisect.bisect_left(self._changes, change)
            if at < len(self._changes) and self._changes[at] == change:
                del self._changes[at]
        return entry.call

    def agent_state(self, agent_id: str) -> AgentState | None:
        entry = self._agents.get(agent_id)
        return entry.state if entry else None

    def waiting_calls(self) -> list[WaitingCall]:
        return [e.call for e in self._calls.values()]

    @property
    def ready_agents(self) -> int:
        return len(self._ready)

    # --- the two hot paths -----------------------------------------------------------------------

    def call_arrived(self, call: WaitingCall, now: datetime) -> Decision | None:
        """The agent for ``call`` (on the board or not): a CONNECT decision, an OVERFLOW decision when
        its max wait has passed with nobody to take it, or ``None``: it waits."""
        entry = self._calls.get(call.key)
        if entry is None or entry.call is not call:
            entry = _CallEntry(call, self.service(call.service), 0)
        return self._decide_for_call(entry, now, Trigger.CALL_ARRIVED, frozenset())

    def agent_freed(self, agent_id: str, now: datetime) -> Decision | None:
        """The call for an agent who just became READY (fed to the board already), or ``None``."""
        agent = self._ready.get(agent_id)
        if agent is None:
            return None
        best, considered = self._best_call(agent, now, frozenset())
        if best is None:
            return None
        return self._freed_decision(agent, best, now, Trigger.AGENT_FREED, AGENT_FREED_RULE, considered)

    def agents_about_free(
        self, now: datetime, lead: Callable[[WaitingCall], float], max_lead: float
    ) -> list[Decision]:
        """Reservations ahead of time, for queue callbacks: an agent in wrap-up whose deadline is
        at most ``lead(call)`` seconds away, where ``call`` is the call ``agent_freed`` would give
        them were they free now, is chosen for it now (CONNECT, trigger ``agent_about_free``), so
        the customer can be dialled before the agent is free. ``lead`` is 0 for a call that is not
        dialled ahead (a caller on hold waits for the agent to be free); ``max_lead`` is the
        largest it gives. The rules are ``agent_freed``'s, taken early: agents are considered in
        the order their wrap-ups end (the one free first takes the first call, as it would), each
        call goes to one agent, and an agent already reserved ahead is not considered again."""
        now_ts = now.timestamp()
        soon = [
            e
            for e in self._wrapping.values()
            if 0.0 < e.free_ts - now_ts <= max_lead and e.state.reserved_for is None
        ]
        taken: set[CallKey] = set()
        decisions: list[Decision] = []
        for agent in sorted(soon, key=lambda e: (e.free_ts, e.id)):
            best, considered = self._best_call(agent, now, taken)
            if best is None:
                continue
            left = agent.free_ts - now_ts
            seconds = lead(best.call)
            if seconds <= 0 or left > seconds:
                continue  # their next call is not dialled ahead, or not yet
            taken.add(best.call.key)
            rule = DIAL_AHEAD_RULE.format(agent=agent.id, left=left, lead=seconds)
            decisions.append(
                self._freed_decision(agent, best, now, Trigger.AGENT_ABOUT_FREE, rule, considered)
            )
        return decisions

    def _best_call(
        self, agent: _AgentEntry, now: datetime, taken: set[CallKey] | frozenset[CallKey]
    ) -> tuple[_CallEntry | None, int]:
        """The first call ``agent`` can take (by rank), not in ``taken``; and how many were weighed."""
        now_ts = now.timestamp()
        best: _CallEntry | None = None
        best_rank: tuple[int, float, float, int] | None = None
        considered = 0
        buckets = [self._calls_by_anchor.get(skill) for skill in agent.skills]
        buckets.append(self._calls_by_anchor.get(None))
        for bucket in buckets:
            if not bucket:
                continue
            for entry in bucket.values():
                considered += 1
                rank = entry.rank(now_ts)
                if best_rank is not None and rank <= best_rank:
                    continue
                if taken and entry.call.key in taken:
                    continue
                if self._fits(agent, entry, entry.relaxation(now_ts), now):
                    best, best_rank = entry, rank
        return best, considered

    def _freed_decision(
        self,
        agent: _AgentEntry,
        best: _CallEntry,
        now: datetime,
        trigger: Trigger,
        rule: str,
        considered: int,
    ) -> Decision:
        now_ts = now.timestamp()
        level = best.relaxation(now_ts)
        return Decision(
            at=now,
            trigger=trigger,
            outcome=Outcome.CONNECT,
            call=best.call.key,
            service=best.call.service,
            rule=rule,
            relaxed=best.relaxed(level),
            waited_seconds=now_ts - best.enq_ts,
            agent_id=agent.id,
            candidates=(self._candidate(agent, best.needs_at[level], now_ts),),
            candidates_total=1,
            calls_considered=considered,
        )

    # --- time passing ----------------------------------------------------------------------------

    def next_change_at(self, now: datetime) -> datetime | None:
        """When the timer should next call ``timer``: the first relaxation step or max wait after
        ``now`` of any waiting call."""
        at = bisect.bisect_right(self._changes, (now.timestamp(), float("inf")))
        if at == len(self._changes):
            return None
        return datetime.fromtimestamp(self._changes[at][0], tz=now.tzinfo)

    def timer(self, since: datetime, now: datetime) -> list[Decision]:
        """Decisions for the calls whose routing widened in ``(since, now]``: a relaxation step or a
        max wait fell due. In equilibrium nothing else can have changed, so this is the round a
        timer runs, and it looks only at those calls (best-ranked first, each agent at most once)."""
        now_ts = now.timestamp()
        first = bisect.bisect_right(self._changes, (since.timestamp(), float("inf")))
        last = bisect.bisect_right(self._changes, (now_ts, float("inf")))
        due = {self._by_seq[seq] for _, seq in self._changes[first:last]}
        return self._match(sorted(due, key=lambda e: e.rank(now_ts), reverse=True), now, Trigger.TIMER)

    # --- the full round --------------------------------------------------------------------------

    def round(self, now: datetime) -> list[Decision]:
        """Match every waiting call that fits a ready agent now, best-ranked call first, each agent
        at most once; overflow calls past their max wait that found nobody."""
        now_ts = now.timestamp()
        ordered = sorted(self._calls.values(), key=lambda e: e.rank(now_ts), reverse=True)
        return self._match(ordered, now, Trigger.ROUND)

    # --- internals -------------------------------------------------------------------------------

    def _match(self, ordered: list[_CallEntry], now: datetime, trigger: Trigger) -> list[Decision]:
        now_ts = now.timestamp()
        taken: set[str] = set()
        decisions: list[Decision] = []
        for entry in ordered:
            if len(taken) >= len(self._ready) and not self._overflow_due(entry, now_ts):
                continue
            decision = self._decide_for_call(entry, now, trigger, taken)
            if decision is None:
                continue
            decisions.append(decision)
            if decision.agent_id is not None:
                taken.add(decision.agent_id)
        return decisions

    def _overflow_due(self, entry: _CallEntry, now_ts: float) -> bool:
        return entry.max_wait is not None and now_ts - entry.svc_ts >= entry.max_wait

    def _fits(self, agent: _AgentEntry, entry: _CallEntry, level: int, now: datetime) -> bool:
        if agent.id in entry.avoid:
            return False
        if (
            entry.language is not None
            and entry.language not in agent.languages
            and not (level and entry.steps[level - 1][1].any_language)
        ):
            return False
        skills = agent.skills
        for skill, minimum in entry.needs_at[level]:
            if skills.get(skill, 0) < minimum:
                return False
        return agent.limit is None or agent.state.occupancy(now) <= agent.limit

    def _pool(self, needs: _Needs, language: str | None) -> Mapping[str, _AgentEntry]:
        """The smallest index that holds every candidate: ready agents with one needed skill, or
        speaking the language, or all ready agents."""
        pool: Mapping[str, _AgentEntry] = self._ready
        for skill, _ in needs:
            holders = self._ready_by_skill.get(skill)
            if not holders:
                return {}
            if len(holders) < len(pool):
                pool = holders
        if language is not None:
            speakers = self._ready_by_language.get(language)
            if not speakers:
                return {}
            if len(speakers) < len(pool):
                pool = speakers
        return pool

    def _candidate(self, agent: _AgentEntry, needs: _Needs, now_ts: float) -> Candidate:
        return Candidate(
            agent_id=agent.id,
            skill_score=sum(agent.skills.get(skill, 0) for skill, _ in needs),
            idle_seconds=max(0.0, now_ts - agent.idle_ts),
            talk_seconds=agent.talk,
        )

    def _decide_for_call(
        self, entry: _CallEntry, now: datetime, trigger: Trigger, taken: set[str] | frozenset[str]
    ) -> Decision | None:
        now_ts = now.timestamp()
        level = entry.relaxation(now_ts)
        relaxed = entry.relaxed(level)
        needs = entry.needs_at[level]
        language = None if relaxed.any_language else entry.language
        strategy = entry.service.strategy
        ranked: list[tuple[float, float, str, _AgentEntry]] = []
        for agent_id, agent in self._pool(needs, language).items():
            if agent_id in taken or not self._fits(agent, entry, level, now):
                continue
            if strategy is Strategy.BEST_SKILL:
                score = -sum(agent.skills[skill] for skill, _ in needs)
                ranked.append((score, agent.idle_ts, agent_id, agent))
            elif strategy is Strategy.LONGEST_IDLE:
                ranked.append((agent.idle_ts, 0.0, agent_id, agent))
            else:
                ranked.append((agent.talk, agent.idle_ts, agent_id, agent))
        waited = now_ts - entry.enq_ts
        if ranked:
            top = heapq.nsmallest(TOP_CANDIDATES, ranked)
            return Decision(
                at=now,
                trigger=trigger,
                outcome=Outcome.CONNECT,
                call=entry.call.key,
                service=entry.call.service,
                rule=RULES[strategy],
                relaxed=relaxed,
                waited_seconds=waited,
                agent_id=top[0][2],
                candidates=tuple(self._candidate(a, needs, now_ts) for *_, a in top),
                candidates_total=len(ranked),
            )
        if self._overflow_due(entry, now_ts):
            return Decision(
                at=now,
                trigger=trigger,
                outcome=Outcome.OVERFLOW,
                call=entry.call.key,
                service=entry.call.service,
                rule=OVERFLOW_RULE,
                relaxed=relaxed,
                waited_seconds=waited,
                overflow=entry.service.overflow,
            )
        return None


def decide(
    agents: Iterable[tuple[Agent, AgentState]],
    waiting_calls: Iterable[WaitingCall],
    services: Mapping[str, ServiceRouting],
    now: datetime,
) -> list[Decision]:
    """One full round from plain values: which ready agent takes which waiting call, and which calls
    overflow. Builds a board each time; a live router keeps one ``RoutingBoard`` instead."""
    board = RoutingBoard(services)
    for agent, state in agents:
        board.put_agent(agent, state)
    for call in waiting_calls:
        board.put_call(call)
    return board.round(now)
