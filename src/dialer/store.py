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
from typing import Protocol

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
