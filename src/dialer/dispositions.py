"""What the agent's disposition of a connected campaign call means for the lead: pure.

A campaign has disposition codes (its own, or :data:`DEFAULT_CODES`), each with an *action*:

- ``done``: the lead is finished (a sale, not interested, wrong number);
- ``retry``: dial again later, after the code's ``retry_minutes`` (or the time the agent gives),
  within the campaign's ``max_attempts``;
- ``callback``: the customer asked to be called at a time the agent gives, by this agent or by
  anyone; booked whatever attempts were used (the customer asked for it);
- ``do_not_call``: the number goes on the internal do-not-call list, with who and why, and the lead
  is finished.

A callback or retry time is *when the lead becomes due*, not a promise to ring then: the dialler
checks compliance (do-not-call, registries, consent, the calling window in the lead's time zones)
when it dials, as for any lead. :func:`plan` says so when the time is outside the window.

Nothing here does I/O or reads a clock: ``now`` is passed in (timezone-aware).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dialer.compliance import lead_zones, next_window_opening, window_open
from dialer.model import Attempt, Campaign, Lead, require_aware

_CODE = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_CODES = 30
MAX_NOTES = 10_000
MAX_CALLBACK_AHEAD = timedelta(days=90)  # a callback further out is a new campaign, not a callback


class Action(enum.StrEnum):
    DONE = "done"
    RETRY = "retry"
    CALLBACK = "callback"
    DO_NOT_CALL = "do_not_call"


class CallbackFor(enum.StrEnum):
    """Who makes a booked callback: the agent who booked it, or any agent of the campaign."""

    ME = "me"
    ANYONE = "anyone"


@dataclass(frozen=True, slots=True)
class DispositionCode:
    """One code an agent may choose. ``success`` marks a contact that reached the campaign's goal
    (a sale, a renewal) for the statistics; ``retry_minutes`` is the default delay of a ``retry``."""

    code: str
    label: str
    action: Action
    success: bool = False
    retry_minutes: int = 60

    def __post_init__(self) -> None:
        if not _CODE.match(self.code):
            raise ValueError(f"a disposition code is lower-case letters, digits, '_' or '-': {self.code!r}")
        if not self.label.strip() or len(self.label) > 100 or any(ord(c) < 32 for c in self.label):
            raise ValueError(f"disposition {self.code}: a label of 1..100 printable characters")
        if not 1 <= self.retry_minutes <= 60 * 24 * 30:
            raise ValueError(f"disposition {self.code}: retry_minutes must be 1..43200")
        if self.success and self.action is not Action.DONE:
            raise ValueError(f"disposition {self.code}: only a 'done' code can be a success")


DEFAULT_CODES: tuple[DispositionCode, ...] = (
    DispositionCode("sale", "Sale / success", Action.DONE, success=True),
    DispositionCode("not_interested", "Not interested", Action.DONE),
    DispositionCode("callback", "Call back at a time", Action.CALLBACK),
    DispositionCode("retry_later", "Try again later", Action.RETRY, retry_minutes=120),
    DispositionCode("wrong_number", "Wrong number", Action.DONE),
    DispositionCode("do_not_call", "Do not call", Action.DO_NOT_CALL),
)


def validate_codes(codes: Iterable[DispositionCode]) -> tuple[DispositionCode, ...]:
    """A campaign's codes: 1..30, unique, with at least one way to finish a lead (``done`` or
    ``do_not_call``) and a ``do_not_call`` code (a customer's request must always be recordable)."""
    items = tuple(codes)
    if not 1 <= len(items) <= MAX_CODES:
        raise ValueError(f"a campaign has 1..{MAX_CODES} disposition codes")
    names = [c.code for c in items]
    if len(names) != len(set(names)):
        raise ValueError("disposition codes must be unique")
    if not any(c.action is Action.DO_NOT_CALL for c in items):
        raise ValueError("a campaign needs a do_not_call code: a customer's request must be recordable")
    return items


def codes_from(raw: Sequence[Mapping[str, Any]] | None) -> tuple[DispositionCode, ...]:
    """Codes as stored (plain JSON objects), validated again; ``None`` gives the defaults."""
    if raw is None:
        return DEFAULT_CODES
    return validate_codes(
        DispositionCode(
            str(c["code"]),
            str(c["label"]),
            Action(str(c["action"])),
            bool(c.get("success", False)),
            int(c.get("retry_minutes", 60)),
        )
        for c in raw
    )


def codes_out(codes: Iterable[DispositionCode]) -> list[dict[str, Any]]:
    return [
        {"code": c.code, "label": c.label, "action": c.action.value, "success": c.success,
         "retry_minutes": c.retry_minutes}
        for c in codes
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Disposition:
    """What the agent chose: ``code``, ``notes``, and for a callback (or a retry at a given time)
    ``at`` and ``callback_for``."""

    code: str
    notes: str = ""
    at: datetime | None = None
    callback_for: CallbackFor = CallbackFor.ANYONE


class StepKind(enum.StrEnum):
    SCHEDULED = "scheduled"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class LeadPlan:
    """The lead's next step after a disposition.

    ``kind`` scheduled at ``at`` or done; ``reason`` in words (stored on the lead and the
    disposition); ``callback`` when a callback is booked, ``callback_agent`` its agent (``None``:
    anyone); ``do_not_call`` when the number goes on the internal list; ``note`` a warning for the
    agent (the time is outside the calling window: the lead becomes due then but is dialled only
    once the window opens).
    """

    code: DispositionCode
    kind: StepKind
    reason: str
    at: datetime | None = None
    callback: bool = False
    callback_agent: str | None = None
    do_not_call: bool = False
    note: str = ""


class DispositionRefused(ValueError):
    """The disposition cannot be applied as given; the message names what is wrong."""


def plan(
    campaign: Campaign,
    codes: Sequence[DispositionCode],
    lead: Lead,
    attempts: Sequence[Attempt],
    disposition: Disposition,
    agent_id: str,
    now: datetime,
) -> LeadPlan:
    """The next step of ``lead`` after ``agent_id``'s ``disposition`` (raises
    :class:`DispositionRefused` for an unknown code, a missing, past or too distant callback time,
    or notes over the limit)."""
    require_aware(now)
    code = next((c for c in codes if c.code == disposition.code), None)
    if code is None:
        raise DispositionRefused(
            f"unknown disposition {disposition.code!r} for campaign {campaign.id}: "
            f"one of {', '.join(c.code for c in codes)}"
        )
    if len(disposition.notes) > MAX_NOTES or "\x00" in disposition.notes:
        raise DispositionRefused(f"notes are at most {MAX_NOTES} characters, without NUL")
    at = disposition.at
    if at is not None:
        require_aware(at)
        if at <= now:
            raise DispositionRefused("the time must be in the future")
        if at - now > MAX_CALLBACK_AHEAD:
            raise DispositionRefused(f"the time must be within {MAX_CALLBACK_AHEAD.days} days")

    if code.action is Action.DONE:
        return LeadPlan(code, StepKind.DONE, f"{code.label} ({code.code})")
    if code.action is Action.DO_NOT_CALL:
        return LeadPlan(
            code, StepKind.DONE, f"do not call: asked during the call ({code.code})", do_not_call=True
        )
    if code.action is Action.CALLBACK:
        if at is None:
            raise DispositionRefused("a callback needs a time")
        agent = agent_id if disposition.callback_for is CallbackFor.ME else None
        who = f"agent {agent_id}" if agent else "any agent"
        return LeadPlan(
            code, StepKind.SCHEDULED, f"callback at {at.isoformat()} by {who} ({code.code})", at,
            callback=True, callback_agent=agent, note=_window_note(campaign, lead, at),
        )  # fmt: skip
    # RETRY: bounded by the campaign's attempts, unlike a callback the customer asked for.
    if len(attempts) >= campaign.max_attempts:
        return LeadPlan(code, StepKind.DONE, f"all {campaign.max_attempts} attempts used ({code.code})")
    when = at if at is not None else now + timedelta(minutes=code.retry_minutes)
    return LeadPlan(
        code, StepKind.SCHEDULED, f"retry at {when.isoformat()} ({code.code})", when,
        note=_window_note(campaign, lead, when),
    )  # fmt: skip


def _window_note(campaign: Campaign, lead: Lead, at: datetime) -> str:
    zones = lead_zones(lead)
    if window_open(campaign.window, zones, at):
        return ""
    opening = next_window_opening(campaign.window, zones, at)
    if opening is None:
        return "outside the calling window in the lead's time zone: it is not dialled until the window opens"
    return f"outside the calling window in the lead's time zone: dialled from {opening.isoformat()}"
