"""Routing's pure types and rules: agents, their states, waiting calls and each service's routing.

Nothing here does I/O or reads a clock: every rule that depends on time takes ``now``
(timezone-aware UTC). Values are frozen; a change is a new value.

The agent state machine is ``transition(state, event, now)``. Its allowed moves are the table
``ALLOWED``; anything else raises ``InvalidTransition`` and leaves the caller's state untouched.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType

from cti.model import CallKey, CallSnapshot

MIN_LEVEL = 1
MAX_LEVEL = 10
HISTORY_LIMIT = 50  # the state travels to shared live state on every change: keep its tail, not a day
RING_NO_ANSWER = "ring_no_answer"
LOGGED_IN = "logged_in"
RESERVED_AHEAD = "reserved_ahead"  # reserved during wrap-up for a queue callback dialled ahead


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("routing times must be timezone-aware (UTC)")


def _check_level(skill: str, level: int) -> None:
    if not skill:
        raise ValueError("a skill needs a name")
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"skill {skill!r}: level {level} is outside {MIN_LEVEL}..{MAX_LEVEL}")


def _frozen_levels(levels: Mapping[str, int]) -> Mapping[str, int]:
    for skill, level in levels.items():
        _check_level(skill, level)
    return MappingProxyType(dict(levels))


# --- agents -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agent:
    """Who an agent is, as routing sees them (from the customer record's users; changes rarely).

    ``skills`` maps a skill name to the agent's level in it (1 = novice .. 10 = expert).
    ``max_occupancy`` (0..1, optional) is the share of logged-in time on calls above which the agent
    is not offered calls: a guard against burning out the best agents.
    """

    id: str
    name: str
    skills: Mapping[str, int] = field(default_factory=dict)
    languages: frozenset[str] = frozenset()
    team: str = ""
    max_occupancy: float | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an agent needs an id")
        object.__setattr__(self, "skills", _frozen_levels(self.skills))
        object.__setattr__(self, "languages", frozenset(self.languages))
        if self.max_occupancy is not None and not 0.0 < self.max_occupancy <= 1.0:
            raise ValueError(f"agent {self.id}: max_occupancy must be in (0, 1]")


class AgentStatus(enum.StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"  # waiting for a call
    NOT_READY = "not_ready"  # logged in, not taking calls, with a reason code
    RESERVED = "reserved"  # chosen for a call: the phone is ringing
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"  # after-call work until a deadline


@dataclass(frozen=True, slots=True)
class StatusMark:
    """One entry of an agent's history: the status entered, when, and why."""

    status: AgentStatus
    at: datetime
    reason: str | None = None
    call: CallKey | None = None
    by: str | None = None  # the supervisor who forced it, if one did


@dataclass(frozen=True, slots=True)
class AgentState:
    """An agent's live state.

    ``since`` is when the current status began and ``reason`` why it was entered (the reason code
    for NOT_READY). ``idle_since`` is when the agent last became
    available for a call (the longest-idle rule reads it); a reservation the caller abandoned does
    not reset it, since the agent did no work. ``calls_handled``, ``talk_seconds`` and
    ``logged_in_seconds`` count the current day (``ResetDay`` starts a new one at the centre's
    midnight); ``logged_in_at`` starts the current session. ``history`` keeps the last
    ``HISTORY_LIMIT`` status changes, oldest first.

    ``reserved_for`` (with ``reserved_service``) is set only in WRAP_UP: the agent is about to be
    free and has been reserved ahead for that call (a queue callback being dialled,
    ``ReserveAhead``). Nothing else is offered to them; when the wrap-up ends (``WrapUpDone``:
    the deadline, the agent finishing early, or the customer answering) they go RESERVED for it
    instead of READY. Any way out of WRAP_UP other than ``WrapUpDone`` drops the reservation.
    """

    agent_id: str
    status: AgentStatus
    since: datetime
    idle_since: datetime | None = None
    reason: str | None = None
    call: CallKey | None = None
    service: str | None = None
    wrap_up_until: datetime | None = None
    calls_handled: int = 0
    talk_seconds: float = 0.0
    logged_in_at: datetime | None = None
    logged_in_seconds: float = 0.0
    history: tuple[StatusMark, ...] = ()
    reserved_for: CallKey | None = None
    reserved_service: str | None = None

    @classmethod
    def logged_out(cls, agent_id: str, now: datetime) -> AgentState:
        _require_aware(now)
        return cls(agent_id, AgentStatus.LOGGED_OUT, now, history=(StatusMark(AgentStatus.LOGGED_OUT, now),))

    def occupancy(self, now: datetime) -> float:
        """Share of today's logged-in time spent talking (0 when not logged in at all today)."""
        logged = self.logged_in_seconds
        if self.logged_in_at is not None:
            logged += max(0.0, (now - self.logged_in_at).total_seconds())
        return self.talk_seconds / logged if logged > 0 else 0.0

    def wrap_up_due(self, now: datetime) -> bool:
        return (
            self.status is AgentStatus.WRAP_UP
            and self.wrap_up_until is not None
            and now >= self.wrap_up_until
        )


# --- agent events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    """The agent logs in; they start NOT_READY (reason ``logged_in``) until they choose READY."""


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class NotReady:
    reason: str


@dataclass(frozen=True, slots=True)
class Reserve:
    """The router chose this agent for ``call`` of ``service``; the agent's phone starts ringing."""

    call: CallKey
    service: str


@dataclass(frozen=True, slots=True)
class ReserveAhead:
    """The agent, in wrap-up and about to be free, is reserved for ``call`` of ``service`` (a queue
    callback dialled ahead): they stay in WRAP_UP, and ``WrapUpDone`` takes them to RESERVED."""

    call: CallKey
    service: str


@dataclass(frozen=True, slots=True)
class Answer:
    pass


@dataclass(frozen=True, slots=True)
class RingNoAnswer:
    """The agent let the phone ring out: they go NOT_READY so the next call does not ring out too."""


@dataclass(frozen=True, slots=True)
class CancelReservation:
    """The call went away while the agent's phone rang (the caller hung up, another node won).

    In WRAP_UP it drops a reservation made ahead (the customer was not reached): the agent stays in
    wrap-up until its deadline, then goes READY as usual."""

    reason: str = "caller_abandoned"


@dataclass(frozen=True, slots=True)
class Hangup:
    """The call ended; after-call work lasts the service's ``wrap_up_seconds`` (0: straight to READY)."""

    wrap_up_seconds: int


@dataclass(frozen=True, slots=True)
class WrapUpDone:
    """After-call work is over: the deadline passed or the agent finished early."""


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class ForceNotReady:
    reason: str
    supervisor: str


@dataclass(frozen=True, slots=True)
class ForceLogout:
    supervisor: str


@dataclass(frozen=True, slots=True)
class ResetDay:
    """Start a new day: the daily counters go back to zero; the status does not change."""


AgentEvent = (
    Login
    | Ready
    | NotReady
    | Reserve
    | ReserveAhead
    | Answer
    | RingNoAnswer
    | CancelReservation
    | Hangup
    | WrapUpDone
    | Logout
    | ForceNotReady
    | ForceLogout
    | ResetDay
)

_S = AgentStatus
_LOGGED_IN = frozenset({_S.READY, _S.NOT_READY, _S.RESERVED, _S.ON_CALL, _S.WRAP_UP})

# Which statuses each event may leave. Everything else is an InvalidTransition.
ALLOWED: Mapping[type, frozenset[AgentStatus]] = MappingProxyType(
    {
        Login: frozenset({_S.LOGGED_OUT}),
        Ready: frozenset({_S.NOT_READY}),
        NotReady: frozenset({_S.READY, _S.NOT_READY, _S.WRAP_UP}),
        Reserve: frozenset({_S.READY}),
        # Only in wrap-up, and only once: see AgentState.reserved_for.
        ReserveAhead: frozenset({_S.WRAP_UP}),
        Answer: frozenset({_S.RESERVED}),
        RingNoAnswer: frozenset({_S.RESERVED}),
        # In WRAP_UP only when reserved ahead (the check is in ``transition``).
        CancelReservation: frozenset({_S.RESERVED, _S.WRAP_UP}),
        Hangup: frozenset({_S.ON_CALL}),
        WrapUpDone: frozenset({_S.WRAP_UP}),
        Logout: frozenset({_S.READY, _S.NOT_READY, _S.WRAP_UP}),
        ForceNotReady: frozenset({_S.READY, _S.NOT_READY, _S.WRAP_UP}),
        # A supervisor may pull an agent whose phone rings (the call goes back to its queue), but not
        # one mid-conversation: the conversation would go on with nobody accounting for it.
        ForceLogout: frozenset({_S.READY, _S.NOT_READY, _S.RESERVED, _S.WRAP_UP}),
        ResetDay: frozenset(AgentStatus),
    }
)


def event_name(event: AgentEvent | type) -> str:
    cls = event if isinstance(event, type) else type(event)
    return "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")


class InvalidTransition(ValueError):
    """An event that the agent's current status does not allow."""

    def __init__(self, state: AgentState, event: AgentEvent, detail: str | None = None) -> None:
        allowed = ", ".join(sorted(str(s) for s in ALLOWED[type(event)]))
        super().__init__(
            detail
            or f"agent {state.agent_id} is {state.status}: {event_name(event)} is allowed only from {allowed}"
        )
        self.state = state
        self.event = event


def _enter(
    state: AgentState,
    status: AgentStatus,
    now: datetime,
    *,
    reason: str | None = None,
    call: CallKey | None = None,
    service: str | None = None,
    by: str | None = None,
    **changes: object,
) -> AgentState:
    mark = StatusMark(status, now, reason, call, by)
    history = (*state.history, mark)[-HISTORY_LIMIT:]
    return replace(
        state,
        status=status,
        since=now,
        reason=reason,
        call=call,
        service=service,
        wrap_up_until=None,
        reserved_for=None,  # a reservation made ahead never outlives the wrap-up it was made in
        reserved_service=None,
        history=history,
        **changes,  # type: ignore[arg-type]
    )


def _mark(
    state: AgentState, now: datetime, reason: str | None, call: CallKey | None, **changes: object
) -> AgentState:
    """A change within the current status (its ``since`` and deadline kept), noted in the history."""
    mark = StatusMark(state.status, now, reason, call)
    history = (*state.history, mark)[-HISTORY_LIMIT:]
    return replace(state, history=history, **changes)  # type: ignore[arg-type]


def _close_session(state: AgentState, now: datetime) -> float:
    if state.logged_in_at is None:
        return state.logged_in_seconds
    return state.logged_in_seconds + max(0.0, (now - state.logged_in_at).total_seconds())


def transition(state: AgentState, event: AgentEvent, now: datetime) -> AgentState:
    """Apply ``event`` to ``state`` at ``now``; the new state, or ``InvalidTransition``."""
    _require_aware(now)
    if state.status not in ALLOWED[type(event)]:
        raise InvalidTransition(state, event)
    match event:
        case Login():
            return _enter(state, _S.NOT_READY, now, reason=LOGGED_IN, logged_in_at=now, idle_since=None)
        case WrapUpDone() if state.reserved_for is not None:
            # Free now, and already chosen: straight to the call reserved ahead.
            return _enter(
                state, _S.RESERVED, now, reason=RESERVED_AHEAD, call=state.reserved_for,
                service=state.reserved_service, idle_since=now,
            )  # fmt: skip
        case Ready() | WrapUpDone():
            return _enter(state, _S.READY, now, idle_since=now)
        case ReserveAhead(call=call, service=service):
            if state.reserved_for is not None:
                raise InvalidTransition(
                    state, event, f"agent {state.agent_id} is already reserved for {state.reserved_for}"
                )
            return _mark(state, now, RESERVED_AHEAD, call, reserved_for=call, reserved_service=service)
        case CancelReservation(reason=reason) if state.status is _S.WRAP_UP:
            if state.reserved_for is None:
                raise InvalidTransition(
                    state, event, f"agent {state.agent_id} is wrap_up and not reserved for a call"
                )
            return _mark(state, now, reason, state.reserved_for, reserved_for=None, reserved_service=None)
        case NotReady(reason=reason):
            return _enter(state, _S.NOT_READY, now, reason=reason, idle_since=None)
        case ForceNotReady(reason=reason, supervisor=supervisor):
            return _enter(state, _S.NOT_READY, now, reason=reason, by=supervisor, idle_since=None)
        case Reserve(call=call, service=service):
            return _enter(state, _S.RESERVED, now, call=call, service=service)
        case Answer():
            return _enter(state, _S.ON_CALL, now, call=state.call, service=state.service)
        case RingNoAnswer():
            return _enter(state, _S.NOT_READY, now, reason=RING_NO_ANSWER, call=state.call, idle_since=None)
        case CancelReservation(reason=reason):
            # idle_since is kept: the agent did no work, so they keep their place in the idle line.
            return _enter(state, _S.READY, now, reason=reason, call=state.call)
        case Hangup(wrap_up_seconds=seconds):
            if seconds < 0:
                raise ValueError("wrap-up seconds cannot be negative")
            talked = max(0.0, (now - state.since).total_seconds())
            counted = replace(
                state, calls_handled=state.calls_handled + 1, talk_seconds=state.talk_seconds + talked
            )
            if seconds == 0:
                return _enter(counted, _S.READY, now, call=state.call, idle_since=now)
            wrapped = _enter(counted, _S.WRAP_UP, now, call=state.call, service=state.service)
            return replace(wrapped, wrap_up_until=now + timedelta(seconds=seconds))
        case Logout():
            return _enter(
                state, _S.LOGGED_OUT, now, idle_since=None, logged_in_at=None,
                logged_in_seconds=_close_session(state, now),
            )  # fmt: skip
        case ForceLogout(supervisor=supervisor):
            return _enter(
                state, _S.LOGGED_OUT, now, by=supervisor, call=state.call, idle_since=None,
                logged_in_at=None, logged_in_seconds=_close_session(state, now),
            )  # fmt: skip
        case ResetDay():
            return replace(
                state,
                calls_handled=0,
                talk_seconds=0.0,
                logged_in_seconds=0.0,
                logged_in_at=now if state.logged_in_at is not None else None,
            )
    raise AssertionError(f"unhandled agent event {event!r}")  # pragma: no cover


# --- waiting calls ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkillNeed:
    """A skill a call needs, at ``min_level`` or better. An ``optional`` need is wanted at first and
    dropped by a relaxation step that says so."""

    skill: str
    min_level: int = MIN_LEVEL
    optional: bool = False

    def __post_init__(self) -> None:
        _check_level(self.skill, self.min_level)


@dataclass(frozen=True, slots=True)
class WaitingCall:
    """A call waiting for an agent.

    ``enqueued_at`` is the caller's place in line: it never changes while the call waits, not on
    relaxation, not after a ring-no-answer, not when it overflows to another service.
    ``service_since`` is when it entered its current service (relaxation and max wait count from
    there). ``priority``: higher goes first (see ``call_priority``). ``attempts`` counts agents who let
    it ring out; they are in ``avoid`` and are not offered it again.
    """

    key: CallKey
    service: str
    enqueued_at: datetime
    needs: tuple[SkillNeed, ...] = ()
    language: str | None = None
    priority: int = 0
    attempts: int = 0
    avoid: frozenset[str] = frozenset()
    service_since: datetime | None = None
    customer_tier: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.enqueued_at)
        if self.service_since is None:
            object.__setattr__(self, "service_since", self.enqueued_at)
        object.__setattr__(self, "avoid", frozenset(self.avoid))

    @property
    def in_service_since(self) -> datetime:
        return self.service_since or self.enqueued_at

    def after_ring_no_answer(self, agent_id: str) -> WaitingCall:
        """Back in line, same place, never offered to ``agent_id`` again."""
        return replace(self, attempts=self.attempts + 1, avoid=self.avoid | {agent_id})

    def moved_to(self, service: str, now: datetime) -> WaitingCall:
        """Overflowed into ``service``: its rules count from ``now``, the caller keeps their place."""
        return replace(self, service=service, service_since=now)


@dataclass(frozen=True, slots=True)
class PriorityRules:
    """Points that make a call's priority: the customer's tier plus the IVR choices that matter
    (for example, a caller who pressed "cancel my contract" is worth answering first)."""

    tier_points: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"vip": 100, "gold": 50, "silver": 20})
    )
    ivr_points: Mapping[str, int] = field(default_factory=dict)


def call_priority(tier: str | None, ivr_path: Sequence[str], rules: PriorityRules) -> int:
    """The tier's points plus the points of every IVR node on the caller's path."""
    points = rules.tier_points.get(tier.lower(), 0) if tier else 0
    return points + sum(rules.ivr_points.get(node, 0) for node in ivr_path)


# --- per-service routing ------------------------------------------------------------------------


class Strategy(enum.StrEnum):
    BEST_SKILL = "best_skill"  # highest sum of levels on the needed skills; ties by longest idle
    LONGEST_IDLE = "longest_idle"  # the agent available the longest
    LEAST_OCCUPIED = "least_occupied"  # the agent with the least talk time today


@dataclass(frozen=True, slots=True)
class Relaxation:
    """From ``after_seconds`` of waiting in the service on: lower every minimum level by
    ``lower_levels_by`` (never below 1), drop optional needs, accept any language. Steps add up:
    two steps that each lower by 1 lower by 2 once both are due."""

    after_seconds: float
    lower_levels_by: int = 0
    drop_optional: bool = False
    any_language: bool = False


@dataclass(frozen=True, slots=True)
class Relaxed:
    """What the relaxation steps due so far add up to; ``level`` 0 means none is due."""

    level: int = 0
    lower_levels_by: int = 0
    drop_optional: bool = False
    any_language: bool = False

    def min_level(self, need: SkillNeed) -> int:
        return max(MIN_LEVEL, need.min_level - self.lower_levels_by)


NOT_RELAXED = Relaxed()


class OverflowKind(enum.StrEnum):
    SERVICE = "service"  # into another service's queue
    VOICEMAIL = "voicemail"
    CALLBACK = "callback"  # offer to call the customer back


@dataclass(frozen=True, slots=True)
class Overflow:
    kind: OverflowKind
    target: str = ""  # the service or mailbox; empty for a callback


@dataclass(frozen=True, slots=True)
class ServiceRouting:
    """How one service routes. ``needs`` are the skills every call of the service needs (the IVR
    may add more); ``max_wait_seconds`` past which, with no agent found, the call goes to
    ``overflow``; ``wrap_up_seconds`` of after-call work; ``weight`` in fairness between services."""

    name: str
    strategy: Strategy = Strategy.BEST_SKILL
    needs: tuple[SkillNeed, ...] = ()
    relaxations: tuple[Relaxation, ...] = ()
    max_wait_seconds: float | None = None
    overflow: Overflow | None = None
    wrap_up_seconds: int = 30
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"service {self.name}: weight must be positive")
        if self.wrap_up_seconds < 0:
            raise ValueError(f"service {self.name}: wrap-up seconds cannot be negative")
        if (self.max_wait_seconds is None) != (self.overflow is None):
            raise ValueError(f"service {self.name}: max_wait_seconds and overflow go together")
        object.__setattr__(
            self, "relaxations", tuple(sorted(self.relaxations, key=lambda r: r.after_seconds))
        )

    def relaxed_steps(self) -> tuple[tuple[float, Relaxed], ...]:
        """Each step's start and what the steps add up to from then on."""
        steps: list[tuple[float, Relaxed]] = []
        total = NOT_RELAXED
        for n, step in enumerate(self.relaxations, start=1):
            total = Relaxed(
                n,
                total.lower_levels_by + step.lower_levels_by,
                total.drop_optional or step.drop_optional,
                total.any_language or step.any_language,
            )
            steps.append((step.after_seconds, total))
        return tuple(steps)

    def relaxed_at(self, call: WaitingCall, now: datetime) -> Relaxed:
        waited = (now - call.in_service_since).total_seconds()
        current = NOT_RELAXED
        for after, relaxed in self.relaxed_steps():
            if waited < after:
                break
            current = relaxed
        return current

    def overflow_due(self, call: WaitingCall, now: datetime) -> bool:
        if self.max_wait_seconds is None:
            return False
        return (now - call.in_service_since).total_seconds() >= self.max_wait_seconds

    def next_change_at(self, call: WaitingCall, now: datetime) -> datetime | None:
        """The next moment the call's routing widens (a relaxation step or the overflow falls due):
        the service runs a decision round then, since no agent or call event will."""
        start = call.in_service_since
        moments = [start + timedelta(seconds=r.after_seconds) for r in self.relaxations]
        if self.max_wait_seconds is not None:
            moments.append(start + timedelta(seconds=self.max_wait_seconds))
        upcoming = [m for m in moments if m > now]
        return min(upcoming) if upcoming else None


def merge_needs(*groups: Iterable[SkillNeed]) -> tuple[SkillNeed, ...]:
    """One need per skill: the highest minimum level wins, and a skill any group requires is required."""
    merged: dict[str, SkillNeed] = {}
    for group in groups:
        for need in group:
            seen = merged.get(need.skill)
            if seen is None:
                merged[need.skill] = need
            else:
                merged[need.skill] = SkillNeed(
                    need.skill, max(seen.min_level, need.min_level), seen.optional and need.optional
                )
    return tuple(sorted(merged.values(), key=lambda n: n.skill))


def waiting_call_from(
    snapshot: CallSnapshot,
    service: ServiceRouting,
    now: datetime,
    *,
    ivr_path: Sequence[str] = (),
    rules: PriorityRules | None = None,
) -> WaitingCall:
    """The waiting call for a call the IVR handed to ``service``: the service's needs plus the skills
    the classification asked for (at level 1), the caller's language and priority."""
    _require_aware(now)
    found = snapshot.classification
    extra = tuple(SkillNeed(skill) for skill in found.required_skills) if found else ()
    tier = found.customer_tier if found else None
    return WaitingCall(
        key=snapshot.key,
        service=service.name,
        enqueued_at=now,
        needs=merge_needs(service.needs, extra),
        language=found.language if found else None,
        priority=call_priority(tier, ivr_path, rules or PriorityRules()),
        customer_tier=tier,
    )


# --- call control: what was done to a live call ---------------------------------------------------


class TargetKind(enum.StrEnum):
    AGENT = "agent"
    SERVICE = "service"
    NUMBER = "number"


class TransferMode(enum.StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    value: str  # an agent id, a service name, or an outside number's digits (E.164 without '+')


@dataclass(frozen=True, slots=True)
class HeldCall:
    """A call its agent put on hold: the caller hears music, the agent's leg waits in silence."""

    agent_id: str
    agent_channel: str
    since: datetime


@dataclass(frozen=True, slots=True)
class PendingTransfer:
    """A transfer under way: ``from_agent`` hands the call to ``target``."""

    mode: TransferMode
    target: Target
    from_agent: str
    agent_channel: str
    since: datetime
    target_leg_seen: bool = False  # attended: the consultation reached the target's phone
    completing: bool = False  # attended: the caller was bridged to the target
    outcome_unknown: bool = False  # blind, to an agent: the redirect's answer was lost


@dataclass(frozen=True, slots=True)
class CallControlState:
    """What call control has done to one live call, kept in the live state so that another node,
    or the platform after a restart, knows it: on ``hold``, a ``transfer`` (or consultation) under
    way, moved into another service's line (``moved_to_service``), ``left`` the centre (to an
    outside number), or its legs moved by call control (``controlled``: the agent's leg must be
    ended with the caller's)."""

    held: HeldCall | None = None
    transfer: PendingTransfer | None = None
    moved_to_service: str | None = None
    left: bool = False
    controlled: bool = False

    @property
    def empty(self) -> bool:
        return self == CallControlState()
