"""The supervisor's figures of the day per service, overall and per interval, as the day goes.

Pure: from the facts of each call (when it was answered, abandoned, and when the agent's after-call
work ended), in the service's time zone. Each figure counts when it happens, not when the call
ends, so the charts fill as the day goes:

* a call answered counts toward answered, the service level (answered within
  ``service_level_seconds``) and the average speed of answer in the interval of its answer;
* a call never answered counts as abandoned in the interval of its hang-up;
* a call's handle time (talk plus after-call work) counts toward the average handle time in the
  interval when the agent finished the call (wrap-up over, or hung up without wrap-up);
* ``offered`` counts calls by their arrival.

The service level and the abandon rate of an interval are over the calls settled in it (answered
plus abandoned). Intervals are of ``minutes`` of the service's wall clock from local midnight (on
a day the clocks change, an interval may hold more or less than that much time); only the
service's current local day, up to ``now``, counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SERVICE_LEVEL_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class CallFacts:
    """One inbound call as the day's figures need it (times timezone-aware)."""

    service: str
    time_zone: str
    started_at: datetime
    connected_at: datetime | None = None
    wait_seconds: float | None = None
    ended_at: datetime | None = None
    talk_seconds: float | None = None
    #: when the (last) agent finished the call: wrap-up over, or the call ended without wrap-up
    work_ended_at: datetime | None = None


@dataclass
class _Tally:
    offered: int = 0
    answered: int = 0
    in_level: int = 0
    abandoned: int = 0
    waited: float = 0.0
    handled: int = 0
    handle: float = 0.0

    def figures(self) -> dict[str, Any]:
        settled = self.answered + self.abandoned
        return {
            "answered": self.answered,
            "abandoned": self.abandoned,
            "handled": self.handled,
            "service_level": round(self.in_level / settled, 4) if settled else None,
            "asa_seconds": round(self.waited / self.answered, 1) if self.answered else None,
            "aht_seconds": round(self.handle / self.handled, 1) if self.handled else None,
            "abandon_rate": round(self.abandoned / settled, 4) if settled else None,
        }


@dataclass
class _Day:
    zone: ZoneInfo
    start: datetime  # local midnight
    total: _Tally = field(default_factory=_Tally)
    slots: dict[int, _Tally] = field(default_factory=dict)


def zone(name: str) -> ZoneInfo:
    """The time zone ``name``; UTC for a name the system does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _slot(day: _Day, at: datetime | None, now: datetime, minutes: int) -> int | None:
    """The interval of ``at`` in the service's day so far, or ``None`` outside it."""
    if at is None or at > now:
        return None
    local = at.astimezone(day.zone)
    if local.date() != day.start.date():
        return None
    return (local.hour * 60 + local.minute) // minutes


def day_figures(
    calls: Iterable[CallFacts],
    now: datetime,
    *,
    minutes: int = 30,
    service_level_seconds: float = SERVICE_LEVEL_SECONDS,
    services: Iterable[tuple[str, str]] = (),
) -> dict[str, dict[str, Any]]:
    """Per service: the day's figures so far (``offered`` and as in each interval) and
    ``intervals``: ``{"minutes", "time_zone", "day_start", "current", "rows"}``, where ``rows`` are
    the intervals something was counted in, in order, each ``{"index", "start"`` (local ``HH:MM``)
    and the figures ``}``, and ``current`` the index of the interval ``now`` is in. ``services``
    (name, time zone) are listed even with no call yet."""
    if not 0 < minutes <= 1440 or 1440 % minutes:
        raise ValueError("minutes must divide a day")
    days: dict[str, _Day] = {}

    def day_of(service: str, time_zone: str) -> _Day:
        day = days.get(service)
        if day is None:
            tz = zone(time_zone)
            local_now = now.astimezone(tz)
            day = days[service] = _Day(tz, local_now.replace(hour=0, minute=0, second=0, microsecond=0))
        return day

    for service, time_zone in services:
        day_of(service, time_zone)
    for call in calls:
        day = day_of(call.service, call.time_zone)
        if _slot(day, call.started_at, now, minutes) is not None:
            day.total.offered += 1
        if call.connected_at is not None:
            at = _slot(day, call.connected_at, now, minutes)
            if at is not None:
                wait = call.wait_seconds or 0.0
                for tally in (day.total, day.slots.setdefault(at, _Tally())):
                    tally.answered += 1
                    tally.waited += wait
                    tally.in_level += wait <= service_level_seconds
            done = _slot(day, call.work_ended_at, now, minutes)
            if done is not None and call.ended_at is not None and call.work_ended_at is not None:
                after_call = max(0.0, (call.work_ended_at - call.ended_at).total_seconds())
                handle = (call.talk_seconds or 0.0) + after_call
                for tally in (day.total, day.slots.setdefault(done, _Tally())):
                    tally.handled += 1
                    tally.handle += handle
        else:
            at = _slot(day, call.ended_at, now, minutes)
            if at is not None:
                for tally in (day.total, day.slots.setdefault(at, _Tally())):
                    tally.abandoned += 1
    out: dict[str, dict[str, Any]] = {}
    for service in sorted(days):
        day = days[service]
        local_now = now.astimezone(day.zone)
        rows = []
        for index in sorted(day.slots):
            start = day.start + timedelta(minutes=index * minutes)
            rows.append({"index": index, "start": start.strftime("%H:%M"), **day.slots[index].figures()})
        out[service] = {
            "service": service,
            "offered": day.total.offered,
            **day.total.figures(),
            "intervals": {
                "minutes": minutes,
                "time_zone": day.zone.key,
                "day_start": day.start.isoformat(),
                "current": (local_now.hour * 60 + local_now.minute) // minutes,
                "rows": rows,
            },
        }
    return out
