"""A lead is dialled only inside its calling window in every zone its number can be in, never on a
do-not-call or registry list, never with a stale registry, and only with the consent the campaign needs."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from dialer.compliance import (
    Refusal,
    RegistryList,
    campaign_blocks,
    check,
    next_window_opening,
    window_open,
)
from dialer.model import CallingWindow, Campaign, ConsentPolicy, Lead

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday, southern-hemisphere summer time
AU_MOBILE = "+61412345678"  # eight zones, from Cocos (UTC+6:30) to Lord Howe (UTC+11 in November)
NEW_YORK = "+12125550123"
SHANGHAI = "+8613800138000"


def campaign(**changes: object) -> Campaign:
    fields: dict[str, object] = {
        "id": "renewals",
        "name": "Renewals",
        "service": "8001",
        "caller_id": "+12125550100",
        "window": CallingWindow(time(9), time(20), frozenset({1, 2, 3, 4, 5})),
    }
    fields.update(changes)
    return Campaign(**fields)  # type: ignore[arg-type]


def lead(phone: str, consent: bool | None = None) -> Lead:
    return Lead(7, "renewals", phone, consent=consent)


def verdict(
    c: Campaign,
    phone: str,
    at: datetime,
    *,
    dnc: frozenset[str] = frozenset(),
    registries: dict[str, RegistryList] | None = None,
    consent: bool | None = None,
) -> set[Refusal]:
    return set(check(c, lead(phone, consent), at, do_not_call=dnc, registries=registries or {}).refusals)


@pytest.mark.parametrize(
    ("utc", "allowed"),
    [
        (time(1, 0), False),  # Sydney 12:00 but Cocos 07:30
        (time(2, 30), True),  # Cocos opens at 09:00
        (time(8, 59), True),  # Lord Howe 19:59
        (time(9, 0), False),  # Lord Howe 20:00: closed
    ],
)
def test_window_must_be_open_in_every_zone_of_the_number(utc: time, allowed: bool) -> None:
    at = datetime.combine(MONDAY.date(), utc, tzinfo=UTC)
    refusals = verdict(campaign(), AU_MOBILE, at)
    assert (Refusal.OUTSIDE_WINDOW not in refusals) is allowed


def test_window_is_read_in_the_leads_local_time_and_weekdays() -> None:
    c = campaign()
    assert verdict(c, SHANGHAI, MONDAY.replace(hour=2)) == set()  # 10:00 in Shanghai
    assert verdict(c, NEW_YORK, MONDAY.replace(hour=2)) == {Refusal.OUTSIDE_WINDOW}  # 21:00 Sunday
    assert verdict(c, NEW_YORK, MONDAY.replace(hour=15)) == set()  # 10:00 Monday
    saturday = MONDAY - timedelta(days=2)
    assert verdict(c, NEW_YORK, saturday.replace(hour=15)) == {Refusal.OUTSIDE_WINDOW}


def test_unknown_time_zone_means_not_called() -> None:
    assert Refusal.UNKNOWN_TIME_ZONE in verdict(campaign(), "+80012345678", MONDAY.replace(hour=15))
    assert not window_open(CallingWindow(), (), MONDAY)
    assert not window_open(CallingWindow(), ("Mars/Olympus_Mons",), MONDAY)


def test_next_opening_is_the_first_instant_open_everywhere() -> None:
    zones = ("Australia/Lord_Howe", "Indian/Cocos", "Australia/Perth")
    opening = next_window_opening(campaign().window, zones, MONDAY.replace(hour=1))
    assert opening == MONDAY.replace(hour=2, minute=30)
    # Friday after Lord Howe's close: the next opening is Monday's, in Cocos.
    friday_late = MONDAY + timedelta(days=4, hours=10)
    assert next_window_opening(campaign().window, zones, friday_late) == MONDAY.replace(
        day=30, hour=2, minute=30
    )
    assert next_window_opening(campaign().window, (), MONDAY) is None


def test_do_not_call_and_registries_refuse_the_number() -> None:
    c = campaign(registries=frozenset({"national"}))
    at = MONDAY.replace(hour=15)
    fresh = {"national": RegistryList("national", date(2026, 11, 1), frozenset({NEW_YORK}))}
    assert verdict(c, NEW_YORK, at, registries=fresh) == {Refusal.ON_REGISTRY}
    assert verdict(c, NEW_YORK, at, registries=fresh, dnc=frozenset({NEW_YORK})) == {
        Refusal.ON_REGISTRY,
        Refusal.DO_NOT_CALL,
    }
    assert verdict(c, "+12125550199", at, registries=fresh) == set()


def test_a_stale_or_missing_registry_stops_the_whole_campaign() -> None:
    c = campaign(registries=frozenset({"national"}), registry_max_age=timedelta(days=31))
    at = MONDAY.replace(hour=15)
    stale = {"national": RegistryList("national", date(2026, 10, 22), frozenset())}  # 32 days
    assert campaign_blocks(c, stale, at) == (
        "registry list 'national' of 2026-10-22 is 32 days old (at most 31 allowed)",
    )
    assert verdict(c, "+12125550199", at, registries=stale) == {Refusal.CAMPAIGN_BLOCKED}
    assert campaign_blocks(c, {}, at) == ("registry list 'national' was never imported",)
    fresh = {"national": RegistryList("national", date(2026, 10, 23), frozenset())}  # 31 days
    assert campaign_blocks(c, fresh, at) == ()


@pytest.mark.parametrize(
    ("policy", "phone", "consent", "refusal"),
    [
        (ConsentPolicy.UNLESS_WITHDRAWN, NEW_YORK, None, None),
        (ConsentPolicy.UNLESS_WITHDRAWN, NEW_YORK, False, Refusal.CONSENT_WITHDRAWN),
        (ConsentPolicy.REQUIRED, NEW_YORK, None, Refusal.NO_CONSENT),
        (ConsentPolicy.REQUIRED, NEW_YORK, True, None),
        (ConsentPolicy.REQUIRED_FOR_MOBILE, SHANGHAI, None, Refusal.NO_CONSENT),  # a mobile
        (ConsentPolicy.REQUIRED_FOR_MOBILE, NEW_YORK, None, Refusal.NO_CONSENT),  # may be a mobile
        (ConsentPolicy.REQUIRED_FOR_MOBILE, "+862161234567", None, None),  # a Shanghai landline
        (ConsentPolicy.REQUIRED_FOR_MOBILE, SHANGHAI, False, Refusal.CONSENT_WITHDRAWN),
    ],
)
def test_consent(policy: ConsentPolicy, phone: str, consent: bool | None, refusal: Refusal | None) -> None:
    c = campaign(consent=policy, window=CallingWindow(time(0), time(23, 59), frozenset(range(1, 8))))
    assert verdict(c, phone, MONDAY.replace(hour=12), consent=consent) == ({refusal} if refusal else set())


def test_every_refusal_is_reported_with_its_detail() -> None:
    c = campaign(consent=ConsentPolicy.REQUIRED)
    v = check(c, lead(NEW_YORK), MONDAY.replace(hour=2), do_not_call={NEW_YORK}, registries={})
    assert not v.allowed
    assert set(v.refusals) == {Refusal.OUTSIDE_WINDOW, Refusal.DO_NOT_CALL, Refusal.NO_CONSENT}
    assert "America/New_York Sun 21:00" in v.detail
