"""Campaign calls at the agent's desk: preview dialling, the lead's record, and dispositions.

The I/O edge between the agent's console and the dialer's store; what it may ask of routing and the
call log comes through :class:`DeskPorts` (wired by the composition root).

**Preview** (``next_lead`` / ``dial`` / ``skip``): an agent who is ready and skilled for the
campaign's service gets the next due lead *held* for them (nobody else gets it until the hold
ends: one row per lead, see ``crm.campaigns.hold_next_lead``), checked for compliance at that
moment. A lead refused on the do-not-call list, a registry or consent is closed (never shown
again); one outside its calling window comes back when the window opens; a campaign blocked by a
stale registry list offers nothing. **Dial** checks compliance again, reserves the agent in routing
for the call's key (routing offers them nothing else from then on), and places the call with
``dialling.place_call`` (the attempt written before the Originate, sent once; a second Dial finds
the lead ``dialling`` and is refused). The customer is dialled first and, once they answer, the
dialplan rings the agent who asked (the customer leg carries the attempt's ChannelId, so the call's
key, its outcome and its audit trail are exactly those of any campaign call; see docs/dialer.md).
**Skip** returns the lead with the agent's reason, recorded on its trail, for later.

**Dispositions** (``dispose``): the agent who took a campaign call (or a supervisor) gives its
code; ``dispositions.plan`` turns it into the lead's next step, stored with the disposition on the
attempt, and on the call log (the customer's history); ``do_not_call`` also puts the number on the
internal list with who and why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cti.auth import Principal, Role
from cti.originate import OriginatingLink, new_channel_id
from dialer.compliance import Refusal, RegistryList, Verdict, check, lead_zones, next_window_opening
from dialer.dialling import CallRoute, Placed, PlaceResult, place_call
from dialer.dispositions import CallbackFor, Disposition, DispositionRefused, codes_from, codes_out, plan
from dialer.model import Campaign, DialMode
from dialer.store import (
    DeskStore,
    LeadView,
    StoreConflict,
    StoredCampaign,
    StoreRefused,
    UnknownCampaign,
    UnknownRecord,
)

log = logging.getLogger("cti.dialer.desk")

HOLD = timedelta(minutes=5)  # how long a previewed lead stays with the agent who sees it
SKIP_AGAIN_AFTER = timedelta(minutes=30)  # a skipped lead is due again after this
CLOSING_REFUSALS = frozenset(
    {Refusal.DO_NOT_CALL, Refusal.ON_REGISTRY, Refusal.CONSENT_WITHDRAWN, Refusal.NO_CONSENT,
     Refusal.UNKNOWN_TIME_ZONE}
)  # fmt: skip


class DeskError(Exception):
    """A request the desk refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class DeskPorts:
    """What the desk asks of other capabilities (wired by the composition root).

    ``agent_status(agent)``: routing's status name, ``None`` for an agent not configured;
    ``may_take(agent, service)``: is the agent skilled for the service; ``reserve(agent,
    channel_id, service)``: reserve a ready agent for the call that will carry ``channel_id`` (its
    key), ``False`` when they are not ready; ``unreserve(agent, channel_id)``: undo it when nothing
    was dialled; ``follow(channel_id, lead_id)``: have the call's end close its attempt;
    ``call_agent(pbx, linkedid)``: ``(known, agent)`` for the call; ``save_call_disposition(pbx,
    linkedid, user, code, notes)``: on the call log; ``customer_card(id)``; ``link`` and
    ``route(agent)``: where preview calls are placed (``None``: no PBX, dialling answers 503).
    """

    agent_status: Callable[[str], Awaitable[str | None]]
    may_take: Callable[[str, str], Awaitable[bool]]
    reserve: Callable[[str, str, str], Awaitable[bool]]
    unreserve: Callable[[str, str], Awaitable[None]]
    follow: Callable[[str, int], None]
    call_agent: Callable[[str, str], Awaitable[tuple[bool, str | None]]]
    save_call_disposition: Callable[[str, str, Principal, str, str], Awaitable[None]]
    customer_card: Callable[[int], Awaitable[dict[str, Any] | None]]
    link: OriginatingLink | None = None
    route: Callable[[str], CallRoute] | None = None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class AgentDesk:
    def __init__(self, store: DeskStore, ports: DeskPorts, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.ports = ports
        self.clock = clock

    # ------------------------------------------------------------------ shared

    async def _campaign(self, campaign_id: str) -> StoredCampaign:
        try:
            return await self.store.campaign(campaign_id)
        except UnknownCampaign as exc:
            raise DeskError(404, f"no campaign {campaign_id!r}") from exc

    async def _lead(self, lead_id: int) -> LeadView:
        try:
            return await self.store.lead(lead_id)
        except UnknownRecord as exc:
            raise DeskError(404, f"no lead {lead_id}") from exc

    async def verdict(self, campaign: Campaign, view: LeadView, now: datetime) -> Verdict:
        phone = view.lead.phone
        hits = await self.store.registry_numbers_among(campaign.registries, [phone])
        registries = {
            r.name: RegistryList(r.name, r.published_on, hits.get(r.name, frozenset()))
            for r in await self.store.registries()
            if r.name in campaign.registries
        }
        dnc = await self.store.do_not_call_among([phone])
        return check(campaign, view.lead, now, do_not_call=dnc, registries=registries)

    async def _ready_for(self, agent_id: str, campaign: Campaign) -> None:
        status = await self.ports.agent_status(agent_id)
        if status is None:
            raise DeskError(404, f"no agent {agent_id}")
        if status != "ready":
            raise DeskError(409, f"agent {agent_id} is {status}: only a ready agent previews leads")
        if not await self.ports.may_take(agent_id, campaign.service):
            raise DeskError(403, f"agent {agent_id} is not skilled for service {campaign.service}")

    async def lead_record(self, lead_id: int) -> dict[str, Any]:
        """The lead as the agent's screen shows it: campaign, name (any script), number, fields,
        attempts with their dispositions, the lead's trail, the booked callback, the linked
        customer's card, and the campaign's disposition codes."""
        view = await self._lead(lead_id)
        stored = await self._campaign(view.lead.campaign_id)
        c = stored.campaign
        dispositions = await self.store.dispositions(lead_id)
        callback = await self.store.lead_callback(lead_id)
        card = None
        if view.lead.customer_id is not None:
            try:
                card = await self.ports.customer_card(view.lead.customer_id)
            except Exception:  # the lead shows without the card rather than not at all
                log.exception("customer card %s not read for lead %s", view.lead.customer_id, lead_id)
        attempts = []
        for a in await self.store.attempts(lead_id):
            d = dispositions.get(a.channel_id)
            attempts.append(
                {
                    "number": a.number,
                    "dialled_at": _iso(a.dialled_at),
                    "outcome": a.outcome.value,
                    "ended_at": _iso(a.ended_at),
                    "disposition": None
                    if d is None
                    else {"code": d.code, "notes": d.notes, "agent_id": d.agent_id, "at": _iso(d.at),
                          "next_step": d.next_step},
                }
            )  # fmt: skip
        lead = view.lead
        return {
            "campaign": {"id": c.id, "name": c.name, "mode": c.mode.value, "service": c.service},
            "lead": {
                "id": lead.id,
                "name": lead.name,
                "phone": lead.phone,
                "fields": dict(lead.fields),
                "consent": lead.consent,
                "status": view.status,
                "next_attempt_at": _iso(view.next_attempt_at),
                "done_reason": view.done_reason,
                "customer_id": lead.customer_id,
            },
            "attempts": attempts,
            "events": [
                {"at": _iso(e.at), "kind": e.kind, "actor": e.actor, "detail": e.detail}
                for e in await self.store.lead_events(lead_id)
            ],
            "callback": None if callback is None else {"agent_id": callback[0], "at": _iso(callback[1])},
            "customer": card,
            "dispositions": codes_out(await self._codes(c.id)),
        }

    async def _codes(self, campaign_id: str) -> Any:
        try:
            return codes_from(await self.store.disposition_codes(campaign_id))
        except (ValueError, KeyError, TypeError) as exc:  # stored codes no longer valid: say so
            raise DeskError(500, f"campaign {campaign_id}'s disposition codes are invalid: {exc}") from exc

    # ------------------------------------------------------------------ the campaign call

    async def _owned_attempt(self, user: Principal, pbx: str, linkedid: str) -> Any:
        attempt = await self.store.attempt_by_channel(linkedid)
        if attempt is None:
            raise DeskError(404, f"call {pbx}/{linkedid} is not a campaign call")
        known, agent = await self.ports.call_agent(pbx, linkedid)
        if not known:
            raise DeskError(404, f"no call {pbx}/{linkedid}")
        if not user.role.includes(Role.SUPERVISOR) and agent != user.username:
            raise DeskError(403, "an agent may only see and dispose of campaign calls they took")
        return attempt

    async def campaign_call(self, user: Principal, pbx: str, linkedid: str) -> dict[str, Any]:
        """The lead record of the campaign call ``pbx``/``linkedid`` (its agent, or a supervisor)."""
        attempt = await self._owned_attempt(user, pbx, linkedid)
        return {"call": f"{pbx}/{linkedid}", **await self.lead_record(attempt.lead_id)}

    async def dispose(
        self, user: Principal, pbx: str, linkedid: str, disposition: Disposition
    ) -> dict[str, Any]:
        """Apply the agent's disposition of an ended campaign call (see the module docstring).

        404 not a campaign call, 403 someone else's call, 422 a bad disposition, 409 while the
        call's outcome is not written yet or when it has a disposition already."""
        attempt = await self._owned_attempt(user, pbx, linkedid)
        if disposition.callback_for is CallbackFor.ME and not user.username.isdigit():
            raise DeskError(422, "only an agent can book a callback for themself: book it for anyone")
        view = await self._lead(attempt.lead_id)
        stored = await self._campaign(view.lead.campaign_id)
        now = self.clock()
        attempts = list(await self.store.attempts(attempt.lead_id))
        try:
            step = plan(
                stored.campaign, await self._codes(stored.campaign.id), view.lead, attempts, disposition,
                user.username, now,
            )  # fmt: skip
        except DispositionRefused as exc:
            raise DeskError(422, str(exc)) from exc
        try:
            await self.store.dispose_attempt(
                attempt.channel_id, step.code.code, disposition.notes, user.username, now,
                status=step.kind.value, next_attempt_at=step.at, reason=step.reason,
                callback=step.callback, callback_agent=step.callback_agent,
            )  # fmt: skip
        except StoreConflict as exc:
            raise DeskError(409, str(exc)) from exc
        except StoreRefused as exc:
            raise DeskError(422, str(exc)) from exc
        if step.do_not_call:
            reason = f"asked during campaign {stored.campaign.id}'s call {pbx}/{linkedid}"
            if disposition.notes:
                reason += f": {disposition.notes[:300]}"
            await self.store.add_do_not_call(view.lead.phone, reason, "disposition", user.username, now)
            added = f"{view.lead.phone} added to the do-not-call list"
            await self.store.add_lead_event(view.lead.id, "do_not_call", user.username, added, now)
        try:
            await self.ports.save_call_disposition(pbx, linkedid, user, step.code.code, disposition.notes)
        except LookupError:
            log.warning("campaign call %s/%s has no call log: disposition kept on the attempt", pbx, linkedid)
        return {
            "disposition": step.code.code,
            "lead_id": view.lead.id,
            "next_step": step.kind.value,
            "at": _iso(step.at),
            "reason": step.reason,
            "callback_agent": step.callback_agent,
            "do_not_call": step.do_not_call,
            "note": step.note,
        }

    # ------------------------------------------------------------------ preview

    async def preview_campaigns(self, agent_id: str) -> list[dict[str, Any]]:
        """Active preview campaigns the agent is skilled for."""
        out = []
        for stored in await self.store.campaigns():
            c = stored.campaign
            preview = stored.active and c.mode is DialMode.PREVIEW
            if preview and await self.ports.may_take(agent_id, c.service):
                out.append({"id": c.id, "name": c.name, "service": c.service})
        return out

    async def next_lead(self, agent_id: str, campaign_id: str) -> dict[str, Any] | None:
        """Hold the campaign's next callable lead for the agent and return its record (``None``:
        no lead is due). Leads refused on the way are closed or put back, with the reason on their
        trail."""
        stored = await self._campaign(campaign_id)
        c = stored.campaign
        if c.mode is not DialMode.PREVIEW:
            raise DeskError(409, f"campaign {campaign_id} is {c.mode.value}, not preview")
        if not stored.active:
            raise DeskError(409, f"campaign {campaign_id} is stopped")
        await self._ready_for(agent_id, c)
        tried: list[int] = []
        for _ in range(20):
            now = self.clock()
            view = await self.store.hold_next_lead(campaign_id, agent_id, now, now + HOLD, tried)
            if view is None:
                return None
            tried.append(view.lead.id)
            verdict = await self.verdict(c, view, now)
            if verdict.allowed:
                record = await self.lead_record(view.lead.id)
                record["hold_until"] = _iso(now + HOLD)
                return record
            await self._refused(c, view, verdict, agent_id, now)
            if Refusal.CAMPAIGN_BLOCKED in verdict.refusals:
                raise DeskError(409, f"campaign {campaign_id} is blocked: {verdict.detail}")
        return None

    async def _refused(
        self, campaign: Campaign, view: LeadView, verdict: Verdict, agent_id: str, now: datetime
    ) -> None:
        lead_id = view.lead.id
        await self.store.add_lead_event(lead_id, "refused", None, f"at preview: {verdict.detail}", now)
        if CLOSING_REFUSALS & set(verdict.refusals):
            await self.store.close_lead(lead_id, f"not dialled: {verdict.detail}", now)
            return
        later = None
        if Refusal.OUTSIDE_WINDOW in verdict.refusals:
            later = next_window_opening(campaign.window, lead_zones(view.lead), now)
        await self.store.release_hold(lead_id, agent_id, later, now)

    async def _held(self, agent_id: str, lead_id: int) -> None:
        hold = await self.store.lead_hold(lead_id)
        if hold is None or hold[0] != agent_id or hold[1] <= self.clock():
            raise DeskError(409, f"lead {lead_id} is not held for agent {agent_id}: ask for the next lead")

    async def dial(self, agent_id: str, lead_id: int) -> dict[str, Any]:
        """Dial the lead the agent holds (see the module docstring). 409 when it is not theirs, no
        longer callable, already dialled, or the agent is not ready; 503 without a PBX."""
        if self.ports.link is None or self.ports.route is None:
            raise DeskError(503, "no PBX to dial through")
        await self._held(agent_id, lead_id)
        view = await self._lead(lead_id)
        stored = await self._campaign(view.lead.campaign_id)
        c = stored.campaign
        if not stored.active or c.mode is not DialMode.PREVIEW:
            raise DeskError(409, f"campaign {c.id} is not a running preview campaign")
        await self._ready_for(agent_id, c)
        now = self.clock()
        verdict = await self.verdict(c, view, now)
        if not verdict.allowed:
            await self._refused(c, view, verdict, agent_id, now)
            raise DeskError(409, f"not dialled: {verdict.detail}")
        channel_id = new_channel_id("dial")
        try:
            result = await self.connect(agent_id, c, view, verdict, now, channel_id)
        except StoreConflict as exc:
            raise DeskError(409, f"not dialled: {exc}") from exc
        if result is None:
            raise DeskError(409, f"agent {agent_id} is no longer ready: not dialled")
        await self.store.release_hold(lead_id, agent_id, None, now)
        if result.placed in (Placed.RINGING, Placed.UNRESOLVED):
            self.ports.follow(channel_id, lead_id)
        log.info("preview: agent %s dialled lead %s (%s): %s", agent_id, lead_id, channel_id, result.placed)
        return {"lead_id": lead_id, "channel_id": channel_id, "placed": result.placed.value,
                "detail": result.detail}  # fmt: skip

    async def connect(
        self, agent_id: str, campaign: Campaign, view: LeadView, verdict: Verdict, now: datetime,
        channel_id: str,
    ) -> PlaceResult | None:  # fmt: skip
        """Dial ``view`` for ``agent_id`` only: reserve the agent in routing for the call's key
        ``channel_id``, then ``place_call`` through ``ports.route(agent_id)`` (the customer first;
        once they answer the dialplan rings that agent). ``None`` when the agent could not be
        reserved (not ready): nothing was dialled. The reservation is undone when nothing was
        dialled. The caller follows the call (its outcome closes the attempt). Used by the preview
        Dial and by the campaign loop for a callback booked for one agent. Raises the store's
        ``StoreConflict`` when the lead is already being dialled or is done."""
        if self.ports.link is None or self.ports.route is None:
            raise DeskError(503, "no PBX to dial through")
        if not await self.ports.reserve(agent_id, channel_id, campaign.service):
            return None
        try:
            result = await place_call(
                self.store, self.ports.link, campaign, view, verdict, self.ports.route(agent_id), now,
                channel_id=channel_id,
            )  # fmt: skip
        except Exception:
            await self.ports.unreserve(agent_id, channel_id)
            raise
        if result.placed not in (Placed.RINGING, Placed.UNRESOLVED):
            await self.ports.unreserve(agent_id, channel_id)
        return result

    async def skip(self, agent_id: str, lead_id: int, reason: str) -> None:
        """Give the held lead back, due again later, with the agent's reason on its trail."""
        await self._held(agent_id, lead_id)
        now = self.clock()
        if not await self.store.release_hold(lead_id, agent_id, now + SKIP_AGAIN_AFTER, now):
            raise DeskError(409, f"lead {lead_id} is not held for agent {agent_id}")
        await self.store.add_lead_event(lead_id, "skipped", agent_id, reason or "(no reason given)", now)
