"""Dialer pacing: agent talk time per hour and abandonment for three pacers on the same customers.

For each kind of campaign and each seed, one simulated shift (``dialer.simulate``) is run with:

* ``progressive``: one call per ready agent (``dialer.pacer.ProgressivePacer``);
* ``adapt-average``: the replica of VICIdial's ``ADAPT_AVERAGE`` adaptive dial level with a 3 %
  drop limit and its default settings (``dialer.vicidial.AdaptAverage``);
* ``ours``: the predictive pacer the platform runs (``dialer.pacer.PredictivePacer``, defaults).

A seed fixes the customers: the n-th number dialled answers (or not) after the same time and talks
for the same time whichever pacer dialled it. Every pacer is asked after every event and once a
second. Abandonment is abandoned / live-answered calls over the whole shift (shorter than the
24-hour window); a live answer with no agent free within 2 s is abandoned.

Usage: ``python benchmarks/dialer_pacing.py [--seeds N] [--hours H]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from dialer.pacer import Pacer, PredictivePacer, ProgressivePacer
from dialer.simulate import RunResult, Traffic, simulate
from dialer.vicidial import AdaptAverage

PACERS: dict[str, Callable[[], Pacer]] = {
    "progressive": ProgressivePacer,
    "adapt-average": AdaptAverage,
    "ours": PredictivePacer,
}


def kinds(hours: float) -> dict[str, Traffic]:
    return {
        "10 agents, 30 % live answers, talk 120 s": Traffic(agents=10, hours=hours),
        "5 agents, 20 % live answers, talk 120 s": Traffic(agents=5, hours=hours, live_answer_rate=0.2),
        "25 agents, 30 % live answers, talk 60 s": Traffic(
            agents=25, hours=hours, talk_mean=60.0, talk_sd=40.0
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--hours", type=float, default=4.0)
    args = parser.parse_args()
    print(f"{args.seeds} seeds per row, {args.hours:g}-hour shifts\n")
    print(
        "| campaign | pacer | talk min per agent-hour (median) | abandoned, mean | abandoned, worst run "
        "| runs over 3 % | dials per agent-hour |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, traffic in kinds(args.hours).items():
        for name, make in PACERS.items():
            started = time.perf_counter()
            runs: list[RunResult] = [simulate(make(), traffic, seed, name=name) for seed in range(args.seeds)]
            talk = statistics.median(r.talk_minutes_per_agent_hour for r in runs)
            rates = [r.abandonment_rate for r in runs]
            over = sum(1 for r in rates if r > traffic.cap)
            dials = statistics.mean(r.dials for r in runs) / (traffic.agents * traffic.hours)
            print(
                f"| {kind} | {name} | {talk:.1f} | {statistics.mean(rates):.2%} | {max(rates):.2%} "
                f"| {over} of {len(runs)} | {dials:.0f} |",
                flush=True,
            )
            print(f"  ({name}: {time.perf_counter() - started:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
