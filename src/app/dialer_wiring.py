"""Wiring of the dialer: its storage port (``dialer.store.CampaignStore``) on the customer record's
campaign tables (``crm.campaigns``), and its HTTP routes.

The dialer and crm never import each other; this module maps one's records to the other's types.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime

from fastapi import APIRouter

from crm import campaigns as crm_campaigns
from crm import service as crm_service
from crm.db import SessionMaker
from cti.http import AuthDeps
from dialer.api import build_router
from dialer.leads import ImportResult
from dialer.model import Attempt, Campaign, Lead, Outcome, campaign_config, campaign_from
from dialer.store import (
    ImportSummary,
    LeadView,
    RegistryInfo,
    StoreConflict,
    StoredCampaign,
    StoreRefused,
    UnknownCampaign,
    UnknownRecord,
)


def _stored(row: crm_campaigns.CampaignRow) -> StoredCampaign:
    return StoredCampaign(
        campaign_from(row.id, row.name, row.service, row.caller_id, row.mode, row.config), row.active
    )


def _attempt(a: crm_campaigns.AttemptRecord) -> Attempt:
    return Attempt(a.lead_id, a.number, a.channel_id, a.dialled_at, Outcome(a.outcome), a.ended_at)


def _summary(record: crm_campaigns.ImportRecord) -> ImportSummary:
    return ImportSummary(
        record.id, record.campaign_id, record.filename, record.encoding, record.rows, record.added,
        record.merged, record.rejected,
    )  # fmt: skip


class CrmCampaignStore:
    """``dialer.store.CampaignStore`` on ``crm.campaigns``."""

    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sm = sessionmaker

    async def save_campaign(self, campaign: Campaign, active: bool, now: datetime) -> StoredCampaign:
        row = crm_campaigns.CampaignRow(
            campaign.id, campaign.name, campaign.service, campaign.caller_id, campaign.mode.value,
            campaign_config(campaign), active,
        )  # fmt: skip
        try:
            return _stored(await crm_campaigns.save_campaign(self._sm, row, now))
        except crm_service.InvalidInput as exc:
            raise StoreRefused(exc.message) from exc

    async def campaign(self, campaign_id: str) -> StoredCampaign:
        try:
            return _stored(await crm_campaigns.get_campaign(self._sm, campaign_id))
        except crm_service.NotFound as exc:
            raise UnknownCampaign(campaign_id) from exc

    async def campaigns(self) -> list[StoredCampaign]:
        return [_stored(row) for row in await crm_campaigns.list_campaigns(self._sm)]

    async def customers_by_phone(self, phones: Iterable[str]) -> Mapping[str, int]:
        return await crm_campaigns.customers_by_phone(self._sm, phones)

    async def add_leads(
        self, campaign_id: str, result: ImportResult, filename: str, by: str | None, now: datetime
    ) -> ImportSummary:
        leads = [
            crm_campaigns.NewLead(lead.phone, lead.name, lead.consent, lead.customer_id, dict(lead.fields))
            for lead in result.leads
        ]
        try:
            record = await crm_campaigns.add_leads(
                self._sm, campaign_id, leads, filename=filename, encoding=result.encoding, rows=result.rows,
                merged_in_file=result.merged, rejected=len(result.rejected),
                rejected_report=result.rejected_csv(), created_by=by, now=now,
            )  # fmt: skip
        except crm_service.NotFound as exc:
            raise UnknownCampaign(campaign_id) from exc
        except crm_service.InvalidInput as exc:
            raise StoreRefused(exc.message) from exc
        return _summary(record)

    async def rejected_report(self, import_id: int) -> tuple[ImportSummary, bytes]:
        try:
            record, report = await crm_campaigns.rejected_report(self._sm, import_id)
        except crm_service.NotFound as exc:
            raise UnknownRecord(f"lead import {import_id}") from exc
        return _summary(record), report

    async def leads(self, campaign_id: str, status: str | None, limit: int, after_id: int) -> list[LeadView]:
        rows = await crm_campaigns.list_leads(
            self._sm, campaign_id, status=status, limit=limit, after_id=after_id
        )
        return [
            LeadView(
                Lead(
                    r.id,
                    r.campaign_id,
                    r.phone_e164,
                    r.name,
                    r.consent,
                    r.customer_id,
                    {str(k): str(v) for k, v in r.fields.items()},
                ),
                r.status,
                r.next_attempt_at,
                r.done_reason,
            )
            for r in rows
        ]

    async def attempts(self, lead_id: int) -> Sequence[Attempt]:
        return [_attempt(a) for a in await crm_campaigns.lead_attempts(self._sm, lead_id)]

    async def add_do_not_call(
        self, number: str, reason: str, source: str, by: str | None, now: datetime
    ) -> None:
        try:
            await crm_campaigns.add_do_not_call(
                self._sm, number, reason=reason, source=source, added_by=by, now=now
            )
        except crm_service.InvalidInput as exc:
            raise StoreRefused(exc.message) from exc

    async def remove_do_not_call(self, number: str) -> bool:
        return await crm_campaigns.remove_do_not_call(self._sm, number)

    async def do_not_call_among(self, phones: Iterable[str]) -> frozenset[str]:
        return await crm_campaigns.do_not_call_among(self._sm, phones)

    async def replace_registry(
        self, name: str, published_on: date, numbers: Iterable[str], now: datetime
    ) -> RegistryInfo:
        try:
            r = await crm_campaigns.replace_registry(self._sm, name, published_on, numbers, now)
        except crm_service.InvalidInput as exc:
            raise StoreRefused(exc.message) from exc
        except crm_service.Conflict as exc:
            raise StoreConflict(str(exc)) from exc
        return RegistryInfo(r.name, r.published_on, r.imported_at, r.numbers)

    async def registries(self) -> list[RegistryInfo]:
        return [
            RegistryInfo(r.name, r.published_on, r.imported_at, r.numbers)
            for r in await crm_campaigns.list_registries(self._sm)
        ]

    async def registry_numbers_among(
        self, names: Iterable[str], phones: Iterable[str]
    ) -> Mapping[str, frozenset[str]]:
        return await crm_campaigns.registry_hits(self._sm, names, phones)

    async def lead(self, lead_id: int) -> LeadView:
        try:
            r = await crm_campaigns.get_lead(self._sm, lead_id)
        except crm_service.NotFound as exc:
            raise UnknownRecord(f"lead {lead_id}") from exc
        fields = {str(k): str(v) for k, v in r.fields.items()}
        lead = Lead(r.id, r.campaign_id, r.phone_e164, r.name, r.consent, r.customer_id, fields)
        return LeadView(lead, r.status, r.next_attempt_at, r.done_reason)

    async def begin_attempt(self, lead_id: int, channel_id: str, now: datetime) -> Attempt:
        try:
            return _attempt(await crm_campaigns.begin_attempt(self._sm, lead_id, channel_id, now))
        except crm_service.Conflict as exc:
            raise StoreConflict(str(exc)) from exc
        except crm_service.NotFound as exc:
            raise UnknownRecord(str(exc)) from exc

    async def finish_attempt(
        self, channel_id: str, outcome: Outcome, ended_at: datetime, detail: str
    ) -> Attempt:
        try:
            return _attempt(
                await crm_campaigns.finish_attempt(self._sm, channel_id, outcome.value, ended_at, detail)
            )
        except crm_service.Conflict as exc:
            raise StoreConflict(str(exc)) from exc
        except crm_service.NotFound as exc:
            raise UnknownRecord(str(exc)) from exc

    async def pending_attempts(self) -> list[Attempt]:
        return [_attempt(a) for a in await crm_campaigns.pending_attempts(self._sm)]

    async def schedule_lead(
        self, lead_id: int, status: str, next_attempt_at: datetime | None, reason: str | None, now: datetime
    ) -> None:
        try:
            await crm_campaigns.schedule_lead(
                self._sm, lead_id, status=status, next_attempt_at=next_attempt_at, reason=reason, now=now
            )
        except crm_service.Conflict as exc:
            raise StoreConflict(str(exc)) from exc

    async def campaign_attempts(self, campaign_id: str, since: datetime) -> list[Attempt]:
        return [_attempt(a) for a in await crm_campaigns.campaign_attempts(self._sm, campaign_id, since)]


def build_dialer_router(sessionmaker: SessionMaker, auth: AuthDeps) -> APIRouter:
    """The dialer's HTTP routes on the customer record."""
    return build_router(CrmCampaignStore(sessionmaker), auth)
