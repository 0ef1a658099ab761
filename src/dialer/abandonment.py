"""The abandonment ledger: abandoned calls against live-answered calls over the rule's window.

A call answered by a person counts once as *live-answered*; if no agent was connected within the
safe-harbor 2 seconds it also counts as *abandoned*. The rate is abandoned / live-answered over the
campaign's window (30 days or 24 hours, see :class:`~dialer.model.AbandonmentRule`), both ends
counted at the answer time. Calls answered by a machine are not live-answered and count in neither.

Counts are kept in one-minute buckets, so a 30-day window is at most 43,200 small entries whatever
the call volume; the window boundary is therefore exact to the minute, on the safe side (a bucket
is dropped only once its whole minute has left the window).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dialer.model import AbandonmentRule, require_aware

_BUCKET = 60  # seconds


@dataclass(frozen=True, slots=True)
class AbandonmentFigures:
    answered: int  # live-answered calls in the window
    abandoned: int  # of which abandoned
    cap: float
    window: timedelta

    @property
    def rate(self) -> float:
        return self.abandoned / self.answered if self.answered else 0.0

    @property
    def headroom(self) -> float:
        """How many more abandoned calls the window allows right now (negative: over the cap)."""
        return self.cap * self.answered - self.abandoned


def _minute(at: datetime) -> int:
    return int(at.astimezone(UTC).timestamp()) // _BUCKET


class AbandonmentLedger:
    """Live-answered and abandoned calls of one campaign, over its rule's window.

    Not a frozen value (it grows with every answer), but pure: no clock, no I/O; ``now`` is passed.
    Times must not go backwards by more than a minute (events arrive in order from one loop).
    """

    def __init__(self, rule: AbandonmentRule, cap: float) -> None:
        self.rule = rule
        self.cap = cap
        self._buckets: deque[list[int]] = deque()  # [minute, answered, abandoned], oldest first
        self._answered = 0
        self._abandoned = 0

    def record(self, at: datetime, *, abandoned: bool) -> None:
        """Count one live-answered call at ``at`` (also abandoned when no agent took it in time)."""
        require_aware(at)
        minute = _minute(at)
        if self._buckets and self._buckets[-1][0] >= minute:
            bucket = self._buckets[-1]
        else:
            bucket = [minute, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        self._answered += 1
        if abandoned:
            bucket[2] += 1
            self._abandoned += 1

    def figures(self, now: datetime) -> AbandonmentFigures:
        require_aware(now)
        oldest = _minute(now - self.rule.window)
        while self._buckets and self._buckets[0][0] < oldest:
            _, answered, abandoned = self._buckets.popleft()
            self._answered -= answered
            self._abandoned -= abandoned
        return AbandonmentFigures(self._answered, self._abandoned, self.cap, self.rule.window)
