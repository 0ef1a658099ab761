"""Live campaign statistics from the attempt trail: attempts, outcomes, contacts, and abandonment
over 24 hours and over 30 days (both rules' windows, whichever the campaign follows).

Pure: the caller passes the attempts (those dialled within the last 30 days are enough) and ``now``.
Abandonment is abandoned over live-answered (connected + abandoned) attempts, counted at the time
the attempt ended, as the ledger counts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from dialer.model import Attempt, Outcome, require_aware

DAY = timedelta(hours=24)
MONTH = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class WindowFigures:
    attempts: int  # dialled in the window
    contacts: int  # connected to an agent
    live_answers: int
    abandoned: int

    @property
    def abandonment_rate(self) -> float:
        return self.abandoned / self.live_answers if self.live_answers else 0.0


@dataclass(frozen=True, slots=True)
class CampaignStats:
    last_24_hours: WindowFigures
    last_30_days: WindowFigures
    outcomes_24_hours: Mapping[str, int] = field(default_factory=dict)
    in_progress: int = 0  # attempts still pending


def _window(attempts: list[Attempt], now: datetime, length: timedelta) -> WindowFigures:
    since = now - length
    dialled = sum(1 for a in attempts if a.dialled_at > since)
    ended = [a for a in attempts if a.ended_at is not None and a.ended_at > since]
    contacts = sum(1 for a in ended if a.outcome is Outcome.CONNECTED)
    abandoned = sum(1 for a in ended if a.outcome is Outcome.ABANDONED)
    return WindowFigures(dialled, contacts, contacts + abandoned, abandoned)


def campaign_stats(attempts: Iterable[Attempt], now: datetime) -> CampaignStats:
    require_aware(now)
    items = list(attempts)
    outcomes: dict[str, int] = {}
    for a in items:
        if a.ended_at is not None and a.ended_at > now - DAY:
            outcomes[a.outcome.value] = outcomes.get(a.outcome.value, 0) + 1
    return CampaignStats(
        last_24_hours=_window(items, now, DAY),
        last_30_days=_window(items, now, MONTH),
        outcomes_24_hours=MappingProxyType(dict(sorted(outcomes.items()))),
        in_progress=sum(1 for a in items if a.outcome is Outcome.PENDING),
    )


HOUR_SECONDS = 3600.0


def talk_per_agent_hour(
    talk_seconds: float, watched_agent_seconds: float, watched_seconds: float, agents_now: int
) -> float:
    """Talk seconds per agent-hour staffed over the last hour.

    ``talk_seconds``: the talk of the campaign's calls that ended in the last hour, from the stored
    call logs (so a restart loses none of it). Who was staffed is not stored: the loop samples the
    campaign's logged-in agents while it runs, ``watched_agent_seconds`` over ``watched_seconds`` of
    the last hour; the part of the hour it did not watch (before a restart, or while stopped) is
    counted at the mean it watched (``agents_now`` when it has watched nothing yet). The agent-hours
    are never fewer than the talk itself (an agent talking was staffed), so the figure is at most
    3600 s per agent-hour.
    """
    watched = min(max(0.0, watched_seconds), HOUR_SECONDS)
    mean = watched_agent_seconds / watched if watched > 0 else float(max(0, agents_now))
    agent_seconds = max(watched_agent_seconds + mean * (HOUR_SECONDS - watched), talk_seconds)
    if agent_seconds <= 0:
        return 0.0
    return talk_seconds / (agent_seconds / HOUR_SECONDS)
