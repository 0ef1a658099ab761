"""The dialer's bus subscription: campaign calls' ends give their attempts an outcome.

A call we originated carries our ChannelId as its first channel's Uniqueid, which Asterisk also
uses as the call's Linkedid: that is how an ended call is matched to its pending attempt. The
attempt gets the outcome ``dialer.outcomes.outcome_of`` reads from the call, and the campaign's
retry rules then schedule or close the lead. Calls that are not campaign calls are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from cti.bus import Subscription
from cti.model import CallChange, ChangeKind
from dialer.dialling import settle_lead
from dialer.model import Campaign, Outcome
from dialer.outcomes import outcome_of
from dialer.store import CampaignStore, StoreConflict, UnknownRecord

log = logging.getLogger("cti.dialer")


class AttemptFollower:
    """Closes pending attempts from ``CallChange`` messages (``ENDED``, or ``CLOSED`` without one).

    ``pending`` maps the ChannelIds being followed to their lead ids (the dialler adds one per call
    it places, and the ones reconciliation found live). ``machines`` is the set of ChannelIds AMD
    classified as machines. ``on_outcome`` is told every outcome written (live statistics, the
    abandonment ledger).
    """

    def __init__(
        self,
        store: CampaignStore,
        campaigns: Callable[[], Mapping[str, Campaign]],
        *,
        on_outcome: Callable[[str, Outcome, datetime], None] | None = None,
    ) -> None:
        self._store = store
        self._campaigns = campaigns
        self._on_outcome = on_outcome
        self.pending: dict[str, int] = {}
        self.machines: set[str] = set()

    async def handle(self, change: CallChange) -> Outcome | None:
        """Apply one change; returns the outcome written, if any.

        ``ENDED`` or ``CLOSED``, whichever comes first: a call with no wrap-up (or one whose ``ENDED``
        a coalescing mailbox replaced by its ``CLOSED``) is only ever seen closed."""
        if change.kind not in (ChangeKind.ENDED, ChangeKind.CLOSED):
            return None
        call = change.call
        channel_id = next((c for c in (call.anchor_uniqueid, call.key.linkedid) if c in self.pending), None)
        if channel_id is None or call.ended_at is None:
            return None
        lead_id = self.pending.pop(channel_id)
        outcome = outcome_of(call, machine=channel_id in self.machines)
        self.machines.discard(channel_id)
        detail = f"cause {call.hangup_cause}" if call.hangup_cause is not None else ""
        try:
            await self._store.finish_attempt(channel_id, outcome, call.ended_at, detail)
            lead = await self._store.lead(lead_id)
        except (StoreConflict, UnknownRecord) as exc:
            log.warning("attempt %s not closed: %s", channel_id, exc)
            return None
        campaign = self._campaigns().get(lead.lead.campaign_id)
        if campaign is not None:
            await settle_lead(self._store, campaign, lead_id, call.ended_at)
        if self._on_outcome is not None:
            self._on_outcome(lead.lead.campaign_id, outcome, call.ended_at)
        return outcome

    async def run(self, subscription: Subscription) -> None:
        """Follow the bus until the subscription closes; one failing message never stops it."""
        async for message in subscription:
            if isinstance(message, CallChange):
                try:
                    await self.handle(message)
                except Exception:  # a store outage must not end the follower; the attempt stays pending
                    log.exception("following campaign call %s failed", message.call.key)
