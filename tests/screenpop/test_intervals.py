"""The day's figures per service and per interval (pure): each figure counts when it happens, in
the service's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from screenpop.intervals import CallFacts, day_figures

# 10:40 in Shanghai (UTC+8), 02:40 UTC.
NOW = datetime(2026, 11, 22, 2, 40, tzinfo=UTC)
SH = "Asia/Shanghai"


def at(hh_mm: str, *, day: int = 22) -> datetime:
    """A Shanghai wall-clock time on the 22nd (or ``day``), as UTC."""
    h, m = (int(x) for x in hh_mm.split(":"))
    return datetime(2026, 11, day, h, m, tzinfo=UTC) - timedelta(hours=8)


def answered(
    arrived: str, wait: float, *, talk: float | None = None, work_end: str | None = None
) -> CallFacts:
    start = at(arrived)
    connected = start + timedelta(seconds=wait)
    ended = connected + timedelta(seconds=talk) if talk is not None else None
    return CallFacts("support", SH, start, connected, wait, ended, talk, at(work_end) if work_end else None)


def abandoned(arrived: str, hung_up: str) -> CallFacts:
    return CallFacts("support", SH, at(arrived), None, None, at(hung_up), 0.0, None)


def rows(figures: dict[str, dict[str, Any]], service: str = "support") -> dict[str, dict[str, Any]]:
    return {r["start"]: r for r in figures[service]["intervals"]["rows"]}


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        # Answered within the level: counts at the answer, before the call has ended.
        ([answered("09:05", 10)], {"09:00": {"answered": 1, "service_level": 1.0, "asa_seconds": 10.0,
                                              "aht_seconds": None, "abandon_rate": 0.0}}),
        # Waited past 20 s, answered in the next interval: counted there.
        ([answered("09:29", 75)], {"09:30": {"answered": 1, "service_level": 0.0, "asa_seconds": 75.0}}),
        # Handle time (talk 120 s, ended 09:30:10, + 50 s of wrap-up) counts when the agent finished.
        ([answered("09:28", 10, talk=120, work_end="09:31")],
         {"09:00": {"answered": 1, "handled": 0, "aht_seconds": None},
          "09:30": {"answered": 0, "handled": 1, "aht_seconds": 170.0, "service_level": None}}),
        # Abandoned at its hang-up; the level and the abandon rate are over the settled calls.
        ([answered("10:01", 5), abandoned("10:02", "10:04"), abandoned("09:50", "10:10")],
         {"10:00": {"answered": 1, "abandoned": 2, "service_level": round(1 / 3, 4),
                    "abandon_rate": round(2 / 3, 4)}}),
        # Yesterday (local) and what is not yet (an answer after now) count nowhere.
        ([CallFacts("support", SH, at("23:50", day=21), at("23:51", day=21), 60.0), answered("10:39", 120)],
         {}),
    ],
)  # fmt: skip
def test_each_figure_counts_in_the_interval_it_happened(
    calls: list[CallFacts], expected: dict[str, dict[str, Any]]
) -> None:
    got = rows(day_figures(calls, NOW, minutes=30, services=[("support", SH)]))
    assert set(got) == set(expected)
    for start, figures in expected.items():
        assert {k: got[start][k] for k in figures} == figures, start


def test_the_days_totals_and_the_interval_frame() -> None:
    calls = [
        answered("09:05", 10, talk=100, work_end="09:07"),  # ended 09:06:50, 10 s of wrap-up
        answered("09:40", 30),
        abandoned("10:20", "10:21"),
        CallFacts("support", SH, at("10:39"), None, None, None),  # waiting now: offered only
    ]
    s = day_figures(calls, NOW, minutes=15, services=[("support", SH), ("sales", "Europe/London")])["support"]
    assert (s["offered"], s["answered"], s["abandoned"], s["handled"]) == (4, 2, 1, 1)
    assert s["service_level"] == round(1 / 3, 4) and s["asa_seconds"] == 20.0 and s["aht_seconds"] == 110.0
    frame = s["intervals"]
    assert frame["minutes"] == 15 and frame["time_zone"] == SH
    assert frame["day_start"] == "2026-11-22T00:00:00+08:00"
    assert frame["current"] == 42  # 10:30-10:45
    assert [r["index"] for r in frame["rows"]] == [36, 38, 41]  # 09:00, 09:30, 10:15


def test_a_service_with_no_call_yet_is_listed_in_its_own_zone() -> None:
    sales = day_figures([], NOW, services=[("sales", "America/New_York")])["sales"]
    # 21:40 on the 21st in New York: that is the service's day.
    assert sales["intervals"]["day_start"] == "2026-11-21T00:00:00-05:00"
    assert sales["intervals"]["current"] == 43 and sales["intervals"]["rows"] == []
    assert sales["offered"] == 0 and sales["service_level"] is None


def test_an_unknown_zone_is_utc_and_bad_intervals_are_refused() -> None:
    s = day_figures([], NOW, services=[("x", "Mars/Olympus")])["x"]
    assert s["intervals"]["time_zone"] == "UTC"
    with pytest.raises(ValueError):
        day_figures([], NOW, minutes=7)
