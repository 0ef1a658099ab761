"""Live campaign figures from the attempt trail, over 24 hours and 30 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dialer.model import Attempt, Outcome
from dialer.stats import campaign_stats

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
