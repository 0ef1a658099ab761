"""The abandonment rate is counted over the rule's window: 24 hours (UK) or 30 days (US)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dialer.abandonment import AbandonmentLedger
from dialer.model import AbandonmentRule

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_rate_is_abandoned_over_live_answered_in_the_window() -> None:
    ledger = AbandonmentLedger(AbandonmentRule.UK_24_HOURS, 0.03)
    for i in range(97):
        ledger.record(T0 + timedelta(seconds=i), abandoned=False)
    for i in range(3):
        ledger.record(T0 + timedelta(minutes=5, seconds=i), abandoned=True)
    f = ledger.figures(T0 + timedelta(hours=1))
    assert (f.answered, f.abandoned, f.rate) == (100, 3, 0.03)
    assert f.headroom == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("rule", "still_counted", "gone"),
    [
        (AbandonmentRule.UK_24_HOURS, timedelta(hours=23, minutes=59), timedelta(hours=24, minutes=2)),
        (AbandonmentRule.US_30_DAYS, timedelta(days=29, hours=23), timedelta(days=30, minutes=2)),
    ],
)
def test_calls_leave_the_window_after_its_length(
    rule: AbandonmentRule, still_counted: timedelta, gone: timedelta
) -> None:
    ledger = AbandonmentLedger(rule, 0.03)
    ledger.record(T0, abandoned=True)
    assert ledger.figures(T0 + still_counted).abandoned == 1
    later = ledger.figures(T0 + gone)
    assert (later.answered, later.abandoned, later.rate) == (0, 0, 0.0)


def test_ledger_refuses_naive_times() -> None:
    ledger = AbandonmentLedger(AbandonmentRule.UK_24_HOURS, 0.03)
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record(datetime(2026, 11, 23, 9, 0), abandoned=False)
