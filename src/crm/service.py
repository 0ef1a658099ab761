"""The CRM's operations: customers and phones, services, users, call log queries, and the ANI/DNIS
classifier the IVR and routing use.

Every function takes the ``async_sessionmaker`` first and runs its own transaction. Results are
frozen records, never ORM objects, so nothing outside this package touches SQLAlchemy. Input is
validated here (not only in the HTTP layer): invalid input raises :class:`InvalidInput` naming the
field, duplicates raise :class:`Conflict`, missing rows :class:`NotFound`.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm.db import SessionMaker
from crm.model import CallLog, Customer, CustomerPhone, Service, User
from cti.auth import Principal, Role
from cti.model import CallClassification
from cti.phone import normalize

MAX_CALLS_LIMIT: Final = 1000
DEFAULT_LIMIT: Final = 100

MATCH_UNIQUE: Final = "unique"
MATCH_SHARED_MOST_RECENT: Final = "shared:most_recent"
MATCH_SHARED_LOWEST_ID: Final = "shared:lowest_id"
MATCH_UNKNOWN_NUMBER: Final = "none:unknown_number"
MATCH_INVALID_NUMBER: Final = "none:invalid_number"

_TIER = re.compile(r"^[a-z0-9_-]{1,32}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_DNIS = re.compile(r"^[0-9]{1,32}$")
_SKILL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_USERNAME = re.compile(r"^[^\s\x00-\x1f\x7f]{1,64}$")
_MAX_VALUE = Decimal(10) ** 12

# argon2id with the library's RFC 9106 defaults. Hashing takes tens of milliseconds of CPU, so it
# always runs in a worker thread, never on the event loop.
_hasher = PasswordHasher()
_dummy_hash: str | None = None


class CrmError(Exception):
    pass


class InvalidInput(CrmError):
    """Input that cannot be stored. ``loc`` names the field (e.g. ``("phones", 1, "number")``)."""

    kind = "invalid"

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message


class InvalidPhone(InvalidInput):
    kind = "invalid_phone"

    def __init__(self, loc: Sequence[str | int], number: str, reason: str) -> None:
        super().__init__(loc, f"not a valid phone number: {number!r} ({reason})")
        self.number = number
        self.reason = reason


class NotFound(CrmError):
    pass


class Conflict(CrmError):
    pass


@dataclass(frozen=True, slots=True)
class PhoneRecord:
    id: int
    e164: str
    raw: str
    label: str


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: int
    name: str
    tier: str
    value: Decimal
    language: str | None
    notes: str
    created_at: datetime
    updated_at: datetime
    phones: tuple[PhoneRecord, ...]


@dataclass(frozen=True, slots=True)
class CallLogRecord:
    """One call. Times are UTC; ``ani_raw`` and ``caller_name`` are exactly as the network sent them."""

    id: int
    pbx: str
    linkedid: str
    direction: str
    ani_raw: str
    ani_e164: str | None
    caller_name: str
    dnis: str
    service_id: int | None
    customer_id: int | None
    new_contact: bool | None
    customer_match: str | None
    started_at: datetime
    answered_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    wait_seconds: float | None
    talk_seconds: float | None
    hangup_cause: int | None
    hangup_cause_txt: str | None
    end_reason: str | None
    phase: str
    agent: str | None
    ivr_path: list[Any] | None
    ivr_inputs: dict[str, Any] | None
    disposition: str | None
    notes: str | None
    recording_path: str | None
    recording_seconds: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerDetail:
    """A customer with their interactions (call logs), newest first."""

    customer: CustomerRecord
    interactions: tuple[CallLogRecord, ...]


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    id: int
    dnis: str
    name: str
    language: str | None
    required_skills: tuple[str, ...]
    business_hours: dict[str, Any] | None
    time_zone: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    display_name: str
    role: Role
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewPhone:
    number: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class NewCustomer:
    name: str
    tier: str = "standard"
    value: Decimal | int | str = Decimal(0)
    language: str | None = None
    notes: str = ""
    phones: Sequence[NewPhone] = ()


@dataclass(frozen=True, slots=True)
class NewService:
    """A service behind a DNIS. ``business_hours`` maps ``mon``..``sun`` to ``[["09:00", "18:00"]]``
    style lists of opening intervals in ``time_zone``; ``None`` means always open."""

    dnis: str
    name: str
    language: str | None = None
    required_skills: Sequence[str] = ()
    business_hours: Mapping[str, Any] | None = None
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class SeedSummary:
    customers: int = 0
    services: int = 0
    users: int = 0
    skipped: tuple[str, ...] = field(default=())


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _text(loc: Sequence[str | int], value: str, *, max_len: int, required: bool = True) -> str:
    cleaned = unicodedata.normalize("NFC", value).strip()
    if required and not cleaned:
        raise InvalidInput(loc, f"{loc[-1]} must not be empty")
    if len(cleaned) > max_len:
        raise InvalidInput(loc, f"{loc[-1]} is longer than {max_len} characters")
    if "\x00" in cleaned:
        raise InvalidInput(loc, f"{loc[-1]} contains a NUL character")
    return cleaned


def _language(loc: Sequence[str | int], value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > 35 or not _LANGUAGE.match(value):
        raise InvalidInput(loc, f"not a BCP 47 language tag: {value!r}")
    return value


def _tier(value: str) -> str:
    value = value.strip().lower()
    if not _TIER.match(value):
        raise InvalidInput(("tier",), f"invalid tier {value!r}: use lowercase letters, digits, - or _")
    return value


def _money(value: Decimal | int | str) -> Decimal:
    try:
        amount = Decimal(value).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise InvalidInput(("value",), f"not a number: {value!r}") from exc
    if not amount.is_finite() or abs(amount) >= _MAX_VALUE:
        raise InvalidInput(("value",), f"value out of range: {value!r}")
    return amount


def _time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(("time_zone",), f"unknown IANA time zone: {value!r}") from exc
    return value


def _dnis(value: str) -> str:
    value = value.strip()
    if not _DNIS.match(value):
        raise InvalidInput(("dnis",), f"a DNIS is 1 to 32 digits, got {value!r}")
    return value


def _skills(values: Sequence[str]) -> list[str]:
    skills: list[str] = []
    for index, skill in enumerate(values):
        if not isinstance(skill, str) or not _SKILL.match(skill):
            raise InvalidInput(("required_skills", index), f"invalid skill name {skill!r}")
        if skill not in skills:
            skills.append(skill)
    return skills


def _phone(loc: Sequence[str | int], number: str, default_region: str) -> str:
    result = normalize(number, default_region)
    if result.e164 is None:
        raise InvalidPhone(loc, number, (result.reason or "invalid").replace("_", " "))
    return result.e164


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _phone_record(row: CustomerPhone) -> PhoneRecord:
    return PhoneRecord(id=row.id, e164=row.e164, raw=row.raw, label=row.label)


def _customer_record(row: Customer) -> CustomerRecord:
    return CustomerRecord(
        id=row.id,
        name=row.name,
        tier=row.tier,
        value=Decimal(row.value),
        language=row.language,
        notes=row.notes,
        created_at=row.created_at,
        updated_at=row.updated_at,
        phones=tuple(_phone_record(p) for p in row.phones),
    )


_CALL_FIELDS = tuple(CallLogRecord.__dataclass_fields__)


def _call_record(row: CallLog) -> CallLogRecord:
    return CallLogRecord(**{name: getattr(row, name) for name in _CALL_FIELDS})


def _service_record(row: Service) -> ServiceRecord:
    return ServiceRecord(
        id=row.id,
        dnis=row.dnis,
        name=row.name,
        language=row.language,
        required_skills=tuple(row.required_skills or ()),
        business_hours=row.business_hours,
        time_zone=row.time_zone,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _user_record(row: User) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        active=row.active,
        created_at=row.created_at,
    )


async def _attach_earlier_calls(session: AsyncSession, customer_id: int, numbers: Sequence[str]) -> None:
    """Give call logs from these numbers that had no customer to this customer, so a contact's first
    calls (made before anyone created the record) show in their interactions. Classification fields
    stay as they were at call time."""
    if numbers:
        await session.execute(
            update(CallLog)
            .where(CallLog.customer_id.is_(None), CallLog.ani_e164.in_(list(numbers)))
            .values(customer_id=customer_id)
        )


async def _load_customer(session: AsyncSession, customer_id: int) -> Customer:
    row = await session.scalar(
        select(Customer).where(Customer.id == customer_id).options(selectinload(Customer.phones))
    )
    if row is None:
        raise NotFound(f"no customer {customer_id}")
    return row


async def create_customer(
    sessionmaker: SessionMaker, new: NewCustomer, *, default_region: str, now: datetime | None = None
) -> CustomerRecord:
    """Store a customer and their phones (normalised to E.164 for ``default_region``).

    Raises ``InvalidPhone`` naming the first invalid number (nothing is stored then), and
    ``InvalidInput`` for a number given twice or other invalid fields. Names may be in any script.
    """
    stamp = _now(now)
    name = _text(("name",), new.name, max_len=200)
    tier = _tier(new.tier)
    value = _money(new.value)
    language = _language(("language",), new.language)
    notes = _text(("notes",), new.notes, max_len=10_000, required=False)
    phones: list[CustomerPhone] = []
    seen: set[str] = set()
    for index, phone in enumerate(new.phones):
        e164 = _phone(("phones", index, "number"), phone.number, default_region)
        if e164 in seen:
            raise InvalidInput(("phones", index, "number"), f"number {phone.number!r} is given twice")
        seen.add(e164)
        label = _text(("phones", index, "label"), phone.label, max_len=50, required=False)
        phones.append(CustomerPhone(e164=e164, raw=phone.number.strip()[:64], label=label, created_at=stamp))
    async with sessionmaker() as session, session.begin():
        customer = Customer(
            name=name,
            tier=tier,
            value=value,
            language=language,
            notes=notes,
            created_at=stamp,
            updated_at=stamp,
            phones=phones,
        )
        session.add(customer)
        await session.flush()
        await _attach_earlier_calls(session, customer.id, [p.e164 for p in phones])
        return _customer_record(customer)


async def add_phone(
    sessionmaker: SessionMaker,
    customer_id: int,
    number: str,
    label: str = "",
    *,
    default_region: str,
    now: datetime | None = None,
) -> PhoneRecord:
    """Add a number to a customer. ``Conflict`` if the customer already has it."""
    stamp = _now(now)
    e164 = _phone(("number",), number, default_region)
    clean_label = _text(("label",), label, max_len=50, required=False)
    async with sessionmaker() as session, session.begin():
        customer = await _load_customer(session, customer_id)
        if any(p.e164 == e164 for p in customer.phones):
            raise Conflict(f"customer {customer_id} already has {e164}")
        phone = CustomerPhone(e164=e164, raw=number.strip()[:64], label=clean_label, created_at=stamp)
        customer.phones.append(phone)
        customer.updated_at = stamp
        await session.flush()
        await _attach_earlier_calls(session, customer_id, [e164])
        return _phone_record(phone)


async def get_customer(sessionmaker: SessionMaker, customer_id: int) -> CustomerRecord:
    """The customer with their phones; ``NotFound`` if there is none."""
    async with sessionmaker() as session:
        return _customer_record(await _load_customer(session, customer_id))


async def get_customer_with_interactions(
    sessionmaker: SessionMaker, customer_id: int, *, limit: int = DEFAULT_LIMIT
) -> CustomerDetail:
    """The customer, their phones, and their latest ``limit`` call logs, newest first."""
    limit = max(1, min(limit, MAX_CALLS_LIMIT))
    async with sessionmaker() as session:
        customer = await _load_customer(session, customer_id)
        calls = await session.scalars(
            select(CallLog)
            .where(CallLog.customer_id == customer_id)
            .order_by(CallLog.started_at.desc(), CallLog.id.desc())
            .limit(limit)
        )
        return CustomerDetail(_customer_record(customer), tuple(_call_record(c) for c in calls))


async def list_customers(
    sessionmaker: SessionMaker, *, q: str | None = None, default_region: str, limit: int = DEFAULT_LIMIT
) -> list[CustomerRecord]:
    """Customers by id, optionally those whose name contains ``q`` (case-insensitive) or who have a
    number equal to ``q`` normalised, or containing ``q``'s digits (at least three)."""
    limit = max(1, min(limit, MAX_CALLS_LIMIT))
    query = select(Customer).options(selectinload(Customer.phones)).order_by(Customer.id).limit(limit)
    text = (q or "").strip()
    if text:
        conditions: list[ColumnElement[bool]] = [Customer.name.ilike(_like_pattern(text), escape="\\")]
        e164 = normalize(text, default_region).e164
        if e164 is not None:
            conditions.append(Customer.phones.any(CustomerPhone.e164 == e164))
        digits = "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isascii() and ch.isdigit())
        if len(digits) >= 3:
            conditions.append(Customer.phones.any(CustomerPhone.e164.contains(digits, autoescape=True)))
        query = query.where(or_(*conditions))
    async with sessionmaker() as session:
        return [_customer_record(c) for c in await session.scalars(query)]


async def list_calls(
    sessionmaker: SessionMaker,
    *,
    customer_id: int | None = None,
    ani: str | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    default_region: str,
) -> list[CallLogRecord]:
    """Call logs newest first. ``ani`` matches the number as received or, normalised for
    ``default_region``, the stored E.164; ``since`` (timezone-aware) keeps calls started at or after
    it; ``limit`` is 1 to 1000."""
    if not 1 <= limit <= MAX_CALLS_LIMIT:
        raise InvalidInput(("limit",), f"limit must be between 1 and {MAX_CALLS_LIMIT}")
    if since is not None and since.tzinfo is None:
        raise InvalidInput(("since",), "since must include a time zone (e.g. 2026-01-01T00:00:00Z)")
    query = select(CallLog).order_by(CallLog.started_at.desc(), CallLog.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(CallLog.customer_id == customer_id)
    if ani is not None and ani.strip():
        matches: list[ColumnElement[bool]] = [CallLog.ani_raw == ani.strip()]
        e164 = normalize(ani, default_region).e164
        if e164 is not None:
            matches.append(CallLog.ani_e164 == e164)
        query = query.where(or_(*matches))
    if since is not None:
        query = query.where(CallLog.started_at >= since)
    async with sessionmaker() as session:
        return [_call_record(c) for c in await session.scalars(query)]


_UNCHANGED: Any = object()


async def create_service(
    sessionmaker: SessionMaker, new: NewService, *, now: datetime | None = None
) -> ServiceRecord:
    """Store a service; ``Conflict`` if its DNIS is taken."""
    stamp = _now(now)
    row = Service(
        dnis=_dnis(new.dnis),
        name=_text(("name",), new.name, max_len=100),
        language=_language(("language",), new.language),
        required_skills=_skills(new.required_skills),
        business_hours=dict(new.business_hours) if new.business_hours is not None else None,
        time_zone=_time_zone(new.time_zone),
        created_at=stamp,
        updated_at=stamp,
    )
    try:
        async with sessionmaker() as session, session.begin():
            if await session.scalar(select(Service.id).where(Service.dnis == row.dnis)) is not None:
                raise Conflict(f"DNIS {row.dnis} already belongs to a service")
            session.add(row)
            await session.flush()
            return _service_record(row)
    except IntegrityError as exc:  # a concurrent insert of the same DNIS
        raise Conflict(f"DNIS {row.dnis} already belongs to a service") from exc


async def update_service(
    sessionmaker: SessionMaker,
    service_id: int,
    *,
    name: str = _UNCHANGED,
    language: str | None = _UNCHANGED,
    required_skills: Sequence[str] = _UNCHANGED,
    business_hours: Mapping[str, Any] | None = _UNCHANGED,
    time_zone: str = _UNCHANGED,
    now: datetime | None = None,
) -> ServiceRecord:
    """Change the given fields of a service (the DNIS is its identity and stays)."""
    stamp = _now(now)
    async with sessionmaker() as session, session.begin():
        row = await session.get(Service, service_id)
        if row is None:
            raise NotFound(f"no service {service_id}")
        if name is not _UNCHANGED:
            row.name = _text(("name",), name, max_len=100)
        if language is not _UNCHANGED:
            row.language = _language(("language",), language)
        if required_skills is not _UNCHANGED:
            row.required_skills = _skills(required_skills)
        if business_hours is not _UNCHANGED:
            row.business_hours = dict(business_hours) if business_hours is not None else None
        if time_zone is not _UNCHANGED:
            row.time_zone = _time_zone(time_zone)
        row.updated_at = stamp
        await session.flush()
        return _service_record(row)


async def list_services(sessionmaker: SessionMaker) -> list[ServiceRecord]:
    async with sessionmaker() as session:
        return [_service_record(s) for s in await session.scalars(select(Service).order_by(Service.dnis))]


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("not a password of anyone")
    return _dummy_hash


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def add_user(
    sessionmaker: SessionMaker,
    username: str,
    password: str,
    role: Role | str,
    *,
    display_name: str = "",
    now: datetime | None = None,
) -> UserRecord:
    """Create a user with an argon2id password hash. ``Conflict`` if the username is taken."""
    stamp = _now(now)
    name = unicodedata.normalize("NFC", username.strip())
    if not _USERNAME.match(name):
        raise InvalidInput(("username",), "a username is 1 to 64 characters without spaces")
    if not 8 <= len(password) <= 1024:
        raise InvalidInput(("password",), "a password is 8 to 1024 characters")
    try:
        user_role = Role(role)
    except ValueError as exc:
        raise InvalidInput(("role",), f"unknown role {role!r}") from exc
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    row = User(
        username=name,
        display_name=_text(("display_name",), display_name, max_len=200, required=False),
        password_hash=password_hash,
        role=user_role.value,
        active=True,
        created_at=stamp,
    )
    try:
        async with sessionmaker() as session, session.begin():
            if await session.scalar(select(User.id).where(User.username == name)) is not None:
                raise Conflict(f"user {name!r} already exists")
            session.add(row)
            await session.flush()
            return _user_record(row)
    except IntegrityError as exc:
        raise Conflict(f"user {name!r} already exists") from exc


async def authenticate(sessionmaker: SessionMaker, username: str, password: str) -> Principal | None:
    """The principal for valid credentials of an active user, else ``None``.

    An unknown user costs one argon2 verification against a dummy hash, like a known one, so the
    response time does not reveal which usernames exist. A hash made with older parameters is
    upgraded on successful login.
    """
    name = unicodedata.normalize("NFC", username.strip())
    async with sessionmaker() as session:
        row = await session.scalar(select(User).where(User.username == name))
    if row is None or not row.active:
        await asyncio.to_thread(_verify, _dummy(), password)
        return None
    if not await asyncio.to_thread(_verify, row.password_hash, password):
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        new_hash = await asyncio.to_thread(_hasher.hash, password)
        async with sessionmaker() as session, session.begin():
            await session.execute(update(User).where(User.id == row.id).values(password_hash=new_hash))
    return Principal(user_id=row.id, username=row.username, role=Role(row.role))


async def list_users(sessionmaker: SessionMaker) -> list[UserRecord]:
    async with sessionmaker() as session:
        return [_user_record(u) for u in await session.scalars(select(User).order_by(User.id))]


class Classifier:
    """The ``cti.ports.CallClassifier`` of the platform: ANI → customer, DNIS → service.

    Customer: the ANI is normalised for ``default_region``. An invalid ANI (withheld, junk, an
    internal extension) gives ``none:invalid_number``, a valid one no customer has
    ``none:unknown_number``; both are new contacts. One customer with the number: ``unique``.
    Several customers sharing the number (a family line, a company switchboard): the one with the
    most recent call log from that number (``shared:most_recent``), else the lowest customer id
    (``shared:lowest_id``), so the choice is stable and follows who actually calls from it.

    Service: the DNIS's digits (a leading ``+`` or separators are ignored) equal to a service's
    DNIS; none gives ``service_id=None``.

    Language: the customer's own language when the record has one, else the service's: routing
    needs the language the caller speaks, and a known customer's preference is the better evidence.

    Raises only when the database cannot be reached (the call then proceeds unclassified).
    """

    def __init__(self, sessionmaker: SessionMaker, default_region: str) -> None:
        self._sessionmaker = sessionmaker
        self._region = default_region

    async def classify(self, ani: str, dnis: str) -> CallClassification:
        number = normalize(ani, self._region)
        dnis_digits = "".join(ch for ch in dnis if ch.isascii() and ch.isdigit())[:32]
        async with self._sessionmaker() as session:
            customer, match = await self._customer(session, number.e164)
            service = None
            if dnis_digits:
                service = await session.scalar(select(Service).where(Service.dnis == dnis_digits))
        if number.e164 is None:
            match = MATCH_INVALID_NUMBER
        language = (customer.language if customer else None) or (service.language if service else None)
        return CallClassification(
            ani_e164=number.e164,
            customer_id=customer.id if customer else None,
            customer_name=customer.name if customer else None,
            customer_tier=customer.tier if customer else None,
            new_contact=customer is None,
            customer_match=match,
            service_id=service.id if service else None,
            service_name=service.name if service else None,
            language=language,
            required_skills=tuple(service.required_skills or ()) if service else (),
        )

    @staticmethod
    async def _customer(session: AsyncSession, e164: str | None) -> tuple[Customer | None, str]:
        if e164 is None:
            return None, MATCH_INVALID_NUMBER
        ids = list(
            await session.scalars(
                select(CustomerPhone.customer_id)
                .where(CustomerPhone.e164 == e164)
                .distinct()
                .order_by(CustomerPhone.customer_id)
            )
        )
        if not ids:
            return None, MATCH_UNKNOWN_NUMBER
        if len(ids) == 1:
            chosen, match = ids[0], MATCH_UNIQUE
        else:
            recent = await session.scalar(
                select(CallLog.customer_id)
                .where(CallLog.ani_e164 == e164, CallLog.customer_id.in_(ids))
                .order_by(CallLog.started_at.desc(), CallLog.id.desc())
                .limit(1)
            )
            if recent is not None:
                chosen, match = recent, MATCH_SHARED_MOST_RECENT
            else:
                chosen, match = ids[0], MATCH_SHARED_LOWEST_ID
        return await session.get(Customer, chosen), match


_DEMO_CUSTOMERS: tuple[NewCustomer, ...] = (
    NewCustomer(
        "张伟", "vip", Decimal("250000.00"), "zh-CN", "长期VIP客户",
        (NewPhone("+86 138 0013 8000", "mobile"), NewPhone("+86 21 6123 4567", "office")),
    ),
    NewCustomer("李娜", "gold", Decimal("42000.00"), "zh-CN", "", (NewPhone("+86 139 1234 5678", "mobile"),)),
    NewCustomer(
        "Alice Smith", "standard", Decimal("1200.50"), "en", "", (NewPhone("+1 201-555-0123", "mobile"),)
    ),
    # Two members of one household share a landline: shows the shared-number rule.
    NewCustomer("陈静", "gold", Decimal("18000.00"), "zh-CN", "", (NewPhone("+86 20 8765 4321", "home"),)),
    NewCustomer(
        "陈明", "standard", Decimal("300.00"), "zh-CN", "",
        (NewPhone("+86 20 8765 4321", "home"), NewPhone("+86 137 0000 1111", "mobile")),
    ),
    NewCustomer("Bob O'Brien", "standard", Decimal("0"), "en", "", (NewPhone("+44 20 7946 0958", "office"),)),
)  # fmt: skip

_DEMO_SERVICES: tuple[NewService, ...] = (
    NewService(
        "8001", "support", "zh-CN", ("support", "mandarin"),
        {day: [["09:00", "21:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "Asia/Shanghai",
    ),
    NewService(
        "8002", "sales", "en", ("sales", "english"),
        {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
        "America/New_York",
    ),
)  # fmt: skip

_DEMO_USERS: dict[Role, tuple[str, str]] = {
    Role.AGENT: ("agent", "王芳"),
    Role.SUPERVISOR: ("supervisor", "刘洋"),
    Role.ADMIN: ("admin", "Administrator"),
}


async def seed_demo_data(
    sessionmaker: SessionMaker, *, passwords: Mapping[Role, str], now: datetime | None = None
) -> SeedSummary:
    """Demo customers (Chinese and English names, one shared number), services for DNIS 8001
    (support, zh-CN) and 8002 (sales, en), and a user named after each role in ``passwords``
    (``agent``, ``supervisor``, ``admin``) with the password given.

    Idempotent: a customer whose first number is already stored, a DNIS or a username that exists
    is skipped (existing passwords are not changed).
    """
    stamp = _now(now)
    created = {"customers": 0, "services": 0, "users": 0}
    skipped: list[str] = []
    for customer in _DEMO_CUSTOMERS:
        first = _phone(("phones", 0, "number"), customer.phones[0].number, "CN")
        async with sessionmaker() as session:
            owner = await session.scalar(
                select(CustomerPhone.customer_id)
                .join(Customer)
                .where(CustomerPhone.e164 == first, Customer.name == customer.name)
            )
        if owner is not None:
            skipped.append(f"customer {customer.name}")
            continue
        await create_customer(sessionmaker, customer, default_region="CN", now=stamp)
        created["customers"] += 1
    for service in _DEMO_SERVICES:
        try:
            await create_service(sessionmaker, service, now=stamp)
            created["services"] += 1
        except Conflict:
            skipped.append(f"service {service.dnis}")
    for role, password in passwords.items():
        username, display_name = _DEMO_USERS[Role(role)]
        try:
            await add_user(sessionmaker, username, password, role, display_name=display_name, now=stamp)
            created["users"] += 1
        except Conflict:
            skipped.append(f"user {username}")
    return SeedSummary(**created, skipped=tuple(skipped))


async def count_rows(sessionmaker: SessionMaker) -> dict[str, int]:
    """Row counts per table, for health reports and tests."""
    counts: dict[str, int] = {}
    async with sessionmaker() as session:
        for model in (Customer, CustomerPhone, Service, User, CallLog):
            counts[model.__tablename__] = int(
                await session.scalar(select(func.count()).select_from(model)) or 0
            )
    return counts
