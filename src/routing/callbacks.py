"""Queue callbacks that keep the caller's place, and overflows to voicemail or to a callback.

**A queue callback** is a waiting call without a caller on the line. It is booked in the IVR or by an
overflow, and joins its service's line as a virtual ``WaitingCall`` keyed ``callback-<task id>``
(``callback_key``), with the time the caller first waited as its place (``enqueued_at``): the
policy orders it exactly like a caller on hold. When the policy chooses an agent for it, the agent
is reserved and the platform dials the customer with one Originate carrying a pre-assigned
``ChannelId`` (``cti.originate``: never re-sent; after a lost answer, reconciled by that id). The
customer, once they answer, lands in the dialplan's ``cti-callback`` context, which rings the agent
with the caller name ``Callback`` (the agent is told it is a callback; ``AgentOffered.callback`` for
their console). From there the router follows the call like any other (its key is the ChannelId,
which Asterisk makes the call's Linkedid): ringing, talking, wrap-up. When the agent answers, the
callback task is marked ``done`` with the call's key (its call log). A customer who does not answer,
or an agent who does not, puts the callback back in line with its place (at most ``max_attempts``
dials; then the task is ``failed``).

**Overflows** the policy decides after a service's maximum wait: to ``voicemail``, the caller is
redirected to ``cti-overflow,voicemail``, where the dialplan records a message into the IVR's
voicemail folder; when the call ends the message is filed on the customer's record exactly like an
IVR voicemail (``file_voicemail``, with its callback task). To ``callback``, the task is booked for
the caller's number, the callback joins the line with the caller's place, and the caller is
redirected to ``cti-overflow,callback``, told they will be called back, and hung up. Both contexts
first mark the call ``in_ivr``, so the router no longer counts it as waiting.

The line of callbacks is in the router's live state: with Redis it outlives a platform restart
(``loaded`` puts every callback still pending back on the board).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cti.model import AgentOffered, CallChange, CallKey, CallPhase, CallSnapshot, ChangeKind
from cti.originate import OriginateOutcome, OriginateRequest, OriginatingLink, new_channel_id, originate
from cti.ports import ActionFailed, ActionOutcomeUnknown, ActionSink, LinkDown
from routing.model import (
    AgentStatus,
    CancelReservation,
    InvalidTransition,
    Overflow,
    OverflowKind,
    ReserveAhead,
    RingNoAnswer,
    SkillNeed,
    WaitingCall,
    WrapUpDone,
    merge_needs,
    waiting_call_from,
)
from routing.policy import Decision, Trigger
from routing.waiting import overflow_redirect_headers

if TYPE_CHECKING:
    from routing.service import RoutingService

DEFAULT_SERVICE = "default"  # as routing.service names a call nobody classified

log = logging.getLogger("cti.routing.callbacks")

#: The dialplan context where an answered callback rings ``<agent id>``.
CALLBACK_CONTEXT = "cti-callback"
#: The channel variable that carries the task id into the dialplan (for its UserEvent).
TASK_VARIABLE = "CTI_CALLBACK_TASK"
_PREFIX = "callback-"
_NUMBER = re.compile(r"^\+?[0-9]{6,15}$")
_ENDPOINT = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_UNIQUEID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: The longest dial-ahead: a customer's phone rings for about this long at most before they answer.
MAX_DIAL_AHEAD_SECONDS = 120.0


# --------------------------------------------------------------------------------------- pure


def callback_key(pbx: str, task_id: int) -> CallKey:
    """The key of a callback waiting in line: one per task, the same on every node."""
    return CallKey(pbx, f"{_PREFIX}{task_id}")


def task_of(key: CallKey) -> int | None:
    """The task id of a callback's key; ``None`` for a caller's own call."""
    if not key.linkedid.startswith(_PREFIX):
        return None
    rest = key.linkedid[len(_PREFIX) :]
    return int(rest) if rest.isdigit() else None


def callback_waiting_call(call: WaitingCall, task_id: int, pbx: str) -> WaitingCall:
    """The callback of ``call`` (a caller who waited, or one the IVR described): the same service,
    needs, language and priority, and the same place in line (``enqueued_at``), under the task's
    key. ``attempts`` and ``avoid`` start afresh: it has rung nobody yet."""
    return replace(call, key=callback_key(pbx, task_id), attempts=0, avoid=frozenset())


def check_dial_ahead(seconds: float) -> float:
    """A dial-ahead time: 0 (off) to ``MAX_DIAL_AHEAD_SECONDS``; ``ValueError`` otherwise."""
    if isinstance(seconds, bool) or not 0 <= seconds <= MAX_DIAL_AHEAD_SECONDS:
        raise ValueError(f"a dial-ahead time is 0..{MAX_DIAL_AHEAD_SECONDS:g} s: {seconds!r}")
    return float(seconds)


def callback_channel(number: str, endpoint: str) -> str:
    """The dial string of a callback: the number (digits, an optional leading ``+``) at the PBX's
    outbound endpoint. ``ValueError`` for anything else: it goes into an Originate."""
    if not _NUMBER.fullmatch(number):
        raise ValueError(f"a callback number is 6 to 15 digits: {number!r}")
    if not _ENDPOINT.fullmatch(endpoint):
        raise ValueError(f"not an endpoint name: {endpoint!r}")
    return f"PJSIP/{number}@{endpoint}"


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """A callback task the line holds: whom to call and how often it was tried."""

    task_id: int
    number: str
    attempts: int = 0


@dataclass(slots=True)
class _Dialling:
    """A callback being dialled: the customer's call (``key``, the ChannelId) for ``agent_id``."""

    pending: PendingCallback
    call: WaitingCall
    agent_id: str
    key: CallKey
    answered: bool = False
    offered: bool = False
    ahead: bool = False  # the agent was reserved during their wrap-up (dialled ahead)


# ---------------------------------------------------------------------------------------- ports


@dataclass(frozen=True, slots=True)
class CallbackPorts:
    """What the composition root provides from the customer record.

    ``book(call, number)`` books a callback task for the caller of ``call`` and returns its id and
    the number in E.164 (``ValueError`` for a number that cannot be called back);
    ``finished(task_id, status, call_key)`` marks it ``done`` (with the call that served it) or
    ``failed``; ``pending()`` gives every pending task's number by id;
    ``file_voicemail(call, file_name)`` files a message recorded in the IVR's voicemail folder on
    the caller's record (as the IVR does for its own)."""

    book: Callable[[CallSnapshot, str], Awaitable[tuple[int, str]]]
    finished: Callable[[int, str, str | None], Awaitable[None]]
    pending: Callable[[], Awaitable[dict[int, str]]]
    file_voicemail: Callable[[CallSnapshot, str], Awaitable[None]]


class QueueCallbacks:
    """``routing.waiting.WaitingHooks`` for one router: overflows and queue callbacks."""

    def __init__(
        self,
        service: RoutingService,
        ports: CallbackPorts,
        link: OriginatingLink,
        pbx: str,
        *,
        endpoint: str = "outside",
        caller_id: str = "",
        ring_seconds: int = 30,
        max_attempts: int = 3,
        retry_seconds: float = 30.0,
        dial_ahead_seconds: float = 0.0,
        dial_ahead_services: Mapping[str, float] | None = None,
    ) -> None:
        callback_channel("123456", endpoint)  # the endpoint name is checked once, here
        #: How long before an agent's wrap-up ends a callback of a service may be dialled for them.
        self.dial_ahead_default = check_dial_ahead(dial_ahead_seconds)
        self.dial_ahead_services = {k: check_dial_ahead(v) for k, v in (dial_ahead_services or {}).items()}
        self.service = service
        self.ports = ports
        self.link = link
        self.pbx = pbx
        self.endpoint = endpoint
        self.caller_id = caller_id
        self.ring_seconds = ring_seconds
        self.max_attempts = max_attempts
        self.retry = timedelta(seconds=retry_seconds)
        self.pending: dict[CallKey, PendingCallback] = {}  # the line's callbacks, by virtual key
        self.dialling: dict[CallKey, _Dialling] = {}  # by the customer's call key (the ChannelId)
        self.voicemails: dict[CallKey, str] = {}  # calls recording an overflow voicemail -> file
        self.hang_up_when_seen: set[CallKey] = set()  # dials withdrawn before their channel showed
        self._tasks: set[asyncio.Task[None]] = set()
        self.dialled = 0
        self.done = 0
        service.hooks = self

    @property
    def actions(self) -> ActionSink:
        return self.service.actions

    # ------------------------------------------------------------------ booking

    async def book(self, call: WaitingCall, task_id: int, number: str) -> WaitingCall:
        """Put a booked callback in line (the router's lock must not be held): ``call`` says its
        service, needs and place. Returns the virtual call as it waits."""
        async with self.service._lock:
            return await self._book(call, task_id, number, self.service.clock())

    async def book_for_call(
        self,
        key: CallKey,
        task_id: int,
        number: str,
        *,
        skills: tuple[str, ...] = (),
        language: str | None = None,
        priority: int = 0,
        since: datetime | None = None,
    ) -> WaitingCall:
        """Put a callback booked for the live call ``key`` (in the IVR) in line: the call's service
        and needs as the router would give them if it waited, plus ``skills``; its place is
        ``since`` (when the caller first waited or reached the IVR), else now."""
        service = self.service
        async with service._lock:
            now = service.clock()
            snap = service._calls.get(key)
            name = (service._service_name(snap) if snap is not None else None) or DEFAULT_SERVICE
            routing = service._service(name)
            place = since or now
            if snap is not None:
                base = waiting_call_from(snap, routing, now, rules=service.rules)
            else:
                base = WaitingCall(key, name, place, needs=routing.needs)
            call = replace(
                base,
                enqueued_at=place,
                service_since=place,
                needs=merge_needs(base.needs, (SkillNeed(s) for s in skills)),
                language=language or base.language,
                priority=base.priority + priority,
            )
            return await self._book(call, task_id, number, now)

    async def _book(
        self, call: WaitingCall, task_id: int, number: str, now: datetime, *, decide: bool = True
    ) -> WaitingCall:
        callback_channel(number, self.endpoint)
        virtual = callback_waiting_call(call, task_id, self.pbx)
        self.pending[virtual.key] = PendingCallback(task_id, number)
        log.info("callback %d joins %s's line as %s", task_id, virtual.service, virtual.key.linkedid)
        await self.service._put_on_line(virtual, now, decide=decide)
        if decide:
            await self.service.dial_ahead(now)  # an agent may be about to be free for it already
        return virtual

    # ------------------------------------------------------------------ hooks

    def is_virtual(self, key: CallKey) -> bool:
        return key in self.pending

    def dial_ahead(self, call: WaitingCall) -> float:
        if call.key not in self.pending:
            return 0.0  # a caller on hold is connected when the agent is free, never ahead
        return self.dial_ahead_services.get(call.service, self.dial_ahead_default)

    def dial_ahead_max(self) -> float:
        if not self.pending:
            return 0.0
        return max((self.dial_ahead_default, *self.dial_ahead_services.values()))

    async def reservation_dropped(self, agent_id: str, key: CallKey, now: datetime) -> None:
        dialling = self.dialling.pop(key, None)
        self.service._connections.pop(key, None)
        if dialling is None:
            return
        log.info(
            "callback %d: agent %s left their wrap-up; the customer's dial is withdrawn, back in line",
            dialling.pending.task_id,
            agent_id,
        )
        # The customer's phone must not go on ringing for an agent who is gone: hang it up (by the
        # ChannelId, which Asterisk also finds a channel by), or as soon as it shows.
        self.hang_up_when_seen.add(key)
        self._spawn(self._withdraw(key))
        # Not the customer's doing: the same attempt count, at once, with the caller's place.
        self.pending[dialling.call.key] = dialling.pending
        await self.service._put_on_line(dialling.call, now, decide=True)

    async def _withdraw(self, key: CallKey) -> None:
        try:
            await self.actions.send("Hangup", {"Channel": key.linkedid, "Cause": "16"})
            self.hang_up_when_seen.discard(key)
        except (ActionFailed, ActionOutcomeUnknown, LinkDown, TimeoutError) as exc:
            log.info("callback dial %s not hung up yet (%s): it will be when it shows", key.linkedid, exc)

    async def loaded(self, now: datetime) -> None:
        """Put back the callbacks the live state kept (Redis: across a restart) that are still
        pending on the customer's record."""
        kept = [c for c in await self.service.live.waiting_calls() if task_of(c.key) is not None]
        if not kept:
            return
        numbers = await self.ports.pending()
        for call in kept:
            task_id = task_of(call.key)
            assert task_id is not None
            number = numbers.get(task_id)
            if number is None:
                await self.service.live.take_call(call.key)  # done or cancelled meanwhile
                continue
            self.pending[call.key] = PendingCallback(task_id, number, call.attempts)
            self.service.board.put_call(call)
        log.info("%d callbacks back in line from the live state", len(self.pending))

    async def call_changed(self, change: CallChange, now: datetime) -> None:
        snap = change.call
        gone = change.kind in (ChangeKind.ENDED, ChangeKind.CLOSED) or snap.ended_at is not None
        if gone and snap.key in self.voicemails:
            file_name = self.voicemails.pop(snap.key)
            self._spawn(self._file_voicemail(snap, file_name))
        if snap.key in self.hang_up_when_seen:
            if gone:
                self.hang_up_when_seen.discard(snap.key)
            elif snap.anchor_channel:
                self.hang_up_when_seen.discard(snap.key)
                self._spawn(self._hang_up(snap.anchor_channel))
            return
        dialling = self.dialling.get(snap.key)
        if dialling is None:
            return
        if (
            dialling.ahead
            and not gone
            and snap.agent == dialling.agent_id
            and snap.phase in (CallPhase.RINGING_AGENT, CallPhase.TALKING, CallPhase.HELD)
        ):
            # The customer answered before the agent's wrap-up ended: the dialplan rings the agent
            # at once, so the wrap-up ends now (the customer is not kept waiting on the line).
            state = self.service.board.agent_state(dialling.agent_id)
            if state is not None and state.status is AgentStatus.WRAP_UP and state.reserved_for == snap.key:
                await self.service._agent_event(dialling.agent_id, WrapUpDone(), now, decide=False)
        if not dialling.answered and snap.phase in (CallPhase.TALKING, CallPhase.HELD) and snap.agent:
            dialling.answered = True
            self.done += 1
            self._spawn(
                self._finished(dialling.pending.task_id, "done", f"{snap.key.pbx}/{snap.key.linkedid}")
            )
        elif snap.phase is CallPhase.RINGING_AGENT and snap.agent and not dialling.offered:
            dialling.offered = True
            if self.service.on_offer is not None:
                self.service.on_offer(
                    AgentOffered(
                        call=snap,
                        agent_id=snap.agent,
                        service=dialling.call.service,
                        rule="queue callback",
                        waited_seconds=(now - dialling.call.enqueued_at).total_seconds(),
                        candidates=(),
                        candidates_total=1,
                        relaxed=False,
                        at=now,
                        callback=True,
                    )
                )
        if gone:
            del self.dialling[snap.key]
            if not dialling.answered:
                # The customer or the agent did not answer: back in line with the caller's place.
                rang = any(m.phase is CallPhase.RINGING_AGENT for m in snap.history)
                conn = self.service._connections.pop(snap.key, None)
                if conn is not None:
                    # The router's own "caller abandoned" does not fit: an agent who let the customer
                    # ring out goes not ready, like any ring-no-answer; a customer not reached frees them.
                    event = RingNoAnswer() if rang else CancelReservation("customer_not_reached")
                    if rang:
                        self.service.health.ring_no_answers += 1
                    await self.service._agent_event(conn.agent_id, event, now)
                await self._again(dialling, now, avoid=rang)

    async def connect_virtual(self, decision: Decision, now: datetime) -> None:
        service = self.service
        key = decision.call
        agent_id = decision.agent_id
        call = service.board.remove_call(key)
        taken = await service.live.take_call(key)
        pending = self.pending.pop(key, None)
        if call is None or taken is None or pending is None or agent_id is None:
            return  # another node took it
        channel_id = new_channel_id("cti-cb")
        customer = CallKey(self.pbx, channel_id)
        ahead = decision.trigger is Trigger.AGENT_ABOUT_FREE
        if ahead:
            # The agent is in wrap-up, about to be free: reserved for the callback there (no other
            # call is offered them), and goes to it when the wrap-up ends.
            try:
                state = await service.live.apply(agent_id, ReserveAhead(customer, call.service), now)
            except InvalidTransition:
                state = None
        else:
            state = await service.live.reserve(agent_id, customer, call.service, now)
        if state is None:
            service.health.reservations_lost += 1
            fresh = await service.live.get_agent(agent_id)
            if fresh is not None and agent_id in service._profiles:
                service._board_agent(service._profiles[agent_id], fresh)
            self.pending[key] = pending
            await service._put_on_line(call, now, decide=True)
            return
        service._board_agent(service._profiles[agent_id], state)
        # ``sent_at`` stays unset: the customer's phone rings first, the agent's only after they
        # answer, so the router's "no ring at the agent" grace does not apply; the dial's own
        # outcome (answered, or the call ending) says how it went.
        from routing.service import Connection

        service._connections[customer] = Connection(agent_id, call.service, by_routing=True, call=call)
        dialling = _Dialling(pending, call, agent_id, customer, ahead=ahead)
        self.dialling[customer] = dialling
        try:
            request = OriginateRequest(
                channel=callback_channel(pending.number, self.endpoint),
                context=CALLBACK_CONTEXT,
                exten=agent_id,
                caller_id_num=self.caller_id,
                ring_seconds=self.ring_seconds,
                variables={TASK_VARIABLE: str(pending.task_id)},
                channel_id=channel_id,
            )
        except ValueError as exc:
            log.error("callback %d not dialled, unsafe value for Asterisk: %s", pending.task_id, exc)
            await self._undo(dialling, now, retry=False, status="failed")
            return
        self.dialled += 1
        log.info(
            "callback %d: dialling the customer for agent %s (%s)%s",
            pending.task_id,
            agent_id,
            channel_id,
            ", ahead of the end of their wrap-up" if ahead else "",
        )
        # The Originate (and, after a lost answer, its reconciliation) runs beside the router: the
        # router's loop never waits on it.
        self._spawn(self._dial(dialling, request))

    async def overflow(self, call: WaitingCall, target: Overflow, now: datetime) -> bool:
        snap = self.service._calls.get(call.key)
        if snap is None or snap.phase is not CallPhase.WAITING:
            return False
        if target.kind is OverflowKind.VOICEMAIL:
            if not _UNIQUEID.fullmatch(snap.anchor_uniqueid):
                return False
            if not await self._redirect(snap, "voicemail"):
                return False
            self.voicemails[snap.key] = f"overflow-{snap.anchor_uniqueid}"
            await self.service.live.take_call(call.key)
            log.info("call %s overflows to voicemail", call.key)
            return True
        if target.kind is OverflowKind.CALLBACK:
            try:
                callback_channel(snap.ani.lstrip("+"), self.endpoint)  # digits we could dial back
                task_id, number = await self.ports.book(snap, snap.ani)
                callback_channel(number, self.endpoint)
            except ValueError as exc:
                log.warning(
                    "call %s: no callback to this number (%s); the caller keeps waiting", call.key, exc
                )
                return False
            virtual = await self._book(call, task_id, number, now, decide=False)
            if not await self._redirect(snap, "callback"):
                # The caller is still on hold: they keep their own place, the callback is withdrawn.
                self.pending.pop(virtual.key, None)
                self.service.board.remove_call(virtual.key)
                await self.service.live.take_call(virtual.key)
                await self._finished(task_id, "cancelled", None)
                return False
            await self.service.live.take_call(call.key)
            log.info("call %s overflows to callback %d", call.key, task_id)
            return True
        return False

    # ------------------------------------------------------------------ internals

    async def _hang_up(self, channel: str) -> None:
        if any(c in channel for c in "\r\n\x00"):
            return
        try:
            await self.actions.send("Hangup", {"Channel": channel, "Cause": "16"})
        except (ActionFailed, ActionOutcomeUnknown, LinkDown, TimeoutError) as exc:
            log.info("withdrawn callback dial %s not hung up (%s)", channel, exc)

    async def _redirect(self, snap: CallSnapshot, kind: str) -> bool:
        try:
            await self.actions.send("Redirect", overflow_redirect_headers(snap.anchor_channel, kind))
            return True
        except ActionOutcomeUnknown:
            return True  # it may have moved: the call's next phase says; never sent twice
        except (ActionFailed, LinkDown, TimeoutError, ValueError) as exc:
            log.warning("call %s: overflow to %s not carried out (%s)", snap.key, kind, exc)
            return False

    async def _dial(self, dialling: _Dialling, request: OriginateRequest) -> None:
        try:
            result = await originate(self.link, request, reconcile_within=30.0)
        except LinkDown:
            result = None
        if result is not None and result.outcome in (
            OriginateOutcome.ACCEPTED,
            OriginateOutcome.LIVE_AFTER_LOSS,
        ):
            return  # the call's own changes tell the rest
        log.warning(
            "callback %d: customer not dialled (%s)",
            dialling.pending.task_id,
            "link down" if result is None else f"{result.outcome.value}: {result.message}",
        )
        async with self.service._lock:
            if self.dialling.pop(dialling.key, None) is not None:
                await self._undo(dialling, self.service.clock(), retry=True, status="failed")

    async def _undo(self, dialling: _Dialling, now: datetime, *, retry: bool, status: str) -> None:
        service = self.service
        conn = service._connections.pop(dialling.key, None)
        if conn is not None:
            await service._agent_event(conn.agent_id, CancelReservation("connect_failed"), now)
        if retry:
            await self._again(dialling, now, avoid=False)
        else:
            await self._finished(dialling.pending.task_id, status, None)

    async def _again(self, dialling: _Dialling, now: datetime, *, avoid: bool) -> None:
        pending = replace(dialling.pending, attempts=dialling.pending.attempts + 1)
        if pending.attempts >= self.max_attempts:
            log.warning("callback %d: not reached after %d dials", pending.task_id, pending.attempts)
            await self._finished(pending.task_id, "failed", None)
            return
        call = dialling.call.after_ring_no_answer(dialling.agent_id) if avoid else dialling.call
        call = replace(call, attempts=pending.attempts)
        self.pending[call.key] = pending
        # Not at once: the customer who just did not answer would be rung again straight away.
        service = self.service
        from routing.service import _Deferred

        service._deferred[call.key] = _Deferred(call, now + self.retry)
        await service.live.add_call(call)

    async def _finished(self, task_id: int, status: str, call_key: str | None) -> None:
        try:
            await self.ports.finished(task_id, status, call_key)
        except Exception:
            log.exception("callback %d: could not mark it %s", task_id, status)

    async def _file_voicemail(self, snap: CallSnapshot, file_name: str) -> None:
        try:
            await self.ports.file_voicemail(snap, file_name)
        except Exception:
            log.exception("call %s: overflow voicemail %s not filed", snap.key, file_name)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
