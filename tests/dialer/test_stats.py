"""Live campaign figures from the attempt trail, over 24 hours and 30 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dialer.model import Attempt, Outcome
from dialer.stats import campaign_stats, talk_per_agent_hour

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ended(hours_ago: float, outcome: Outcome, n: int = 1) -> Attempt:
    at = NOW - timedelta(hours=hours_ago)
    return Attempt(n, 1, f"dial-{n}", at - timedelta(seconds=20), outcome, at)


def test_figures_over_both_windows() -> None:
    attempts = [
        ended(1, Outcome.CONNECTED, 1),
        ended(2, Outcome.ABANDONED, 2),
        ended(3, Outcome.BUSY, 3),
        ended(5, Outcome.CONNECTED, 4),
        ended(48, Outcome.ABANDONED, 5),  # two days ago: counts over 30 days only
        ended(24 * 31, Outcome.ABANDONED, 6),  # outside both windows
        Attempt(7, 1, "dial-7", NOW - timedelta(seconds=5)),  # ringing now
    ]
    stats = campaign_stats(attempts, NOW)
    day, month = stats.last_24_hours, stats.last_30_days
    assert (day.attempts, day.contacts, day.live_answers, day.abandoned) == (5, 2, 3, 1)
    assert day.abandonment_rate == 1 / 3
    assert (month.attempts, month.live_answers, month.abandoned) == (6, 4, 2)
    assert dict(stats.outcomes_24_hours) == {"abandoned": 1, "busy": 1, "connected": 2}
    assert stats.in_progress == 1


def test_no_answers_means_no_rate() -> None:
    assert campaign_stats([], NOW).last_24_hours.abandonment_rate == 0.0


def test_talk_per_agent_hour_counts_the_unwatched_part_of_the_hour_at_the_mean_watched() -> None:
    # Just started (nothing watched yet): the agents logged in now stand for the whole hour.
    assert talk_per_agent_hour(900.0, 0.0, 0.0, agents_now=2) == 450.0
    # Watched the whole hour: 3 agents for 20 minutes, then 1 for 40 (1 agent-hour + 40 min).
    watched = 3 * 1200.0 + 1 * 2400.0
    assert talk_per_agent_hour(1500.0, watched, 3600.0, agents_now=1) == 1500.0 / (watched / 3600.0)
    # Watched the last 15 minutes at 4 agents: the 45 minutes before count as 4 agents too.
    assert talk_per_agent_hour(3600.0, 4 * 900.0, 900.0, agents_now=0) == 900.0
    # Nobody staffed as far as the loop saw, yet talk was stored: never more than 3600 s an hour.
    assert talk_per_agent_hour(1200.0, 0.0, 0.0, agents_now=0) == 3600.0
    assert talk_per_agent_hour(0.0, 0.0, 0.0, agents_now=0) == 0.0
