"""HTTP routes of the CRM: login, customers with their interactions, call logs, services.

Roles: any signed-in user (agent and up) reads; supervisors and admins create customers and add
numbers; admins manage services. Errors use FastAPI's shapes: 422 with a ``detail`` list naming the
field (an invalid phone number names the number), 404, 409 for duplicates, 401/403 from ``cti.http``.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from crm import recordings, service, voicemail
from crm.db import SessionMaker
from crm.recordings import RecordingRecord
from crm.service import CallLogRecord
from crm.voicemail import CallbackRecord, VoicemailRecord
from cti.auth import Principal, Role, issue_token, token_expiry
from cti.http import AuthDeps
from cti.settings import Settings

_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
TimeOfDay = Annotated[str, Field(pattern=_HHMM, examples=["09:00"])]


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret
    role: Role
    expires_at: datetime


class PrincipalOut(BaseModel):
    user_id: int
    username: str
    role: Role


class PhoneIn(BaseModel):
    number: str = Field(min_length=1, max_length=64, examples=["+86 138 0013 8000"])
    label: str = Field("", max_length=50, examples=["mobile"])


class PhoneOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    e164: str = Field(examples=["+8613800138000"])
    raw: str
    label: str


class CustomerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["张伟"])
    tier: str = Field("standard", pattern=r"^[a-z0-9_-]{1,32}$", examples=["vip"])
    value: Decimal = Field(Decimal(0), ge=0, max_digits=14, decimal_places=2, description="lifetime value")
    language: str | None = Field(None, max_length=35, examples=["zh-CN"], description="BCP 47 tag")
    notes: str = Field("", max_length=10_000)
    phones: list[PhoneIn] = Field(default_factory=list, max_length=20)


class PhoneAdd(PhoneIn):
    pass


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    tier: str
    value: Decimal
    language: str | None
    notes: str
    created_at: datetime
    updated_at: datetime
    phones: list[PhoneOut]


class SelfServiceIn(BaseModel):
    """What the IVR's self-service may say to this customer, by query; ``pin`` guards all of it."""

    model_config = ConfigDict(extra="forbid")

    balance: dict[str, Any] | None = Field(None, examples=[{"amount": "1234.50", "currency": "CNY"}])
    last_order: dict[str, Any] | None = Field(None, examples=[{"reference": "A1024", "status": "shipped"}])
    open_ticket: dict[str, Any] | None = None
    pin: str | None = Field(None, pattern=r"^[0-9]{4,12}$")


class CustomerDetailOut(CustomerOut):
    interactions: list[CallLogRecord] = Field(description="the customer's call logs, newest first")
    voicemails: list[VoicemailRecord] = Field(
        default_factory=list, description="messages the customer left in the IVR, newest first"
    )
    recordings: list[RecordingRecord] = Field(
        default_factory=list, description="the customer's call recordings, newest first"
    )


class ServiceIn(BaseModel):
    dnis: str = Field(pattern=r"^[0-9]{1,32}$", examples=["8001"])
    name: str = Field(min_length=1, max_length=100, examples=["support"])
    language: str | None = Field(None, max_length=35, examples=["zh-CN"])
    required_skills: list[str] = Field(
        default_factory=list, max_length=50, examples=[["support", "mandarin"]]
    )
    business_hours: dict[Weekday, list[tuple[TimeOfDay, TimeOfDay]]] | None = Field(
        None,
        description="opening intervals per weekday in time_zone; null means always open",
        examples=[{"mon": [["09:00", "18:00"]]}],
    )
    time_zone: str = Field("UTC", max_length=64, examples=["Asia/Shanghai"], description="IANA time zone")


class ServicePatch(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=100)
    language: str | None = Field(None, max_length=35)
    required_skills: list[str] | None = Field(None, max_length=50)
    business_hours: dict[Weekday, list[tuple[TimeOfDay, TimeOfDay]]] | None = None
    time_zone: str | None = Field(None, max_length=64)


class ServiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dnis: str
    name: str
    language: str | None
    required_skills: list[str]
    business_hours: dict[str, Any] | None
    time_zone: str
    created_at: datetime
    updated_at: datetime


@contextmanager
def _http_errors() -> Iterator[None]:
    """The service's errors as HTTP answers, shaped like FastAPI's own validation errors."""
    try:
        yield
    except service.InvalidInput as exc:
        detail = [{"loc": ["body", *exc.loc], "msg": exc.message, "type": exc.kind}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from exc
    except service.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except service.Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


def _business_hours(value: dict[Weekday, list[tuple[str, str]]] | None) -> dict[str, Any] | None:
    return None if value is None else {day: [list(pair) for pair in spans] for day, spans in value.items()}


def build_router(
    sessionmaker: SessionMaker,
    auth: AuthDeps,
    token_secret_provider: Callable[[], str],
    settings: Settings,
    customer_changed: Callable[[int], None] | None = None,
) -> APIRouter:
    """The CRM's routes under ``/api``. ``auth`` authenticates requests; ``token_secret_provider``
    signs tokens at login (the same secret ``auth`` verifies with). ``customer_changed(id)`` is told
    of a customer changed by a write here (a phone added), after the write is committed."""
    router = APIRouter(tags=["crm"])
    region = settings.default_region
    ttl = settings.auth.token_ttl_seconds
    Agent = Annotated[Principal, Depends(auth.require(Role.AGENT))]
    Supervisor = Annotated[Principal, Depends(auth.require(Role.SUPERVISOR))]
    Admin = Annotated[Principal, Depends(auth.require(Role.ADMIN))]
    Limit = Annotated[int, Query(ge=1, le=service.MAX_CALLS_LIMIT)]

    @router.post(
        "/api/auth/login",
        response_model=TokenResponse,
        responses={401: {"description": "unknown user, wrong password or disabled account"}},
    )
    async def login(body: LoginRequest) -> TokenResponse:
        principal = await service.authenticate(sessionmaker, body.username, body.password)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="invalid username or password",
                headers={"WWW-Authenticate": "Bearer"},
            )
        now = auth.clock()
        token = issue_token(principal, token_secret_provider(), ttl, now)
        return TokenResponse(access_token=token, role=principal.role, expires_at=token_expiry(now, ttl))

    @router.get("/api/auth/me", response_model=PrincipalOut)
    async def me(user: Agent) -> PrincipalOut:
        return PrincipalOut(user_id=user.user_id, username=user.username, role=user.role)

    @router.post("/api/customers", response_model=CustomerOut, status_code=status.HTTP_201_CREATED)
    async def create_customer(body: CustomerIn, _user: Supervisor) -> CustomerOut:
        new = service.NewCustomer(
            name=body.name,
            tier=body.tier,
            value=body.value,
            language=body.language,
            notes=body.notes,
            phones=[service.NewPhone(p.number, p.label) for p in body.phones],
        )
        with _http_errors():
            record = await service.create_customer(sessionmaker, new, default_region=region, now=auth.clock())
        return CustomerOut.model_validate(record)

    @router.get("/api/customers", response_model=list[CustomerOut])
    async def list_customers(
        _user: Agent,
        q: Annotated[str | None, Query(max_length=200, description="part of a name, or a number")] = None,
        limit: Limit = service.DEFAULT_LIMIT,
    ) -> list[CustomerOut]:
        records = await service.list_customers(sessionmaker, q=q, default_region=region, limit=limit)
        return [CustomerOut.model_validate(r) for r in records]

    @router.get("/api/customers/{customer_id}", response_model=CustomerDetailOut)
    async def get_customer(
        customer_id: int, _user: Agent, limit: Limit = service.DEFAULT_LIMIT
    ) -> CustomerDetailOut:
        with _http_errors():
            detail = await service.get_customer_with_interactions(sessionmaker, customer_id, limit=limit)
        return CustomerDetailOut.model_validate(
            {
                **CustomerOut.model_validate(detail.customer).model_dump(),
                "interactions": list(detail.interactions),
                "voicemails": await voicemail.voicemails_of(sessionmaker, customer_id, limit=limit),
                "recordings": await recordings.recordings_of(sessionmaker, customer_id, limit=limit),
            }
        )

    @router.put("/api/customers/{customer_id}/self-service", status_code=status.HTTP_204_NO_CONTENT)
    async def put_self_service(customer_id: int, body: SelfServiceIn, _user: Supervisor) -> None:
        try:
            await voicemail.set_self_service(sessionmaker, customer_id, body.model_dump(exclude_none=True))
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc

    @router.get("/api/callbacks", response_model=list[CallbackRecord])
    async def list_callbacks(
        _user: Supervisor,
        status_filter: Annotated[
            Literal["pending", "done", "failed", "cancelled"] | None, Query(alias="status")
        ] = None,
        limit: Limit = service.DEFAULT_LIMIT,
    ) -> list[CallbackRecord]:
        """Callbacks callers booked in the IVR, oldest first (the order to work them)."""
        return await voicemail.list_callbacks(sessionmaker, status=status_filter, limit=limit)

    @router.post(
        "/api/customers/{customer_id}/phones", response_model=PhoneOut, status_code=status.HTTP_201_CREATED
    )
    async def add_phone(customer_id: int, body: PhoneAdd, _user: Supervisor) -> PhoneOut:
        with _http_errors():
            record = await service.add_phone(
                sessionmaker, customer_id, body.number, body.label, default_region=region, now=auth.clock()
            )
        if customer_changed is not None:
            customer_changed(customer_id)
        return PhoneOut.model_validate(record)

    @router.get("/api/calls", response_model=list[CallLogRecord])
    async def list_calls(
        _user: Agent,
        customer_id: int | None = None,
        ani: Annotated[str | None, Query(max_length=64, description="as received, or any form")] = None,
        since: Annotated[datetime | None, Query(description="ISO 8601 with a time zone")] = None,
        limit: Limit = service.DEFAULT_LIMIT,
    ) -> list[CallLogRecord]:
        with _http_errors():
            records = await service.list_calls(
                sessionmaker,
                customer_id=customer_id,
                ani=ani,
                since=since,
                limit=limit,
                default_region=region,
            )
        return list(records)

    @router.get("/api/services", response_model=list[ServiceOut])
    async def list_services(_user: Agent) -> list[ServiceOut]:
        return [ServiceOut.model_validate(s) for s in await service.list_services(sessionmaker)]

    @router.post("/api/services", response_model=ServiceOut, status_code=status.HTTP_201_CREATED)
    async def create_service(body: ServiceIn, _user: Admin) -> ServiceOut:
        new = service.NewService(
            dnis=body.dnis,
            name=body.name,
            language=body.language,
            required_skills=body.required_skills,
            business_hours=_business_hours(body.business_hours),
            time_zone=body.time_zone,
        )
        with _http_errors():
            record = await service.create_service(sessionmaker, new, now=auth.clock())
        return ServiceOut.model_validate(record)

    @router.patch("/api/services/{service_id}", response_model=ServiceOut)
    async def update_service(service_id: int, body: ServicePatch, _user: Admin) -> ServiceOut:
        changes: dict[str, Any] = {}
        for name in body.model_fields_set:
            value = getattr(body, name)
            if value is None and name in ("name", "required_skills", "time_zone"):
                continue  # these cannot be cleared
            changes[name] = _business_hours(value) if name == "business_hours" else value
        with _http_errors():
            record = await service.update_service(sessionmaker, service_id, now=auth.clock(), **changes)
        return ServiceOut.model_validate(record)

    return router
