"""The centre's days: when each agent's daily counters go back to zero.

Agents' counters (calls handled, talk time, logged-in time) are per day, and a day ends at local
midnight. A centre's services may keep different time zones (each service has its own in the
customer record), so an agent's day follows the time zone of the service they last worked for
(``AgentState.service``), or the default zone before their first call. Pure: times are passed in,
timezone-aware UTC, and nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from routing.model import AgentState


def zone(name: str) -> ZoneInfo:
    """An IANA time zone; ``ValueError`` for a name the system does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def next_midnight(after: datetime, zone_name: str) -> datetime:
    """The first local midnight in ``zone_name`` strictly after ``after``, in UTC. On a day whose
    midnight does not exist (a daylight-saving jump at 00:00), the first moment of that day."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    tz = zone(zone_name)
    local = after.astimezone(tz)
    day = local.date() + timedelta(days=1)
    start = datetime.combine(day, time(0), tzinfo=tz)
    # Normalise through UTC: a non-existent local midnight moves forward to the first real moment.
    return start.astimezone(ZoneInfo("UTC")).astimezone(after.tzinfo)


def agent_zone(state: AgentState, service_zones: Mapping[str, str], default: str) -> str:
    """The time zone whose midnight ends ``state``'s day."""
    if state.service is not None and state.service in service_zones:
        return service_zones[state.service]
    return default


class DayBook:
    """The next midnight of every zone in use; ``due(now)`` says which zones' days just ended."""

    def __init__(self, default_zone: str = "UTC") -> None:
        zone(default_zone)
        self.default_zone = default_zone
        self._next: dict[str, datetime] = {}

    def set_zones(self, zones: Iterable[str], now: datetime) -> None:
        """Follow ``zones`` (and the default) from ``now``; unknown zone names are skipped."""
        wanted = {self.default_zone}
        for name in zones:
            try:
                zone(name)
            except ValueError:
                continue
            wanted.add(name)
        for name in wanted - set(self._next):
            self._next[name] = next_midnight(now, name)
        for name in set(self._next) - wanted:
            del self._next[name]

    def next_at(self) -> datetime | None:
        return min(self._next.values(), default=None)

    def due(self, now: datetime) -> list[str]:
        """The zones whose midnight has come since the last call, each once; their next midnight
        is set from ``now``, so a long pause does not reset twice."""
        out = sorted(name for name, at in self._next.items() if now >= at)
        for name in out:
            self._next[name] = next_midnight(now, name)
        return out
