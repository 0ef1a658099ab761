"""The campaign loop: progressive and predictive campaigns dialled inside the running platform.

One ``CampaignRunner`` paces every active progressive or predictive campaign, on a short tick and
after the bus says something changed (a campaign call ended, an agent's state changed). Each pass,
for each campaign:

1. the campaign's registry lists are read; one missing or stale stops the campaign (nothing dialled,
   the pace says why);
2. the agents who take the campaign's service are counted from their live states (a port: the
   dialer never imports routing) and **blended** with inbound work (``blend``: inbound calls
   waiting for those agents keep as many ready agents for themselves);
3. due leads are read and checked one by one (``dialer.compliance.check``): a number on the
   do-not-call list or a registry, or whose consent was withdrawn or never recorded when the
   campaign needs it, is closed (``done``, with the reason); one outside its calling window (in
   every time zone its number can be in) is scheduled for the window's next opening; one whose
   time zone is unknown is closed (unknown means not called);
4. the pacer (``dialer.pacer``) reads a snapshot of agents, ringing and waiting calls, the
   observed traffic and the abandonment ledger and says how many calls to dial, and why;
5. ``dialer.dialling.place_call`` dials that many of the allowed leads, each written before it is
   dialled.

A due callback booked for one agent (``route_callbacks``, pure) is dialled for that agent only when
they are ready for the campaign, before the pacer's calls and in place of one of its ready agents,
through the ``connect_agent`` port: the desk's preview Dial path (the agent reserved in routing for
the call's key, the customer dialled, the dialplan rings the agent); such a call is never put in
the service's line. While the agent is not ready the lead waits, at most ``CALLBACK_WAIT`` from
when it became due; then it is dialled like any lead, for whoever is free.

Campaign calls are followed on the bus: when one starts, ``join_line`` (a port) puts the campaign's
service and the lead on the call, so that the person, once the dialplan has decided it is one,
waits in the service's line like a caller and routing redirects them to an agent; when one ends,
``AttemptFollower`` gives its attempt an outcome and the retry rules schedule or close the lead.
A call the dialplan ended as an answering machine ends with ``MACHINE_HANGUP_CAUSE``.

The abandonment ledger is built at start-up from the stored attempts of the rule's window (the
attempts are the record: a restart loses nothing), and pending attempts left by an earlier run are
reconciled by ChannelId (``reconcile_pending``) before anything is dialled, and again after a
resync (the AMI link came back) for attempts this run is not following.

After every pass that changed something, and every ``publish_seconds`` anyway, a
``cti.model.CampaignPaced`` is published with the pace, its reason and live statistics; ``live``
reads the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as monotonic_time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from cti.bus import Subscription
from cti.model import AgentStateChanged, CallChange, CampaignPaced, ChangeKind, LiveCallsResynced
from cti.originate import OriginatingLink, new_channel_id
from cti.ports import LinkDown
from dialer.abandonment import AbandonmentFigures, AbandonmentLedger
from dialer.compliance import (
    Refusal,
    RegistryList,
    Verdict,
    campaign_blocks,
    check,
    lead_zones,
    next_window_opening,
)
from dialer.dialling import CallRoute, Placed, PlaceResult, place_call, reconcile_pending
from dialer.handlers import AttemptFollower
from dialer.model import LIVE_ANSWER_OUTCOMES, Attempt, Campaign, DialMode, Outcome
from dialer.pacer import PaceDecision, Pacer, PacingSnapshot, TrafficObserver, pacer_for
from dialer.stats import campaign_stats, talk_per_agent_hour
from dialer.store import CampaignStore, LeadView, StoreConflict, StoreError

log = logging.getLogger("cti.dialer.runner")

#: The hangup cause the campaign dialplan ends an answering machine's call with (ISDN 127,
#: "interworking, unspecified": never what a network reports for a call the dialplan still holds).
MACHINE_HANGUP_CAUSE = 127
#: The ChannelId prefix of a callback dialled for the one agent who booked it (found again by it at
#: start-up: such a call is never put in the service's line).
DIRECT_CALL_PREFIX = "cbk"
#: Statuses (routing's names) of agents busy with a call and of agents in wrap-up.
_ON_CALL = frozenset({"on_call", "reserved"})
_WRAP_UP = frozenset({"wrap_up"})
_DIALLED_MODES = frozenset({DialMode.PROGRESSIVE, DialMode.PREDICTIVE})
# Refusals that close the lead for good (a person, a law or a list said no; or no zone is known).
_CLOSING = frozenset(
    {
        Refusal.DO_NOT_CALL,
        Refusal.ON_REGISTRY,
        Refusal.CONSENT_WITHDRAWN,
        Refusal.NO_CONSENT,
        Refusal.UNKNOWN_TIME_ZONE,
    }
)


# --------------------------------------------------------------------------------------- pure


@dataclass(frozen=True, slots=True)
class AgentView:
    """One agent who takes the campaign's service: routing's status name and seconds in it."""

    agent_id: str
    status: str
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Staffing:
    """The campaign's agents now, and the inbound calls waiting in their services' lines."""

    agents: tuple[AgentView, ...]
    inbound_waiting: int = 0


@dataclass(frozen=True, slots=True)
class CampaignAgents:
    """What the pacer may count on: ``ready`` agents free for the campaign, and the seconds each
    busy agent has been talking or wrapping up. ``kept_for_inbound`` ready agents were left to
    inbound calls waiting for them."""

    ready: int
    talking: tuple[float, ...]
    wrapping: tuple[float, ...]
    kept_for_inbound: int

    @property
    def logged_in(self) -> int:
        return self.ready + self.kept_for_inbound + len(self.talking) + len(self.wrapping)


def blend(staffing: Staffing) -> CampaignAgents:
    """Blending: agents take inbound and campaign calls in one shift, inbound first.

    Each inbound call waiting for these agents needs one of the ready agents, so as many ready agents
    (at most all of them) are not counted as available to the campaign. Agents on a call (inbound or
    campaign) or in wrap-up count as busy: the predictive pacer expects them back when they finish.
    """
    ready = sum(1 for a in staffing.agents if a.status == "ready")
    kept = min(ready, max(0, staffing.inbound_waiting))
    talking = tuple(max(0.0, a.seconds) for a in staffing.agents if a.status in _ON_CALL)
    wrapping = tuple(max(0.0, a.seconds) for a in staffing.agents if a.status in _WRAP_UP)
    return CampaignAgents(ready - kept, talking, wrapping, kept)


#: How long a due callback booked for one agent waits for that agent to be ready (for the campaign)
#: before it is dialled like any lead, to whoever is free: counted from the time it became due.
CALLBACK_WAIT = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class DueLead:
    """A due lead compliance allows now: when it became due, and the agent its booked callback is
    for (``None``: anyone, or no callback)."""

    lead_id: int
    due_at: datetime | None
    callback_agent: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackRouting:
    """``direct``: ``(lead, agent)`` pairs to dial for that agent only; ``pooled``: leads for
    whoever is free (the pacer's); ``waiting``: callbacks left for their agent, not dialled now."""

    direct: tuple[tuple[int, str], ...]
    pooled: tuple[int, ...]
    waiting: tuple[int, ...]


def route_callbacks(
    due: Sequence[DueLead],
    ready: Collection[str],
    free: int,
    now: datetime,
    wait: timedelta = CALLBACK_WAIT,
) -> CallbackRouting:
    """Which leads go to one agent, which to anyone, which wait (in ``due``'s order).

    A lead without a booked agent is pooled. A callback booked for an agent who is ``ready`` (ready
    and qualified for the campaign's service) is dialled for them, one lead per agent per pass and
    at most ``free`` in all (the ready agents left to the campaign once waiting inbound calls took
    theirs). Otherwise it waits for its agent, until it has been due for ``wait``: then it is
    pooled (the customer asked to be called; anyone is better than never).
    """
    direct: list[tuple[int, str]] = []
    pooled: list[int] = []
    waiting: list[int] = []
    used: set[str] = set()
    for lead in due:
        agent = lead.callback_agent
        if agent is None:
            pooled.append(lead.lead_id)
        elif agent in ready and agent not in used and len(direct) < free:
            direct.append((lead.lead_id, agent))
            used.add(agent)
        elif lead.due_at is not None and now - lead.due_at >= wait:
            pooled.append(lead.lead_id)
        else:
            waiting.append(lead.lead_id)
    return CallbackRouting(tuple(direct), tuple(pooled), tuple(waiting))


# ---------------------------------------------------------------------------------------- ports


@dataclass(frozen=True, slots=True)
class RunnerPorts:
    """What the composition root gives the runner.

    ``staffing(campaign)``: the campaign's agents and inbound waiting calls now. ``join_line(channel_id,
    campaign, lead_id)``: put the campaign's service and the lead on the live call (routing then
    treats the answered person like a waiting caller). ``publish``: the bus.
    """

    store: CampaignStore
    link: OriginatingLink
    route: CallRoute
    staffing: Callable[[Campaign], Awaitable[Staffing]]
    join_line: Callable[[str, Campaign, int], None]
    publish: Callable[[object], None]
    clock: Callable[[], datetime]
    #: ``talk(campaign_id, since)``: seconds each agent talked on the campaign's calls that ended
    #: after ``since``, from the stored call logs (the live figures survive a restart).
    talk: Callable[[str, datetime], Awaitable[Mapping[str, float]]]
    #: The agent a lead's booked callback is for (``None``: anyone, or no callback).
    callback_agent: Callable[[int], Awaitable[str | None]] | None = None
    #: ``connect_agent(agent, campaign, lead, verdict, now, channel_id)``: dial the lead for that
    #: agent only, as a preview Dial does (the agent reserved in routing for ``channel_id`` first,
    #: the customer dialled, then the dialplan rings the agent); ``None`` when the agent could not be
    #: reserved. Without it a callback booked for one agent goes to anyone after ``CALLBACK_WAIT``.
    connect_agent: (
        Callable[[str, Campaign, LeadView, Verdict, datetime, str], Awaitable[PlaceResult | None]] | None
    ) = None


@dataclass(slots=True)
class _Live:
    """One campaign's running figures (this run's; the ledger is rebuilt from the record)."""

    campaign: Campaign
    pacer: Pacer
    ledger: AbandonmentLedger
    observer: TrafficObserver = field(default_factory=TrafficObserver)
    ringing: dict[str, datetime] = field(default_factory=dict)  # ChannelId -> dialled at
    waiting: set[str] = field(default_factory=set)
    # (at, agent-seconds, seconds) sampled by this run: who is staffed is not stored
    staffed: deque[tuple[datetime, float, float]] = field(default_factory=deque)
    last_pass: datetime | None = None
    last: CampaignPaced | None = None
    published_at: float = 0.0


@dataclass(slots=True)
class _Followed:
    campaign_id: str
    lead_id: int
    dialled_at: datetime
    joined: bool = False
    seen: bool = False  # a change of its call came on the bus
    direct: bool = False  # dialled for one reserved agent: not in the service's line, not "ringing"


#: A call accepted by Asterisk but never seen on the bus this long after its ring time is looked for
#: by its ChannelId (an asynchronous Originate failure creates no channel).
UNSEEN_GRACE = timedelta(seconds=30)


class CampaignRunner:
    """Runs the progressive and predictive campaigns of one PBX; ``run`` is a long-lived task."""

    def __init__(
        self,
        ports: RunnerPorts,
        subscription: Subscription,
        *,
        tick_seconds: float = 1.0,
        publish_seconds: float = 5.0,
        leads_per_pass: int = 200,
        reconcile_within: float = 30.0,
    ) -> None:
        self.ports = ports
        self._sub = subscription
        self.tick_seconds = tick_seconds
        self.publish_seconds = publish_seconds
        self.leads_per_pass = leads_per_pass
        self.reconcile_within = reconcile_within
        self._campaigns: dict[str, Campaign] = {}
        self._live: dict[str, _Live] = {}
        self._followed: dict[str, _Followed] = {}
        self.follower = AttemptFollower(ports.store, lambda: self._campaigns, on_outcome=self._on_outcome)
        self.started = asyncio.Event()
        self.errors = 0
        #: Told ``(campaign_id, lead_id, outcome)`` after each attempt's outcome is written (the demo
        #: prints them); must not block.
        self.outcome_listeners: list[Callable[[str, int, Outcome], None]] = []

    # ------------------------------------------------------------------ reading

    def live(self, campaign_id: str) -> CampaignPaced | None:
        """The campaign's last published pace and statistics (``None`` before its first pass)."""
        state = self._live.get(campaign_id)
        return state.last if state is not None else None

    def abandonment(self, campaign_id: str, now: datetime) -> AbandonmentFigures | None:
        """The campaign's abandonment ledger (what the pacer reads), ``None`` before it was loaded."""
        state = self._live.get(campaign_id)
        return state.ledger.figures(now) if state is not None else None

    def following(self) -> frozenset[str]:
        """The ChannelIds of campaign calls this run follows."""
        return frozenset(self._followed)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Reconcile, rebuild the ledgers, then pace and follow the bus until cancelled."""
        try:
            await self._start()
            self.started.set()
            next_tick = monotonic_time.monotonic()
            while True:
                timeout = max(0.0, next_tick - monotonic_time.monotonic())
                message = None
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(self._sub.get(), timeout)
                try:
                    relevant = await self._on_message(message) if message is not None else False
                    if relevant or monotonic_time.monotonic() >= next_tick:
                        await self.pace_all()
                        next_tick = monotonic_time.monotonic() + self.tick_seconds
                except Exception:  # a store or link outage must not end the campaign loop
                    self.errors += 1
                    log.exception("campaign pass failed; next pass in %.1f s", self.tick_seconds)
                    next_tick = monotonic_time.monotonic() + self.tick_seconds
        finally:
            self._sub.close()

    async def _start(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._load_campaigns()
                await self._load_ledgers()  # first: calls found live are then counted as ringing
                await self._reconcile(skip=frozenset(), preview=True)
                return
            except (StoreError, LinkDown, TimeoutError, OSError) as exc:
                log.warning("campaigns not started yet (%s); retrying", exc)
            except Exception:  # the database may come up after the platform
                log.exception("campaigns not started yet; retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _load_campaigns(self) -> list[tuple[Campaign, bool]]:
        stored = await self.ports.store.campaigns()
        self._campaigns = {s.campaign.id: s.campaign for s in stored}
        return [(s.campaign, s.active) for s in stored]

    async def _reconcile(self, *, skip: frozenset[str], preview: bool) -> None:
        """Settle pending attempts by ChannelId (not live: ``unknown``, never redialled); live ones
        of progressive and predictive campaigns are followed. With ``preview`` (at start-up) the
        attempts of preview calls are settled too; a live preview call is left to the agent's desk,
        which follows its own calls (and sees those that end while the link is down)."""
        pending: dict[str, tuple[Attempt, bool]] = {}
        others = set(skip)
        for attempt in await self.ports.store.pending_attempts():
            if attempt.channel_id in skip:
                continue
            lead = await self.ports.store.lead(attempt.lead_id)
            campaign = self._campaigns.get(lead.lead.campaign_id)
            dialled = campaign is not None and campaign.mode in _DIALLED_MODES
            if not dialled and not preview:
                others.add(attempt.channel_id)
                continue
            pending[attempt.channel_id] = (attempt, dialled)
        if not pending:
            return
        result = await reconcile_pending(
            self.ports.store,
            self.ports.link,
            self._campaigns,
            self.ports.clock(),
            within=self.reconcile_within,
            skip=frozenset(others),
        )
        for channel_id in result.live:
            found = pending.get(channel_id)
            if found is None or not found[1]:
                continue
            attempt = found[0]
            lead = await self.ports.store.lead(attempt.lead_id)
            direct = channel_id.startswith(DIRECT_CALL_PREFIX + "-")
            campaign_id = lead.lead.campaign_id
            self._follow(channel_id, campaign_id, attempt.lead_id, attempt.dialled_at, direct=direct)
        if result.ended_unknown:
            log.warning("%d campaign attempts ended unknown at reconciliation", len(result.ended_unknown))

    async def _load_ledgers(self) -> None:
        now = self.ports.clock()
        for campaign in self._campaigns.values():
            state = self._state(campaign)
            since = now - campaign.abandonment_rule.window
            for attempt in await self.ports.store.campaign_attempts(campaign.id, since):
                ended = attempt.ended_at
                if attempt.outcome in LIVE_ANSWER_OUTCOMES and ended is not None and ended > since:
                    state.ledger.record(ended, abandoned=attempt.outcome is Outcome.ABANDONED)

    def _state(self, campaign: Campaign) -> _Live:
        state = self._live.get(campaign.id)
        if state is None:
            state = _Live(
                campaign,
                pacer_for(campaign.mode),
                AbandonmentLedger(campaign.abandonment_rule, campaign.abandonment_cap),
            )
            self._live[campaign.id] = state
        elif state.campaign != campaign:
            if state.campaign.mode is not campaign.mode:
                state.pacer = pacer_for(campaign.mode)
            state.ledger.cap = campaign.abandonment_cap
            state.campaign = campaign
        return state

    def _follow(
        self, channel_id: str, campaign_id: str, lead_id: int, dialled_at: datetime, *, direct: bool = False
    ) -> None:
        # A call dialled for one reserved agent is never put in the service's line (``joined``) and
        # not counted as ringing: its agent is already counted busy (reserved), it needs no other.
        self._followed[channel_id] = _Followed(campaign_id, lead_id, dialled_at, joined=direct, direct=direct)
        self.follower.pending[channel_id] = lead_id
        state = self._live.get(campaign_id)
        if state is not None and not direct:
            state.ringing[channel_id] = dialled_at

    # ------------------------------------------------------------------ the bus

    async def _on_message(self, message: object) -> bool:
        """Apply one bus message; ``True`` when it may change a campaign's pace."""
        if isinstance(message, AgentStateChanged):
            return True
        if isinstance(message, LiveCallsResynced):
            # Attempts this run does not follow (placed by an earlier run, or whose call was lost
            # while the link was down) are read from Asterisk again, never dialled again blindly.
            await self._reconcile(skip=frozenset(self._followed), preview=False)
            return True
        if not isinstance(message, CallChange):
            return False
        call = message.call
        channel_id = next((c for c in (call.anchor_uniqueid, call.key.linkedid) if c in self._followed), None)
        if channel_id is None:
            return False
        followed = self._followed[channel_id]
        followed.seen = True
        campaign = self._campaigns.get(followed.campaign_id)
        state = self._live.get(followed.campaign_id)
        if campaign is not None and not followed.joined:
            followed.joined = True
            self.ports.join_line(channel_id, campaign, followed.lead_id)
        if state is not None and not followed.direct:
            # Answered and still being listened to by AMD, the call counts as ringing: it may yet
            # want an agent. It stops ringing once it waits for one, reaches one, or ends.
            if call.phase.value == "waiting" or call.connected_at is not None or call.ended_at is not None:
                state.ringing.pop(channel_id, None)
            if call.phase.value == "waiting" and call.ended_at is None:
                state.waiting.add(channel_id)
            else:
                state.waiting.discard(channel_id)
        if message.kind not in (ChangeKind.ENDED, ChangeKind.CLOSED):
            return False
        if call.hangup_cause == MACHINE_HANGUP_CAUSE and call.connected_at is None:
            self.follower.machines.add(channel_id)
        outcome = await self.follower.handle(message)
        if outcome is None:
            return False
        del self._followed[channel_id]
        for listener in self.outcome_listeners:
            listener(followed.campaign_id, followed.lead_id, outcome)
        if state is not None:
            state.ringing.pop(channel_id, None)
            state.waiting.discard(channel_id)
            live = outcome in LIVE_ANSWER_OUTCOMES
            answered = (call.answered_at - followed.dialled_at).total_seconds() if call.answered_at else None
            if live and answered is not None:
                state.observer.dial_ended(live=True, answer_seconds=max(0.0, answered))
            elif outcome is not Outcome.UNKNOWN:
                state.observer.dial_ended(live=False)
            if outcome is Outcome.CONNECTED and call.connected_at is not None and call.ended_at is not None:
                talk = max(0.0, (call.ended_at - call.connected_at).total_seconds())
                state.observer.talk_ended(talk)
            state.last_pass = None  # publish the new figures on the next pass
        return True

    async def _look_for_unseen(self) -> None:
        """Calls Asterisk accepted but that never appeared: reconciled by ChannelId (not live: the
        attempt ends ``unknown``, the lead is never redialled blindly)."""
        now = self.ports.clock()
        unseen = set()
        for channel_id, followed in self._followed.items():
            campaign = self._campaigns.get(followed.campaign_id)
            ring = timedelta(seconds=campaign.ring_seconds if campaign else 120)
            if not followed.seen and now - followed.dialled_at > ring + UNSEEN_GRACE:
                unseen.add(channel_id)
        if not unseen:
            return
        result = await reconcile_pending(
            self.ports.store,
            self.ports.link,
            self._campaigns,
            now,
            within=self.reconcile_within,
            skip=frozenset(self._followed) - unseen,
        )
        for channel_id in result.ended_unknown:
            gone = self._followed.pop(channel_id, None)
            self.follower.pending.pop(channel_id, None)
            if gone is not None and (state := self._live.get(gone.campaign_id)) is not None:
                state.ringing.pop(channel_id, None)
            log.warning("campaign call %s never appeared in Asterisk: attempt ended unknown", channel_id)
        for channel_id in result.live:
            if channel_id in self._followed:
                self._followed[channel_id].seen = True  # live after all: its changes will come

    def _on_outcome(self, campaign_id: str, outcome: Outcome, at: datetime) -> None:
        state = self._live.get(campaign_id)
        if state is not None and outcome in LIVE_ANSWER_OUTCOMES:
            state.ledger.record(at, abandoned=outcome is Outcome.ABANDONED)

    # ------------------------------------------------------------------ pacing

    async def pace_all(self) -> None:
        """One pass over every campaign (see the module docstring)."""
        await self._look_for_unseen()
        for campaign, active in await self._load_campaigns():
            state = self._state(campaign)
            if not active or campaign.mode not in _DIALLED_MODES:
                if state.last is not None and state.last.running:
                    await self._publish(state, running=False, reason="stopped", decision=None, placed=0)
                continue
            await self._pace(state)

    async def _registries(self, campaign: Campaign, phones: Sequence[str]) -> dict[str, RegistryList]:
        if not campaign.registries:
            return {}
        infos = {r.name: r for r in await self.ports.store.registries() if r.name in campaign.registries}
        hits = await self.ports.store.registry_numbers_among(infos, phones) if phones else {}
        return {
            name: RegistryList(name, info.published_on, hits.get(name, frozenset()))
            for name, info in infos.items()
        }

    async def _pace(self, state: _Live) -> None:
        campaign = state.campaign
        store = self.ports.store
        now = self.ports.clock()
        blocks = campaign_blocks(campaign, await self._registries(campaign, ()), now)
        if blocks:
            await self._publish(
                state, running=False, reason="stopped: " + "; ".join(blocks), decision=None, placed=0
            )
            return
        staffing = await self.ports.staffing(campaign)
        agents = blend(staffing)
        self._sample_staffing(state, agents, now)
        due = await store.due_leads(campaign.id, now, self.leads_per_pass)
        due = [lead for lead in due if not self._dialling(lead.lead.id)]
        booked: dict[int, str] = {}
        if self.ports.callback_agent is not None:
            # Only a scheduled lead can have a callback booked (a disposition scheduled it).
            for lead in due:
                if lead.status == "scheduled" and (agent := await self.ports.callback_agent(lead.lead.id)):
                    booked[lead.lead.id] = agent
        allowed = await self._allowed(campaign, due, now)
        ready_ids = frozenset(a.agent_id for a in staffing.agents if a.status == "ready")
        routing = route_callbacks(
            [DueLead(lead.lead.id, lead.next_attempt_at, booked.get(lead.lead.id)) for lead, _ in allowed],
            ready_ids,
            agents.ready if self.ports.connect_agent is not None else 0,
            now,
        )
        by_id = {lead.lead.id: (lead, verdict) for lead, verdict in allowed}
        placed = 0
        for lead_id, agent_id in routing.direct:
            placed += await self._place_for_agent(state, agent_id, by_id[lead_id], now)
        if routing.direct:
            # Each agent reserved for a callback (or who just stopped being ready) is not free.
            agents = replace(agents, ready=max(0, agents.ready - len(routing.direct)))
        allowed = [by_id[lead_id] for lead_id in routing.pooled]
        snapshot = PacingSnapshot(
            ready=agents.ready,
            talking=agents.talking,
            wrapping=agents.wrapping,
            ringing=tuple((now - at).total_seconds() for at in state.ringing.values()),
            waiting=len(state.waiting),
            traffic=state.observer.estimate(),
            abandonment=state.ledger.figures(now),
            leads_available=len(allowed),
        )
        decision = state.pacer.decide(snapshot, monotonic_time.monotonic())
        for pooled in allowed[: decision.dial]:
            placed += await self._place(state, pooled, now)
        reason = decision.reason
        if agents.kept_for_inbound:
            reason += f" ({agents.kept_for_inbound} ready agents kept for waiting inbound calls)"
        if routing.direct:
            reason += f"; {len(routing.direct)} callbacks dialled for the agents who booked them"
        if routing.waiting:
            reason += f"; {len(routing.waiting)} callbacks waiting for the agents who booked them"
        if not allowed and not state.ringing and not routing.direct:
            reason += "; no lead may be dialled now"
        await self._publish(
            state, running=True, reason=reason, decision=decision, placed=placed, agents=agents
        )

    def _dialling(self, lead_id: int) -> bool:
        return any(f.lead_id == lead_id for f in self._followed.values())

    async def _allowed(
        self, campaign: Campaign, due: list[LeadView], now: datetime
    ) -> list[tuple[LeadView, Verdict]]:
        """The due leads compliance allows now; the others are closed or scheduled (module docstring)."""
        if not due:
            return []
        store = self.ports.store
        phones = [lead.lead.phone for lead in due]
        dnc = await store.do_not_call_among(phones)
        registries = await self._registries(campaign, phones)
        out: list[tuple[LeadView, Verdict]] = []
        for lead in due:
            verdict = check(campaign, lead.lead, now, do_not_call=dnc, registries=registries)
            if verdict.allowed:
                out.append((lead, verdict))
                continue
            refusals = set(verdict.refusals)
            try:
                if refusals & _CLOSING:
                    await store.schedule_lead(
                        lead.lead.id, "done", None, f"not dialled: {verdict.detail}", now
                    )
                elif Refusal.OUTSIDE_WINDOW in refusals:
                    opening = next_window_opening(campaign.window, lead_zones(lead.lead), now)
                    if opening is None:
                        await store.schedule_lead(
                            lead.lead.id, "done", None, f"not dialled: {verdict.detail}", now
                        )
                    else:
                        await store.schedule_lead(
                            lead.lead.id, "scheduled", opening, f"calling window: {verdict.detail}", now
                        )
            except StoreConflict as exc:
                log.info("lead %d not rescheduled: %s", lead.lead.id, exc)
        return out

    async def _place(self, state: _Live, allowed: tuple[LeadView, Verdict], now: datetime) -> int:
        lead, verdict = allowed
        try:
            result = await place_call(
                self.ports.store, self.ports.link, state.campaign, lead, verdict, self.ports.route, now,
                reconcile_within=self.reconcile_within,
            )  # fmt: skip
        except StoreConflict as exc:
            log.info("lead %d not dialled: %s", lead.lead.id, exc)
            return 0
        if result.placed in (Placed.RINGING, Placed.UNRESOLVED):
            self._follow(result.channel_id, state.campaign.id, lead.lead.id, now)
            log.info("campaign %s: dialled lead %d (%s)", state.campaign.id, lead.lead.id, result.channel_id)
            return 1
        log.warning(
            "campaign %s: lead %d %s: %s", state.campaign.id, lead.lead.id, result.placed, result.detail
        )
        return 0

    async def _place_for_agent(
        self, state: _Live, agent_id: str, allowed: tuple[LeadView, Verdict], now: datetime
    ) -> int:
        """Dial a callback for the agent who booked it, through ``connect_agent`` (see RunnerPorts)."""
        connect = self.ports.connect_agent
        if connect is None:
            return 0
        lead, verdict = allowed
        channel_id = new_channel_id(DIRECT_CALL_PREFIX)
        try:
            result = await connect(agent_id, state.campaign, lead, verdict, now, channel_id)
        except StoreConflict as exc:
            log.info("lead %d not dialled: %s", lead.lead.id, exc)
            return 0
        if result is None:
            log.info("campaign %s: agent %s not reserved for lead %d's callback", state.campaign.id,
                     agent_id, lead.lead.id)  # fmt: skip
            return 0
        if result.placed in (Placed.RINGING, Placed.UNRESOLVED):
            self._follow(result.channel_id, state.campaign.id, lead.lead.id, now, direct=True)
            log.info("campaign %s: dialled lead %d's callback for agent %s (%s)", state.campaign.id,
                     lead.lead.id, agent_id, result.channel_id)  # fmt: skip
            return 1
        log.warning(
            "campaign %s: lead %d %s: %s", state.campaign.id, lead.lead.id, result.placed, result.detail
        )
        return 0

    # ------------------------------------------------------------------ statistics

    def _sample_staffing(self, state: _Live, agents: CampaignAgents, now: datetime) -> None:
        last = state.staffed[-1][0] if state.staffed else None
        seconds = max(0.0, min((now - last).total_seconds(), 60.0)) if last is not None else 0.0
        state.staffed.append((now, agents.logged_in * seconds, seconds))
        hour_ago = now - timedelta(hours=1)
        while state.staffed and state.staffed[0][0] < hour_ago:
            state.staffed.popleft()

    async def _talk_per_agent_hour(self, state: _Live, agents: CampaignAgents, now: datetime) -> float:
        """Stored talk of the last hour over the agent-hours staffed (``stats.talk_per_agent_hour``)."""
        talk = await self.ports.talk(state.campaign.id, now - timedelta(hours=1))
        return talk_per_agent_hour(
            sum(talk.values()),
            sum(a for _, a, _ in state.staffed),
            sum(s for _, _, s in state.staffed),
            agents.logged_in,
        )

    async def _publish(
        self,
        state: _Live,
        *,
        running: bool,
        reason: str,
        decision: PaceDecision | None,
        placed: int,
        agents: CampaignAgents | None = None,
    ) -> None:
        now = self.ports.clock()
        dial = decision.dial if decision is not None else 0
        previous = state.last
        changed = (
            previous is None
            or previous.running != running
            or previous.reason != reason
            or placed > 0
            or state.last_pass is None
        )
        if not changed and monotonic_time.monotonic() - state.published_at < self.publish_seconds:
            return
        campaign = state.campaign
        stats = campaign_stats(
            await self.ports.store.campaign_attempts(campaign.id, now - timedelta(days=30)), now
        )
        day, month = stats.last_24_hours, stats.last_30_days
        a = agents or CampaignAgents(0, (), (), 0)
        message = CampaignPaced(
            campaign_id=campaign.id,
            mode=campaign.mode.value,
            running=running,
            dial=dial,
            placed=placed,
            reason=reason,
            ready=a.ready,
            talking=len(a.talking),
            wrapping=len(a.wrapping),
            ringing=len(state.ringing),
            waiting=len(state.waiting),
            attempts_24h=day.attempts,
            contacts_24h=day.contacts,
            live_answers_24h=day.live_answers,
            abandoned_24h=day.abandoned,
            abandonment_24h=day.abandonment_rate,
            abandonment_30d=month.abandonment_rate,
            cap=campaign.abandonment_cap,
            talk_seconds_per_agent_hour=await self._talk_per_agent_hour(state, a, now),
            at=now,
        )
        state.last = message
        state.last_pass = now
        state.published_at = monotonic_time.monotonic()
        self.ports.publish(message)
        if previous is None or previous.reason != reason or placed:
            log.info("campaign %s: %s (placed %d)", campaign.id, reason, placed)


def paced_as_dict(message: CampaignPaced) -> dict[str, object]:
    """The JSON shape of ``CampaignPaced`` (the ``/live`` route and the console's websocket)."""
    out = asdict(message)
    out["at"] = message.at.isoformat()
    return out


__all__ = [
    "CALLBACK_WAIT",
    "MACHINE_HANGUP_CAUSE",
    "AgentView",
    "CallbackRouting",
    "CampaignAgents",
    "CampaignRunner",
    "DueLead",
    "RunnerPorts",
    "Staffing",
    "blend",
    "paced_as_dict",
    "route_callbacks",
]
