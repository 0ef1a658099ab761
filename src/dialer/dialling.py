"""Placing one campaign call, and reconciling attempts after a restart, without ever dialling a
number twice. The I/O edge of the dialer: it writes through the storage port and speaks to Asterisk
through ``cti.originate``.

``place_call``: only with an allowing compliance verdict; the attempt is written (``pending``, with
the ``ChannelId`` chosen here) and committed before the Originate is sent; the Originate is sent
once. What Asterisk answered decides the attempt:

- accepted, or the link was lost and our ChannelId is live: the call exists; the attempt stays
  pending until the call's own outcome is known;
- refused by Asterisk, or the link was down before anything was written: nothing was dialled; the
  attempt ends ``failed`` and the campaign's retry rule for ``failed`` applies;
- the link was lost and no channel has our ChannelId: the call may have rung and ended; the attempt
  ends ``unknown`` and the lead is done (dialled again only by someone's decision);
- the link was lost and did not come back in time: the attempt stays pending, and the lead cannot
  be dialled again until ``reconcile_pending`` has looked for it.

``reconcile_pending`` runs at start-up (and after the AMI link comes back): every pending attempt
whose ChannelId is not among Asterisk's live channels ends ``unknown``; live ones are reported to
be followed.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime

from cti.originate import OriginateOutcome, OriginateRequest, OriginatingLink, new_channel_id, originate
from cti.ports import LinkDown
from dialer.compliance import Verdict
from dialer.model import Campaign, NextStepKind, Outcome, next_step
from dialer.store import CampaignStore, LeadView


class Placed(enum.StrEnum):
    RINGING = "ringing"  # Asterisk has the call
    NOT_DIALLED = "not_dialled"  # nothing reached the customer: failed, retry rules apply
    LOST_TRACK = "lost_track"  # may have rung: unknown, lead done
    UNRESOLVED = "unresolved"  # pending until reconciled


@dataclass(frozen=True, slots=True)
class PlaceResult:
    placed: Placed
    channel_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class CallRoute:
    """Where campaign calls leave and where an answered call goes in the dialplan.

    ``endpoint`` is the PJSIP trunk endpoint; the dialled number goes in as digits only (no ``+``).
    ``safe_harbor_sound`` and ``machine_sound`` are the PBX's names of the recorded messages (the
    safe-harbor message, and the message left on a machine), ``&``-joined when several play in turn.
    """

    endpoint: str
    context: str
    exten: str = "s"
    safe_harbor_sound: str = ""
    machine_sound: str = ""


async def settle_lead(store: CampaignStore, campaign: Campaign, lead_id: int, now: datetime) -> None:
    """Apply the campaign's retry rules to a lead whose last attempt has ended."""
    attempts = list(await store.attempts(lead_id))
    step = next_step(campaign, attempts, now)
    if step.kind is NextStepKind.RETRY:
        await store.schedule_lead(lead_id, "scheduled", step.at, step.reason, now)
    else:
        await store.schedule_lead(lead_id, "done", None, step.reason, now)


async def place_call(
    store: CampaignStore,
    link: OriginatingLink,
    campaign: Campaign,
    lead: LeadView,
    verdict: Verdict,
    route: CallRoute,
    now: datetime,
    *,
    reconcile_within: float = 30.0,
    channel_id: str | None = None,
) -> PlaceResult:
    """Dial ``lead`` for ``campaign`` once (see the module docstring).

    ``channel_id``: the ChannelId to use when the caller needed it before dialling (preview
    reserves the agent for the call's key first); a new one otherwise.

    Raises ``ValueError`` for a refusing verdict (nothing is written or sent) and the store's
    ``StoreConflict`` when the lead already has a pending attempt or is done.
    """
    if not verdict.allowed:
        raise ValueError(f"not dialled: {verdict.detail}")
    channel_id = channel_id or new_channel_id("dial")
    request = OriginateRequest(
        channel=f"PJSIP/{lead.lead.phone.lstrip('+')}@{route.endpoint}",
        context=route.context,
        exten=route.exten,
        caller_id_num=campaign.caller_id,
        ring_seconds=campaign.ring_seconds,
        variables={
            "CTI_CAMPAIGN": campaign.id,
            "CTI_LEAD": str(lead.lead.id),
            "CTI_SERVICE": campaign.service,
            "CTI_AMD": "1" if campaign.amd else "0",
            "CTI_MACHINE": campaign.machine_policy.value,
            "CTI_MACHINE_SOUND": route.machine_sound,
            "CTI_SAFE_HARBOR_SOUND": route.safe_harbor_sound,
        },
        channel_id=channel_id,
    )
    # The audit trail first: once this returns, the attempt is on record whatever happens next.
    await store.begin_attempt(lead.lead.id, channel_id, now)
    try:
        result = await originate(link, request, reconcile_within=reconcile_within)
    except LinkDown as exc:
        # LinkDown is raised only before anything was written: nothing was dialled.
        await store.finish_attempt(channel_id, Outcome.FAILED, now, f"not sent: {exc}")
        await settle_lead(store, campaign, lead.lead.id, now)
        return PlaceResult(Placed.NOT_DIALLED, channel_id, f"not sent: {exc}")
    if result.outcome in (OriginateOutcome.ACCEPTED, OriginateOutcome.LIVE_AFTER_LOSS):
        return PlaceResult(Placed.RINGING, channel_id, result.message)
    if result.outcome is OriginateOutcome.FAILED:
        await store.finish_attempt(channel_id, Outcome.FAILED, now, result.message)
        await settle_lead(store, campaign, lead.lead.id, now)
        return PlaceResult(Placed.NOT_DIALLED, channel_id, result.message)
    if result.outcome is OriginateOutcome.ABSENT_AFTER_LOSS:
        await store.finish_attempt(channel_id, Outcome.UNKNOWN, now, result.message)
        await settle_lead(store, campaign, lead.lead.id, now)
        return PlaceResult(Placed.LOST_TRACK, channel_id, result.message)
    return PlaceResult(Placed.UNRESOLVED, channel_id, result.message)


@dataclass(frozen=True, slots=True)
class Reconciled:
    live: tuple[str, ...]  # ChannelIds still live in Asterisk: their calls are to be followed
    ended_unknown: tuple[str, ...]  # ChannelIds not live: attempts ended ``unknown``, leads done


async def reconcile_pending(
    store: CampaignStore,
    link: OriginatingLink,
    campaigns: Mapping[str, Campaign],
    now: datetime,
    *,
    within: float = 30.0,
    skip: Container[str] = (),
) -> Reconciled:
    """Settle every pending attempt by looking for its ChannelId among Asterisk's live channels.

    Raises ``TimeoutError``/``LinkDown`` when Asterisk cannot be asked: nothing is changed then,
    and no lead with a pending attempt can be dialled meanwhile. Attempts whose ChannelId is in
    ``skip`` (calls the caller already follows) are left alone.
    """
    pending = [a for a in await store.pending_attempts() if a.channel_id not in skip]
    if not pending:
        return Reconciled((), ())
    await link.wait_connected(within)
    _, channels = await link.send_list("CoreShowChannels")
    alive = {c.get("Uniqueid") for c in channels}
    live: list[str] = []
    ended: list[str] = []
    for attempt in pending:
        if attempt.channel_id in alive:
            live.append(attempt.channel_id)
            continue
        await store.finish_attempt(
            attempt.channel_id, Outcome.UNKNOWN, now, "no live channel with its ChannelId at reconciliation"
        )
        lead = await store.lead(attempt.lead_id)
        campaign = campaigns.get(lead.lead.campaign_id)
        if campaign is not None:
            await settle_lead(store, campaign, attempt.lead_id, now)
        ended.append(attempt.channel_id)
    return Reconciled(tuple(live), tuple(ended))
