"""HTTP routes of the dialer: campaigns, lead imports, leads and their audit trail, do-not-call,
registry lists, and the compliance check of one number.

Roles: supervisors (campaign managers) read everything and import leads; admins create and change
campaigns, registry lists and remove do-not-call entries; any signed-in user, agents included, may
add a number to the do-not-call list (a customer asked on the phone). Errors: 404 for an unknown
campaign, import or lead, 409 for a change the stored state refuses, 422 for bad values (the
message names the field), 413 for a lead file over the size limit.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from cti.auth import Principal, Role
from cti.http import AuthDeps
from cti.phone import normalize
from dialer.compliance import RegistryList, campaign_blocks, check
from dialer.leads import MAX_BYTES, ImportRefused, parse_leads
from dialer.model import (
    AbandonmentRule,
    CallingWindow,
    Campaign,
    ConsentPolicy,
    DialMode,
    Lead,
    MachinePolicy,
    Outcome,
    RetryRule,
)
from dialer.stats import MONTH, WindowFigures, campaign_stats
from dialer.store import (
    CampaignStore,
    StoreConflict,
    StoredCampaign,
    StoreRefused,
    UnknownCampaign,
    UnknownRecord,
)

CampaignId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", examples=["renewals"])]
Region = Annotated[str, Query(pattern=r"^[A-Za-z]{2}$", examples=["CN"])]
Filename = Annotated[str, Query(max_length=255, pattern=r"^[^\x00-\x1f\x7f/\\]*$")]
Hhmm = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["09:00"])]


class WindowIn(BaseModel):
    start: Hhmm = "09:00"
    end: Hhmm = "20:00"
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(default=[1, 2, 3, 4, 5, 6], min_length=1)


class RetryIn(BaseModel):
    outcome: Literal["abandoned", "machine", "busy", "no_answer", "failed"]
    delay_minutes: float = Field(ge=1, le=60 * 24 * 30)
    max_tries: int = Field(ge=0, le=20)


class CampaignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", examples=["续保回访"])
    service: str = Field(pattern=r"^[0-9]{1,32}$", examples=["8001"])
    caller_id: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+862161234567"])
    mode: DialMode = DialMode.PROGRESSIVE
    window: WindowIn = Field(default_factory=WindowIn)
    max_attempts: int = Field(6, ge=1, le=50)
    retries: list[RetryIn] | None = Field(None, max_length=5)
    ring_seconds: int = Field(25, ge=15, le=120)
    amd: bool = True
    machine_policy: MachinePolicy = MachinePolicy.HANG_UP
    abandonment_rule: AbandonmentRule = AbandonmentRule.US_30_DAYS
    abandonment_cap: float = Field(0.03, ge=0, le=0.03)
    consent: ConsentPolicy = ConsentPolicy.UNLESS_WITHDRAWN
    registries: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = Field(
        default=[], max_length=20
    )
    registry_max_age_days: int = Field(31, ge=1, le=365)
    active: bool = False


class DoNotCallIn(BaseModel):
    number: str = Field(min_length=1, max_length=64, examples=["+8613800138000"])
    reason: str = Field("", max_length=500, pattern=r"^[^\x00]*$")
    region: str = Field("CN", pattern=r"^[A-Za-z]{2}$")


class RegistryIn(BaseModel):
    published_on: date
    numbers: list[Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")]] = Field(max_length=5_000_000)


def _campaign_out(stored: StoredCampaign) -> dict[str, Any]:
    c = stored.campaign
    return {
        "id": c.id,
        "name": c.name,
        "service": c.service,
        "caller_id": c.caller_id,
        "mode": c.mode.value,
        "active": stored.active,
        "window": {
            "start": c.window.start.strftime("%H:%M"),
            "end": c.window.end.strftime("%H:%M"),
            "weekdays": sorted(c.window.weekdays),
        },
        "max_attempts": c.max_attempts,
        "retries": [
            {
                "outcome": r.outcome.value,
                "delay_minutes": r.delay.total_seconds() / 60,
                "max_tries": r.max_tries,
            }
            for r in c.retries
        ],
        "ring_seconds": c.ring_seconds,
        "amd": c.amd,
        "machine_policy": c.machine_policy.value,
        "abandonment_rule": c.abandonment_rule.value,
        "abandonment_cap": c.abandonment_cap,
        "consent": c.consent.value,
        "registries": sorted(c.registries),
        "registry_max_age_days": c.registry_max_age.days,
    }


def _to_campaign(campaign_id: str, body: CampaignIn) -> Campaign:
    kwargs: dict[str, Any] = {}
    if body.retries is not None:
        kwargs["retries"] = tuple(
            RetryRule(Outcome(r.outcome), timedelta(minutes=r.delay_minutes), r.max_tries)
            for r in body.retries
        )
    try:
        return Campaign(
            id=campaign_id,
            name=body.name,
            service=body.service,
            caller_id=body.caller_id,
            mode=body.mode,
            window=CallingWindow(
                time.fromisoformat(body.window.start),
                time.fromisoformat(body.window.end),
                frozenset(body.window.weekdays),
            ),
            max_attempts=body.max_attempts,
            ring_seconds=body.ring_seconds,
            amd=body.amd,
            machine_policy=body.machine_policy,
            abandonment_rule=body.abandonment_rule,
            abandonment_cap=body.abandonment_cap,
            consent=body.consent,
            registries=frozenset(body.registries),
            registry_max_age=timedelta(days=body.registry_max_age_days),
            **kwargs,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc


def _lead_out(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "phone": lead.phone,
        "name": lead.name,
        "consent": lead.consent,
        "customer_id": lead.customer_id,
        "fields": dict(lead.fields),
    }


@dataclass
class ImportJob:
    """A lead import running in the background: ``reading`` (``lines_done`` of ``lines_total``),
    ``storing``, then ``done`` with ``result`` or ``failed`` with ``error``."""

    id: str
    campaign_id: str
    created_by: str
    state: str = "reading"
    lines_done: int = 0
    lines_total: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None


MAX_JOBS = 100  # imports remembered for their status; the stored import itself is kept forever


def build_router(store: CampaignStore, auth: AuthDeps) -> APIRouter:
    router = APIRouter(prefix="/api/dialer", tags=["dialer"])
    jobs: dict[str, ImportJob] = {}
    tasks: set[asyncio.Task[None]] = set()  # owned here until each import ends
    agent = Depends(auth.require(Role.AGENT))
    supervisor = Depends(auth.require(Role.SUPERVISOR))
    admin = Depends(auth.require(Role.ADMIN))

    async def _stored(campaign_id: str) -> StoredCampaign:
        try:
            return await store.campaign(campaign_id)
        except UnknownCampaign as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no campaign {campaign_id!r}") from exc

    @router.get("/campaigns")
    async def list_campaigns(user: Principal = supervisor) -> list[dict[str, Any]]:
        return [_campaign_out(c) for c in await store.campaigns()]

    @router.get("/campaigns/{campaign_id}")
    async def get_campaign(campaign_id: CampaignId, user: Principal = supervisor) -> dict[str, Any]:
        stored = await _stored(campaign_id)
        registries = {
            r.name: RegistryList(r.name, r.published_on, frozenset()) for r in await store.registries()
        }
        return {
            **_campaign_out(stored),
            "blocked_by": list(campaign_blocks(stored.campaign, registries, datetime.now(UTC))),
        }

    @router.put("/campaigns/{campaign_id}")
    async def put_campaign(
        campaign_id: CampaignId, body: CampaignIn, user: Principal = admin
    ) -> dict[str, Any]:
        campaign = _to_campaign(campaign_id, body)
        return _campaign_out(await store.save_campaign(campaign, body.active, datetime.now(UTC)))

    async def _read_body(request: Request) -> bytes:
        data = bytearray()
        async for chunk in request.stream():
            data.extend(chunk)
            if len(data) > MAX_BYTES:
                raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail="the file is over 50 MB")
        return bytes(data)

    async def _import(
        campaign_id: str, data: bytes, region: str, filename: str, username: str, job: ImportJob | None = None
    ) -> dict[str, Any]:
        def progress(done: int, total: int) -> None:
            if job is not None:  # written from the parsing thread, read by the status route
                job.lines_done, job.lines_total = done, total

        # Parsing is CPU work on a whole file: off the event loop. ImportRefused goes to the caller.
        result = await asyncio.to_thread(parse_leads, data, region=region.upper(), progress=progress)
        if job is not None:
            job.state = "storing"
        linked = await store.customers_by_phone(lead.phone for lead in result.leads)
        result = replace(
            result, leads=tuple(replace(lead, customer_id=linked.get(lead.phone)) for lead in result.leads)
        )
        summary = await store.add_leads(campaign_id, result, filename, username, datetime.now(UTC))
        return {
            "import_id": summary.id,
            "encoding": summary.encoding,
            "delimiter": result.delimiter,
            "columns": list(result.columns),
            "phone_column": result.phone_column,
            "rows": summary.rows,
            "added": summary.added,
            "merged": summary.merged,
            "blank": result.blank,
            "rejected": summary.rejected,
            "linked_to_customers": sum(1 for lead in result.leads if lead.customer_id is not None),
            "rejected_report": f"/api/dialer/imports/{summary.id}/rejected.csv",
        }

    @router.post("/campaigns/{campaign_id}/leads", status_code=status.HTTP_201_CREATED)
    async def import_leads(
        campaign_id: CampaignId,
        request: Request,
        region: Region,
        filename: Filename = "leads.csv",
        user: Principal = supervisor,
    ) -> dict[str, Any]:
        """The request body is the CSV file itself, as it is (any encoding; see docs/dialer.md).
        Answers when the import is stored; for large files see ``/lead-imports``."""
        await _stored(campaign_id)
        data = await _read_body(request)
        try:
            return await _import(campaign_id, data, region, filename, user.username)
        except ImportRefused as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc

    @router.post("/campaigns/{campaign_id}/lead-imports", status_code=status.HTTP_202_ACCEPTED)
    async def start_import(
        campaign_id: CampaignId,
        request: Request,
        region: Region,
        filename: Filename = "leads.csv",
        user: Principal = supervisor,
    ) -> dict[str, Any]:
        """Like ``POST .../leads`` but answers at once: the import's progress (lines read of the
        file's lines) and then its result are at the returned ``status_url``."""
        await _stored(campaign_id)
        data = await _read_body(request)
        job = ImportJob(secrets.token_hex(8), campaign_id, user.username)
        while len(jobs) >= MAX_JOBS:  # forget the oldest finished import first
            oldest = next((k for k, j in jobs.items() if j.state in ("done", "failed")), next(iter(jobs)))
            del jobs[oldest]
        jobs[job.id] = job

        async def run() -> None:
            try:
                job.result = await _import(campaign_id, data, region, filename, user.username, job)
                job.state = "done"
            except ImportRefused as exc:
                job.state, job.error = "failed", str(exc)
            except Exception as exc:  # reported on the job; the platform keeps running
                job.state, job.error = "failed", f"could not store the import: {type(exc).__name__}"

        task = asyncio.create_task(run(), name=f"lead-import-{job.id}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return {"job": job.id, "status_url": f"/api/dialer/lead-imports/{job.id}"}

    @router.get("/lead-imports/{job_id}")
    async def import_status(
        job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], user: Principal = supervisor
    ) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no lead import job {job_id}")
        return {
            "job": job.id,
            "campaign_id": job.campaign_id,
            "state": job.state,
            "lines_done": job.lines_done,
            "lines_total": job.lines_total,
            "result": job.result,
            "error": job.error,
        }

    @router.get("/imports/{import_id}/rejected.csv")
    async def rejected_rows(import_id: Annotated[int, Path(ge=1)], user: Principal = supervisor) -> Response:
        try:
            summary, report = await store.rejected_report(import_id)
        except UnknownRecord as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no lead import {import_id}") from exc
        return Response(
            report,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="rejected-{summary.id}.csv"'},
        )

    @router.get("/campaigns/{campaign_id}/leads")
    async def list_leads(
        campaign_id: CampaignId,
        status_: Annotated[
            Literal["new", "dialling", "scheduled", "done"] | None, Query(alias="status")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[int, Query(ge=0)] = 0,
        user: Principal = supervisor,
    ) -> list[dict[str, Any]]:
        await _stored(campaign_id)
        return [
            {**_lead_out(v.lead), "status": v.status, "next_attempt_at": v.next_attempt_at,
             "done_reason": v.done_reason}
            for v in await store.leads(campaign_id, status_, limit, after)
        ]  # fmt: skip

    @router.get("/leads/{lead_id}/attempts")
    async def lead_attempts(
        lead_id: Annotated[int, Path(ge=1)], user: Principal = supervisor
    ) -> list[dict[str, Any]]:
        """The lead's audit trail: every attempt, written before it was dialled, with its outcome."""
        return [
            {"number": a.number, "channel_id": a.channel_id, "dialled_at": a.dialled_at,
             "outcome": a.outcome.value, "ended_at": a.ended_at}
            for a in await store.attempts(lead_id)
        ]  # fmt: skip

    @router.get("/campaigns/{campaign_id}/stats")
    async def campaign_figures(campaign_id: CampaignId, user: Principal = supervisor) -> dict[str, Any]:
        """Attempts, contacts and abandonment over 24 hours and 30 days, from the attempt trail."""
        stored = await _stored(campaign_id)
        now = datetime.now(UTC)
        stats = campaign_stats(await store.campaign_attempts(campaign_id, now - MONTH), now)

        def window(w: WindowFigures) -> dict[str, Any]:
            return {
                "attempts": w.attempts,
                "contacts": w.contacts,
                "live_answers": w.live_answers,
                "abandoned": w.abandoned,
                "abandonment_rate": w.abandonment_rate,
            }

        return {
            "campaign_id": campaign_id,
            "abandonment_rule": stored.campaign.abandonment_rule.value,
            "abandonment_cap": stored.campaign.abandonment_cap,
            "last_24_hours": window(stats.last_24_hours),
            "last_30_days": window(stats.last_30_days),
            "outcomes_24_hours": dict(stats.outcomes_24_hours),
            "in_progress": stats.in_progress,
        }

    @router.get("/campaigns/{campaign_id}/check")
    async def check_number(
        campaign_id: CampaignId,
        number: Annotated[str, Query(min_length=1, max_length=64)],
        region: Region = "CN",
        user: Principal = supervisor,
    ) -> dict[str, Any]:
        """May this number be dialled for the campaign right now, and if not, every reason why."""
        stored = await _stored(campaign_id)
        parsed = normalize(number, region.upper())
        if parsed.e164 is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"not a usable number: {number!r}"
            )
        hits = await store.registry_numbers_among(stored.campaign.registries, [parsed.e164])
        registries = {
            r.name: RegistryList(r.name, r.published_on, hits.get(r.name, frozenset()))
            for r in await store.registries()
            if r.name in stored.campaign.registries
        }
        dnc = await store.do_not_call_among([parsed.e164])
        lead = Lead(0, campaign_id, parsed.e164)
        verdict = check(stored.campaign, lead, datetime.now(UTC), do_not_call=dnc, registries=registries)
        return {
            "number": parsed.e164,
            "allowed": verdict.allowed,
            "refusals": [r.value for r in verdict.refusals],
            "detail": verdict.detail,
        }

    @router.post("/do-not-call", status_code=status.HTTP_204_NO_CONTENT)
    async def add_do_not_call(body: DoNotCallIn, user: Principal = agent) -> Response:
        parsed = normalize(body.number, body.region.upper())
        if parsed.e164 is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"not a usable number: {body.number!r}"
            )
        source = "agent" if user.role is Role.AGENT else "manual"
        await store.add_do_not_call(parsed.e164, body.reason, source, user.username, datetime.now(UTC))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.delete("/do-not-call/{number}", status_code=status.HTTP_204_NO_CONTENT)
    async def remove_do_not_call(
        number: Annotated[str, Path(pattern=r"^\+[1-9][0-9]{6,14}$")], user: Principal = admin
    ) -> Response:
        if not await store.remove_do_not_call(number):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{number} is not on the list")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("/registries")
    async def list_registries(user: Principal = supervisor) -> list[dict[str, Any]]:
        return [
            {
                "name": r.name,
                "published_on": r.published_on,
                "imported_at": r.imported_at,
                "numbers": r.numbers,
            }
            for r in await store.registries()
        ]

    @router.put("/registries/{name}")
    async def put_registry(
        name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
        body: RegistryIn,
        user: Principal = admin,
    ) -> dict[str, Any]:
        if body.published_on > datetime.now(UTC).date() + timedelta(days=1):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="published_on is in the future")
        try:
            info = await store.replace_registry(name, body.published_on, body.numbers, datetime.now(UTC))
        except StoreRefused as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
        except StoreConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
        return {"name": info.name, "published_on": info.published_on, "numbers": info.numbers}

    return router


def build_live_router(
    store: CampaignStore, live: Callable[[str], dict[str, Any] | None], auth: AuthDeps
) -> APIRouter:
    """``GET /api/dialer/campaigns/{id}/live`` (supervisors, admins): the campaign's current pace, its
    reason and live statistics as the campaign loop last published them (``cti.model.CampaignPaced``
    as JSON). 404 for an unknown campaign, or one the loop has not paced (not active, preview)."""
    router = APIRouter(prefix="/api/dialer", tags=["dialer"])
    supervisor = Depends(auth.require(Role.SUPERVISOR))

    @router.get("/campaigns/{campaign_id}/live")
    async def campaign_live(campaign_id: CampaignId, user: Principal = supervisor) -> dict[str, Any]:
        try:
            await store.campaign(campaign_id)
        except UnknownCampaign as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no campaign {campaign_id!r}") from exc
        paced = live(campaign_id)
        if paced is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"campaign {campaign_id!r} is not being paced (inactive, or preview mode)",
            )
        return paced

    return router
