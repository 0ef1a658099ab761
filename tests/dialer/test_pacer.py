"""Pacers: how many calls each mode dials for a given state, and the reason it gives."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dialer.abandonment import AbandonmentFigures
from dialer.model import DialMode
from dialer.pacer import (
    PacingSnapshot,
    PredictivePacer,
    PreviewPacer,
    ProgressivePacer,
    TrafficEstimate,
    TrafficObserver,
    pacer_for,
)

LEARNED = TrafficEstimate(
    live_answer_rate=0.3,
    mean_answer_seconds=8.0,
    mean_talk_seconds=120.0,
    mean_wrap_seconds=15.0,
    dials=1000,
    live_answers=300,
)


def figures(answered: int = 1000, abandoned: int = 10) -> AbandonmentFigures:
    return AbandonmentFigures(answered, abandoned, 0.03, timedelta(hours=24))


def snap(
    ready: int = 0,
    talking: tuple[float, ...] = (),
    wrapping: tuple[float, ...] = (),
    ringing: tuple[float, ...] = (),
    waiting: int = 0,
    traffic: TrafficEstimate = LEARNED,
    abandonment: AbandonmentFigures | None = None,
    leads: int = 1_000_000,
) -> PacingSnapshot:
    return PacingSnapshot(
        ready, talking, wrapping, ringing, waiting, traffic, abandonment or figures(), leads
    )


def test_preview_never_dials_by_itself() -> None:
    assert PreviewPacer().decide(snap(ready=5), 0.0).dial == 0


@pytest.mark.parametrize(
    ("ready", "ringing", "waiting", "leads", "dial"),
    [(3, 0, 0, 100, 3), (3, 2, 0, 100, 1), (3, 2, 1, 100, 0), (1, 4, 0, 100, 0), (5, 0, 0, 2, 2)],
)
def test_progressive_dials_one_call_per_uncovered_ready_agent(
    ready: int, ringing: int, waiting: int, leads: int, dial: int
) -> None:
    s = snap(ready=ready, ringing=(1.0,) * ringing, waiting=waiting, leads=leads)
    assert ProgressivePacer().decide(s, 0.0).dial == dial


def test_predictive_dials_progressively_until_it_has_seen_enough_answers() -> None:
    fresh = TrafficEstimate(dials=10, live_answers=3)
    d = PredictivePacer(min_answers=30).decide(snap(ready=4, ringing=(2.0,), traffic=fresh), 0.0)
    assert d.dial == 3
    assert "learning: 3 of 30 live answers" in d.reason


def test_predictive_dials_ahead_of_ready_agents() -> None:
    d = PredictivePacer().decide(snap(ready=4, talking=(30.0,) * 6), 0.0)
    assert d.dial > 4  # at a 30 % answer rate, four calls would leave agents idle
    assert d.figures["expected_rate"] <= d.figures["aim"] + 1e-9


def test_predictive_does_not_dial_when_no_agent_can_be_free_in_time() -> None:
    # Everyone is early in a call: nobody finishes talk and a whole wrap-up within the next seconds.
    d = PredictivePacer().decide(snap(ready=0, talking=(5.0,) * 10), 0.0)
    assert d.dial == 0


def test_predictive_counts_calls_already_ringing() -> None:
    pacer = PredictivePacer()
    idle = pacer.decide(snap(ready=3, talking=(30.0,) * 7), 0.0).dial
    busy = pacer.decide(snap(ready=3, talking=(30.0,) * 7, ringing=(1.0,) * 8), 0.0).dial
    assert busy < idle


def test_predictive_aim_falls_when_the_window_is_over_its_aim() -> None:
    pacer = PredictivePacer(safety=0.8, gain=2.0)
    assert pacer.aim(figures(1000, 10)) == pytest.approx(0.03)  # far under: up to the cap
    assert pacer.aim(figures(1000, 24)) == pytest.approx(0.024)  # at the nominal aim
    assert pacer.aim(figures(1000, 32)) == pytest.approx(0.008)  # over the cap: pull back hard
    assert pacer.aim(figures(1000, 40)) == 0.0
    assert pacer.aim(figures(10, 5)) == pytest.approx(0.024)  # too few answers to judge


def test_predictive_pulls_back_when_over_the_cap() -> None:
    pacer = PredictivePacer()
    state = {"ready": 2, "talking": (60.0,) * 6, "wrapping": (10.0,) * 2}
    under = pacer.decide(snap(**state, abandonment=figures(1000, 5)), 0.0).dial  # type: ignore[arg-type]
    over = pacer.decide(snap(**state, abandonment=figures(1000, 40)), 0.0).dial  # type: ignore[arg-type]
    assert over < under
    assert over == 2  # never below one call per uncovered ready agent, which cannot abandon


def test_predictive_explains_its_pace_in_words_and_numbers() -> None:
    d = PredictivePacer().decide(snap(ready=2, talking=(30.0,) * 8), 0.0)
    assert d.reason.startswith("predictive: 2 ready, 8 talking")
    assert "30% of 1000 dials answered live" in d.reason
    assert "aiming at 3.0%" in d.reason
    for key in ("aim", "expected_answers", "expected_abandoned", "live_answer_rate", "dial"):
        assert key in d.figures
    assert d.figures["dial"] == d.dial


def test_predictive_respects_the_leads_left_and_the_line_limit() -> None:
    assert PredictivePacer().decide(snap(ready=5, leads=2), 0.0).dial == 2
    d = PredictivePacer(max_lines_per_agent=1.0).decide(snap(ready=5), 0.0)
    assert d.dial == 5


def test_observer_learns_the_traffic() -> None:
    obs = TrafficObserver(memory=100)
    for i in range(100):
        obs.dial_ended(live=i % 4 == 0, answer_seconds=6.0 if i % 4 == 0 else None)
    obs.talk_ended(90.0)
    est = obs.estimate()
    assert est.live_answer_rate == pytest.approx(0.25)
    assert est.mean_answer_seconds == pytest.approx(6.0)
    assert est.mean_talk_seconds == pytest.approx(90.0)
    assert (est.dials, est.live_answers) == (100, 25)
    assert est.answer_survival(5.0) == 1.0 and est.answer_survival(6.0) == 0.0
    with pytest.raises(ValueError, match="answer time"):
        obs.dial_ended(live=True)


def test_each_mode_has_its_pacer() -> None:
    assert isinstance(pacer_for(DialMode.PREVIEW), PreviewPacer)
    assert isinstance(pacer_for(DialMode.PROGRESSIVE), ProgressivePacer)
    assert isinstance(pacer_for(DialMode.PREDICTIVE), PredictivePacer)
