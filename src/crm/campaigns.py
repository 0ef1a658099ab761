"""Outbound campaigns on the customer record: campaigns, leads, dial attempts (the audit trail),
the do-not-call list, registry lists with their date, and lead imports with their rejected rows.

The dialer reaches these through a port the composition root builds from the functions here; it
never imports ``crm``. Like ``crm.service``, every function takes the session maker first, runs its
own transaction and returns frozen records, never ORM objects. The campaign's settings are stored as
the dialer validated them (``config``, a JSON object); this module checks only what the database
itself needs.

Attempts: ``begin_attempt`` writes the attempt (outcome ``pending``, with the ``ChannelId`` the
Originate will carry) and commits *before* anything is dialled; a lead with a pending attempt
cannot get a second one (:class:`Conflict`), so no number is dialled twice because of a lost
answer or a restart: ``pending_attempts`` lists what must be reconciled first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import SessionMaker
from crm.model import Base, CustomerPhone, Id, UTCDateTime
from crm.service import Conflict, InvalidInput, NotFound

LEAD_STATUSES: Final = ("new", "dialling", "scheduled", "done")
PENDING: Final = "pending"
MAX_REPORT_BYTES: Final = 20 * 1024 * 1024

_CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_OUTCOME = re.compile(r"^[a-z_]{1,16}$")
_REGISTRY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class DialerCampaign(Base):
    __tablename__ = "dialer_campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    service: Mapped[str] = mapped_column(String(32))
    caller_id: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DialerLead(Base):
    __tablename__ = "dialer_leads"
    __table_args__ = (
        UniqueConstraint("campaign_id", "phone_e164"),
        Index(
            "ix_dialer_leads_campaign_id_status_next_attempt_at", "campaign_id", "status", "next_attempt_at"
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("dialer_campaigns.id", ondelete="CASCADE")
    )
    phone_e164: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    consent: Mapped[bool | None] = mapped_column(Boolean)
    customer_id: Mapped[int | None] = mapped_column(Id, ForeignKey("customers.id", ondelete="SET NULL"))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DialerAttempt(Base):
    __tablename__ = "dialer_attempts"
    __table_args__ = (UniqueConstraint("lead_id", "number"), Index("ix_dialer_attempts_outcome", "outcome"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(Id, ForeignKey("dialer_leads.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    dialled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    detail: Mapped[str] = mapped_column(Text, default="")


class DoNotCallEntry(Base):
    __tablename__ = "dialer_do_not_call"

    e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))
    added_by: Mapped[str | None] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DncRegistry(Base):
    __tablename__ = "dialer_registries"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    published_on: Mapped[date] = mapped_column(Date)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    numbers: Mapped[int] = mapped_column(Integer)


class DncRegistryNumber(Base):
    __tablename__ = "dialer_registry_numbers"

    registry_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("dialer_registries.name", ondelete="CASCADE"), primary_key=True
    )
    e164: Mapped[str] = mapped_column(String(16), primary_key=True, index=True)


class LeadImport(Base):
    __tablename__ = "dialer_lead_imports"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("dialer_campaigns.id", ondelete="CASCADE")
    )
    filename: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(32))
    rows: Mapped[int] = mapped_column(Integer)
    added: Mapped[int] = mapped_column(Integer)
    merged: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[int] = mapped_column(Integer)
    rejected_report: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignRow:
    id: str
    name: str
    service: str
    caller_id: str
    mode: str
    config: Mapping[str, Any]
    active: bool = False


@dataclass(frozen=True, slots=True)
class NewLead:
    phone_e164: str
    name: str = ""
    consent: bool | None = None
    customer_id: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeadRecord:
    id: int
    campaign_id: str
    phone_e164: str
    name: str
    consent: bool | None
    customer_id: int | None
    fields: Mapping[str, Any]
    status: str
    next_attempt_at: datetime | None
    done_reason: str | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    lead_id: int
    number: int
    channel_id: str
    dialled_at: datetime
    outcome: str
    ended_at: datetime | None
    detail: str


@dataclass(frozen=True, slots=True)
class ImportRecord:
    id: int
    campaign_id: str
    filename: str
    encoding: str
    rows: int
    added: int
    merged: int
    rejected: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RegistryRecord:
    name: str
    published_on: date
    imported_at: datetime
    numbers: int


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise InvalidInput(("now",), "times must be timezone-aware")


def _campaign(row: DialerCampaign) -> CampaignRow:
    return CampaignRow(row.id, row.name, row.service, row.caller_id, row.mode, dict(row.config), row.active)


def _lead(row: DialerLead) -> LeadRecord:
    return LeadRecord(
        row.id, row.campaign_id, row.phone_e164, row.name, row.consent, row.customer_id,
        dict(row.fields), row.status, row.next_attempt_at, row.done_reason,
    )  # fmt: skip


def _attempt(row: DialerAttempt) -> AttemptRecord:
    return AttemptRecord(
        row.id, row.lead_id, row.number, row.channel_id, row.dialled_at, row.outcome, row.ended_at, row.detail
    )


# --- campaigns ----------------------------------------------------------------------------------


async def save_campaign(sm: SessionMaker, campaign: CampaignRow, now: datetime) -> CampaignRow:
    """Create or replace a campaign's settings (``active`` included)."""
    _require_aware(now)
    if not _CAMPAIGN_ID.match(campaign.id):
        raise InvalidInput(("id",), f"not a campaign id: {campaign.id!r}")
    async with sm() as session, session.begin():
        row = await session.get(DialerCampaign, campaign.id)
        if row is None:
            row = DialerCampaign(id=campaign.id, created_at=now)
            session.add(row)
        row.name, row.service, row.caller_id, row.mode = (
            campaign.name, campaign.service, campaign.caller_id, campaign.mode,
        )  # fmt: skip
        row.config, row.active, row.updated_at = dict(campaign.config), campaign.active, now
    return _campaign(row)


async def get_campaign(sm: SessionMaker, campaign_id: str) -> CampaignRow:
    async with sm() as session:
        row = await session.get(DialerCampaign, campaign_id)
        if row is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        return _campaign(row)


async def list_campaigns(sm: SessionMaker) -> list[CampaignRow]:
    async with sm() as session:
        rows = await session.scalars(select(DialerCampaign).order_by(DialerCampaign.id))
        return [_campaign(r) for r in rows]


# --- leads and imports --------------------------------------------------------------------------


async def customers_by_phone(sm: SessionMaker, phones: Iterable[str]) -> dict[str, int]:
    """The customer each number belongs to (the lowest customer id when several share it)."""
    wanted = sorted(set(phones))
    found: dict[str, int] = {}
    async with sm() as session:
        for start in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[start : start + 500]
            rows = await session.execute(
                select(CustomerPhone.e164, func.min(CustomerPhone.customer_id))
                .where(CustomerPhone.e164.in_(chunk))
                .group_by(CustomerPhone.e164)
            )
            found.update({e164: int(cid) for e164, cid in rows})
    return found


async def add_leads(
    sm: SessionMaker,
    campaign_id: str,
    leads: Sequence[NewLead],
    *,
    filename: str,
    encoding: str,
    rows: int,
    merged_in_file: int,
    rejected: int,
    rejected_report: bytes,
    created_by: str | None,
    now: datetime,
) -> ImportRecord:
    """Store one import: its leads (a number already in the campaign is merged into its lead:
    empty values filled, withdrawn consent kept) and its report, in one transaction."""
    _require_aware(now)
    if len(rejected_report) > MAX_REPORT_BYTES:
        raise InvalidInput(("rejected_report",), "the rejected-rows report is too large")
    for i, lead in enumerate(leads):
        if not _E164.match(lead.phone_e164):
            raise InvalidInput(("leads", i, "phone_e164"), f"not E.164: {lead.phone_e164!r}")
    added = merged = 0
    async with sm() as session, session.begin():
        if await session.get(DialerCampaign, campaign_id) is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        existing: dict[str, DialerLead] = {}
        phones = [lead.phone_e164 for lead in leads]
        for start in range(0, len(phones), 500):
            found = await session.scalars(
                select(DialerLead).where(
                    DialerLead.campaign_id == campaign_id,
                    DialerLead.phone_e164.in_(phones[start : start + 500]),
                )
            )
            existing.update({row.phone_e164: row for row in found})
        for lead in leads:
            row = existing.get(lead.phone_e164)
            if row is None:
                row = DialerLead(
                    campaign_id=campaign_id, phone_e164=lead.phone_e164, name=lead.name[:200],
                    consent=lead.consent, customer_id=lead.customer_id, fields=dict(lead.fields),
                    status="new", next_attempt_at=None, done_reason=None, created_at=now, updated_at=now,
                )  # fmt: skip
                session.add(row)
                existing[lead.phone_e164] = row
                added += 1
                continue
            merged += 1
            row.name = row.name or lead.name[:200]
            if lead.consent is False or row.consent is None:
                row.consent = False if lead.consent is False else (row.consent or lead.consent)
            row.customer_id = row.customer_id or lead.customer_id
            row.fields = {
                **{k: v for k, v in lead.fields.items() if v},
                **{k: v for k, v in row.fields.items() if v},
            }
            row.updated_at = now
        record = LeadImport(
            campaign_id=campaign_id, filename=filename[:500], encoding=encoding, rows=rows, added=added,
            merged=merged + merged_in_file, rejected=rejected, rejected_report=rejected_report,
            created_by=created_by, created_at=now,
        )  # fmt: skip
        session.add(record)
    return ImportRecord(
        record.id, campaign_id, record.filename, encoding, rows, added, record.merged, rejected, now
    )


async def rejected_report(sm: SessionMaker, import_id: int) -> tuple[ImportRecord, bytes]:
    async with sm() as session:
        row = await session.get(LeadImport, import_id)
        if row is None:
            raise NotFound(f"no lead import {import_id}")
        record = ImportRecord(
            row.id, row.campaign_id, row.filename, row.encoding, row.rows, row.added, row.merged,
            row.rejected, row.created_at,
        )  # fmt: skip
        return record, bytes(row.rejected_report)


async def list_leads(
    sm: SessionMaker, campaign_id: str, *, status: str | None = None, limit: int = 100, after_id: int = 0
) -> list[LeadRecord]:
    if status is not None and status not in LEAD_STATUSES:
        raise InvalidInput(("status",), f"status must be one of {LEAD_STATUSES}")
    query = select(DialerLead).where(DialerLead.campaign_id == campaign_id, DialerLead.id > after_id)
    if status is not None:
        query = query.where(DialerLead.status == status)
    async with sm() as session:
        rows = await session.scalars(query.order_by(DialerLead.id).limit(max(1, min(limit, 1000))))
        return [_lead(r) for r in rows]


async def due_leads(sm: SessionMaker, campaign_id: str, now: datetime, limit: int) -> list[LeadRecord]:
    """Leads that may be dialled now by the retry rules: new, or scheduled for ``now`` or earlier."""
    _require_aware(now)
    query = (
        select(DialerLead)
        .where(
            DialerLead.campaign_id == campaign_id,
            (DialerLead.status == "new")
            | ((DialerLead.status == "scheduled") & (DialerLead.next_attempt_at <= now)),
        )
        .order_by(DialerLead.next_attempt_at.is_not(None), DialerLead.next_attempt_at, DialerLead.id)
        .limit(max(1, min(limit, 1000)))
    )
    async with sm() as session:
        return [_lead(r) for r in await session.scalars(query)]


async def schedule_lead(
    sm: SessionMaker, lead_id: int, *, status: str, next_attempt_at: datetime | None, reason: str | None,
    now: datetime,
) -> LeadRecord:  # fmt: skip
    """Set a lead's next step (the dialer's retry rules decided it). Refused while an attempt on
    the lead is pending: its outcome must be written first."""
    _require_aware(now)
    if status not in LEAD_STATUSES or status == "dialling":
        raise InvalidInput(("status",), "status must be new, scheduled or done")
    if (status == "scheduled") != (next_attempt_at is not None):
        raise InvalidInput(("next_attempt_at",), "a scheduled lead needs a time, others none")
    async with sm() as session, session.begin():
        row = await session.get(DialerLead, lead_id)
        if row is None:
            raise NotFound(f"no lead {lead_id}")
        if row.status == "dialling":
            raise Conflict(f"lead {lead_id} has an attempt in progress")
        row.status, row.next_attempt_at, row.done_reason, row.updated_at = (
            status,
            next_attempt_at,
            reason,
            now,
        )
    return _lead(row)


# --- attempts: the audit trail ------------------------------------------------------------------


async def begin_attempt(sm: SessionMaker, lead_id: int, channel_id: str, now: datetime) -> AttemptRecord:
    """Write a pending attempt for ``lead_id`` before it is dialled (commits before returning).

    Raises :class:`Conflict` when the lead already has a pending attempt or is done, or when the
    ``channel_id`` was used before.
    """
    _require_aware(now)
    if not _CHANNEL_ID.match(channel_id):
        raise InvalidInput(("channel_id",), f"not a channel id: {channel_id!r}")
    try:
        async with sm() as session, session.begin():
            lead = await session.get(DialerLead, lead_id, with_for_update=True)
            if lead is None:
                raise NotFound(f"no lead {lead_id}")
            if lead.status in ("dialling", "done"):
                raise Conflict(f"lead {lead_id} is {lead.status}: not dialled again")
            count = await session.scalar(select(func.count()).where(DialerAttempt.lead_id == lead_id))
            row = DialerAttempt(
                lead_id=lead_id, number=int(count or 0) + 1, channel_id=channel_id, dialled_at=now,
                outcome=PENDING, ended_at=None, detail="",
            )  # fmt: skip
            session.add(row)
            lead.status, lead.next_attempt_at, lead.updated_at = "dialling", None, now
    except IntegrityError as exc:
        raise Conflict(f"attempt for lead {lead_id} not written: {exc.orig}") from exc
    return _attempt(row)


async def finish_attempt(
    sm: SessionMaker, channel_id: str, outcome: str, ended_at: datetime, detail: str = ""
) -> AttemptRecord:
    """Give a pending attempt its outcome (once). The lead leaves ``dialling``: it is ``scheduled``
    or ``done`` only when the dialer's retry rules say so (``schedule_lead``); until then ``new``."""
    _require_aware(ended_at)
    if not _OUTCOME.match(outcome) or outcome == PENDING:
        raise InvalidInput(("outcome",), f"not an outcome: {outcome!r}")
    async with sm() as session, session.begin():
        row = await session.scalar(
            select(DialerAttempt).where(DialerAttempt.channel_id == channel_id).with_for_update()
        )
        if row is None:
            raise NotFound(f"no attempt with channel id {channel_id!r}")
        if row.outcome != PENDING:
            raise Conflict(f"attempt {channel_id} already ended: {row.outcome}")
        row.outcome, row.ended_at, row.detail = outcome, ended_at, detail[:2000]
        lead = await session.get(DialerLead, row.lead_id)
        if lead is not None and lead.status == "dialling":
            lead.status, lead.updated_at = "new", ended_at
    return _attempt(row)


async def pending_attempts(sm: SessionMaker) -> list[AttemptRecord]:
    """Attempts written but never given an outcome: to reconcile (by ChannelId) before dialling."""
    async with sm() as session:
        rows = await session.scalars(
            select(DialerAttempt).where(DialerAttempt.outcome == PENDING).order_by(DialerAttempt.id)
        )
        return [_attempt(r) for r in rows]


async def lead_attempts(sm: SessionMaker, lead_id: int) -> list[AttemptRecord]:
    async with sm() as session:
        rows = await session.scalars(
            select(DialerAttempt).where(DialerAttempt.lead_id == lead_id).order_by(DialerAttempt.number)
        )
        return [_attempt(r) for r in rows]


# --- do-not-call --------------------------------------------------------------------------------


async def add_do_not_call(
    sm: SessionMaker, e164: str, *, reason: str, source: str, added_by: str | None, now: datetime
) -> None:
    """Put a number on the internal list (idempotent: the first entry's reason is kept)."""
    _require_aware(now)
    if not _E164.match(e164):
        raise InvalidInput(("number",), f"not E.164: {e164!r}")
    try:
        async with sm() as session, session.begin():
            if await session.get(DoNotCallEntry, e164) is None:
                session.add(
                    DoNotCallEntry(
                        e164=e164, reason=reason[:500], source=source[:32], added_by=added_by, added_at=now
                    )
                )
    except IntegrityError:
        return  # added by someone else meanwhile: the number is on the list either way


async def remove_do_not_call(sm: SessionMaker, e164: str) -> bool:
    async with sm() as session, session.begin():
        result = await session.execute(delete(DoNotCallEntry).where(DoNotCallEntry.e164 == e164))
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def do_not_call_among(sm: SessionMaker, phones: Iterable[str]) -> frozenset[str]:
    wanted = sorted(set(phones))
    found: set[str] = set()
    async with sm() as session:
        for start in range(0, len(wanted), 500):
            found.update(
                await session.scalars(
                    select(DoNotCallEntry.e164).where(DoNotCallEntry.e164.in_(wanted[start : start + 500]))
                )
            )
    return frozenset(found)


# --- registry lists -----------------------------------------------------------------------------


async def replace_registry(
    sm: SessionMaker, name: str, published_on: date, numbers: Iterable[str], now: datetime
) -> RegistryRecord:
    """Replace a registry list with a new copy (its numbers and publication date) in one transaction."""
    _require_aware(now)
    if not _REGISTRY.match(name):
        raise InvalidInput(("name",), f"not a registry name: {name!r}")
    unique = sorted(set(numbers))
    for e164 in unique:
        if not _E164.match(e164):
            raise InvalidInput(("numbers",), f"not E.164: {e164!r}")
    async with sm() as session, session.begin():
        await session.execute(delete(DncRegistryNumber).where(DncRegistryNumber.registry_name == name))
        row = await session.get(DncRegistry, name)
        if row is None:
            row = DncRegistry(name=name)
            session.add(row)
        row.published_on, row.imported_at, row.numbers = published_on, now, len(unique)
        await session.flush()
        session.add_all(DncRegistryNumber(registry_name=name, e164=e164) for e164 in unique)
    return RegistryRecord(name, published_on, now, len(unique))


async def list_registries(sm: SessionMaker) -> list[RegistryRecord]:
    async with sm() as session:
        rows = await session.scalars(select(DncRegistry).order_by(DncRegistry.name))
        return [RegistryRecord(r.name, r.published_on, r.imported_at, r.numbers) for r in rows]


async def registry_hits(
    sm: SessionMaker, names: Iterable[str], phones: Iterable[str]
) -> dict[str, frozenset[str]]:
    """For each registry in ``names``, which of ``phones`` it lists."""
    wanted = sorted(set(phones))
    hits: dict[str, set[str]] = {name: set() for name in names}
    if not hits:
        return {}
    async with sm() as session:
        for start in range(0, len(wanted), 500):
            rows = await session.execute(
                select(DncRegistryNumber.registry_name, DncRegistryNumber.e164).where(
                    DncRegistryNumber.registry_name.in_(list(hits)),
                    DncRegistryNumber.e164.in_(wanted[start : start + 500]),
                )
            )
            for registry, e164 in rows:
                hits[registry].add(e164)
    return {name: frozenset(found) for name, found in hits.items()}


async def get_lead(sm: SessionMaker, lead_id: int) -> LeadRecord:
    async with sm() as session:
        row = await session.get(DialerLead, lead_id)
        if row is None:
            raise NotFound(f"no lead {lead_id}")
        return _lead(row)


async def campaign_attempts(sm: SessionMaker, campaign_id: str, since: datetime) -> list[AttemptRecord]:
    """The campaign's attempts dialled after ``since``, plus any still pending, oldest first."""
    _require_aware(since)
    query = (
        select(DialerAttempt)
        .join(DialerLead, DialerLead.id == DialerAttempt.lead_id)
        .where(
            DialerLead.campaign_id == campaign_id,
            (DialerAttempt.dialled_at > since) | (DialerAttempt.outcome == PENDING),
        )
        .order_by(DialerAttempt.id)
    )
    async with sm() as session:
        return [_attempt(r) for r in await session.scalars(query)]


# --- campaign calls at the agent's desk (migration 0006o) ----------------------------------------
#
# Dispositions of attempts, the lead's event trail, preview holds, callbacks for an agent and each
# campaign's disposition codes. New tables only: the tables above are not altered.

_AGENT = re.compile(r"^[0-9]{1,32}$")
_CODE = re.compile(r"^[a-z0-9_-]{1,64}$")
EVENT_KINDS: Final = ("disposition", "skipped", "do_not_call", "callback", "refused")


class AttemptDisposition(Base):
    __tablename__ = "dialer_dispositions"

    attempt_id: Mapped[int] = mapped_column(
        Id, ForeignKey("dialer_attempts.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str] = mapped_column(Text, default="")
    agent_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_step: Mapped[str] = mapped_column(Text, default="")


class LeadEvent(Base):
    __tablename__ = "dialer_lead_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(Id, ForeignKey("dialer_leads.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class LeadHold(Base):
    """A lead shown to one agent in preview: nobody else gets it until ``until``."""

    __tablename__ = "dialer_lead_holds"

    lead_id: Mapped[int] = mapped_column(
        Id, ForeignKey("dialer_leads.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[str] = mapped_column(String(32))
    until: Mapped[datetime] = mapped_column(UTCDateTime())


class LeadCallback(Base):
    """A callback the customer asked for: at ``at``, for ``agent_id`` (``None``: anyone)."""

    __tablename__ = "dialer_lead_callbacks"

    lead_id: Mapped[int] = mapped_column(
        Id, ForeignKey("dialer_leads.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    booked_by: Mapped[str] = mapped_column(String(64))


class CampaignDispositions(Base):
    __tablename__ = "dialer_campaign_dispositions"

    campaign_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("dialer_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    codes: Mapped[list[Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class DispositionRecord:
    attempt_id: int
    code: str
    notes: str
    agent_id: str
    at: datetime
    next_step: str


@dataclass(frozen=True, slots=True)
class LeadEventRecord:
    id: int
    lead_id: int
    at: datetime
    kind: str
    actor: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    lead_id: int
    agent_id: str | None
    at: datetime
    booked_by: str


def _disposition(row: AttemptDisposition) -> DispositionRecord:
    return DispositionRecord(row.attempt_id, row.code, row.notes, row.agent_id, row.at, row.next_step)


def _event(row: LeadEvent) -> LeadEventRecord:
    return LeadEventRecord(row.id, row.lead_id, row.at, row.kind, row.actor, row.detail)


async def attempt_by_channel(sm: SessionMaker, channel_id: str) -> AttemptRecord | None:
    """The attempt whose Originate carried ``channel_id`` (a campaign call's Linkedid), if any."""
    if not _CHANNEL_ID.match(channel_id):
        return None
    async with sm() as session:
        row = await session.scalar(select(DialerAttempt).where(DialerAttempt.channel_id == channel_id))
        return None if row is None else _attempt(row)


async def lead_dispositions(sm: SessionMaker, lead_id: int) -> dict[int, DispositionRecord]:
    """The dispositions of a lead's attempts, by attempt id."""
    async with sm() as session:
        rows = await session.scalars(
            select(AttemptDisposition)
            .join(DialerAttempt, DialerAttempt.id == AttemptDisposition.attempt_id)
            .where(DialerAttempt.lead_id == lead_id)
        )
        return {r.attempt_id: _disposition(r) for r in rows}


async def lead_events(sm: SessionMaker, lead_id: int) -> list[LeadEventRecord]:
    async with sm() as session:
        rows = await session.scalars(
            select(LeadEvent).where(LeadEvent.lead_id == lead_id).order_by(LeadEvent.id)
        )
        return [_event(r) for r in rows]


async def add_lead_event(
    sm: SessionMaker, lead_id: int, *, kind: str, actor: str | None, detail: str, at: datetime
) -> None:
    _require_aware(at)
    if kind not in EVENT_KINDS:
        raise InvalidInput(("kind",), f"kind must be one of {EVENT_KINDS}")
    async with sm() as session, session.begin():
        session.add(LeadEvent(lead_id=lead_id, at=at, kind=kind, actor=actor, detail=detail[:2000]))


async def dispose_attempt(
    sm: SessionMaker,
    channel_id: str,
    *,
    code: str,
    notes: str,
    agent_id: str,
    at: datetime,
    status: str,
    next_attempt_at: datetime | None,
    reason: str,
    callback_agent: str | None = None,
    callback: bool = False,
) -> DispositionRecord:
    """Store the agent's disposition of an ended attempt and the lead's next step, in one
    transaction: the disposition (once per attempt), the lead's status and time, the callback (for
    ``callback_agent`` or anyone) or none, and a ``disposition`` event on the lead's trail.

    :class:`Conflict` when the attempt is still pending (its outcome comes first) or already has a
    disposition; :class:`NotFound` for an unknown ChannelId.
    """
    _require_aware(at)
    if not _CODE.match(code):
        raise InvalidInput(("disposition",), f"not a disposition code: {code!r}")
    if status not in ("scheduled", "done") or (status == "scheduled") != (next_attempt_at is not None):
        raise InvalidInput(("status",), "a disposition schedules the lead at a time or closes it")
    if callback_agent is not None and not _AGENT.match(callback_agent):
        raise InvalidInput(("callback_agent",), "an agent id is digits")
    try:
        async with sm() as session, session.begin():
            attempt = await session.scalar(
                select(DialerAttempt).where(DialerAttempt.channel_id == channel_id).with_for_update()
            )
            if attempt is None:
                raise NotFound(f"no attempt with channel id {channel_id!r}")
            if attempt.outcome == PENDING:
                raise Conflict("the call's outcome is not written yet: dispose of it once it has ended")
            if await session.get(AttemptDisposition, attempt.id) is not None:
                raise Conflict(f"attempt {channel_id} already has a disposition")
            lead = await session.get(DialerLead, attempt.lead_id, with_for_update=True)
            if lead is None:
                raise NotFound(f"no lead {attempt.lead_id}")
            if lead.status == "dialling":
                raise Conflict(f"lead {lead.id} has an attempt in progress")
            row = AttemptDisposition(
                attempt_id=attempt.id, code=code, notes=notes[:10_000], agent_id=agent_id, at=at,
                next_step=reason[:2000],
            )  # fmt: skip
            session.add(row)
            lead.status, lead.next_attempt_at, lead.done_reason, lead.updated_at = (
                status, next_attempt_at, reason[:2000] if status == "done" else None, at,
            )  # fmt: skip
            existing = await session.get(LeadCallback, lead.id)
            if existing is not None:
                await session.delete(existing)
            if callback and next_attempt_at is not None:
                session.add(
                    LeadCallback(
                        lead_id=lead.id, agent_id=callback_agent, at=next_attempt_at, booked_by=agent_id
                    )
                )
            session.add(
                LeadEvent(lead_id=lead.id, at=at, kind="disposition", actor=agent_id,
                          detail=f"{code}: {reason}"[:2000])
            )  # fmt: skip
    except IntegrityError as exc:
        raise Conflict(f"disposition of {channel_id} not written: {exc.orig}") from exc
    return _disposition(row)


async def lead_callback(sm: SessionMaker, lead_id: int) -> CallbackRecord | None:
    async with sm() as session:
        row = await session.get(LeadCallback, lead_id)
        return None if row is None else CallbackRecord(row.lead_id, row.agent_id, row.at, row.booked_by)


def _hold_insert(dialect: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def hold_next_lead(
    sm: SessionMaker,
    campaign_id: str,
    agent_id: str,
    *,
    now: datetime,
    until: datetime,
    exclude: Iterable[int] = (),
) -> LeadRecord | None:
    """Hold the campaign's next due lead for ``agent_id`` (preview) until ``until``, or ``None``.

    Due: new, or scheduled for ``now`` or earlier; not held by another agent; not a callback booked
    for another agent. Callbacks booked for this agent come first, then the earliest due. The hold
    is one row per lead written with an insert-or-update that succeeds only when no other agent's
    hold is in force, so two agents asking at once never get the same lead (each checks the row the
    other just wrote, not a snapshot).
    """
    _require_aware(now)
    if not _AGENT.match(agent_id):
        raise InvalidInput(("agent_id",), "an agent id is digits")
    skipped = set(exclude)
    mine = LeadCallback.agent_id == agent_id
    query = (
        select(DialerLead)
        .outerjoin(LeadCallback, LeadCallback.lead_id == DialerLead.id)
        .outerjoin(LeadHold, LeadHold.lead_id == DialerLead.id)
        .where(
            DialerLead.campaign_id == campaign_id,
            (DialerLead.status == "new")
            | ((DialerLead.status == "scheduled") & (DialerLead.next_attempt_at <= now)),
            LeadCallback.agent_id.is_(None) | mine,
            LeadHold.lead_id.is_(None) | (LeadHold.until <= now) | (LeadHold.agent_id == agent_id),
        )
        .order_by(mine.is_not(True), DialerLead.next_attempt_at.is_not(None), DialerLead.next_attempt_at,
                  DialerLead.id)
        .limit(20)
    )  # fmt: skip
    async with sm() as session:
        candidates = [r for r in await session.scalars(query) if r.id not in skipped]
    for row in candidates:
        async with sm() as session, session.begin():
            insert = _hold_insert(session.get_bind().dialect.name)
            stmt = insert(LeadHold).values(lead_id=row.id, agent_id=agent_id, until=until)
            stmt = stmt.on_conflict_do_update(
                index_elements=[LeadHold.lead_id],
                set_={"agent_id": agent_id, "until": until},
                where=(LeadHold.until <= now) | (LeadHold.agent_id == agent_id),
            ).returning(LeadHold.lead_id)
            got = (await session.execute(stmt)).scalar_one_or_none()
            if got is None:
                continue  # another agent holds it since we looked
            fresh = await session.get(DialerLead, row.id, populate_existing=True)
            if fresh is None or fresh.status not in ("new", "scheduled"):
                await session.execute(delete(LeadHold).where(LeadHold.lead_id == row.id))
                continue
            return _lead(fresh)
    return None


async def lead_hold(sm: SessionMaker, lead_id: int) -> tuple[str, datetime] | None:
    async with sm() as session:
        row = await session.get(LeadHold, lead_id)
        return None if row is None else (row.agent_id, row.until)


async def release_hold(
    sm: SessionMaker, lead_id: int, agent_id: str, *, next_attempt_at: datetime | None = None, now: datetime
) -> bool:
    """End ``agent_id``'s hold on a lead (``False`` if they held none); with ``next_attempt_at``, a
    lead that is new or scheduled is scheduled then (a skipped lead comes back later)."""
    _require_aware(now)
    async with sm() as session, session.begin():
        result = await session.execute(
            delete(LeadHold).where(LeadHold.lead_id == lead_id, LeadHold.agent_id == agent_id)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        if next_attempt_at is not None:
            lead = await session.get(DialerLead, lead_id)
            if lead is not None and lead.status in ("new", "scheduled"):
                lead.status, lead.next_attempt_at, lead.updated_at = "scheduled", next_attempt_at, now
        return True


async def close_lead(sm: SessionMaker, lead_id: int, *, reason: str, now: datetime) -> None:
    """Close a lead that is not being dialled (found on the do-not-call list, consent withdrawn)."""
    _require_aware(now)
    async with sm() as session, session.begin():
        lead = await session.get(DialerLead, lead_id)
        if lead is None:
            raise NotFound(f"no lead {lead_id}")
        if lead.status == "dialling":
            raise Conflict(f"lead {lead_id} has an attempt in progress")
        lead.status, lead.next_attempt_at, lead.updated_at = "done", None, now
        lead.done_reason = reason[:2000]
        await session.execute(delete(LeadHold).where(LeadHold.lead_id == lead_id))


async def campaign_disposition_codes(sm: SessionMaker, campaign_id: str) -> list[Any] | None:
    """The campaign's own disposition codes as stored (``None``: the platform's defaults)."""
    async with sm() as session:
        row = await session.get(CampaignDispositions, campaign_id)
        return None if row is None else list(row.codes)


async def save_campaign_disposition_codes(
    sm: SessionMaker, campaign_id: str, codes: list[Any], now: datetime
) -> None:
    _require_aware(now)
    async with sm() as session, session.begin():
        if await session.get(DialerCampaign, campaign_id) is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        row = await session.get(CampaignDispositions, campaign_id)
        if row is None:
            session.add(CampaignDispositions(campaign_id=campaign_id, codes=codes, updated_at=now))
        else:
            row.codes, row.updated_at = codes, now


async def set_campaign_active(sm: SessionMaker, campaign_id: str, active: bool, now: datetime) -> CampaignRow:
    """Start or stop a campaign (its settings unchanged)."""
    _require_aware(now)
    async with sm() as session, session.begin():
        row = await session.get(DialerCampaign, campaign_id)
        if row is None:
            raise NotFound(f"no campaign {campaign_id!r}")
        row.active, row.updated_at = active, now
    return _campaign(row)


async def call_log_agent(sm: SessionMaker, pbx: str, linkedid: str) -> tuple[bool, str | None]:
    """Whether the call ``pbx``/``linkedid`` has a call log, and the agent it names."""
    from crm.model import CallLog

    async with sm() as session:
        row = (
            await session.execute(
                select(CallLog.id, CallLog.agent).where(CallLog.pbx == pbx, CallLog.linkedid == linkedid)
            )
        ).first()
        return (False, None) if row is None else (True, row[1])


async def campaign_talk(sm: SessionMaker, campaign_id: str, since: datetime) -> dict[str, float]:
    """Seconds each agent talked on the campaign's calls (their call logs, by the attempt's
    ChannelId as Linkedid) that ended after ``since``."""
    from crm.model import CallLog

    _require_aware(since)
    query = (
        select(CallLog.agent, func.sum(CallLog.talk_seconds))
        .join(DialerAttempt, DialerAttempt.channel_id == CallLog.linkedid)
        .join(DialerLead, DialerLead.id == DialerAttempt.lead_id)
        .where(
            DialerLead.campaign_id == campaign_id,
            CallLog.ended_at > since,
            CallLog.agent.is_not(None),
            CallLog.talk_seconds.is_not(None),
        )
        .group_by(CallLog.agent)
    )
    async with sm() as session:
        return {str(agent): float(total or 0.0) for agent, total in (await session.execute(query)).all()}
