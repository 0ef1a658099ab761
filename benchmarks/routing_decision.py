"""Routing decision latency: p50/p99/max of one decision with 1,000 agents, 100 skills, 500 calls.

A centre of ``--agents`` agents, each holding 5 to 15 of ``--skills`` skills at random levels and
one to three of four languages, and ``--calls`` waiting calls across ten services (each needing one
to three skills at minimum levels 1 to 6, one in ten a VIP, waiting up to five minutes, some
services relaxing after 60 s). Seeded, so every run builds the same centre. Measured, each with
``time.perf_counter_ns`` around one call, garbage collector on:

* ``agent_freed``: an agent becomes ready; which of the waiting calls do they take?
* ``call_arrived``: a call arrives; which ready agent takes it? Every agent is READY here, the
  worst case for this path (more candidates to score).
* ``timer``: the calls whose relaxation step or max wait fell due in the last second, decided
  against the ready agents of a busy centre (``--busy-ready`` agents ready): the round a live router
  runs as time passes.
* ``round_busy``: a full round (every waiting call) in that busy centre, as at start-up or resync.
* ``round_all_ready``: a full round matching every waiting call against 1,000 ready agents; a state
  the hot paths never let build up, measured as the upper bound.

Usage: ``python benchmarks/routing_decision.py [--iterations N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cti.model import CallKey
from routing.model import (
    Agent,
    AgentState,
    AgentStatus,
    Overflow,
    OverflowKind,
    Relaxation,
    ServiceRouting,
    SkillNeed,
    Strategy,
    WaitingCall,
)
from routing.policy import RoutingBoard

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
LANGUAGES = ["zh", "en", "yue", "ja"]


def build_centre(
    rng: random.Random, agents: int, skills: int, services: int
) -> tuple[list[Agent], dict[str, ServiceRouting], list[str]]:
    skill_names = [f"skill{n:03d}" for n in range(skills)]
    staff = [
        Agent(
            id=str(1000 + n),
            name=f"agent {n}",
            skills={s: rng.randint(1, 10) for s in rng.sample(skill_names, rng.randint(5, 15))},
            languages=frozenset(rng.sample(LANGUAGES, rng.randint(1, 3))),
            team=f"team{n % 20}",
        )
        for n in range(agents)
    ]
    strategies = list(Strategy)
    routing = {}
    for n in range(services):
        relaxing = n % 2 == 0
        routing[f"service{n}"] = ServiceRouting(
            f"service{n}",
            strategy=strategies[n % len(strategies)],
            relaxations=(Relaxation(60, lower_levels_by=2), Relaxation(180, any_language=True))
            if relaxing
            else (),
            max_wait_seconds=600 if relaxing else None,
            overflow=Overflow(OverflowKind.VOICEMAIL, f"mailbox{n}") if relaxing else None,
            weight=1.0 + (n % 3),
        )
    return staff, routing, skill_names


def make_call(rng: random.Random, n: int, services: list[str], skill_names: list[str]) -> WaitingCall:
    needs = tuple(SkillNeed(s, rng.randint(1, 6)) for s in rng.sample(skill_names, rng.randint(1, 3)))
    return WaitingCall(
        key=CallKey("pbx1", f"1700000000.{n}"),
        service=rng.choice(services),
        enqueued_at=NOW - timedelta(seconds=rng.uniform(0, 300)),
        needs=needs,
        language=rng.choice(LANGUAGES),
        priority=100 if rng.random() < 0.1 else 0,
    )


def state(agent: Agent, rng: random.Random, status: AgentStatus) -> AgentState:
    idle = T0 + timedelta(seconds=rng.uniform(0, 500))
    return AgentState(
        agent.id, status, idle, idle_since=idle, talk_seconds=rng.uniform(0, 3600), logged_in_at=T0
    )


def measure(fn: Callable[[int], object], iterations: int) -> list[int]:
    samples = []
    for i in range(iterations):
        start = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return samples


def report(name: str, samples: list[int], note: str) -> None:
    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] / 1000

    print(
        f"{name:<16} n={len(samples):>6}  p50 {pct(0.50):8.1f} µs  p99 {pct(0.99):8.1f} µs  "
        f"max {samples[-1] / 1000:8.1f} µs  {note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--skills", type=int, default=100)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--busy-ready", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--round-iterations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    staff, routing, skill_names = build_centre(rng, args.agents, args.skills, args.services)
    names = list(routing)
    waiting = [make_call(rng, n, names, skill_names) for n in range(args.calls)]
    arrivals = [make_call(rng, args.calls + n, names, skill_names) for n in range(1000)]

    board = RoutingBoard(routing)
    for agent in staff:
        board.put_agent(agent, state(agent, rng, AgentStatus.READY))
    for call in waiting:
        board.put_call(call)

    freed = [rng.choice(staff).id for _ in range(1000)]
    agent_freed = measure(lambda i: board.agent_freed(freed[i % len(freed)], NOW), args.iterations)
    call_arrived = measure(lambda i: board.call_arrived(arrivals[i % len(arrivals)], NOW), args.iterations)
    found_call = sum(board.agent_freed(a, NOW) is not None for a in freed) / len(freed)
    found_agent = sum(board.call_arrived(c, NOW) is not None for c in arrivals) / len(arrivals)
    round_all_ready = measure(lambda _: board.round(NOW), args.round_iterations)
    matched_all = len(board.round(NOW))

    busy = RoutingBoard(routing)
    ready_ids = {a.id for a in rng.sample(staff, args.busy_ready)}
    for agent in staff:
        status = AgentStatus.READY if agent.id in ready_ids else AgentStatus.ON_CALL
        busy.put_agent(agent, state(agent, rng, status))
    for call in waiting:
        busy.put_call(call)
    windows = [NOW + timedelta(seconds=n) for n in range(301)]
    timer = measure(lambda i: busy.timer(windows[i % 300], windows[i % 300 + 1]), args.iterations)
    due = sum(len(busy.timer(windows[n], windows[n + 1])) for n in range(300)) / 300
    round_busy = measure(lambda _: busy.round(NOW), args.round_iterations)
    matched_busy = len(busy.round(NOW))

    print(f"$ python benchmarks/routing_decision.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"{args.agents} agents, {args.skills} skills, {args.calls} waiting calls, {args.services} services, "
        f"seed {args.seed}, Python {sys.version.split()[0]}"
    )
    report("agent_freed", agent_freed, f"(a call found for {found_call:.0%} of freed agents)")
    report("call_arrived", call_arrived, f"(an agent found for {found_agent:.0%} of arrivals; all ready)")
    report("timer", timer, f"(1 s windows over 5 min, {args.busy_ready} ready: {due:.1f} decisions each)")
    report("round_busy", round_busy, f"({args.busy_ready} ready: {matched_busy} decisions)")
    report("round_all_ready", round_all_ready, f"({args.agents} ready: {matched_all} decisions)")


if __name__ == "__main__":
    main()
