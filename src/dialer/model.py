"""The dialer's pure types: campaigns, leads, dial attempts and the retry rules per outcome.

Nothing here does I/O or reads a clock: every rule that depends on time takes ``now``
(timezone-aware UTC). Values are frozen and validated on construction, so a campaign that exists
is a campaign that may run: a ring time under 15 seconds, an abandonment cap above 3 % or a retry
rule for an outcome that must never be retried are refused here, not discovered while dialling.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from types import MappingProxyType

MIN_RING_SECONDS = 15  # a lead must be given at least 15 s to answer (US TSR, UK Ofcom guidance)
MAX_ABANDONMENT_CAP = 0.03  # both rules cap abandoned calls at 3 % of live-answered calls
SAFE_HARBOR_SECONDS = 2.0  # a live answer with no agent within 2 s gets the message and is abandoned

_CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_DIGITS = re.compile(r"^[0-9]{1,32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def require_aware(now: datetime) -> None:
    """Refuse naive datetimes: every time in the dialer is an instant, never a wall-clock reading."""
    if now.tzinfo is None:
        raise ValueError("dialer times must be timezone-aware")


class DialMode(enum.StrEnum):
    PREVIEW = "preview"  # the agent sees the lead first and dials or skips
    PROGRESSIVE = "progressive"  # one call per ready agent, never more
    PREDICTIVE = "predictive"  # dials ahead of agents, paced to keep abandonment under the cap


class Outcome(enum.StrEnum):
    """How one dial attempt ended, as the network and the dialer saw it (not the agent's verdict).

    Values are stable: they are stored on every attempt (the audit trail).
    """

    PENDING = "pending"  # written before dialling; not known yet
    CONNECTED = "connected"  # a person answered and was connected to an agent
    ABANDONED = "abandoned"  # a person answered, no agent was free in time: safe-harbor message
    MACHINE = "machine"  # answering machine (AMD)
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    DISCONNECTED = "disconnected"  # number not in service: never dialled again
    FAILED = "failed"  # the network or the PBX failed the call (congestion, channel unavailable)
    UNKNOWN = "unknown"  # the platform lost track (restart, lost AMI link) and could not reconcile


LIVE_ANSWER_OUTCOMES = frozenset({Outcome.CONNECTED, Outcome.ABANDONED})
# Outcomes after which the number is not dialled again by any retry rule.
FINAL_OUTCOMES = frozenset({Outcome.CONNECTED, Outcome.DISCONNECTED})
RETRYABLE_OUTCOMES = frozenset(
    {Outcome.ABANDONED, Outcome.MACHINE, Outcome.BUSY, Outcome.NO_ANSWER, Outcome.FAILED}
)


class AbandonmentRule(enum.StrEnum):
    """Over which period abandoned calls are counted against live-answered calls.

    ``US_30_DAYS``: the US Telemarketing Sales Rule, per campaign over 30 days.
    ``UK_24_HOURS``: Ofcom's persistent-misuse policy, per campaign over 24 hours.
    """

    US_30_DAYS = "us_30_days"
    UK_24_HOURS = "uk_24_hours"

    @property
    def window(self) -> timedelta:
        return timedelta(days=30) if self is AbandonmentRule.US_30_DAYS else timedelta(hours=24)


class MachinePolicy(enum.StrEnum):
    """What happens to a call AMD classifies as an answering machine."""

    HANG_UP = "hang_up"
    LEAVE_MESSAGE = "leave_message"


class ConsentPolicy(enum.StrEnum):
    """Which leads a campaign may call, by their recorded consent.

    Whatever the policy, a lead whose consent is recorded as withdrawn is never called.
    ``UNLESS_WITHDRAWN``: any other lead. ``REQUIRED``: only leads with recorded consent.
    ``REQUIRED_FOR_MOBILE``: recorded consent for mobile numbers (automated calls to mobiles), any
    lead for the rest.
    """

    UNLESS_WITHDRAWN = "unless_withdrawn"
    REQUIRED = "required"
    REQUIRED_FOR_MOBILE = "required_for_mobile"


@dataclass(frozen=True, slots=True)
class RetryRule:
    """After ``outcome``, try again ``delay`` later, at most ``max_tries`` times for that outcome."""

    outcome: Outcome
    delay: timedelta
    max_tries: int

    def __post_init__(self) -> None:
        if self.outcome not in RETRYABLE_OUTCOMES:
            raise ValueError(f"{self.outcome.value} is never retried")
        if self.delay < timedelta(minutes=1):
            raise ValueError("a retry waits at least one minute")
        if not 0 <= self.max_tries <= 20:
            raise ValueError("max_tries must be 0..20")


DEFAULT_RETRIES: tuple[RetryRule, ...] = (
    RetryRule(Outcome.BUSY, timedelta(minutes=15), 3),
    RetryRule(Outcome.NO_ANSWER, timedelta(hours=2), 3),
    RetryRule(Outcome.MACHINE, timedelta(hours=4), 2),
    RetryRule(Outcome.ABANDONED, timedelta(hours=1), 2),
    RetryRule(Outcome.FAILED, timedelta(minutes=10), 2),
)


_WEEKDAYS = frozenset(range(7))


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """When a lead may be called, in the lead's own local time: ``start`` <= local time < ``end``
    on the given ISO weekdays (1 = Monday .. 7 = Sunday)."""

    start: time = time(9, 0)
    end: time = time(20, 0)
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5, 6})

    def __post_init__(self) -> None:
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("a calling window is in the lead's local time: no time zone on start/end")
        if not self.start < self.end:
            raise ValueError("a calling window starts before it ends (windows over midnight are refused)")
        if not self.weekdays or not self.weekdays <= frozenset(range(1, 8)):
            raise ValueError("weekdays are ISO numbers 1..7, at least one")

    def contains(self, local: datetime) -> bool:
        """Is this local wall-clock reading inside the window?"""
        return local.isoweekday() in self.weekdays and self.start <= local.time() < self.end


@dataclass(frozen=True, slots=True)
class Campaign:
    """An outbound campaign as a campaign manager configures it.

    ``service`` is the inbound service (DNIS) whose agents take the campaign's calls; ``caller_id``
    the number presented (E.164, required by law to be a number that can be called back).
    ``max_attempts`` bounds all attempts on one lead whatever the outcome. ``ring_seconds`` is how
    long a lead's phone rings (at least 15). ``abandonment_cap`` (at most 0.03) applies over the
    ``abandonment_rule``'s window. ``registry_max_age`` is how old an imported do-not-call registry
    list may be before the campaign stops (the US registry must be re-read every 31 days).
    """

    id: str
    name: str
    service: str
    caller_id: str
    mode: DialMode = DialMode.PROGRESSIVE
    window: CallingWindow = field(default_factory=CallingWindow)
    max_attempts: int = 6
    retries: tuple[RetryRule, ...] = DEFAULT_RETRIES
    ring_seconds: int = 25
    amd: bool = True
    machine_policy: MachinePolicy = MachinePolicy.HANG_UP
    abandonment_rule: AbandonmentRule = AbandonmentRule.US_30_DAYS
    abandonment_cap: float = MAX_ABANDONMENT_CAP
    consent: ConsentPolicy = ConsentPolicy.UNLESS_WITHDRAWN
    registries: frozenset[str] = frozenset()  # names of registry lists this campaign must honour
    registry_max_age: timedelta = timedelta(days=31)

    def __post_init__(self) -> None:
        object.__setattr__(self, "retries", tuple(self.retries))
        object.__setattr__(self, "registries", frozenset(self.registries))
        if not _CAMPAIGN_ID.match(self.id):
            raise ValueError(f"a campaign id is lower-case letters, digits, '-' or '_': {self.id!r}")
        if not self.name.strip():
            raise ValueError("a campaign needs a name")
        if not _DIGITS.match(self.service):
            raise ValueError(f"a service is its DNIS digits: {self.service!r}")
        if not _E164.match(self.caller_id):
            raise ValueError(f"the caller id must be an E.164 number: {self.caller_id!r}")
        if not 1 <= self.max_attempts <= 50:
            raise ValueError("max_attempts must be 1..50")
        if not MIN_RING_SECONDS <= self.ring_seconds <= 120:
            raise ValueError(f"ring_seconds must be {MIN_RING_SECONDS}..120")
        if not 0.0 <= self.abandonment_cap <= MAX_ABANDONMENT_CAP:
            raise ValueError(f"the abandonment cap must be 0..{MAX_ABANDONMENT_CAP}")
        seen = [r.outcome for r in self.retries]
        if len(seen) != len(set(seen)):
            raise ValueError("one retry rule per outcome")
        if self.registry_max_age <= timedelta(0):
            raise ValueError("registry_max_age must be positive")

    def retry_rule(self, outcome: Outcome) -> RetryRule | None:
        for rule in self.retries:
            if rule.outcome is outcome:
                return rule
        return None


@dataclass(frozen=True, slots=True)
class Lead:
    """A number to call for a campaign, with what the list said about it.

    ``phone`` is E.164 (normalised on import). ``consent`` is ``True`` (recorded consent), ``False``
    (withdrawn: never called) or ``None`` (nothing recorded). ``customer_id`` links an existing
    customer record when the import found one. ``fields`` keeps the list's other columns for the
    agent's screen.
    """

    id: int
    campaign_id: str
    phone: str
    name: str = ""
    consent: bool | None = None
    customer_id: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _E164.match(self.phone):
            raise ValueError(f"a lead's phone must be E.164: {self.phone!r}")
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One dial attempt: written (``PENDING``) before it is dialled, then given its outcome.

    ``channel_id`` is the ``ChannelId`` the Originate carries, chosen before dialling, so an
    attempt whose outcome was lost can be found again in the PBX instead of being dialled again.
    """

    lead_id: int
    number: int  # 1 for the first attempt on this lead
    channel_id: str
    dialled_at: datetime
    outcome: Outcome = Outcome.PENDING
    ended_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.dialled_at)
        if self.number < 1:
            raise ValueError("attempts are numbered from 1")
        if (self.outcome is Outcome.PENDING) != (self.ended_at is None):
            raise ValueError("an attempt has an end time exactly when it has an outcome")


class NextStepKind(enum.StrEnum):
    RETRY = "retry"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class NextStep:
    """What happens to a lead after an attempt: retried at ``at``, or done, with the reason."""

    kind: NextStepKind
    reason: str
    at: datetime | None = None


def next_step(campaign: Campaign, attempts: Sequence[Attempt], now: datetime) -> NextStep:
    """Apply the campaign's retry rules to a lead's attempts (oldest first; the last one has ended).

    A lead is done after a final outcome (connected, disconnected), after ``max_attempts``
    attempts, after an outcome with no retry rule, or once that outcome's ``max_tries`` are used;
    otherwise it is retried ``delay`` after the last attempt ended (never before ``now``).
    ``UNKNOWN`` (lost track of) is done too: a person may have been reached, so the lead is
    only dialled again by someone's decision, never automatically.
    """
    require_aware(now)
    if not attempts:
        return NextStep(NextStepKind.RETRY, "never dialled", now)
    last = attempts[-1]
    if last.outcome is Outcome.PENDING or last.ended_at is None:
        raise ValueError("the last attempt has not ended")
    if last.outcome in FINAL_OUTCOMES:
        return NextStep(NextStepKind.DONE, f"final outcome: {last.outcome.value}")
    if last.outcome is Outcome.UNKNOWN:
        return NextStep(NextStepKind.DONE, "outcome unknown after a loss of track: not redialled blindly")
    if len(attempts) >= campaign.max_attempts:
        return NextStep(NextStepKind.DONE, f"all {campaign.max_attempts} attempts used")
    rule = campaign.retry_rule(last.outcome)
    if rule is None:
        return NextStep(NextStepKind.DONE, f"no retry rule for {last.outcome.value}")
    tries = sum(1 for a in attempts if a.outcome is last.outcome)
    if tries > rule.max_tries:
        return NextStep(NextStepKind.DONE, f"{last.outcome.value}: {rule.max_tries} retries used")
    at = max(now, last.ended_at + rule.delay)
    return NextStep(NextStepKind.RETRY, f"{last.outcome.value}: retry {tries} of {rule.max_tries}", at)


def outcome_counts(attempts: Iterable[Attempt]) -> Mapping[Outcome, int]:
    counts: dict[Outcome, int] = {}
    for attempt in attempts:
        counts[attempt.outcome] = counts.get(attempt.outcome, 0) + 1
    return MappingProxyType(counts)


def campaign_config(campaign: Campaign) -> dict[str, object]:
    """A campaign's settings other than its identity, as plain JSON values (for storage)."""
    w = campaign.window
    return {
        "window": {
            "start": w.start.strftime("%H:%M"),
            "end": w.end.strftime("%H:%M"),
            "weekdays": sorted(w.weekdays),
        },
        "max_attempts": campaign.max_attempts,
        "retries": [
            {
                "outcome": r.outcome.value,
                "delay_minutes": r.delay.total_seconds() / 60,
                "max_tries": r.max_tries,
            }
            for r in campaign.retries
        ],
        "ring_seconds": campaign.ring_seconds,
        "amd": campaign.amd,
        "machine_policy": campaign.machine_policy.value,
        "abandonment_rule": campaign.abandonment_rule.value,
        "abandonment_cap": campaign.abandonment_cap,
        "consent": campaign.consent.value,
        "registries": sorted(campaign.registries),
        "registry_max_age_days": campaign.registry_max_age.days,
    }


def campaign_from(
    id: str, name: str, service: str, caller_id: str, mode: str, config: Mapping[str, object]
) -> Campaign:
    """The campaign stored by :func:`campaign_config` (validated again; raises ``ValueError``)."""
    try:
        window = config["window"]
        retries = config["retries"]
        if not isinstance(window, Mapping) or not isinstance(retries, list):
            raise ValueError("window and retries have the wrong shape")
        return Campaign(
            id=id,
            name=name,
            service=service,
            caller_id=caller_id,
            mode=DialMode(mode),
            window=CallingWindow(
                time.fromisoformat(str(window["start"])),
                time.fromisoformat(str(window["end"])),
                frozenset(int(d) for d in window["weekdays"]),
            ),
            max_attempts=int(str(config["max_attempts"])),
            retries=tuple(
                RetryRule(
                    Outcome(r["outcome"]), timedelta(minutes=float(r["delay_minutes"])), int(r["max_tries"])
                )
                for r in retries
            ),
            ring_seconds=int(str(config["ring_seconds"])),
            amd=bool(config["amd"]),
            machine_policy=MachinePolicy(str(config["machine_policy"])),
            abandonment_rule=AbandonmentRule(str(config["abandonment_rule"])),
            abandonment_cap=float(str(config["abandonment_cap"])),
            consent=ConsentPolicy(str(config["consent"])),
            registries=frozenset(str(n) for n in config["registries"]),  # type: ignore[attr-defined]
            registry_max_age=timedelta(days=int(str(config["registry_max_age_days"]))),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"stored campaign {id!r} is incomplete: {exc}") from exc
