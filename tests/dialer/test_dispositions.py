"""The agent's disposition of a campaign call becomes the lead's next step: done, a retry, a
callback at a time (for the agent or anyone), or the number on the do-not-call list."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from dialer.dispositions import (
    DEFAULT_CODES,
    Action,
    CallbackFor,
    Disposition,
    DispositionCode,
    DispositionRefused,
    StepKind,
    codes_from,
    codes_out,
    plan,
    validate_codes,
)
from dialer.model import Attempt, CallingWindow, Campaign, Lead, Outcome

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
SHANGHAI = "+8613800138000"


def campaign(**changes: object) -> Campaign:
    fields: dict[str, object] = {
        "id": "renewals",
        "name": "Renewals",
        "service": "8001",
        "caller_id": "+862161234567",
        "window": CallingWindow(time(9), time(20), frozenset({1, 2, 3, 4, 5})),
        "max_attempts": 3,
    }
    fields.update(changes)
    return Campaign(**fields)  # type: ignore[arg-type]


LEAD = Lead(7, "renewals", SHANGHAI, "刘洋")


def attempts(n: int) -> list[Attempt]:
    return [
        Attempt(7, i + 1, f"dial-{i}", NOW - timedelta(hours=n - i), Outcome.CONNECTED,
                NOW - timedelta(hours=n - i) + timedelta(minutes=2))
        for i in range(n)
    ]  # fmt: skip


def run(d: Disposition, *, c: Campaign | None = None, tried: int = 1, agent: str = "1001"):  # type: ignore[no-untyped-def]
    return plan(c or campaign(), DEFAULT_CODES, LEAD, attempts(tried), d, agent, NOW)


TOMORROW_10 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai
TOMORROW_23 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 23:00 in Shanghai


@pytest.mark.parametrize(
    ("disposition", "kind", "at", "callback", "callback_agent", "dnc"),
    [
        (Disposition("sale"), StepKind.DONE, None, False, None, False),
        (Disposition("not_interested"), StepKind.DONE, None, False, None, False),
        (Disposition("wrong_number"), StepKind.DONE, None, False, None, False),
        (Disposition("do_not_call", "别再打了"), StepKind.DONE, None, False, None, True),
        (Disposition("callback", at=TOMORROW_10, callback_for=CallbackFor.ME),
         StepKind.SCHEDULED, TOMORROW_10, True, "1001", False),
        (Disposition("callback", at=TOMORROW_10, callback_for=CallbackFor.ANYONE),
         StepKind.SCHEDULED, TOMORROW_10, True, None, False),
        (Disposition("retry_later"), StepKind.SCHEDULED, NOW + timedelta(minutes=120), False, None, False),
        (Disposition("retry_later", at=TOMORROW_10), StepKind.SCHEDULED, TOMORROW_10, False, None, False),
    ],
)  # fmt: skip
def test_each_default_code_gives_its_next_step(
    disposition: Disposition,
    kind: StepKind,
    at: datetime | None,
    callback: bool,
    callback_agent: str | None,
    dnc: bool,
) -> None:
    step = run(disposition)
    assert (step.kind, step.at, step.callback, step.callback_agent, step.do_not_call) == (
        kind, at, callback, callback_agent, dnc,
    )  # fmt: skip
    assert disposition.code in step.reason
    assert step.note == ""


def test_a_retry_is_bounded_by_the_campaigns_attempts_a_callback_is_not() -> None:
    retry = run(Disposition("retry_later"), tried=3)
    assert retry.kind is StepKind.DONE and "all 3 attempts used" in retry.reason
    callback = run(Disposition("callback", at=TOMORROW_10), tried=3)
    assert callback.kind is StepKind.SCHEDULED and callback.at == TOMORROW_10


def test_a_callback_outside_the_calling_window_is_booked_with_a_note_saying_when_it_is_dialled() -> None:
    step = run(Disposition("callback", at=TOMORROW_23))
    assert step.kind is StepKind.SCHEDULED and step.at == TOMORROW_23
    # Wednesday 09:00 in Shanghai is 01:00 UTC.
    assert step.note.endswith("dialled from 2026-11-25T09:00:00+08:00")


@pytest.mark.parametrize(
    ("disposition", "message"),
    [
        (Disposition("maybe"), "unknown disposition 'maybe'"),
        (Disposition("callback"), "a callback needs a time"),
        (Disposition("callback", at=NOW - timedelta(minutes=1)), "in the future"),
        (Disposition("callback", at=NOW + timedelta(days=91)), "within 90 days"),
        (Disposition("sale", notes="x" * 10_001), "at most 10000"),
        (Disposition("sale", notes="a\x00b"), "without NUL"),
    ],
)
def test_bad_dispositions_are_refused_with_the_reason(disposition: Disposition, message: str) -> None:
    with pytest.raises(DispositionRefused, match=message):
        run(disposition)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(Disposition("callback", at=datetime(2026, 11, 24, 10, 0)))


def test_campaign_codes_are_validated_and_round_trip_through_storage() -> None:
    codes = (
        DispositionCode("renewed", "已续保", Action.DONE, success=True),
        DispositionCode("later", "稍后", Action.RETRY, retry_minutes=30),
        DispositionCode("dnc", "勿扰", Action.DO_NOT_CALL),
    )
    assert codes_from(codes_out(codes)) == codes
    assert codes_from(None) == DEFAULT_CODES
    step = plan(campaign(), codes, LEAD, attempts(1), Disposition("later"), "1001", NOW)
    assert step.at == NOW + timedelta(minutes=30)
    with pytest.raises(ValueError, match="unique"):
        validate_codes(codes + (codes[0],))
    with pytest.raises(ValueError, match="do_not_call"):
        validate_codes(codes[:2])
    with pytest.raises(ValueError, match=r"1\.\.30"):
        validate_codes(())
    with pytest.raises(ValueError, match="lower-case"):
        DispositionCode("Sale!", "x", Action.DONE)
    with pytest.raises(ValueError, match="only a 'done' code"):
        DispositionCode("x", "x", Action.RETRY, success=True)
    with pytest.raises(ValueError, match="printable"):
        DispositionCode("x", "a\nb", Action.DONE)
