"""The centre's days (``routing.days``): local midnights per time zone, table-tested."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cti.model import CallPhase, ChangeKind, EndReason
from routing.days import DayBook, agent_zone, next_midnight
from routing.model import AgentState, AgentStatus
from tests.routing.test_service import T0, Harness, h, ready

__all__ = ["h"]  # the routing service harness of test_service


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after", "zone", "midnight"),
    [
        (utc(2026, 11, 22, 9, 0), "UTC", utc(2026, 11, 23, 0, 0)),
        (utc(2026, 11, 22, 9, 0), "Asia/Shanghai", utc(2026, 11, 22, 16, 0)),  # 00:00 +08:00
        (utc(2026, 11, 22, 16, 0), "Asia/Shanghai", utc(2026, 11, 23, 16, 0)),  # strictly after
        (utc(2026, 11, 22, 9, 0), "America/New_York", utc(2026, 11, 23, 5, 0)),  # EST, -05:00
        (utc(2026, 7, 1, 9, 0), "America/New_York", utc(2026, 7, 2, 4, 0)),  # EDT, -04:00
        # Santiago's clocks jump from 00:00 to 01:00 on 2026-09-06: that day starts at 01:00 local.
        (utc(2026, 9, 5, 12, 0), "America/Santiago", utc(2026, 9, 6, 4, 0)),
    ],
)
def test_next_local_midnight(after: datetime, zone: str, midnight: datetime) -> None:
    assert next_midnight(after, zone) == midnight


def test_bad_zones_and_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        next_midnight(utc(2026, 1, 1), "Mars/Olympus")
    with pytest.raises(ValueError, match="timezone-aware"):
        next_midnight(datetime(2026, 1, 1), "UTC")


def test_an_agent_follows_the_zone_of_the_service_they_last_worked_for() -> None:
    zones = {"support": "Asia/Shanghai", "sales": "Europe/London"}
    state = AgentState.logged_out("1001", utc(2026, 11, 22))
    assert agent_zone(state, zones, "UTC") == "UTC"
    assert state.status is AgentStatus.LOGGED_OUT
    assert agent_zone(replace(state, service="sales"), zones, "UTC") == "Europe/London"
    assert agent_zone(replace(state, service="other"), zones, "UTC") == "UTC"


def test_the_day_book_says_each_midnight_once() -> None:
    book = DayBook("UTC")
    book.set_zones(["Asia/Shanghai", "Nowhere/Unknown"], utc(2026, 11, 22, 9, 0))
    assert book.next_at() == utc(2026, 11, 22, 16, 0)
    assert book.due(utc(2026, 11, 22, 15, 59)) == []
    assert book.due(utc(2026, 11, 22, 16, 0)) == ["Asia/Shanghai"]
    assert book.due(utc(2026, 11, 22, 16, 1)) == []
    assert book.next_at() == utc(2026, 11, 23, 0, 0)
    # A pause over both midnights resets each zone once.
    assert book.due(utc(2026, 11, 24, 1, 0)) == ["Asia/Shanghai", "UTC"]
    book.set_zones([], utc(2026, 11, 24, 1, 0))
    assert book.next_at() == utc(2026, 11, 25, 0, 0)


async def test_the_service_resets_counters_at_the_local_midnight_of_the_agents_service(h: Harness) -> None:
    """Through the routing service (``test_service``'s harness, its clock at 09:00 UTC): agent 1001
    takes a call of ``support``, kept in Shanghai time; agent 1002 has taken none (default: UTC)."""
    service = h.service
    service._services["support"] = replace(service._services["support"], time_zone="Asia/Shanghai")
    await ready(h, "1001", "1002")
    snap = h.call(1)
    await h.feed(snap)
    snap = replace(h.step(snap, CallPhase.TALKING, "1001"), connected_at=h.clock())
    await h.feed(snap)
    h.clock.advance(60)
    ended = replace(h.step(snap, CallPhase.ENDED, "1001"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.CLOSED)
    state = await service.agent_state("1001")
    assert state.calls_handled == 1 and state.talk_seconds == 60
    assert service._seconds_to_next_wake() is not None
    await h.tick(7 * 3600)  # 16:01 UTC: midnight in Shanghai
    state = await service.agent_state("1001")
    assert state.calls_handled == 0 and state.talk_seconds == 0
    assert state.status is AgentStatus.READY  # only the counters change
    assert (await service.agent_state("1002")).logged_in_at == T0  # still the day it logged in
    await h.tick(8 * 3600)  # 00:01 UTC: 1002's day ends; the session counts from midnight on
    state = await service.agent_state("1002")
    assert state.logged_in_seconds == 0 and state.logged_in_at == h.clock()
