"""HTTP routes of campaign calls at the agent's desk and the supervisor's campaign panel.

Roles: an agent reaches preview routes only for themselves (``/preview/{agent_id}``: the signed-in
user must be that agent), and a campaign call's lead and disposition only for calls they took
(supervisors: any call); supervisors read the panel and start or stop campaigns; admins set a
campaign's disposition codes. Errors: 404 unknown, 403 not theirs, 409 refused by the state of
things (not ready, not held, not ended yet), 422 bad values, 503 no PBX.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from pydantic import AwareDatetime, BaseModel, Field

from cti.auth import Principal, Role
from cti.http import AuthDeps
from dialer.dispositions import Action, CallbackFor, Disposition, DispositionCode, codes_out, validate_codes
from dialer.preview import AgentDesk, DeskError
from dialer.stats import MONTH, campaign_stats
from dialer.store import PanelStore, UnknownCampaign, UnknownRecord

AgentId = Annotated[str, Path(pattern=r"^[0-9]{1,32}$", examples=["1001"])]
CampaignId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", examples=["renewals"])]
Pbx = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
Linkedid = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class DispositionIn(BaseModel):
    disposition: str = Field(pattern=r"^[a-z0-9_-]{1,64}$", examples=["callback"])
    notes: str = Field("", max_length=10_000)
    at: AwareDatetime | None = Field(None, description="a callback's (or a retry's) time")
    callback_for: CallbackFor = CallbackFor.ANYONE


class NextIn(BaseModel):
    campaign_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")


class LeadIn(BaseModel):
    lead_id: int = Field(ge=1)


class SkipIn(LeadIn):
    reason: str = Field("", max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")


class CodeIn(BaseModel):
    code: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    label: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")
    action: Literal["done", "retry", "callback", "do_not_call"]
    success: bool = False
    retry_minutes: int = Field(60, ge=1, le=60 * 24 * 30)


class CodesIn(BaseModel):
    codes: list[CodeIn] = Field(min_length=1, max_length=30)


def _raise(exc: DeskError) -> HTTPException:
    return HTTPException(exc.status, detail=exc.message)


def build_agent_router(desk: AgentDesk, panel: PanelStore, auth: AuthDeps) -> APIRouter:
    router = APIRouter(prefix="/api/dialer", tags=["dialer: agents"])
    agent = Depends(auth.require(Role.AGENT))
    supervisor = Depends(auth.require(Role.SUPERVISOR))
    admin = Depends(auth.require(Role.ADMIN))

    def own(user: Principal, agent_id: str) -> None:
        if user.username != agent_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only the agent themself may preview leads")

    # ------------------------------------------------------------------ the campaign call

    @router.get("/calls/{pbx}/{linkedid}/lead")
    async def call_lead(pbx: Pbx, linkedid: Linkedid, user: Principal = agent) -> dict[str, Any]:
        """The lead record of a campaign call (its agent, or a supervisor): the lead's screen-pop."""
        try:
            return await desk.campaign_call(user, pbx, linkedid)
        except DeskError as exc:
            raise _raise(exc) from exc

    @router.post("/calls/{pbx}/{linkedid}/disposition")
    async def dispose(
        pbx: Pbx, linkedid: Linkedid, body: DispositionIn, user: Principal = agent
    ) -> dict[str, Any]:
        """The agent's disposition of an ended campaign call: the lead's next step (done, retry,
        callback at ``at`` for ``callback_for``, or the number on the do-not-call list)."""
        try:
            return await desk.dispose(
                user, pbx, linkedid, Disposition(body.disposition, body.notes, body.at, body.callback_for)
            )
        except DeskError as exc:
            raise _raise(exc) from exc

    # ------------------------------------------------------------------ preview

    @router.get("/preview/{agent_id}/campaigns")
    async def preview_campaigns(agent_id: AgentId, user: Principal = agent) -> list[dict[str, Any]]:
        own(user, agent_id)
        return await desk.preview_campaigns(agent_id)

    @router.post("/preview/{agent_id}/next")
    async def preview_next(agent_id: AgentId, body: NextIn, user: Principal = agent) -> dict[str, Any]:
        """Hold the campaign's next callable lead for the agent: ``{"lead": null}`` when none is due."""
        own(user, agent_id)
        try:
            record = await desk.next_lead(agent_id, body.campaign_id)
        except DeskError as exc:
            raise _raise(exc) from exc
        return record if record is not None else {"lead": None}

    @router.post("/preview/{agent_id}/dial")
    async def preview_dial(agent_id: AgentId, body: LeadIn, user: Principal = agent) -> dict[str, Any]:
        own(user, agent_id)
        try:
            return await desk.dial(agent_id, body.lead_id)
        except DeskError as exc:
            raise _raise(exc) from exc

    @router.post("/preview/{agent_id}/skip", status_code=status.HTTP_204_NO_CONTENT)
    async def preview_skip(agent_id: AgentId, body: SkipIn, user: Principal = agent) -> Response:
        own(user, agent_id)
        try:
            await desk.skip(agent_id, body.lead_id, body.reason)
        except DeskError as exc:
            raise _raise(exc) from exc
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # ------------------------------------------------------------------ campaigns

    async def _exists(campaign_id: str) -> None:
        try:
            await desk.store.campaign(campaign_id)
        except UnknownCampaign as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no campaign {campaign_id!r}") from exc

    @router.get("/campaigns/{campaign_id}/dispositions")
    async def get_codes(campaign_id: CampaignId, user: Principal = agent) -> list[dict[str, Any]]:
        await _exists(campaign_id)
        try:
            return codes_out(await desk._codes(campaign_id))
        except DeskError as exc:
            raise _raise(exc) from exc

    @router.put("/campaigns/{campaign_id}/dispositions")
    async def put_codes(
        campaign_id: CampaignId, body: CodesIn, user: Principal = admin
    ) -> list[dict[str, Any]]:
        try:
            codes = validate_codes(
                DispositionCode(c.code, c.label, Action(c.action), c.success, c.retry_minutes)
                for c in body.codes
            )
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
        await _exists(campaign_id)
        try:
            await desk.store.save_disposition_codes(campaign_id, codes_out(codes), datetime.now(UTC))
        except UnknownRecord as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
        return codes_out(codes)

    async def _set_active(campaign_id: str, active: bool) -> dict[str, Any]:
        try:
            stored = await desk.store.set_active(campaign_id, active, datetime.now(UTC))
        except UnknownCampaign as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no campaign {campaign_id!r}") from exc
        return {"id": stored.campaign.id, "active": stored.active}

    @router.post("/campaigns/{campaign_id}/start")
    async def start(campaign_id: CampaignId, user: Principal = supervisor) -> dict[str, Any]:
        """Start a campaign (its settings unchanged)."""
        return await _set_active(campaign_id, True)

    @router.post("/campaigns/{campaign_id}/stop")
    async def stop(campaign_id: CampaignId, user: Principal = supervisor) -> dict[str, Any]:
        """Stop a campaign: nothing more is dialled or previewed for it."""
        return await _set_active(campaign_id, False)

    @router.get("/campaigns/{campaign_id}/panel")
    async def campaign_panel(campaign_id: CampaignId, user: Principal = supervisor) -> dict[str, Any]:
        """The supervisor's panel of one campaign, from the stored attempts: attempts, contacts,
        abandonment over 24 hours and 30 days against the cap, and each agent's talk time on the
        campaign's calls over the last hour."""
        try:
            stored = await desk.store.campaign(campaign_id)
        except UnknownCampaign as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no campaign {campaign_id!r}") from exc
        now = datetime.now(UTC)
        stats = campaign_stats(await desk.store.campaign_attempts(campaign_id, now - MONTH), now)
        talk = await panel.campaign_talk(campaign_id, now - timedelta(hours=1))
        c = stored.campaign
        day, month = stats.last_24_hours, stats.last_30_days
        return {
            "id": c.id,
            "name": c.name,
            "mode": c.mode.value,
            "active": stored.active,
            "abandonment_rule": c.abandonment_rule.value,
            "cap": c.abandonment_cap,
            "attempts_24h": day.attempts,
            "contacts_24h": day.contacts,
            "live_answers_24h": day.live_answers,
            "abandoned_24h": day.abandoned,
            "abandonment_24h": day.abandonment_rate,
            "abandonment_30d": month.abandonment_rate,
            "in_progress": stats.in_progress,
            "outcomes_24h": dict(stats.outcomes_24_hours),
            "talk_seconds_last_hour": dict(sorted(talk.items())),
            "at": now.isoformat(),
        }

    return router
