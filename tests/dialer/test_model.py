"""Campaigns refuse settings the law or the platform cannot run; retry rules per outcome, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from dialer.model import (
    Attempt,
    CallingWindow,
    Campaign,
    Lead,
    NextStepKind,
    Outcome,
    RetryRule,
    next_step,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def campaign(**changes: object) -> Campaign:
    fields: dict[str, object] = {
        "id": "renewals",
        "name": "Renewals",
        "service": "8001",
        "caller_id": "+12125550100",
        "max_attempts": 4,
    }
    fields.update(changes)
    return Campaign(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ring_seconds": 14}, "ring_seconds"),
        ({"abandonment_cap": 0.031}, "abandonment cap"),
        ({"caller_id": "2125550100"}, "E.164"),
        ({"service": "80 01"}, "DNIS"),
        ({"id": "Bad Id"}, "campaign id"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"retries": (RetryRule(Outcome.BUSY, timedelta(minutes=5), 1),) * 2}, "one retry rule"),
    ],
)
def test_campaign_refuses_what_cannot_run(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        campaign(**changes)


@pytest.mark.parametrize(
    "outcome", [Outcome.CONNECTED, Outcome.DISCONNECTED, Outcome.UNKNOWN, Outcome.PENDING]
)
def test_outcomes_that_are_never_retried_cannot_get_a_rule(outcome: Outcome) -> None:
    with pytest.raises(ValueError, match="never retried"):
        RetryRule(outcome, timedelta(hours=1), 1)


def test_calling_window_refuses_midnight_spans_and_bad_days() -> None:
    with pytest.raises(ValueError, match="starts before"):
        CallingWindow(time(20), time(9))
    with pytest.raises(ValueError, match="weekdays"):
        CallingWindow(weekdays=frozenset({0}))


def test_lead_needs_an_e164_number() -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        Lead(1, "renewals", "13800138000")


def ended(n: int, outcome: Outcome, minutes: int) -> Attempt:
    at = T0 + timedelta(minutes=minutes)
    return Attempt(1, n, f"dial-{n}", at, outcome, at + timedelta(seconds=25))


NOW = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("outcomes", "kind", "wait"),
    [
        ([Outcome.BUSY], NextStepKind.RETRY, timedelta(minutes=15)),
        ([Outcome.NO_ANSWER], NextStepKind.RETRY, timedelta(hours=2)),
        ([Outcome.MACHINE], NextStepKind.RETRY, timedelta(hours=4)),
        ([Outcome.CONNECTED], NextStepKind.DONE, None),
        ([Outcome.DISCONNECTED], NextStepKind.DONE, None),
        ([Outcome.UNKNOWN], NextStepKind.DONE, None),  # lost track: never redialled blindly
        ([Outcome.MACHINE, Outcome.MACHINE, Outcome.MACHINE], NextStepKind.DONE, None),  # 2 retries used
        ([Outcome.BUSY, Outcome.NO_ANSWER, Outcome.BUSY, Outcome.BUSY], NextStepKind.DONE, None),  # max 4
    ],
)
def test_next_step_follows_the_rule_for_the_last_outcome(
    outcomes: list[Outcome], kind: NextStepKind, wait: timedelta | None
) -> None:
    attempts = [ended(i + 1, o, i) for i, o in enumerate(outcomes)]
    step = next_step(campaign(), attempts, NOW)
    assert step.kind is kind, step.reason
    if wait is None:
        assert step.at is None
    else:
        assert step.at == max(NOW, attempts[-1].ended_at + wait)  # type: ignore[operator]


def test_a_retry_is_never_scheduled_in_the_past() -> None:
    attempts = [ended(1, Outcome.BUSY, 0)]
    later = T0 + timedelta(days=1)
    assert next_step(campaign(), attempts, later).at == later


def test_next_step_needs_the_last_attempt_ended_and_aware_times() -> None:
    pending = Attempt(1, 1, "dial-1", T0)
    with pytest.raises(ValueError, match="not ended"):
        next_step(campaign(), [pending], NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_step(campaign(), [], datetime(2026, 11, 23, 10, 0))
    with pytest.raises(ValueError, match="end time exactly"):
        Attempt(1, 1, "dial-1", T0, Outcome.BUSY)
