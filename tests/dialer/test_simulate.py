"""The simulator drives the real pacers; the predictive pacer holds the cap across seeded runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dialer.abandonment import AbandonmentFigures
from dialer.pacer import PacingSnapshot, PredictivePacer, ProgressivePacer, TrafficEstimate
from dialer.simulate import Traffic, simulate
from dialer.vicidial import AdaptAverage

SHIFT = Traffic(agents=10, hours=1.0)


def test_a_run_is_reproducible_from_its_seed() -> None:
    a = simulate(PredictivePacer(), SHIFT, 7)
    b = simulate(PredictivePacer(), SHIFT, 7)
    c = simulate(PredictivePacer(), SHIFT, 8)
    assert a == b
    assert a != c


def test_progressive_never_abandons_a_call() -> None:
    for seed in range(5):
        r = simulate(ProgressivePacer(), SHIFT, seed)
        assert r.live_answers > 100
        assert r.abandoned == 0


# Three kinds of campaign: the usual, a small team on a poor list, a large team with short calls.
KINDS = [
    Traffic(agents=10, hours=2.0),
    Traffic(agents=5, hours=2.0, live_answer_rate=0.2),
    Traffic(agents=25, hours=1.0, talk_mean=60.0, talk_sd=40.0),
]


@pytest.mark.parametrize("traffic", KINDS, ids=["10-agents", "5-agents-poor-list", "25-agents-short-calls"])
def test_predictive_holds_the_cap_in_every_seeded_run(traffic: Traffic) -> None:
    results = [simulate(PredictivePacer(), traffic, seed) for seed in range(12)]
    worst = max(results, key=lambda r: r.abandonment_rate)
    assert worst.abandonment_rate <= traffic.cap, worst
    # ...while really dialling ahead: some calls are abandoned, and agents talk more than progressive.
    assert sum(r.abandoned for r in results) > 0
    progressive = [simulate(ProgressivePacer(), traffic, seed) for seed in range(3)]
    assert min(r.talk_minutes_per_agent_hour for r in results[:3]) > max(
        r.talk_minutes_per_agent_hour for r in progressive
    )


def state(ready: int, talking: int, waiting: int, answered: int, abandoned: int) -> PacingSnapshot:
    return PacingSnapshot(
        ready=ready,
        talking=(30.0,) * talking,
        wrapping=(),
        ringing=(),
        waiting=waiting,
        traffic=TrafficEstimate(),
        abandonment=AbandonmentFigures(answered, abandoned, 0.03, timedelta(hours=24)),
    )


def test_replica_raises_its_level_by_the_share_of_idle_agents() -> None:
    adapt = AdaptAverage()
    for second in range(15):
        d = adapt.decide(state(ready=5, talking=5, waiting=0, answered=0, abandoned=0), float(second))
    assert adapt.level == pytest.approx(1.5)  # 1.0 × (1 + 5 ready / 10 agents)
    assert d.dial == 10  # round(1.5 × 10) lines, 5 in use
    for second in range(15, 30):
        adapt.decide(state(ready=5, talking=5, waiting=0, answered=0, abandoned=0), float(second))
    assert adapt.level == pytest.approx(2.25)


def test_replica_caps_and_floors_its_level() -> None:
    adapt = AdaptAverage(start_level=2.9)
    for second in range(15):
        adapt.decide(state(ready=10, talking=0, waiting=0, answered=0, abandoned=0), float(second))
    assert adapt.level == 3.0
    low = AdaptAverage()
    for second in range(15):
        low.decide(state(ready=0, talking=10, waiting=5, answered=0, abandoned=0), float(second))
    assert low.level == 1.0


def test_replica_halves_its_level_when_the_days_drops_pass_the_limit() -> None:
    adapt = AdaptAverage(start_level=2.0)
    for second in range(15):  # no differential, 4 % of 100 answers dropped
        adapt.decide(state(ready=0, talking=10, waiting=0, answered=100, abandoned=4), float(second))
    assert adapt.level == pytest.approx(1.0)
    assert "averaged (halved)" in adapt.last_note
    quiet = AdaptAverage(start_level=2.0)
    for second in range(15):  # too few calls in the day for the rule
        quiet.decide(state(ready=0, talking=10, waiting=0, answered=40, abandoned=4), float(second))
    assert quiet.level == pytest.approx(2.0)
