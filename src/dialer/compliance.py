"""May this lead be dialled now? Every legal and contractual check, in one pure function.

``check(campaign, lead, now, ...)`` answers with a :class:`Verdict`: allowed, or refused with every
reason that applies (a campaign manager fixing a list wants all of them, not the first). The
dialling loop calls it immediately before writing an attempt; nothing is dialled without an
allowing verdict.

Rules:

- **Calling window** in the lead's local time, over *every* time zone the number can be in
  (phonenumbers' time-zone data: a US area code can span two zones, a Brazilian mobile prefix
  several). The lead is callable only when the window is open in all of them. A number whose zone
  is unknown is not called.
- **Do-not-call**: the campaign's internal list and each registry list the campaign honours.
- **Registry freshness**: a registry list the campaign honours that is missing, or older than
  ``campaign.registry_max_age``, stops the whole campaign (:func:`campaign_blocks`), since the
  numbers added since then cannot be known.
- **Consent** by the campaign's :class:`ConsentPolicy`; withdrawn consent is never overridden.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cti.phone import NumberType, normalize, time_zones
from dialer.model import CallingWindow, Campaign, ConsentPolicy, Lead, require_aware


class Refusal(enum.StrEnum):
    """Why a lead may not be dialled now. Values are stable: stored and shown to users."""

    OUTSIDE_WINDOW = "outside_calling_window"
    UNKNOWN_TIME_ZONE = "unknown_time_zone"
    DO_NOT_CALL = "do_not_call"
    ON_REGISTRY = "on_registry"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    NO_CONSENT = "no_recorded_consent"
    CAMPAIGN_BLOCKED = "campaign_blocked"


@dataclass(frozen=True, slots=True)
class RegistryList:
    """An imported do-not-call registry (a national registry or a trade list) and its date.

    ``published_on`` is the date the registry issued this copy (not the import date): freshness is
    measured from it.
    """

    name: str
    published_on: date
    numbers: frozenset[str]

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a registry list needs a name")
        object.__setattr__(self, "numbers", frozenset(self.numbers))


@dataclass(frozen=True, slots=True)
class Verdict:
    refusals: tuple[Refusal, ...]
    detail: str

    @property
    def allowed(self) -> bool:
        return not self.refusals


def campaign_blocks(
    campaign: Campaign, registries: Mapping[str, RegistryList], now: datetime
) -> tuple[str, ...]:
    """Why the whole campaign must stop now (empty when it may run).

    A registry the campaign honours that was never imported, or whose copy is older than
    ``campaign.registry_max_age`` (measured from its publication date to today in UTC), blocks it.
    """
    require_aware(now)
    reasons: list[str] = []
    today = now.date()
    for name in sorted(campaign.registries):
        registry = registries.get(name)
        if registry is None:
            reasons.append(f"registry list {name!r} was never imported")
            continue
        age = today - registry.published_on
        if age > campaign.registry_max_age:
            reasons.append(
                f"registry list {name!r} of {registry.published_on.isoformat()} is {age.days} days old "
                f"(at most {campaign.registry_max_age.days} allowed)"
            )
    return tuple(reasons)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def window_open(window: CallingWindow, zones: Iterable[str], now: datetime) -> bool:
    """Is ``window`` open at ``now`` in every one of ``zones``? ``False`` when there are none or one
    is not a known time zone: unknown means not called."""
    require_aware(now)
    names = tuple(zones)
    if not names:
        return False
    for name in names:
        zone = _zone(name)
        if zone is None or not window.contains(now.astimezone(zone)):
            return False
    return True


def next_window_opening(
    window: CallingWindow, zones: Iterable[str], now: datetime, *, horizon: timedelta = timedelta(days=8)
) -> datetime | None:
    """The first instant at or after ``now`` when the window is open in every zone, or ``None`` when
    there is none within ``horizon`` (or a zone is unknown).

    The window opens in all zones at one of the instants where it opens in some zone (or at ``now``),
    so only those candidates are checked.
    """
    require_aware(now)
    names = tuple(zones)
    known = [z for z in (_zone(n) for n in names) if z is not None]
    if not names or len(known) != len(names):
        return None
    if window_open(window, names, now):
        return now
    candidates: list[datetime] = []
    for zone in known:
        local_today = now.astimezone(zone).date()
        for offset in range((horizon.days or 1) + 1):
            day = local_today + timedelta(days=offset)
            candidate = datetime.combine(day, window.start, tzinfo=zone)
            # A start inside a spring-forward gap does not exist; fold it to the real instant.
            candidate = candidate.astimezone(now.tzinfo).astimezone(zone)
            if now <= candidate <= now + horizon:
                candidates.append(candidate)
    for candidate in sorted(candidates):
        if window_open(window, names, candidate):
            return candidate
    return None


def lead_zones(lead: Lead) -> tuple[str, ...]:
    """The IANA time zones the lead's number can be in (``()`` when unknown)."""
    return time_zones(lead.phone)


def check(
    campaign: Campaign,
    lead: Lead,
    now: datetime,
    *,
    do_not_call: frozenset[str] | set[str],
    registries: Mapping[str, RegistryList],
) -> Verdict:
    """Every reason why ``lead`` may not be dialled for ``campaign`` at ``now`` (none: allowed).

    ``do_not_call`` is the internal list (E.164 numbers); ``registries`` the imported registry lists
    by name (only those the campaign honours are read).
    """
    require_aware(now)
    refusals: list[Refusal] = []
    details: list[str] = []

    blocks = campaign_blocks(campaign, registries, now)
    if blocks:
        refusals.append(Refusal.CAMPAIGN_BLOCKED)
        details.extend(blocks)

    zones = lead_zones(lead)
    if not zones:
        refusals.append(Refusal.UNKNOWN_TIME_ZONE)
        details.append(f"no time zone is known for {lead.phone}")
    elif not window_open(campaign.window, zones, now):
        refusals.append(Refusal.OUTSIDE_WINDOW)
        local = ", ".join(
            f"{z} {now.astimezone(zi).strftime('%a %H:%M')}" for z in zones if (zi := _zone(z)) is not None
        )
        details.append(
            f"outside {campaign.window.start:%H:%M}-{campaign.window.end:%H:%M} local time ({local})"
        )

    if lead.phone in do_not_call:
        refusals.append(Refusal.DO_NOT_CALL)
        details.append("on the internal do-not-call list")
    for name in sorted(campaign.registries):
        registry = registries.get(name)
        if registry is not None and lead.phone in registry.numbers:
            refusals.append(Refusal.ON_REGISTRY)
            details.append(f"on registry list {name!r}")

    if lead.consent is False:
        refusals.append(Refusal.CONSENT_WITHDRAWN)
        details.append("consent withdrawn")
    elif lead.consent is None and _needs_consent(campaign.consent, lead.phone):
        refusals.append(Refusal.NO_CONSENT)
        details.append(f"campaign requires recorded consent ({campaign.consent.value})")

    return Verdict(tuple(refusals), "; ".join(details) if details else "allowed")


def _needs_consent(policy: ConsentPolicy, phone: str) -> bool:
    if policy is ConsentPolicy.REQUIRED:
        return True
    if policy is ConsentPolicy.REQUIRED_FOR_MOBILE:
        kind = normalize(phone, "ZZ").number_type
        # A number that may be mobile is treated as mobile: the safe reading of the law.
        return kind in (NumberType.MOBILE, NumberType.FIXED_LINE_OR_MOBILE, NumberType.UNKNOWN)
    return False
