"""The routing service: the loop that connects waiting callers to agents on a live PBX.

It follows the calls on the bus, keeps a ``RoutingBoard`` (``routing.policy``) in equilibrium with
the agents' live states (``routing.state.LiveState``), and applies each decision:

1. take the call off the line (``LiveState.take_call``: with shared state, exactly one node wins);
2. reserve the agent (``LiveState.reserve``, a compare-and-set on READY);
3. redirect the caller's anchor channel to ``<agent id>@cti-agents,1`` through the ``ActionSink``,
   where the dialplan rings the agent's phone.

A redirect is written once and never re-sent. Its outcome is read from the calls that follow: the
call ringing the agent (``RINGING_AGENT``), then talking to them (``TALKING``), or back to
``WAITING`` after a ring-no-answer. When the link dropped before Asterisk answered
(``ActionOutcomeUnknown``) the reservation stands until the call shows where it went, or until
``connect_grace_seconds`` pass after the link is back with no sign of a dial; only then is the call
offered again.

Agents' states follow the calls too: a call ringing an agent reserves them (if they were READY and
routing did not choose them, as when the dialplan dials an agent directly), talking puts them
ON_CALL, the caller hanging up starts their wrap-up (the service's ``wrap_up_seconds``), after which
a timer makes them READY. A ring-no-answer makes the agent NOT_READY (reason ``ring_no_answer``) and
puts the call back in line with its place, never offered to that agent again.

Everything runs on one event loop under one lock, so the board, the live state and the redirects in
flight never disagree. Time comes from ``clock``; the rules live in ``routing.model`` and
``routing.policy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

from cti.bus import Subscription
from cti.model import (
    AgentOffered,
    AgentStateChanged,
    CallChange,
    CallKey,
    CallPhase,
    CallSnapshot,
    ChangeKind,
    Direction,
    LiveCallsResynced,
)
from cti.ports import ActionFailed, ActionOutcomeUnknown, ActionSink, LinkDown
from routing.calls import CallControl
from routing.days import DayBook, agent_zone
from routing.directory import AgentProfile, RoutingDirectory, ServiceConfig, UnknownAgent
from routing.model import (
    Agent,
    AgentEvent,
    AgentState,
    AgentStatus,
    Answer,
    CancelReservation,
    Hangup,
    InvalidTransition,
    OverflowKind,
    PriorityRules,
    ResetDay,
    RingNoAnswer,
    ServiceRouting,
    SkillNeed,
    WaitingCall,
    WrapUpDone,
    merge_needs,
    waiting_call_from,
)
from routing.policy import Decision, Outcome, RoutingBoard
from routing.state import LiveState
from routing.waiting import HandleTimes, LineView, WaitingHooks

log = logging.getLogger("cti.routing")

#: The dialplan context where ``<agent id>,1`` rings that agent (see the dialplan templates).
AGENTS_CONTEXT = "cti-agents"
#: The service of a call nobody classified (the lookup failed or the DNIS is unknown).
DEFAULT_SERVICE = "default"
_AGENT_ID = re.compile(r"^[0-9]{1,32}$")
_FORBIDDEN_IN_AMI = ("\r", "\n", "\x00")
_ANSWERED = (CallPhase.TALKING, CallPhase.HELD)


def utcnow() -> datetime:
    return datetime.now(UTC)


def valid_agent_id(agent_id: str) -> bool:
    """Digits only: an agent id becomes a dialplan extension and a PJSIP endpoint in a dial string."""
    return bool(_AGENT_ID.fullmatch(agent_id))


def redirect_headers(channel: str, agent_id: str, context: str = AGENTS_CONTEXT) -> dict[str, str]:
    """The ``Redirect`` that rings ``agent_id`` for the caller on ``channel``; ``ValueError`` for an
    agent id that is not digits or a channel name that is empty or carries CR, LF or NUL."""
    if not valid_agent_id(agent_id):
        raise ValueError(f"agent id must be digits: {agent_id!r}")
    if not channel or any(c in channel for c in _FORBIDDEN_IN_AMI):
        raise ValueError(f"invalid channel name {channel!r}")
    return {"Channel": channel, "Context": context, "Exten": agent_id, "Priority": "1"}


@dataclass(slots=True)
class Connection:
    """An agent reserved for a call: chosen by routing (``by_routing``, with the ``call`` as it
    waited and when the redirect was ``sent_at``) or seen ringing a READY agent on its own.
    ``outcome_unknown``: the link dropped before Asterisk answered the redirect."""

    agent_id: str
    service: str
    by_routing: bool
    call: WaitingCall | None = None
    sent_at: datetime | None = None
    ringing: bool = False
    answered: bool = False
    outcome_unknown: bool = False


@dataclass
class RoutingHealth:
    decisions: int = 0
    redirects_sent: int = 0
    redirects_failed: int = 0
    redirects_unknown: int = 0
    connections_reconciled: int = 0
    ring_no_answers: int = 0
    reservations_lost: int = 0
    bus_overflows: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class QueueView:
    """One service's line right now."""

    service: str
    waiting: tuple[WaitingCall, ...]
    connecting: int
    ready_agents: int


@dataclass(slots=True)
class _Deferred:
    call: WaitingCall
    at: datetime


def _to_routing_needs(snapshot: CallSnapshot) -> tuple[SkillNeed, ...]:
    request = snapshot.routing
    if request is None:
        return ()
    return tuple(SkillNeed(n.skill, n.min_level, n.optional) for n in request.skills)


def _waiting_since(snapshot: CallSnapshot, now: datetime) -> datetime:
    """When the caller last started waiting: their place in line."""
    for mark in reversed(snapshot.history):
        if mark.phase is CallPhase.WAITING:
            return mark.at
    return now


def _rang_since(snapshot: CallSnapshot, since: datetime | None) -> bool:
    return since is not None and any(
        m.phase is CallPhase.RINGING_AGENT and m.at >= since for m in snapshot.history
    )


class RoutingService:
    """Routes one PBX's inbound calls. ``run`` owns the loop; the HTTP routes call the public
    coroutines (agents' states, configuration, snapshots), which share the loop's lock."""

    def __init__(
        self,
        *,
        subscription: Subscription,
        live: LiveState,
        actions: ActionSink,
        directory: RoutingDirectory,
        clock: Callable[[], datetime] = utcnow,
        default_wrap_up_seconds: int = 30,
        ring_timeout_seconds: float = 30.0,
        connect_grace_seconds: float = 10.0,
        classify_grace_seconds: float = 3.0,
        retry_seconds: float = 2.0,
        priority_rules: PriorityRules | None = None,
        agents_context: str = AGENTS_CONTEXT,
        on_offer: Callable[[AgentOffered], None] | None = None,
        on_agent_state: Callable[[AgentStateChanged], None] | None = None,
    ) -> None:
        self.live = live
        self.actions = actions
        self.directory = directory
        self.clock = clock
        self.default_wrap_up_seconds = default_wrap_up_seconds
        self.ring_timeout = timedelta(seconds=ring_timeout_seconds)
        self.connect_grace = timedelta(seconds=connect_grace_seconds)
        self.classify_grace = timedelta(seconds=classify_grace_seconds)
        self.retry = timedelta(seconds=retry_seconds)
        self.rules = priority_rules or PriorityRules()
        self.agents_context = agents_context
        self.on_offer = on_offer  # told before the agent's phone is rung (screen-pops); must not block
        self.on_agent_state = on_agent_state  # told of every agent state routing holds; must not block
        self.board = RoutingBoard()
        self.health = RoutingHealth()
        self.loaded = asyncio.Event()
        self._sub = subscription  # from ``routing.handlers.subscribe``
        self._lock = asyncio.Lock()
        self._profiles: dict[str, AgentProfile] = {}
        self._services: dict[str, ServiceConfig] = {}
        self._calls: dict[CallKey, CallSnapshot] = {}
        self._connections: dict[CallKey, Connection] = {}
        self._unclassified: dict[CallKey, datetime] = {}
        self._deferred: dict[CallKey, _Deferred] = {}
        self._paused = False  # the AMI link refused an action: wait for the next resync
        self._paused_at: datetime | None = None
        self._last_timer: datetime | None = None
        self.control = CallControl(self)  # hangup, hold, transfers of agents' calls (routing.calls)
        self.days = DayBook()  # local midnights of the services' time zones (routing.days)
        # What waiting callers hear and where overflows and queue callbacks go (routing.callbacks);
        # set by the composition root, None in a router that only connects calls.
        self.hooks: WaitingHooks | None = None
        self.handle_times = HandleTimes()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Load the configuration and agents' states, then follow the bus until cancelled."""
        await self._load_with_retry()
        try:
            while True:
                timeout = self._seconds_to_next_wake()
                message = None
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(self._sub.get(), timeout)
                try:
                    async with self._lock:
                        if message is not None:
                            await self._on_message(message)
                        await self._on_time(self.clock())
                except Exception:  # one bad message must not stop routing
                    self.health.errors += 1
                    log.exception("routing failed on %s; continuing", type(message).__name__)
                if self._sub.overflowed:
                    self._sub.overflowed = False
                    self.health.bus_overflows += 1
                    log.error("routing's mailbox overflowed: some call changes were dropped")
        finally:
            self._sub.close()

    async def _load_with_retry(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._lock:
                    await self._load(self.clock())
                self.loaded.set()
                return
            except Exception as exc:  # the database may come up after the platform
                log.warning("routing could not load its configuration (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _load(self, now: datetime) -> None:
        for config in await self.directory.services():
            self._services[config.routing.name] = config
            self.board.set_service(config.routing)
        for profile in await self.directory.agents():
            self._profiles[profile.agent.id] = profile
            state = await self.live.get_agent(profile.agent.id)
            if state is None:
                state = AgentState.logged_out(profile.agent.id, now)
                await self.live.put_agent(state)
            self._board_agent(profile, state)
        await self.control.load()
        if self.hooks is not None:
            await self.hooks.loaded(now)

    def _seconds_to_next_wake(self) -> float | None:
        now = self.clock()
        moments = [m for m in self._wake_moments(now) if m is not None]
        if not moments:
            return None
        return max(0.0, (min(moments) - now).total_seconds()) + 0.001

    def _wake_moments(self, now: datetime) -> Iterable[datetime | None]:
        yield self.board.next_change_at(now)
        yield self.days.next_at()
        leads = self._dial_ahead_leads()
        for profile in self._profiles.values():
            state = self.board.agent_state(profile.agent.id)
            if state is not None and state.status is AgentStatus.WRAP_UP:
                yield state.wrap_up_until
                if state.wrap_up_until is not None and state.reserved_for is None:
                    # When a queue callback could be dialled ahead for this agent (routing.callbacks).
                    for lead in leads:
                        ahead = state.wrap_up_until - timedelta(seconds=lead)
                        if ahead > now:
                            yield ahead
        for since in self._unclassified.values():
            yield since + self.classify_grace
        for deferred in self._deferred.values():
            yield deferred.at
        if not self._paused:
            for conn in self._connections.values():
                if conn.by_routing and conn.sent_at is not None and not conn.ringing:
                    yield conn.sent_at + self.connect_grace
            yield from self.control.wake_moments()

    # ------------------------------------------------------------------ messages

    async def _on_message(self, message: object) -> None:
        now = self.clock()
        if isinstance(message, CallChange):
            await self._on_call(message, now)
        elif isinstance(message, LiveCallsResynced):
            await self._on_resync(message, now)

    async def _on_call(self, change: CallChange, now: datetime) -> None:
        snap = change.call
        if self.hooks is not None:
            await self.hooks.call_changed(change, now)
        # A call routing did not place is not routed (a queue callback's is in ``_connections``),
        # unless it is an outbound call that asks for an agent (a campaign's answered person: the
        # dialer put the campaign's service on it): that one waits in line like a caller.
        asks = snap.direction is Direction.OUTBOUND and snap.routing is not None
        if snap.direction is not Direction.INBOUND and snap.key not in self._connections and not asks:
            return
        key = snap.key
        if change.kind in (ChangeKind.ENDED, ChangeKind.CLOSED) or snap.ended_at is not None:
            await self._call_gone(key, now)
            return
        if await self.control.on_call(snap, now):
            self._calls[key] = snap
            return
        self._calls[key] = snap
        conn = self._connections.get(key)
        if snap.phase is CallPhase.RINGING_AGENT and snap.agent:
            await self._leave_line(key)
            if conn is None:
                await self._adopt(snap, snap.agent, now)
            elif conn.agent_id == snap.agent:
                conn.ringing = True
                conn.outcome_unknown = False
        elif snap.phase in _ANSWERED and snap.agent:
            await self._leave_line(key)
            if conn is None:
                conn = await self._adopt(snap, snap.agent, now)
            if conn is not None and conn.agent_id == snap.agent and not conn.answered:
                conn.answered = True
                conn.ringing = True
                conn.outcome_unknown = False
                await self._agent_event(conn.agent_id, Answer(), now)
        elif snap.phase is CallPhase.WAITING:
            if conn is not None:
                if conn.answered:
                    # Back on hold music after talking: that conversation is over for the agent.
                    await self._finish(key, conn, now)
                elif conn.ringing or _rang_since(snap, conn.sent_at):
                    await self._ring_no_answer(key, conn, snap, now)
                    return
                else:
                    return  # the redirect is on its way to the agent's phone
            if key not in self._connections and not self._on_line(key):
                await self._enqueue(snap, now)
        else:
            # Back in the IVR (or not there yet): not waiting for an agent.
            await self._leave_line(key)

    async def _on_resync(self, message: LiveCallsResynced, now: datetime) -> None:
        keys = set(self._calls) | set(self._connections) | {c.key for c in self.board.waiting_calls()}
        keys |= self.control.keys()  # held or transferring before a restart, perhaps over since
        for key in keys:
            if self.hooks is not None and self.hooks.is_virtual(key):
                continue  # a queue callback: no call in Asterisk until its customer is dialled
            if key.pbx == message.pbx and key not in message.live:
                await self._call_gone(key, now)
        if self._paused:
            log.info("routing resumes after the AMI link came back")
            self._paused = False
            # Redirects whose answer was lost count their grace from now: the calls shown after the
            # resync are the first evidence of where they went.
            for conn in self._connections.values():
                if conn.outcome_unknown:
                    conn.sent_at = now
            self.control.on_resync(now)
        # The board's equilibrium is unknown after a gap: weigh everything once.
        await self._apply_all(self.board.round(now), now)

    # ------------------------------------------------------------------ time

    async def _reset_days(self, now: datetime) -> None:
        """At a zone's local midnight, today's counters go back to zero for the agents whose day
        ends there (the zone of the service they last worked for; ``routing.days``)."""
        zones = {name: config.time_zone for name, config in self._services.items()}
        self.days.set_zones(zones.values(), now)
        for ended in self.days.due(now):
            for agent_id in list(self._profiles):
                state = await self.live.get_agent(agent_id)
                if state is not None and agent_zone(state, zones, self.days.default_zone) == ended:
                    await self._agent_event(agent_id, ResetDay(), now, decide=False)

    def _dial_ahead_leads(self) -> frozenset[float]:
        """The dial-ahead times queue callbacks may have now (configured per service), if any."""
        return self.hooks.dial_ahead_times() if self.hooks is not None else frozenset()

    async def dial_ahead(self, now: datetime) -> None:
        """Reserve agents about to be free for the queue callbacks they would take, and dial them
        (``RoutingBoard.agents_about_free``; the hooks carry each decision out). Under the lock."""
        hooks = self.hooks
        if hooks is None or self._paused:
            return
        lead = hooks.dial_ahead_max()
        if lead <= 0:
            return
        await self._apply_all(self.board.agents_about_free(now, hooks.dial_ahead, lead), now)

    async def _on_time(self, now: datetime) -> None:
        await self._reset_days(now)
        for profile in list(self._profiles.values()):
            state = self.board.agent_state(profile.agent.id)
            if state is not None and state.wrap_up_due(now):
                await self._agent_event(profile.agent.id, WrapUpDone(), now)
        for key, since in list(self._unclassified.items()):
            if now >= since + self.classify_grace:
                del self._unclassified[key]
                snap = self._calls.get(key)
                if snap is not None and snap.phase is CallPhase.WAITING:
                    await self._enqueue(snap, now, force=True)
        for key, deferred in list(self._deferred.items()):
            if now >= deferred.at and not self._paused:
                del self._deferred[key]
                snap = self._calls.get(key)
                waiting = snap is not None and snap.phase is CallPhase.WAITING
                if snap is None and self.hooks is not None and self.hooks.is_virtual(key):
                    waiting = True  # a queue callback to dial again: nobody is on the line
                if waiting and key not in self._connections:
                    await self._put_on_line(deferred.call, now, decide=True)
        if not self._paused:
            for key, conn in list(self._connections.items()):
                if (
                    conn.by_routing
                    and not conn.ringing
                    and conn.sent_at is not None
                    and now >= conn.sent_at + self.connect_grace
                ):
                    # No sign of the agent's phone ringing: the redirect did not take. Only now, with
                    # that evidence, is the call offered again.
                    self.health.connections_reconciled += 1
                    log.warning(
                        "call %s: no ring at agent %s after the redirect; back in line", key, conn.agent_id
                    )
                    del self._connections[key]
                    await self._agent_event(conn.agent_id, CancelReservation("connect_failed"), now)
                    snap = self._calls.get(key)
                    if conn.call is not None and snap is not None and snap.phase is CallPhase.WAITING:
                        await self._put_on_line(conn.call, now, decide=True)
        if not self._paused:
            await self.control.on_time(now)  # blind transfers whose answer was lost (routing.calls)
        since = self._last_timer or now
        self._last_timer = now
        if now > since and not self._paused:
            await self._apply_all(self.board.timer(since, now), now)
        # Last: what is left in line after the decisions above (an overflow may just have booked a
        # callback) may be dialled ahead for an agent about to be free.
        await self.dial_ahead(now)

    # ------------------------------------------------------------------ calls

    def _on_line(self, key: CallKey) -> bool:
        return any(c.key == key for c in self.board.waiting_calls()) or key in self._deferred

    def _service(self, name: str) -> ServiceRouting:
        config = self._services.get(name)
        if config is not None:
            return config.routing
        routing = ServiceRouting(name, wrap_up_seconds=self.default_wrap_up_seconds)
        self._services[name] = ServiceConfig(0, "", routing)
        self.board.set_service(routing)
        return routing

    def _service_name(self, snap: CallSnapshot) -> str | None:
        if (transferred := self.control.service_for(snap.key)) is not None:
            return transferred
        if snap.routing is not None and snap.routing.service:
            return snap.routing.service
        if snap.classification is not None:
            return snap.classification.service_name or DEFAULT_SERVICE
        return None

    async def _enqueue(self, snap: CallSnapshot, now: datetime, *, force: bool = False) -> None:
        name = self._service_name(snap)
        if name is None and not force:
            # The ANI/DNIS lookup runs beside the call; give it a moment to say which service this is.
            self._unclassified.setdefault(snap.key, now)
            return
        self._unclassified.pop(snap.key, None)
        service = self._service(name or DEFAULT_SERVICE)
        base = waiting_call_from(
            snap, service, now, ivr_path=snap.ivr.path if snap.ivr else (), rules=self.rules
        )
        request = snap.routing
        since = _waiting_since(snap, now)
        call = replace(
            base,
            enqueued_at=since,
            service_since=since,
            needs=merge_needs(base.needs, _to_routing_needs(snap)),
            language=(request.language if request and request.language else base.language),
            priority=base.priority + (request.priority if request else 0),
        )
        await self._put_on_line(call, now, decide=True)

    async def _put_on_line(self, call: WaitingCall, now: datetime, *, decide: bool) -> None:
        self.board.put_call(call)
        await self.live.add_call(call)
        if decide and not self._paused:
            decision = self.board.call_arrived(call, now)
            if decision is not None:
                await self._apply(decision, now)

    async def _leave_line(self, key: CallKey) -> WaitingCall | None:
        self._unclassified.pop(key, None)
        deferred = self._deferred.pop(key, None)
        call = self.board.remove_call(key)
        await self.live.take_call(key)
        return call or (deferred.call if deferred else None)

    async def _call_gone(self, key: CallKey, now: datetime) -> None:
        await self.control.on_gone(key, now)
        await self._leave_line(key)
        self._calls.pop(key, None)
        conn = self._connections.get(key)
        if conn is not None:
            await self._finish(key, conn, now)

    async def _finish(self, key: CallKey, conn: Connection, now: datetime) -> None:
        """The call is over for the agent: wrap-up after a conversation, back to READY after a ring
        the caller abandoned."""
        self._connections.pop(key, None)
        if conn.answered:
            wrap_up = self._service(conn.service).wrap_up_seconds
            talking = self.board.agent_state(conn.agent_id)
            if talking is not None and talking.status is AgentStatus.ON_CALL:
                self.handle_times.record(conn.service, (now - talking.since).total_seconds() + wrap_up)
            await self._agent_event(conn.agent_id, Hangup(wrap_up), now)
        else:
            await self._agent_event(conn.agent_id, CancelReservation("caller_abandoned"), now)

    async def _adopt(self, snap: CallSnapshot, agent_id: str, now: datetime) -> Connection | None:
        """A READY agent's phone rings for a call routing did not send them (the dialplan dialled
        them itself): reserve them so that routing offers them nothing else meanwhile."""
        if agent_id not in self._profiles:
            return None
        name = self._service_name(snap) or DEFAULT_SERVICE
        state = await self.live.reserve(agent_id, snap.key, name, now)
        if state is None:
            current = await self.live.get_agent(agent_id)
            if (
                snap.phase in _ANSWERED
                and current is not None
                and current.status is AgentStatus.ON_CALL
                and current.call == snap.key
            ):
                # The live state already has them talking on this call (this platform before a
                # restart, or another node connected it): follow it, so call control can act on it.
                conn = Connection(
                    agent_id, current.service or name, by_routing=False, ringing=True, answered=True
                )
                self._connections[snap.key] = conn
                return conn
            return None
        self._board_agent(self._profiles[agent_id], state)
        conn = Connection(agent_id, name, by_routing=False, ringing=True)
        self._connections[snap.key] = conn
        return conn

    async def _ring_no_answer(
        self, key: CallKey, conn: Connection, snap: CallSnapshot, now: datetime
    ) -> None:
        self.health.ring_no_answers += 1
        del self._connections[key]
        log.info("call %s rang out at agent %s: agent not ready, call back in line", key, conn.agent_id)
        await self._agent_event(conn.agent_id, RingNoAnswer(), now)
        if conn.call is not None:
            await self._put_on_line(conn.call.after_ring_no_answer(conn.agent_id), now, decide=True)
        else:
            await self._enqueue(snap, now)

    # ------------------------------------------------------------------ decisions

    async def _apply_all(self, decisions: Iterable[Decision], now: datetime) -> None:
        for decision in decisions:
            await self._apply(decision, now)

    async def _apply(self, decision: Decision, now: datetime) -> None:
        if self._paused:
            return
        self.health.decisions += 1
        await self.live.record_decision(decision)
        if decision.outcome is Outcome.OVERFLOW:
            await self._overflow(decision, now)
            return
        agent_id = decision.agent_id
        assert agent_id is not None
        key = decision.call
        if key not in self._calls and self.hooks is not None and self.hooks.is_virtual(key):
            await self.hooks.connect_virtual(decision, now)  # a queue callback: dial the customer
            return
        call = self.board.remove_call(key)
        taken = await self.live.take_call(key)
        snap = self._calls.get(key)
        if call is None or taken is None or snap is None or snap.phase is not CallPhase.WAITING:
            return  # another node took it, or it left the line since the decision was made
        state = await self.live.reserve(agent_id, key, call.service, now)
        if state is None:
            # Another node (or a state change we have not seen) took the agent: refresh and retry.
            self.health.reservations_lost += 1
            fresh = await self.live.get_agent(agent_id)
            if fresh is not None and agent_id in self._profiles:
                self._board_agent(self._profiles[agent_id], fresh)
            await self._put_on_line(call, now, decide=True)
            return
        self._board_agent(self._profiles[agent_id], state)
        conn = Connection(agent_id, call.service, by_routing=True, call=call, sent_at=now)
        self._connections[key] = conn
        if self.on_offer is not None:
            self.on_offer(
                AgentOffered(
                    call=snap,
                    agent_id=agent_id,
                    service=call.service,
                    rule=decision.rule,
                    waited_seconds=decision.waited_seconds,
                    candidates=tuple(
                        (c.agent_id, c.skill_score, c.idle_seconds) for c in decision.candidates
                    ),
                    candidates_total=decision.candidates_total,
                    relaxed=decision.relaxed.level > 0,
                    at=now,
                )
            )
        try:
            headers = redirect_headers(snap.anchor_channel, agent_id, self.agents_context)
            await self.actions.send("Redirect", headers)
            self.health.redirects_sent += 1
            log.info("call %s → agent %s (%s)", key, agent_id, decision.rule)
        except (ActionOutcomeUnknown, TimeoutError) as exc:
            # Asterisk may or may not have moved the call: keep the reservation, read the outcome
            # from the calls that follow. Never send it again blindly.
            self.health.redirects_unknown += 1
            conn.outcome_unknown = True
            log.warning("call %s: redirect to agent %s outcome unknown (%s)", key, agent_id, exc)
        except LinkDown as exc:
            self.health.redirects_failed += 1
            log.warning("call %s: AMI link down, redirect not sent (%s); routing paused", key, exc)
            await self._undo_connect(key, conn, now, retry=True)
            self._paused = True
        except ActionFailed as exc:
            self.health.redirects_failed += 1
            log.warning("call %s: redirect to agent %s refused: %s", key, agent_id, exc.message)
            await self._undo_connect(key, conn, now, retry=True)
        except ValueError as exc:
            self.health.redirects_failed += 1
            log.error("call %s: not routed, unsafe value for Asterisk: %s", key, exc)
            await self._undo_connect(key, conn, now, retry=False)

    async def _undo_connect(self, key: CallKey, conn: Connection, now: datetime, *, retry: bool) -> None:
        self._connections.pop(key, None)
        await self._agent_event(conn.agent_id, CancelReservation("connect_failed"), now, decide=False)
        if retry and conn.call is not None:
            # Not at once: the same decision would be made again against the same failure.
            self._deferred[key] = _Deferred(conn.call, now + self.retry)

    async def _overflow(self, decision: Decision, now: datetime) -> None:
        target = decision.overflow
        call = self.board.remove_call(decision.call)
        if call is None or target is None:
            return
        if target.kind is OverflowKind.SERVICE and target.target:
            log.info("call %s overflows from %s to %s", decision.call, call.service, target.target)
            self._service(target.target)
            await self.live.take_call(call.key)
            await self._put_on_line(call.moved_to(target.target, now), now, decide=True)
            return
        if self.hooks is not None and await self.hooks.overflow(call, target, now):
            return
        # Without hooks (or when they could not carry it out), voicemail and callback overflows
        # leave the caller waiting in line; the decision log says the overflow fell due.
        self.board.put_call(call)

    # ------------------------------------------------------------------ agents

    def _board_agent(self, profile: AgentProfile, state: AgentState) -> None:
        if self.on_agent_state is not None:
            # Every state change passes here (events, reservations, loads): consoles follow it live.
            self.on_agent_state(
                AgentStateChanged(
                    agent_id=state.agent_id,
                    status=state.status.value,
                    since=state.since,
                    reason=state.reason,
                    call=str(state.call) if state.call else None,
                    service=state.service,
                    wrap_up_until=state.wrap_up_until,
                    reserved_for=str(state.reserved_for) if state.reserved_for else None,
                )
            )
        if profile.active:
            self.board.put_agent(profile.agent, state)
        else:
            self.board.remove_agent(profile.agent.id)

    async def _agent_event(
        self, agent_id: str, event: AgentEvent, now: datetime, *, decide: bool = True
    ) -> AgentState | None:
        """Apply an event the calls imply; a state that does not allow it (a supervisor logged the
        agent out meanwhile) is logged and left alone."""
        try:
            state = await self.live.apply(agent_id, event, now)
        except InvalidTransition as exc:
            log.info("agent %s: %s", agent_id, exc)
            return None
        await self._after_agent_change(agent_id, state, now, decide=decide)
        return state

    async def _after_agent_change(
        self, agent_id: str, state: AgentState, now: datetime, *, decide: bool
    ) -> None:
        profile = self._profiles.get(agent_id)
        if profile is None:
            return
        before = self.board.agent_state(agent_id)
        self._board_agent(profile, state)
        ahead = before.reserved_for if before is not None else None
        if (
            ahead is not None
            and state.reserved_for is None
            and state.call != ahead
            and ahead in self._connections
            and self.hooks is not None
        ):
            # Reserved ahead during wrap-up, then not ready or logged out: the callback goes back.
            await self.hooks.reservation_dropped(agent_id, ahead, now)
        if decide and state.status is AgentStatus.READY and profile.active and not self._paused:
            decision = self.board.agent_freed(agent_id, now)
            if decision is not None:
                await self._apply(decision, now)

    # ------------------------------------------------------------------ for the HTTP routes

    def profile(self, agent_id: str) -> AgentProfile:
        profile = self._profiles.get(agent_id)
        if profile is None:
            raise UnknownAgent(agent_id)
        return profile

    async def change_agent(self, agent_id: str, event: AgentEvent) -> AgentState:
        """Apply an agent's (or a supervisor's) event: ``UnknownAgent`` for an agent not configured,
        ``InvalidTransition`` when their state does not allow it."""
        self.profile(agent_id)
        async with self._lock:
            now = self.clock()
            state = await self.live.apply(agent_id, event, now)
            await self._after_agent_change(agent_id, state, now, decide=True)
            return state

    async def agent_state(self, agent_id: str) -> AgentState:
        self.profile(agent_id)
        return await self.live.get_agent(agent_id) or AgentState.logged_out(agent_id, self.clock())

    async def agents(self) -> list[tuple[AgentProfile, AgentState]]:
        states = {s.agent_id: s for s in await self.live.agent_states()}
        now = self.clock()
        return [
            (p, states.get(i) or AgentState.logged_out(i, now)) for i, p in sorted(self._profiles.items())
        ]

    async def save_agent(self, profile: AgentProfile) -> AgentProfile:
        """Store an agent's configuration and route by it from now on."""
        if not valid_agent_id(profile.agent.id):
            raise ValueError(f"agent id must be digits: {profile.agent.id!r}")
        saved = await self.directory.save_agent(profile)
        await self._agent_config_changed(saved)
        return saved

    async def set_skill(self, agent_id: str, skill: str, level: int | None) -> AgentProfile:
        saved = await self.directory.set_skill(agent_id, skill, level)
        await self._agent_config_changed(saved)
        return saved

    async def _agent_config_changed(self, profile: AgentProfile) -> None:
        async with self._lock:
            now = self.clock()
            self._profiles[profile.agent.id] = profile
            state = await self.live.get_agent(profile.agent.id)
            if state is None:
                state = AgentState.logged_out(profile.agent.id, now)
                await self.live.put_agent(state)
            self._board_agent(profile, state)
            if state.status is AgentStatus.READY and profile.active and not self._paused:
                decision = self.board.agent_freed(profile.agent.id, now)
                if decision is not None:
                    await self._apply(decision, now)

    async def service_configs(self) -> list[ServiceConfig]:
        return await self.directory.services()

    async def save_service(self, service_id: int, routing: ServiceRouting) -> ServiceConfig:
        saved = await self.directory.save_service(service_id, routing)
        async with self._lock:
            self._services[saved.routing.name] = saved
            self.board.set_service(saved.routing)
            await self._apply_all(self.board.round(self.clock()), self.clock())
        return saved

    async def queues(self) -> list[QueueView]:
        """Each service's waiting calls in line order, with how many calls are being connected."""
        waiting = await self.live.waiting_calls()
        by_service: dict[str, list[WaitingCall]] = {}
        for call in waiting:
            by_service.setdefault(call.service, []).append(call)
        connecting: dict[str, int] = {}
        for conn in self._connections.values():
            if not conn.answered:
                connecting[conn.service] = connecting.get(conn.service, 0) + 1
        names = sorted(
            set(by_service) | set(connecting) | {n for n, c in self._services.items() if c.service_id}
        )
        return [
            QueueView(name, tuple(by_service.get(name, ())), connecting.get(name, 0), self.board.ready_agents)
            for name in names
        ]

    def waiting_view(self) -> LineView:
        """The line as the waiting callers' announcements see it (read without the lock: one
        synchronous look at the board between two of the loop's awaits)."""
        agents = []
        for agent_id, profile in self._profiles.items():
            state = self.board.agent_state(agent_id)
            if state is not None and profile.active:
                agents.append((profile.agent, state))
        services = {name: config.routing for name, config in self._services.items()}
        return self.board.waiting_calls(), dict(self._calls), services, agents

    async def decisions(self, limit: int = 100) -> list[Decision]:
        return await self.live.recent_decisions(limit)

    def connections(self) -> dict[CallKey, Connection]:
        return dict(self._connections)

    def health_report(self) -> dict[str, int | bool]:
        """Routing's counters for the platform's health details: decisions, redirects sent, failed
        and of unknown outcome, reservations lost, whether routing is paused (the AMI link refused
        an action; it resumes at the next resync), and call control's actions."""
        control = {f"call_control_{k}": v for k, v in asdict(self.control.health).items()}
        return {**asdict(self.health), "paused": self._paused, **control}

    # ------------------------------------------------------------------ for call control (routing.calls)

    @property
    def lock(self) -> asyncio.Lock:
        return self._lock

    def call(self, key: CallKey) -> CallSnapshot | None:
        return self._calls.get(key)

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._profiles

    def service_named(self, value: str) -> str | None:
        """A service's routing name from its name or its DNIS; ``None`` if there is no such service."""
        for name, config in self._services.items():
            if value == name or (config.dnis and value == config.dnis):
                return name
        return None

    def wrap_up_seconds(self, service: str) -> int:
        return self._service(service).wrap_up_seconds

    def board_agent(self, agent_id: str, state: AgentState) -> None:
        if agent_id in self._profiles:
            self._board_agent(self._profiles[agent_id], state)

    async def agent_event(self, agent_id: str, event: AgentEvent, now: datetime) -> AgentState | None:
        return await self._agent_event(agent_id, event, now)

    def adopt_connection(self, key: CallKey, agent_id: str, service: str, now: datetime) -> Connection:
        """The call now belongs to ``agent_id`` (already reserved): follow it as a connection."""
        conn = Connection(agent_id, service, by_routing=False, sent_at=now)
        self._connections[key] = conn
        return conn

    def drop_connection(self, key: CallKey) -> Connection | None:
        return self._connections.pop(key, None)

    async def reserve_outbound(self, agent_id: str, key: CallKey, service: str) -> bool:
        """Reserve a READY agent for an outbound call about to be dialled with ``key`` (a preview
        campaign call: the customer is dialled first, then the dialplan rings the agent). Routing
        offers them nothing else meanwhile, and follows the call as theirs: answered, they talk and
        wrap up; ended before, they are ready again. ``False`` when the agent is not ready."""
        async with self._lock:
            now = self.clock()
            name = self.service_named(service) or DEFAULT_SERVICE
            state = await self.live.reserve(agent_id, key, name, now)
            if state is None:
                return False
            self.board_agent(agent_id, state)
            self._connections[key] = Connection(agent_id, name, by_routing=False)
            return True

    async def release_outbound(self, agent_id: str, key: CallKey, reason: str) -> None:
        """Undo ``reserve_outbound`` when nothing was dialled."""
        async with self._lock:
            self._connections.pop(key, None)
            state = await self.live.get_agent(agent_id)
            if state is not None and state.status is AgentStatus.RESERVED and state.call == key:
                await self._agent_event(agent_id, CancelReservation(reason), self.clock())


def agent_from_config(
    agent_id: str,
    name: str,
    *,
    skills: dict[str, int] | None = None,
    languages: Iterable[str] = (),
    team: str = "",
    max_occupancy: float | None = None,
) -> Agent:
    """An ``Agent`` with a checked id (digits only)."""
    if not valid_agent_id(agent_id):
        raise ValueError(f"agent id must be digits: {agent_id!r}")
    return Agent(agent_id, name, skills or {}, frozenset(languages), team, max_occupancy)
