"""Wiring of the dialer: its storage port (``dialer.store.CampaignStore``) on the customer record's
campaign tables (``crm.campaigns``), and its HTTP routes.

The dialer and crm never import each other; this module maps one's records to the other's types.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter

from crm import campaigns as crm_campaigns
from crm import console as crm_console
from crm import service as crm_service
from crm.db import SessionMaker
from cti.ami import AmiClient
from cti.auth import Principal
from cti.bus import Bus, by_call
from cti.http import AuthDeps
from cti.model import (
    AgentStateChanged,
    CallChange,
    CallKey,
    Direction,
    IvrRecord,
    LiveCallsResynced,
    RoutingRequest,
)
from cti.originate import OriginatingLink
from cti.service import CallService
from cti.settings import Settings
from dialer.agent_api import build_agent_router
from dialer.api import build_router
from dialer.dialling import CallRoute
from dialer.handlers import AttemptFollower
from dialer.leads import ImportResult
from dialer.model import Attempt, Campaign, Lead, Outcome, campaign_config, campaign_from
from dialer.preview import AgentDesk, DeskPorts
from dialer.runner import AgentView, CampaignRunner, RunnerPorts, Staffing, paced_as_dict
from dialer.store import (
    DispositionView,
    ImportSummary,
    LeadEventView,
    LeadView,
    RegistryInfo,
    StoreConflict,
    StoredCampaign,
    StoreRefused,
    UnknownCampaign,
    UnknownRecord,
)
from ivr.prompts import PromptBuilder
from routing.directory import UnknownAgent
from routing.service import RoutingService

log = logging.getLogger("cti.app.dialer")


def _stored(row: crm_campaigns.CampaignRow) -> StoredCampaign:
    return StoredCampaign(
        campaign_from(row.id, row.name, row.service, row.caller_id, row.mode, row.config), row.active
    )


def _lead_view(r: crm_campaigns.LeadRecord) -> LeadView:
    fields = {str(k): str(v) for k, v in r.fields.items()}
    lead = Lead(r.id, r.campaign_id, r.phone_e164, r.name, r.consent, r.customer_id, fields)
    return LeadView(lead, r.status, r.next_attempt_at, r.done_reason)


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
        return [_lead_view(r) for r in rows]

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
        return _lead_view(r)

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

    async def due_leads(self, campaign_id: str, now: datetime, limit: int) -> list[LeadView]:
        rows = await crm_campaigns.due_leads(self._sm, campaign_id, now, limit)
        return [_lead_view(r) for r in rows]


def build_dialer_router(sessionmaker: SessionMaker, auth: AuthDeps) -> APIRouter:
    """The dialer's HTTP routes on the customer record."""
    return build_router(CrmCampaignStore(sessionmaker), auth)


# --- campaign calls at the agent's desk: preview, the lead's record, dispositions, the panel ----


class CrmDeskStore(CrmCampaignStore):
    """``dialer.store.DeskStore`` and ``PanelStore`` on ``crm.campaigns``."""

    async def attempt_by_channel(self, channel_id: str) -> Attempt | None:
        found = await crm_campaigns.attempt_by_channel(self._sm, channel_id)
        return None if found is None else _attempt(found)

    async def dispositions(self, lead_id: int) -> Mapping[str, DispositionView]:
        by_id = await crm_campaigns.lead_dispositions(self._sm, lead_id)
        return {
            a.channel_id: DispositionView(a.channel_id, d.code, d.notes, d.agent_id, d.at, d.next_step)
            for a in await crm_campaigns.lead_attempts(self._sm, lead_id)
            if (d := by_id.get(a.id)) is not None
        }

    async def lead_events(self, lead_id: int) -> list[LeadEventView]:
        return [
            LeadEventView(e.at, e.kind, e.actor, e.detail)
            for e in await crm_campaigns.lead_events(self._sm, lead_id)
        ]

    async def add_lead_event(
        self, lead_id: int, kind: str, actor: str | None, detail: str, at: datetime
    ) -> None:
        await crm_campaigns.add_lead_event(self._sm, lead_id, kind=kind, actor=actor, detail=detail, at=at)

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
        try:
            d = await crm_campaigns.dispose_attempt(
                self._sm, channel_id, code=code, notes=notes, agent_id=agent_id, at=at, status=status,
                next_attempt_at=next_attempt_at, reason=reason, callback=callback,
                callback_agent=callback_agent,
            )  # fmt: skip
        except crm_service.Conflict as exc:
            raise StoreConflict(str(exc)) from exc
        except crm_service.NotFound as exc:
            raise UnknownRecord(str(exc)) from exc
        except crm_service.InvalidInput as exc:
            raise StoreRefused(exc.message) from exc
        return DispositionView(channel_id, d.code, d.notes, d.agent_id, d.at, d.next_step)

    async def lead_callback(self, lead_id: int) -> tuple[str | None, datetime] | None:
        found = await crm_campaigns.lead_callback(self._sm, lead_id)
        return None if found is None else (found.agent_id, found.at)

    async def hold_next_lead(
        self, campaign_id: str, agent_id: str, now: datetime, until: datetime, exclude: Iterable[int]
    ) -> LeadView | None:
        r = await crm_campaigns.hold_next_lead(
            self._sm, campaign_id, agent_id, now=now, until=until, exclude=exclude
        )
        if r is None:
            return None
        return _lead_view(r)

    async def lead_hold(self, lead_id: int) -> tuple[str, datetime] | None:
        return await crm_campaigns.lead_hold(self._sm, lead_id)

    async def release_hold(
        self, lead_id: int, agent_id: str, next_attempt_at: datetime | None, now: datetime
    ) -> bool:
        return await crm_campaigns.release_hold(
            self._sm, lead_id, agent_id, next_attempt_at=next_attempt_at, now=now
        )

    async def close_lead(self, lead_id: int, reason: str, now: datetime) -> None:
        try:
            await crm_campaigns.close_lead(self._sm, lead_id, reason=reason, now=now)
        except crm_service.Conflict as exc:
            raise StoreConflict(str(exc)) from exc

    async def disposition_codes(self, campaign_id: str) -> list[Any] | None:
        return await crm_campaigns.campaign_disposition_codes(self._sm, campaign_id)

    async def save_disposition_codes(self, campaign_id: str, codes: list[Any], now: datetime) -> None:
        try:
            await crm_campaigns.save_campaign_disposition_codes(self._sm, campaign_id, codes, now)
        except crm_service.NotFound as exc:
            raise UnknownRecord(str(exc)) from exc

    async def set_active(self, campaign_id: str, active: bool, now: datetime) -> StoredCampaign:
        try:
            return _stored(await crm_campaigns.set_campaign_active(self._sm, campaign_id, active, now))
        except crm_service.NotFound as exc:
            raise UnknownCampaign(campaign_id) from exc

    async def campaign_talk(self, campaign_id: str, since: datetime) -> Mapping[str, float]:
        return await crm_campaigns.campaign_talk(self._sm, campaign_id, since)


PREVIEW_CONTEXT = "cti-preview"  # the dialplan context that rings the agent once the customer answers


class AgentDeskWiring:
    """The desk (preview, lead pops, dispositions) on the customer record, routing and the AMI link,
    and the follower that gives preview calls their outcome from the bus.

    Preview calls leave on the line out queue callbacks use (``routing.callback_endpoint``).
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: SessionMaker,
        bus: Bus,
        routing: RoutingService,
        link: OriginatingLink | None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.routing = routing
        self.store = CrmDeskStore(sessionmaker)
        self._campaigns: dict[str, Campaign] = {}
        self.follower = AttemptFollower(self.store, lambda: self._campaigns)
        self._subscription = bus.subscribe("dialer-preview", (CallChange,), maxsize=100_000)
        endpoint = settings.routing.callback_endpoint
        self.desk = AgentDesk(
            self.store,
            DeskPorts(
                agent_status=self._agent_status,
                may_take=self._may_take,
                reserve=self._reserve,
                unreserve=self._unreserve,
                follow=self._follow,
                call_agent=self._call_agent,
                save_call_disposition=self._save_call_disposition,
                customer_card=self._card,
                link=link,
                route=lambda agent_id: CallRoute(endpoint, PREVIEW_CONTEXT, agent_id),
            ),
            clock=lambda: datetime.now(UTC),
        )

    def router(self, auth: AuthDeps) -> APIRouter:
        return build_agent_router(self.desk, self.store, auth)

    async def run(self, refresh_seconds: float = 10.0) -> None:
        async def refresh() -> None:
            while True:
                try:
                    await self.refresh_campaigns()
                except Exception:  # the database is away: keep the campaigns known so far
                    log.exception("campaigns not re-read for the preview follower")
                await asyncio.sleep(refresh_seconds)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(refresh(), name="dialer-preview-campaigns")
            tasks.create_task(self.follower.run(self._subscription), name="dialer-preview-follower")

    # ------------------------------------------------------------------ ports

    async def _agent_status(self, agent_id: str) -> str | None:
        try:
            return (await self.routing.agent_state(agent_id)).status.value
        except UnknownAgent:
            return None

    async def _may_take(self, agent_id: str, service: str) -> bool:
        """Has the agent every skill (not optional) the service needs, at its level?"""
        try:
            profile = self.routing.profile(agent_id)
        except UnknownAgent:
            return False
        if not profile.active:
            return False
        name = self.routing.service_named(service)
        needs = next(
            (c.routing.needs for c in await self.routing.service_configs() if c.routing.name == name), ()
        )
        skills = profile.agent.skills
        return all(skills.get(n.skill, 0) >= n.min_level for n in needs if not n.optional)

    def _key(self, channel_id: str) -> CallKey:
        return CallKey(self.settings.pbx_id, channel_id)

    async def _reserve(self, agent_id: str, channel_id: str, service: str) -> bool:
        return await self.routing.reserve_outbound(agent_id, self._key(channel_id), service)

    async def _unreserve(self, agent_id: str, channel_id: str) -> None:
        await self.routing.release_outbound(agent_id, self._key(channel_id), "campaign_call_not_dialled")

    def _follow(self, channel_id: str, lead_id: int) -> None:
        self.follower.pending[channel_id] = lead_id

    async def _call_agent(self, pbx: str, linkedid: str) -> tuple[bool, str | None]:
        live = self.routing.call(CallKey(pbx, linkedid))
        if live is not None and live.agent:
            return True, live.agent
        return await crm_campaigns.call_log_agent(self.sessionmaker, pbx, linkedid)

    async def _save_call_disposition(
        self, pbx: str, linkedid: str, user: Principal, code: str, notes: str
    ) -> None:
        call_id = await crm_console.find_call(self.sessionmaker, pbx, linkedid)
        if call_id is None:
            raise LookupError(f"no call log for {pbx}/{linkedid}")
        # The desk checked the call is the agent's; the call log checks again by its own rule.
        await crm_console.save_disposition(
            self.sessionmaker, call_id, user, disposition=code, notes=notes, now=datetime.now(UTC)
        )

    async def _card(self, customer_id: int) -> dict[str, Any] | None:
        return await crm_console.customer_card(self.sessionmaker, customer_id)

    async def refresh_campaigns(self) -> None:
        """The follower settles leads by their campaign's rules: keep its campaigns current."""
        self._campaigns = {s.campaign.id: s.campaign for s in await self.store.campaigns()}


# ------------------------------------------------------------------ the campaign loop

#: The recorded messages of campaign calls, in English then Mandarin (built with the IVR's prompt
#: builder, espeak-ng, cached by content in the PBX's sounds folder).
SAFE_HARBOR_TEXT = (
    (
        "en",
        "Hello. This call was from our contact center. We are sorry: no agent is free to take your "
        "call right now. To call us back, dial the number shown on your phone. Goodbye.",
    ),
    (
        "zh",
        "您好，这是我们客服中心的来电。很抱歉，现在没有客服人员可以接听。如需回电，请拨打您电话上显示的号码。再见。",
    ),
)
MACHINE_TEXT = (
    (
        "en",
        "Hello, this is a message from our contact center. Please call us back at the number shown on "
        "your phone. Thank you.",
    ),
    ("zh", "您好，这是我们客服中心的留言。请拨打您电话上显示的号码给我们回电。谢谢。"),
)


def _qualifies(agent: Any, needs: Iterable[Any]) -> bool:
    return all(agent.skills.get(n.skill, 0) >= n.min_level for n in needs if not n.optional)


class Campaigns:
    """The campaign loop of one PBX (``dialer.runner``) on routing's live agent states, the call
    service (which puts a campaign call's service and lead on the live call) and the bus."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: SessionMaker,
        bus: Bus,
        routing: RoutingService,
        ami: AmiClient,
        calls: CallService,
        *,
        desk: AgentDesk | None = None,
    ) -> None:
        self.settings = settings
        self.routing = routing
        self.calls = calls
        self.store = CrmDeskStore(sessionmaker)
        subscription = bus.subscribe(
            "dialer", (CallChange, LiveCallsResynced, AgentStateChanged), maxsize=100_000, coalesce=by_call
        )
        route = CallRoute(endpoint=settings.routing.callback_endpoint, context="cti-campaign")
        self.runner = CampaignRunner(
            RunnerPorts(
                store=self.store,
                link=ami,
                route=route,
                staffing=self.staffing,
                join_line=self.join_line,
                publish=bus.publish,
                clock=lambda: datetime.now(UTC),
                talk=self.store.campaign_talk,
                callback_agent=self.callback_agent,
                # A callback booked for one agent: reserved and rung as by the desk's preview Dial.
                connect_agent=desk.connect if desk is not None else None,
            ),
            subscription,
        )

    async def callback_agent(self, lead_id: int) -> str | None:
        booked = await self.store.lead_callback(lead_id)
        return booked[0] if booked is not None else None

    def live(self, campaign_id: str) -> dict[str, Any] | None:
        paced = self.runner.live(campaign_id)
        return paced_as_dict(paced) if paced is not None else None

    def _service_name(self, campaign: Campaign) -> str:
        return self.routing.service_named(campaign.service) or campaign.service

    async def staffing(self, campaign: Campaign) -> Staffing:
        """The agents who can take the campaign's service (every skill it needs, at its level), and
        the inbound calls (callers and queue callbacks) waiting in that service's line."""
        name = self._service_name(campaign)
        configs = {c.routing.name: c.routing for c in await self.routing.service_configs()}
        needs = configs[name].needs if name in configs else ()
        now = datetime.now(UTC)
        agents = tuple(
            AgentView(profile.agent.id, state.status.value, (now - state.since).total_seconds())
            for profile, state in await self.routing.agents()
            if profile.active and _qualifies(profile.agent, needs)
        )
        inbound = 0
        for waiting in self.routing.board.waiting_calls():
            if waiting.service != name:
                continue
            snap = self.routing.call(waiting.key)
            if snap is None or snap.direction is not Direction.OUTBOUND:
                inbound += 1
        return Staffing(agents, inbound)

    def join_line(self, channel_id: str, campaign: Campaign, lead_id: int) -> None:
        """Put the campaign's service and the lead on the live call: once the dialplan says a person
        answered, routing offers the call to the service's agents; the lead id travels in the call's
        ``ivr.inputs`` (``campaign``, ``lead``) to the agent's screen-pop."""
        record = IvrRecord(
            path=("campaign", campaign.id),
            inputs=(("campaign", campaign.id), ("lead", str(lead_id))),
            outcome="route",
        )
        request = RoutingRequest(
            service=self._service_name(campaign), reason=f"campaign {campaign.id} lead {lead_id}"
        )
        self.calls.record_ivr(channel_id, record, request)

    async def _build_prompts(self) -> None:
        sounds, pbx_sounds, _, _ = self.settings.ivr_dirs()
        builder = PromptBuilder(sounds)

        async def build(texts: tuple[tuple[str, str], ...]) -> str:
            names = []
            for language, text in texts:
                built = await builder.speak_async(text, language)
                names.append(f"{pbx_sounds}/{built.sound}")
            return "&".join(names)

        try:
            route = replace(
                self.runner.ports.route,
                safe_harbor_sound=await build(SAFE_HARBOR_TEXT),
                machine_sound=await build(MACHINE_TEXT),
            )
        except Exception:
            log.exception("campaign messages not built: campaign calls end without them")
            return
        self.runner.ports = replace(self.runner.ports, route=route)

    async def run(self) -> None:
        await self._build_prompts()
        await self.runner.run()
