"""Waiting announcements: what one pass of the announcer costs the platform's event loop.

The announcer runs once a second beside the router, on the same event loop, so a pass must stay
far below a second and never stall routing. A centre of ``--agents`` agents (each holding 5 to 15 of
100 skills, half of them staffed) and ``--calls`` waiting calls over ten services, each with a
recent handle-time history. Seeded. Measured, each with ``time.perf_counter_ns`` around one pass:

* ``plan``: ``plan_announcements`` — every waiting call's position, expected wait and language;
* ``refresh_steady``: a full ``WaitingAnnouncer.refresh`` when nothing changed since the last pass
  (the common case: no ``Setvar`` is written), through an action sink that answers at once;
* ``refresh_all_changed``: a pass after the head of every line was connected, so every caller
  moved up one place (a position ``Setvar`` per caller, and an expected wait one where the minutes
  changed), written to that same sink; a real AMI round trip adds its own time per action.

Usage: ``python benchmarks/waiting_announcements.py [--iterations N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from cti.model import CallKey, CallPhase, CallSnapshot, Direction
from routing.model import Agent, AgentState, AgentStatus, ServiceRouting, SkillNeed, WaitingCall
from routing.waiting import Announcing, HandleTimes, WaitingAnnouncer, plan_announcements

NOW = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
STATUSES = (AgentStatus.READY, AgentStatus.ON_CALL, AgentStatus.WRAP_UP, AgentStatus.NOT_READY)


def centre(rng: random.Random, agents: int, calls: int):  # type: ignore[no-untyped-def]
    skills = [f"skill{i}" for i in range(100)]
    services = {
        f"service{i}": ServiceRouting(f"service{i}", needs=tuple(SkillNeed(s) for s in rng.sample(skills, 1)))
        for i in range(10)
    }
    team = []
    for n in range(agents):
        held = {s: rng.randint(1, 10) for s in rng.sample(skills, rng.randint(5, 15))}
        for service in rng.sample(list(services.values()), 2):  # everyone can work two lines
            held[service.needs[0].skill] = rng.randint(1, 10)
        agent_id = str(10_000 + n)
        team.append((Agent(agent_id, f"agent {n}", held), AgentState(agent_id, rng.choice(STATUSES), NOW)))
    waiting, snapshots = [], {}
    for n in range(calls):
        key = CallKey("pbx1", f"1700000000.{n}")
        service = f"service{rng.randrange(10)}"
        language = rng.choice(("zh", "en", None))
        waiting.append(
            WaitingCall(key, service, NOW - timedelta(seconds=rng.uniform(0, 300)), language=language,
                        priority=100 if rng.random() < 0.1 else 0)
        )  # fmt: skip
        snapshots[key] = CallSnapshot(
            key, CallPhase.WAITING, Direction.INBOUND, NOW, "13800000000", "", "8000",
            f"PJSIP/trunk-{n:08x}", key.linkedid,
        )  # fmt: skip
    times = HandleTimes()
    for name in services:
        for _ in range(50):
            times.record(name, rng.uniform(60, 600))
    return waiting, snapshots, services, team, times


class Sink:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, action: str, headers: Mapping[str, str] | None = None) -> Mapping[str, str]:
        self.sent += 1
        return {"Response": "Success"}


class View:
    def __init__(self, waiting, snapshots, services, team) -> None:  # type: ignore[no-untyped-def]
        self.waiting, self.snapshots, self.services, self.team = waiting, snapshots, services, team

    def waiting_view(self):  # type: ignore[no-untyped-def]
        return self.waiting, self.snapshots, self.services, self.team


def report(name: str, samples: list[int], cpu_seconds: float) -> None:
    """Wall-clock percentiles of one pass, and the CPU time a pass took on average (less sensitive
    to neighbours on a shared machine)."""
    cpu = cpu_seconds / len(samples) * 1e3
    samples.sort()
    p50 = samples[len(samples) // 2] / 1e6
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e6
    print(
        f"{name:20s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  max {samples[-1] / 1e6:7.2f} ms  cpu {cpu:6.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    waiting, snapshots, services, team, times = centre(random.Random(args.seed), args.agents, args.calls)
    announcing = Announcing(30)
    print(f"{args.agents} agents, {args.calls} waiting calls, {len(services)} services")

    plan: list[int] = []
    cpu = time.process_time()
    for _ in range(args.iterations):
        start = time.perf_counter_ns()
        plan_announcements(waiting, services, team, times, announcing)
        plan.append(time.perf_counter_ns() - start)
    report("plan", plan, time.process_time() - cpu)

    sink = Sink()
    # Only English and music-only callers are set here: a Mandarin prompt is built once per
    # distinct sentence and cached, which the steady state never repeats.
    view = View([replace_language(c) for c in waiting], snapshots, services, team)
    announcer = WaitingAnnouncer(view, sink, announcing, handle_times=times)
    await announcer.refresh()
    steady: list[int] = []
    cpu = time.process_time()
    for _ in range(args.iterations):
        start = time.perf_counter_ns()
        await announcer.refresh()
        steady.append(time.perf_counter_ns() - start)
    report("refresh_steady", steady, time.process_time() - cpu)

    changed: list[int] = []
    writes = 0
    cpu_changed = 0.0
    for _ in range(min(args.iterations, 20)):
        # The head of every service's line was connected: everyone behind moves up one place.
        heads = {}
        for call in sorted(view.waiting, key=lambda c: (-c.priority, c.enqueued_at)):
            heads.setdefault(call.service, call.key)
        view.waiting = [c for c in view.waiting if c.key not in set(heads.values())]
        before = sink.sent
        cpu = time.process_time()
        start = time.perf_counter_ns()
        await announcer.refresh()
        changed.append(time.perf_counter_ns() - start)
        cpu_changed += time.process_time() - cpu
        writes += sink.sent - before
    report("refresh_all_changed", changed, cpu_changed)
    print(f"Setvar actions per changed pass: {writes / len(changed):.0f}")


def replace_language(call: WaitingCall) -> WaitingCall:
    from dataclasses import replace

    return replace(call, language="en" if call.language == "zh" else call.language)


if __name__ == "__main__":
    asyncio.run(main())
