"""Voicemails, callback requests and self-service answers on the customer record (the IVR's rows).

The IVR reaches these through ports the composition root builds from the functions here; it never
imports ``crm``. A caller the record does not know still gets their voicemail or callback filed: a
new contact customer is created for their number (or for a withheld number, one per message), so
nothing a caller leaves is ever unattached.

Like ``crm.service``, every function takes the session maker first, runs its own transaction and
returns frozen records, never ORM objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import SessionMaker
from crm.model import Base, Customer, CustomerPhone, Id, UTCDateTime
from cti.phone import normalize

CALLBACK_STATUSES: Final = ("pending", "done", "failed", "cancelled")
SELF_SERVICE_QUERIES: Final = ("balance", "last_order", "open_ticket")
NEW_CONTACT_TIER: Final = "standard"


class Voicemail(Base):
    """One message a caller left. ``file_path`` is the PBX's recording as the platform reads it;
    ``compressed_path`` a smaller copy for the console (None when conversion failed)."""

    __tablename__ = "voicemails"
    __table_args__ = (Index("ix_voicemails_customer_id_created_at", "customer_id", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    call_key: Mapped[str] = mapped_column(String(128), index=True)
    customer_id: Mapped[int] = mapped_column(Id, ForeignKey("customers.id", ondelete="CASCADE"))
    file_path: Mapped[str] = mapped_column(Text)
    compressed_path: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    listened: Mapped[bool] = mapped_column(Boolean, default=False)


class CallbackTask(Base):
    """A caller asked to be called back at ``number_e164``; ``due`` is when (None: as soon as possible).
    ``handled_call_key`` is the call (``pbx/linkedid``, its call log) that carried it out."""

    __tablename__ = "callback_tasks"
    __table_args__ = (Index("ix_callback_tasks_status_requested_at", "status", "requested_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    call_key: Mapped[str] = mapped_column(String(128), index=True)
    customer_id: Mapped[int] = mapped_column(Id, ForeignKey("customers.id", ondelete="CASCADE"))
    number_e164: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    due: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handled_call_key: Mapped[str | None] = mapped_column(String(128))


class CustomerSelfService(Base):
    """What self-service may tell a customer, by query (``balance``, ``last_order``, ``open_ticket``).

    ``data`` maps a query to ``{count, amount, currency, reference, status}`` (each optional) and may
    hold a ``pin`` the caller must type first. A deployment fills it from its billing or order system.
    """

    __tablename__ = "customer_self_service"

    customer_id: Mapped[int] = mapped_column(
        Id, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class VoicemailRecord:
    id: int
    call_key: str
    customer_id: int
    file_path: str
    compressed_path: str | None
    duration_seconds: float
    created_at: datetime
    listened: bool


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    id: int
    call_key: str
    customer_id: int
    number_e164: str
    requested_at: datetime
    status: str
    due: datetime | None
    handled_call_key: str | None = None


@dataclass(frozen=True, slots=True)
class SelfServiceAnswer:
    """A self-service answer; ``found`` is False for no data or a wrong PIN (the caller hears the same)."""

    found: bool
    count: int | None = None
    amount: Decimal | None = None
    currency: str = ""
    reference: str | None = None
    status: str | None = None


def _voicemail(row: Voicemail) -> VoicemailRecord:
    return VoicemailRecord(
        row.id, row.call_key, row.customer_id, row.file_path, row.compressed_path,
        row.duration_seconds, row.created_at, row.listened,
    )  # fmt: skip


def _callback(row: CallbackTask) -> CallbackRecord:
    return CallbackRecord(
        row.id, row.call_key, row.customer_id, row.number_e164, row.requested_at, row.status, row.due,
        row.handled_call_key,
    )  # fmt: skip


async def _customer_for(
    session: AsyncSession, customer_id: int | None, ani: str | None, region: str, now: datetime
) -> int:
    """The customer a message belongs to: the known one, else the number's lowest-id customer, else
    a new contact created for the number (withheld: a contact without a phone)."""
    if customer_id is not None and await session.get(Customer, customer_id) is not None:
        return customer_id
    e164 = normalize(ani or "", region).e164
    if e164 is not None:
        known = await session.scalar(
            select(CustomerPhone.customer_id)
            .where(CustomerPhone.e164 == e164)
            .order_by(CustomerPhone.customer_id)
            .limit(1)
        )
        if known is not None:
            return int(known)
    phones = (
        [] if e164 is None else [CustomerPhone(e164=e164, raw=(ani or "")[:64], label="", created_at=now)]
    )
    customer = Customer(
        name=e164 or "withheld number",
        tier=NEW_CONTACT_TIER,
        value=Decimal(0),
        language=None,
        notes="new contact from the IVR",
        created_at=now,
        updated_at=now,
        phones=phones,
    )
    session.add(customer)
    await session.flush()
    return customer.id


async def store_voicemail(
    sessionmaker: SessionMaker,
    *,
    call_key: str,
    customer_id: int | None,
    ani: str | None,
    file_path: str,
    compressed_path: str | None,
    duration_seconds: float,
    default_region: str,
    now: datetime | None = None,
) -> VoicemailRecord:
    """File a voicemail on the caller's record (a new contact when the caller is unknown)."""
    stamp = now or datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        owner = await _customer_for(session, customer_id, ani, default_region, stamp)
        row = Voicemail(
            call_key=call_key[:128],
            customer_id=owner,
            file_path=file_path,
            compressed_path=compressed_path,
            duration_seconds=max(0.0, float(duration_seconds)),
            created_at=stamp,
            listened=False,
        )
        session.add(row)
        await session.flush()
        return _voicemail(row)


async def store_callback(
    sessionmaker: SessionMaker,
    *,
    call_key: str,
    customer_id: int | None,
    ani: str | None,
    number: str,
    default_region: str,
    due: datetime | None = None,
    now: datetime | None = None,
) -> CallbackRecord:
    """Book a callback to ``number`` (validated to E.164; ``ValueError`` otherwise) on the caller's record."""
    stamp = now or datetime.now(UTC)
    e164 = normalize(number, default_region).e164
    if e164 is None:
        raise ValueError("the callback number is not a valid phone number")
    async with sessionmaker() as session, session.begin():
        owner = await _customer_for(session, customer_id, ani, default_region, stamp)
        row = CallbackTask(
            call_key=call_key[:128], customer_id=owner, number_e164=e164, requested_at=stamp,
            status="pending", due=due,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        return _callback(row)


async def voicemails_of(
    sessionmaker: SessionMaker, customer_id: int, *, limit: int = 100
) -> list[VoicemailRecord]:
    """The customer's voicemails, newest first."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Voicemail)
            .where(Voicemail.customer_id == customer_id)
            .order_by(Voicemail.created_at.desc(), Voicemail.id.desc())
            .limit(max(1, min(limit, 1000)))
        )
        return [_voicemail(r) for r in rows]


async def list_callbacks(
    sessionmaker: SessionMaker, *, status: str | None = None, limit: int = 100
) -> list[CallbackRecord]:
    """Callback tasks, oldest request first (the order they should be worked)."""
    query = select(CallbackTask).order_by(CallbackTask.requested_at, CallbackTask.id)
    if status is not None:
        query = query.where(CallbackTask.status == status)
    async with sessionmaker() as session:
        return [_callback(r) for r in await session.scalars(query.limit(max(1, min(limit, 1000))))]


async def finish_callback(
    sessionmaker: SessionMaker, task_id: int, status: str, handled_call_key: str | None = None
) -> CallbackRecord:
    """Mark a callback task ``done`` (with the call that carried it out), ``failed`` or
    ``cancelled``. ``LookupError`` for an unknown task, ``ValueError`` for an unknown status."""
    if status not in CALLBACK_STATUSES:
        raise ValueError(f"unknown callback status {status!r}")
    async with sessionmaker() as session, session.begin():
        row = await session.get(CallbackTask, task_id)
        if row is None:
            raise LookupError(f"no callback task {task_id}")
        row.status = status
        if handled_call_key is not None:
            row.handled_call_key = handled_call_key[:128]
        await session.flush()
        return _callback(row)


async def pending_callback_numbers(sessionmaker: SessionMaker) -> dict[int, str]:
    """Every pending callback task's number (E.164), by task id."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(CallbackTask.id, CallbackTask.number_e164).where(CallbackTask.status == "pending")
        )
        return {int(task_id): str(number) for task_id, number in rows}


async def set_self_service(
    sessionmaker: SessionMaker, customer_id: int, data: Mapping[str, Any], now: datetime | None = None
) -> None:
    """Replace what self-service may tell ``customer_id``. Unknown queries are refused (``ValueError``)."""
    unknown = set(data) - set(SELF_SERVICE_QUERIES) - {"pin"}
    if unknown:
        raise ValueError(f"unknown self-service queries: {', '.join(sorted(unknown))}")
    stamp = now or datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        if await session.get(Customer, customer_id) is None:
            raise LookupError(f"no customer {customer_id}")
        row = await session.get(CustomerSelfService, customer_id)
        if row is None:
            session.add(CustomerSelfService(customer_id=customer_id, data=dict(data), updated_at=stamp))
        else:
            row.data = dict(data)
            row.updated_at = stamp


async def self_service_answer(
    sessionmaker: SessionMaker, customer_id: int, query: str, pin: str | None = None
) -> SelfServiceAnswer:
    """Answer ``query`` for the customer. A record with a PIN answers only when ``pin`` matches."""
    async with sessionmaker() as session:
        row = await session.get(CustomerSelfService, customer_id)
    data = row.data if row is not None else {}
    expected = data.get("pin")
    if expected is not None and (pin is None or str(expected) != pin):
        return SelfServiceAnswer(False)
    entry = data.get(query)
    if not isinstance(entry, dict):
        return SelfServiceAnswer(False)
    amount: Decimal | None = None
    if entry.get("amount") is not None:
        try:
            amount = Decimal(str(entry["amount"]))
        except InvalidOperation:
            amount = None
    count = entry.get("count")
    return SelfServiceAnswer(
        True,
        count=int(count) if isinstance(count, int) else None,
        amount=amount,
        currency=str(entry.get("currency") or ""),
        reference=None if entry.get("reference") is None else str(entry["reference"]),
        status=None if entry.get("status") is None else str(entry["status"]),
    )
