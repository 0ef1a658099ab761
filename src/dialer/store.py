"""The dialer's storage port: what it needs kept (campaigns, leads, attempts, do-not-call entries,
registry lists, imports), in its own types. The composition root implements it on the customer
record (``app.dialer_wiring``); the dialer never imports ``crm``.

Errors: :class:`UnknownCampaign`/:class:`UnknownRecord` for missing rows, :class:`StoreConflict`
for a change the stored state refuses (a second pending attempt on a lead, say), and
:class:`StoreRefused` for a value the store cannot keep.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from dialer.leads import ImportResult
from dialer.model import Attempt, Campaign, Lead, Outcome


class StoreError(Exception):
    pass


class UnknownCampaign(StoreError):
    pass


class UnknownRecord(StoreError):
    pass


class StoreConflict(StoreError):
    pass


class StoreRefused(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class StoredCampaign:
    campaign: Campaign
    active: bool


@dataclass(frozen=True, slots=True)
class LeadView:
    """A lead with where it stands: ``status`` new, dialling, scheduled or done."""

    lead: Lead
    status: str
    next_attempt_at: datetime | None
    done_reason: str | None


@dataclass(frozen=True, slots=True)
class ImportSummary:
    id: int
    campaign_id: str
    filename: str
    encoding: str
    rows: int
    added: int
    merged: int
    rejected: int


@dataclass(frozen=True, slots=True)
class RegistryInfo:
    name: str
    published_on: date
    imported_at: datetime
    numbers: int


class CampaignStore(Protocol):
    async def save_campaign(self, campaign: Campaign, active: bool, now: datetime) -> StoredCampaign: ...

    async def campaign(self, campaign_id: str) -> StoredCampaign: ...

    async def campaigns(self) -> list[StoredCampaign]: ...

    async def customers_by_phone(self, phones: Iterable[str]) -> Mapping[str, int]: ...

    async def add_leads(
        self, campaign_id: str, result: ImportResult, filename: str, by: str | None, now: datetime
    ) -> ImportSummary: ...

    async def rejected_report(self, import_id: int) -> tuple[ImportSummary, bytes]: ...

    async def leads(
        self, campaign_id: str, status: str | None, limit: int, after_id: int
    ) -> list[LeadView]: ...

    async def attempts(self, lead_id: int) -> Sequence[Attempt]: ...

    async def add_do_not_call(
        self, number: str, reason: str, source: str, by: str | None, now: datetime
    ) -> None: ...

    async def remove_do_not_call(self, number: str) -> bool: ...

    async def do_not_call_among(self, phones: Iterable[str]) -> frozenset[str]: ...

    async def replace_registry(
        self, name: str, published_on: date, numbers: Iterable[str], now: datetime
    ) -> RegistryInfo: ...

    async def registries(self) -> list[RegistryInfo]: ...

    async def registry_numbers_among(
        self, names: Iterable[str], phones: Iterable[str]
    ) -> Mapping[str, frozenset[str]]: ...

    async def lead(self, lead_id: int) -> LeadView: ...

    async def begin_attempt(self, lead_id: int, channel_id: str, now: datetime) -> Attempt:
        """Write a pending attempt before dialling; ``StoreConflict`` when the lead has a pending
        attempt or is done, or the ChannelId was used before."""
        ...

    async def finish_attempt(
        self, channel_id: str, outcome: Outcome, ended_at: datetime, detail: str
    ) -> Attempt: ...

    async def pending_attempts(self) -> list[Attempt]: ...

    async def schedule_lead(
        self, lead_id: int, status: str, next_attempt_at: datetime | None, reason: str | None, now: datetime
    ) -> None: ...

    async def campaign_attempts(self, campaign_id: str, since: datetime) -> list[Attempt]: ...

    async def due_leads(self, campaign_id: str, now: datetime, limit: int) -> list[LeadView]:
        """Leads the retry rules let be dialled now: new, or scheduled for ``now`` or earlier (at most
        ``limit``, the longest due first)."""
        ...

# --- campaign calls at the agent's desk: dispositions, preview holds, the lead's trail ----------


@dataclass(frozen=True, slots=True)
class DispositionView:
    """An agent's disposition of one attempt (by the attempt's ChannelId)."""

    channel_id: str
    code: str
    notes: str
    agent_id: str
    at: datetime
    next_step: str


@dataclass(frozen=True, slots=True)
class LeadEventView:
    """One entry of a lead's trail besides its attempts: ``disposition``, ``skipped``,
    ``do_not_call``, ``callback`` or ``refused`` (not dialled: compliance said no)."""

    at: datetime
    kind: str
    actor: str | None
    detail: str


class DeskStore(CampaignStore, Protocol):
    """What the agent-facing side of campaigns stores, beside :class:`CampaignStore`."""

    async def attempt_by_channel(self, channel_id: str) -> Attempt | None: ...

    async def dispositions(self, lead_id: int) -> Mapping[str, DispositionView]: ...

    async def lead_events(self, lead_id: int) -> list[LeadEventView]: ...

    async def add_lead_event(
        self, lead_id: int, kind: str, actor: str | None, detail: str, at: datetime
    ) -> None: ...

    async def dispose_attempt(
        self,
        channel_id: str,
        code: str,
        notes: str,
        agent_id: str,
        at: datetime,
        *,
        status: str,
        next_attempt_at: datetime | None,
        reason: str,
        callback: bool,
        callback_agent: str | None,
    ) -> DispositionView:
        """Raises ``StoreConflict`` while the attempt is pending or when it has a disposition."""
        ...

    async def lead_callback(self, lead_id: int) -> tuple[str | None, datetime] | None: ...

    async def hold_next_lead(
        self, campaign_id: str, agent_id: str, now: datetime, until: datetime, exclude: Iterable[int]
    ) -> LeadView | None: ...

    async def lead_hold(self, lead_id: int) -> tuple[str, datetime] | None: ...

    async def release_hold(
        self, lead_id: int, agent_id: str, next_attempt_at: datetime | None, now: datetime
    ) -> bool: ...

    async def close_lead(self, lead_id: int, reason: str, now: datetime) -> None: ...

    async def disposition_codes(self, campaign_id: str) -> list[Any] | None: ...

    async def save_disposition_codes(self, campaign_id: str, codes: list[Any], now: datetime) -> None: ...

    async def set_active(self, campaign_id: str, active: bool, now: datetime) -> StoredCampaign: ...


class PanelStore(Protocol):
    async def campaign_talk(self, campaign_id: str, since: datetime) -> Mapping[str, float]:
        """Seconds each agent talked on the campaign's calls that ended after ``since``."""
        ...
