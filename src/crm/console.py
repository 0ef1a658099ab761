"""What the agent console writes to and reads from the customer record.

* the customer card a screen-pop shows (the customer, their latest interactions and voicemails);
* the agent's disposition and notes, saved on the call's log (the customer's history);
* linking a call from an unknown number to a customer, new or existing;
* today's figures per service for the supervisor's wallboard (service level, average speed of
  answer, average handle time, abandon rate), computed from the call logs.

Routes under ``/api/console``. An agent may write only to calls they took (the call log's ``agent``
is their id); supervisors and admins to any. Errors: 404 for an unknown call or customer, 403 for
someone else's call, 422 for bad values (a disposition code is ``[a-z0-9_-]``, notes at most 10,000
characters).
"""


import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path as PathLib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm import service, voicemail
from crm.db import SessionMaker
from crm.model import CallLog
from cti.auth import Principal, Role
from cti.http import AuthDeps
from cti.settings import Settings

#: A call answered within this many seconds of arriving counts toward the service level.
SERVICE_LEVEL_SECONDS = 20.0
DISPOSITION_PATTERN = r"^[a-z0-9_-]{1,64}$"
_AUDIO = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".wav": "audio/wav"}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _plain(record: Any) -> dict[str, Any]:
    """A record as JSON-ready values (times in ISO 8601, decimals as text)."""
    out: dict[str, Any] = {}
    for key, value in asdict(record).items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, tuple | list):
            out[key] = [
                {k: _iso(v) for k, v in item.items()} if isinstance(item, dict) else _iso(item)
                for item in value
            ]
        elif value is not None and not isinstance(value, str | int | float | bool | dict):
            out[key] = str(value)
        else:
            out[key] = value
    return out


async def customer_card(
    sessionmaker: SessionMaker, customer_id: int, *, interactions: int = 10
) -> dict[str, Any] | None:
    """The card a screen-pop shows: the customer with phones, their latest ``interactions`` call
    logs and voicemails, newest first; ``None`` if there is no such customer."""
    try:
        detail = await service.get_customer_with_interactions(sessionmaker, customer_id, limit=interactions)
    except service.NotFound:
        return None
    card = _plain(detail.customer)
    card["interactions"] = [_plain(c) for c in detail.interactions]
    card["voicemails"] = [
        _plain(v) for v in await voicemail.voicemails_of(sessionmaker, customer_id, limit=interactions)
    ]
    return card


def _servable(stored: tuple[str | None, ...], folder: PathLib) -> PathLib | None:
    """The first stored file that exists inside ``folder`` (never a path that leads out of it)."""
    root = folder.resolve()
    for name in stored:
        if name:
            path = PathLib(name).resolve()
            if path.is_relative_to(root) and path.is_file():
                return path
    return None


async def _call_row(session: AsyncSession, call_id: int) -> CallLog:
    row = await session.get(CallLog, call_id)
    if row is None:
        raise service.NotFound(f"no call {call_id}")
    return row


def _may_write(user: Principal, row: CallLog) -> None:
    if not user.role.includes(Role.SUPERVISOR) and row.agent != user.username:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="an agent may only write to calls they took")


async def find_call(sessionmaker: SessionMaker, pbx: str, linkedid: str) -> int | None:
    """The call log id of the call ``pbx``/``linkedid``, if it is stored yet."""
    async with sessionmaker() as session:
        found = await session.scalar(
            select(CallLog.id).where(CallLog.pbx == pbx, CallLog.linkedid == linkedid)
        )
        return None if found is None else int(found)


async def save_disposition(
    sessionmaker: SessionMaker,
    call_id: int,
    user: Principal,
    *,
    disposition: str,
    notes: str,
    now: datetime,
) -> service.CallLogRecord:
    """Store the agent's disposition code and notes on the call's log; the customer's history shows
    them from then on. Saving again replaces both (the agent corrects them during wrap-up)."""
    async with sessionmaker() as session, session.begin():
        row = await _call_row(session, call_id)
        _may_write(user, row)
        row.disposition = disposition
        row.notes = notes
        row.updated_at = now
        await session.flush()
        return service.CallLogRecord(**{k: getattr(row, k) for k in service.CallLogRecord.__slots__})


async def link_customer(
    sessionmaker: SessionMaker, call_id: int, user: Principal, customer_id: int, *, now: datetime
) -> service.CallLogRecord:
    """Make ``customer_id`` the call's customer (a caller the number did not identify)."""
    await service.get_customer(sessionmaker, customer_id)  # NotFound for an unknown customer
    async with sessionmaker() as session, session.begin():
        row = await _call_row(session, call_id)
        _may_write(user, row)
        row.customer_id = customer_id
        row.new_contact = False
        row.customer_match = "linked_by_agent"
        row.updated_at = now
        await session.flush()
        return service.CallLogRecord(**{k: getattr(row, k) for k in service.CallLogRecord.__slots__})


async def service_stats_today(
    sessionmaker: SessionMaker, since: datetime, *, service_level_seconds: float = SERVICE_LEVEL_SECONDS
) -> list[dict[str, Any]]:
    """Per service, inbound calls started at or after ``since``: offered, answered (connected to an
    agent), abandoned (ended, never connected), service level (answered within
    ``service_level_seconds`` over offered calls that are answered or abandoned), average speed of
    answer and average handle time (talk) in seconds, abandon rate."""
    services = {s.id: s.name for s in await service.list_services(sessionmaker)}
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(
                    CallLog.service_id,
                    CallLog.connected_at,
                    CallLog.ended_at,
                    CallLog.wait_seconds,
                    CallLog.talk_seconds,
                ).where(CallLog.started_at >= since, CallLog.direction == "inbound")
            )
        ).all()
    stats: dict[str, dict[str, Any]] = {}
    for service_id, connected_at, ended_at, wait, talk in rows:
        name = services.get(service_id, "unassigned") if service_id is not None else "unassigned"
        s = stats.setdefault(
            name,
            {"service": name, "offered": 0, "answered": 0, "abandoned": 0, "_in_sl": 0, "_w": 0.0, "_t": []},
        )
        s["offered"] += 1
        if connected_at is not None:
            s["answered"] += 1
            s["_w"] += wait or 0.0
            if (wait or 0.0) <= service_level_seconds:
                s["_in_sl"] += 1
            if ended_at is not None and talk is not None:
                s["_t"].append(talk)
        elif ended_at is not None:
            s["abandoned"] += 1
    out = []
    for name in sorted(stats):
        s = stats[name]
        settled = s["answered"] + s["abandoned"]
        out.append(
            {
                "service": name,
                "offered": s["offered"],
                "answered": s["answered"],
                "abandoned": s["abandoned"],
                "service_level": round(s["_in_sl"] / settled, 4) if settled else None,
                "asa_seconds": round(s["_w"] / s["answered"], 1) if s["answered"] else None,
                "aht_seconds": round(sum(s["_t"]) / len(s["_t"]), 1) if s["_t"] else None,
                "abandon_rate": round(s["abandoned"] / settled, 4) if settled else None,
            }
        )
    return out


class DispositionIn(BaseModel):
    disposition: str = Field(pattern=DISPOSITION_PATTERN, examples=["resolved"])
    notes: str = Field("", max_length=10_000, examples=["客户要求下周回电"])


class NewCustomerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["刘洋"])
    tier: str = Field("standard", pattern=r"^[a-z0-9_-]{1,32}$")
    language: str | None = Field(None, max_length=35)
    notes: str = Field("", max_length=10_000)


class LinkCustomerIn(BaseModel):
    """Either an existing ``customer_id`` or a ``new`` customer (who gets the caller's number)."""

    customer_id: int | None = None
    new: NewCustomerIn | None = None

    @model_validator(mode="after")
    def _one(self) -> "LinkCustomerIn":
        if (self.customer_id is None) == (self.new is None):
            raise ValueError("give exactly one of customer_id and new")
        return self


@contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except service.InvalidInput as exc:
        detail = [{"loc": ["body", *exc.loc], "msg": exc.message, "type": exc.kind}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from exc
    except service.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


Pbx = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
Linkedid = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


async def _call_id(sessionmaker: SessionMaker, pbx: str, linkedid: str) -> int:
    call_id = await find_call(sessionmaker, pbx, linkedid)
    if call_id is None:
        raise service.NotFound(f"no call {pbx}/{linkedid}")
    return call_id


def build_router(sessionmaker: SessionMaker, auth: AuthDeps, settings: Settings) -> APIRouter:
    """The console's record routes under ``/api/console``."""
    router = APIRouter(prefix="/api/console", tags=["console"])
    AnyUser = Annotated[Principal, Depends(auth.require(Role.AGENT))]
    Supervisor = Annotated[Principal, Depends(auth.require(Role.SUPERVISOR))]

    @router.post("/calls/{pbx}/{linkedid}/disposition", response_model=service.CallLogRecord)
    async def disposition(
        pbx: Pbx, linkedid: Linkedid, body: DispositionIn, user: AnyUser
    ) -> service.CallLogRecord:
        """Save the disposition code and notes of a call the agent took (supervisors: any call); the
        call is named by its key as the screen-pop gives it (``pbx``/``linkedid``)."""
        with _http_errors():
            call_id = await _call_id(sessionmaker, pbx, linkedid)
            return await save_disposition(
                sessionmaker, call_id, user, disposition=body.disposition, notes=body.notes, now=auth.clock()
            )

    @router.post("/calls/{pbx}/{linkedid}/customer", response_model=service.CallLogRecord)
    async def customer(
        pbx: Pbx, linkedid: Linkedid, body: LinkCustomerIn, user: AnyUser
    ) -> service.CallLogRecord:
        """Link the call to an existing customer, or create one with the caller's number and link it."""
        with _http_errors():
            call_id = await _call_id(sessionmaker, pbx, linkedid)
            customer_id = body.customer_id
            if body.new is not None:
                async with sessionmaker() as session:
                    row = await _call_row(session, call_id)
                    _may_write(user, row)
                    number = row.ani_e164 or row.ani_raw
                phones = [service.NewPhone(number, "caller")] if number else []
                try:
                    created = await service.create_customer(
                        sessionmaker,
                        service.NewCustomer(
                            name=body.new.name,
                            tier=body.new.tier,
                            language=body.new.language,
                            notes=body.new.notes,
                            phones=phones,
                        ),
                        default_region=settings.default_region,
                        now=auth.clock(),
                    )
                except service.InvalidPhone:
                    # A number that is not a valid phone number: the customer is still created.
                    created = await service.create_customer(
                        sessionmaker,
                        service.NewCustomer(
                            name=body.new.name,
                            tier=body.new.tier,
                            language=body.new.language,
                            notes=body.new.notes,
                        ),
                        default_region=settings.default_region,
                        now=auth.clock(),
                    )
                customer_id = created.id
            assert customer_id is not None
            return await link_customer(sessionmaker, call_id, user, customer_id, now=auth.clock())

    @router.get("/voicemails/{voicemail_id}/audio", response_class=FileResponse)
    async def voicemail_audio(voicemail_id: Annotated[int, Path(ge=1)], _user: AnyUser) -> FileResponse:
        """A voicemail's sound for the console's player: the compressed copy, else the recording.
        Only files inside the configured voicemail folder are served."""
        async with sessionmaker() as session:
            row = await session.get(voicemail.Voicemail, voicemail_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no voicemail {voicemail_id}")
        stored = (row.compressed_path, row.file_path)
        path = await asyncio.to_thread(_servable, stored, settings.ivr_dirs()[2])
        if path is not None:
            return FileResponse(path, media_type=_AUDIO.get(path.suffix, "application/octet-stream"))
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"voicemail {voicemail_id} has no sound here")

    @router.get("/stats/today")
    async def stats_today(_user: Supervisor) -> list[dict[str, Any]]:
        """Today's (UTC) figures per service: service level, ASA, AHT, abandon rate."""
        now = auth.clock()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return await service_stats_today(sessionmaker, midnight)

    return router
