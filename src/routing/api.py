"""HTTP routes of routing: agents' configuration and states, services' routing, live snapshots.

Roles: admins configure agents, their skills and services' routing; an agent changes their own
state (a user whose username is the agent id: ``1001`` logs in as agent 1001); supervisors see every
agent, the queues and the decision log, and may force any agent to not ready or logged out.
Errors: 404 for an unknown agent or service, 409 for a state change the agent's state does not
allow (the message says which states allow it), 403 for someone else's agent, 422 for bad values.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from cti.auth import Principal, Role
from cti.http import AuthDeps
from routing.calls import (
    CallControlError,
    ControlResult,
    InvalidTarget,
    NoCall,
    NotSent,
    OutcomeUnknown,
    Refused,
)
from routing.directory import AgentProfile, InvalidConfig, UnknownAgent, UnknownService
from routing.model import (
    MAX_LEVEL,
    MIN_LEVEL,
    Agent,
    AgentEvent,
    AgentState,
    ForceLogout,
    ForceNotReady,
    InvalidTransition,
    Login,
    Logout,
    NotReady,
    Overflow,
    OverflowKind,
    Ready,
    Relaxation,
    ServiceRouting,
    SkillNeed,
    Strategy,
    TargetKind,
    TransferMode,
    WrapUpDone,
)
from routing.policy import Decision
from routing.service import RoutingService

AgentId = Annotated[str, Path(pattern=r"^[0-9]{1,32}$", examples=["1001"])]
SkillName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["mandarin"])]
Language = Annotated[str, Field(pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$", max_length=35)]
Level = Annotated[int, Field(ge=MIN_LEVEL, le=MAX_LEVEL)]
Reason = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$", examples=["break", "lunch", "training"])]


class AgentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["李娜"])
    skills: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], Level] = Field(
        default_factory=dict, max_length=100, examples=[{"mandarin": 8, "billing": 5}]
    )
    languages: list[Language] = Field(default_factory=list, max_length=20, examples=[["zh-CN", "en"]])
    team: str = Field("", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")
    active: bool = True
    max_occupancy: float | None = Field(None, gt=0, le=1)


class SkillIn(BaseModel):
    level: Level


class NotReadyIn(BaseModel):
    reason: Reason = "break"


class StatusMarkOut(BaseModel):
    status: str
    at: datetime
    reason: str | None
    call: str | None
    by: str | None


class AgentStateOut(BaseModel):
    status: str
    since: datetime
    reason: str | None
    call: str | None
    service: str | None
    wrap_up_until: datetime | None
    reserved_for: str | None = Field(
        None, description="in wrap-up: the queue callback dialled ahead for this agent (see docs)"
    )
    idle_since: datetime | None
    calls_handled: int
    talk_seconds: float
    history: list[StatusMarkOut]


class AgentOut(BaseModel):
    id: str
    name: str
    skills: dict[str, int]
    languages: list[str]
    team: str
    active: bool
    max_occupancy: float | None
    state: AgentStateOut


class NeedIn(BaseModel):
    skill: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    min_level: Level = 1
    optional: bool = False


class RelaxationIn(BaseModel):
    after_seconds: float = Field(ge=0, le=86_400)
    lower_levels_by: int = Field(0, ge=0, le=MAX_LEVEL)
    drop_optional: bool = False
    any_language: bool = False


class OverflowIn(BaseModel):
    kind: OverflowKind
    target: str = Field("", max_length=100)


class ServiceRoutingIn(BaseModel):
    strategy: Strategy = Strategy.BEST_SKILL
    needs: list[NeedIn] = Field(default_factory=list, max_length=20)
    relaxations: list[RelaxationIn] = Field(default_factory=list, max_length=10)
    max_wait_seconds: float | None = Field(None, gt=0, le=86_400)
    overflow: OverflowIn | None = None
    wrap_up_seconds: int = Field(30, ge=0, le=3600)
    weight: float = Field(1.0, gt=0, le=100)


class ServiceRoutingOut(ServiceRoutingIn):
    service_id: int
    dnis: str
    name: str


class WaitingCallOut(BaseModel):
    call: str
    service: str
    enqueued_at: datetime
    waited_seconds: float
    priority: int
    language: str | None
    needs: list[NeedIn]
    attempts: int
    avoid: list[str]


class QueueOut(BaseModel):
    service: str
    waiting: list[WaitingCallOut]
    connecting: int
    ready_agents: int
    longest_wait_seconds: float


class CandidateOut(BaseModel):
    agent_id: str
    skill_score: int
    idle_seconds: float
    talk_seconds: float


class DecisionOut(BaseModel):
    at: datetime
    trigger: str
    outcome: str
    call: str
    service: str
    agent_id: str | None
    overflow: OverflowIn | None
    rule: str
    relaxed: dict[str, int | bool]
    waited_seconds: float
    candidates: list[CandidateOut]
    candidates_total: int
    calls_considered: int


def state_out(state: AgentState) -> AgentStateOut:
    return AgentStateOut(
        status=state.status.value,
        since=state.since,
        reason=state.reason,
        call=str(state.call) if state.call else None,
        service=state.service,
        wrap_up_until=state.wrap_up_until,
        reserved_for=str(state.reserved_for) if state.reserved_for else None,
        idle_since=state.idle_since,
        calls_handled=state.calls_handled,
        talk_seconds=state.talk_seconds,
        history=[
            StatusMarkOut(
                status=m.status.value, at=m.at, reason=m.reason, call=str(m.call) if m.call else None, by=m.by
            )
            for m in state.history
        ],
    )


def agent_out(profile: AgentProfile, state: AgentState) -> AgentOut:
    agent = profile.agent
    return AgentOut(
        id=agent.id,
        name=agent.name,
        skills=dict(agent.skills),
        languages=sorted(agent.languages),
        team=agent.team,
        active=profile.active,
        max_occupancy=agent.max_occupancy,
        state=state_out(state),
    )


def routing_out(service_id: int, dnis: str, routing: ServiceRouting) -> ServiceRoutingOut:
    return ServiceRoutingOut(
        service_id=service_id,
        dnis=dnis,
        name=routing.name,
        strategy=routing.strategy,
        needs=[NeedIn(skill=n.skill, min_level=n.min_level, optional=n.optional) for n in routing.needs],
        relaxations=[
            RelaxationIn(
                after_seconds=r.after_seconds,
                lower_levels_by=r.lower_levels_by,
                drop_optional=r.drop_optional,
                any_language=r.any_language,
            )
            for r in routing.relaxations
        ],
        max_wait_seconds=routing.max_wait_seconds,
        overflow=OverflowIn(kind=routing.overflow.kind, target=routing.overflow.target)
        if routing.overflow
        else None,
        wrap_up_seconds=routing.wrap_up_seconds,
        weight=routing.weight,
    )


def decision_out(d: Decision) -> DecisionOut:
    r = d.relaxed
    return DecisionOut(
        at=d.at,
        trigger=d.trigger.value,
        outcome=d.outcome.value,
        call=str(d.call),
        service=d.service,
        agent_id=d.agent_id,
        overflow=OverflowIn(kind=d.overflow.kind, target=d.overflow.target) if d.overflow else None,
        rule=d.rule,
        relaxed={
            "level": r.level,
            "lower_levels_by": r.lower_levels_by,
            "drop_optional": r.drop_optional,
            "any_language": r.any_language,
        },
        waited_seconds=d.waited_seconds,
        candidates=[
            CandidateOut(
                agent_id=c.agent_id,
                skill_score=c.skill_score,
                idle_seconds=c.idle_seconds,
                talk_seconds=c.talk_seconds,
            )
            for c in d.candidates
        ],
        candidates_total=d.candidates_total,
        calls_considered=d.calls_considered,
    )


@contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except UnknownAgent as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no agent {exc.args[0]}") from exc
    except UnknownService as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no service {exc.args[0]}") from exc
    except InvalidTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except InvalidConfig as exc:
        detail = [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "value_error"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from exc
    except ValueError as exc:
        detail = [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from exc


def _own_or_supervisor(user: Principal, agent_id: str) -> None:
    if user.username != agent_id and not user.role.includes(Role.SUPERVISOR):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="an agent may only see or change their own state"
        )


def _own(user: Principal, agent_id: str) -> None:
    if user.username != agent_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only the agent themselves may do this")


StateAction = Literal["login", "ready", "not-ready", "logout", "wrap-up-done"]


class TransferTargetIn(BaseModel):
    """Exactly one of ``agent`` (an agent id), ``service`` (a service's DNIS or name) or ``number``
    (an outside number in E.164)."""

    agent: str | None = Field(None, pattern=r"^[0-9]{1,32}$", examples=["1002"])
    service: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", examples=["8001"])
    number: str | None = Field(None, pattern=r"^\+[0-9]{6,20}$", examples=["+8613800138000"])

    def kind_and_value(self) -> tuple[TargetKind, str]:
        given = [(k, v) for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise InvalidTarget("give exactly one of agent, service or number")
        kind, value = given[0]
        return TargetKind(kind), value


class TransferIn(BaseModel):
    mode: TransferMode
    to: TransferTargetIn


class CallControlOut(BaseModel):
    call: str
    agent_id: str
    state: str
    target: dict[str, str] | None = None


def control_out(result: ControlResult) -> CallControlOut:
    target = {result.target.kind.value: result.target.value} if result.target else None
    return CallControlOut(call=str(result.call), agent_id=result.agent_id, state=result.state, target=target)


@contextmanager
def _control_errors() -> Iterator[None]:
    try:
        yield
    except InvalidTarget as exc:
        detail = [{"loc": ["body", "to"], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from exc
    except (NoCall, Refused) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except NotSent as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    except OutcomeUnknown as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail=str(exc)) from exc
    except CallControlError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    except ValueError as exc:  # a value unsafe for Asterisk (a channel name we would not send)
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


def build_call_router(routing: RoutingService, auth: AuthDeps) -> APIRouter:
    """Call control under ``/api/agents/{agent_id}/call``: the agent themselves, a supervisor or an
    admin act on the agent's current call. 409 when the agent has no call in a state that allows it,
    422 for a bad target, 503 when the PBX link is down (nothing sent), 504 when the answer was lost
    (the action is not sent again)."""
    router = APIRouter(prefix="/api/agents/{agent_id}/call", tags=["call control"])
    AnyUser = Annotated[Principal, Depends(auth.require(Role.AGENT))]
    control = routing.control

    @router.post("/hangup", response_model=CallControlOut)
    async def hangup(agent_id: AgentId, user: AnyUser) -> CallControlOut:
        """End the agent's current call."""
        _own_or_supervisor(user, agent_id)
        with _control_errors():
            return control_out(await control.hangup(agent_id))

    @router.post("/hold", response_model=CallControlOut)
    async def hold(agent_id: AgentId, user: AnyUser) -> CallControlOut:
        """The caller hears music on hold; the agent's phone stays in the call."""
        _own_or_supervisor(user, agent_id)
        with _control_errors():
            return control_out(await control.hold(agent_id))

    @router.post("/resume", response_model=CallControlOut)
    async def resume(agent_id: AgentId, user: AnyUser) -> CallControlOut:
        """Reconnect the held caller and the agent."""
        _own_or_supervisor(user, agent_id)
        with _control_errors():
            return control_out(await control.resume(agent_id))

    @router.post("/transfer", response_model=CallControlOut)
    async def transfer(agent_id: AgentId, body: TransferIn, user: AnyUser) -> CallControlOut:
        """Blind: the caller goes to the target at once. Attended (agents only): the agent talks to
        the target first, then ``/transfer/complete`` or ``/transfer/cancel``."""
        _own_or_supervisor(user, agent_id)
        with _control_errors():
            kind, value = body.to.kind_and_value()
            return control_out(await control.transfer(agent_id, body.mode, kind, value))

    @router.post("/transfer/complete", response_model=CallControlOut)
    async def complete(agent_id: AgentId, user: AnyUser) -> CallControlOut:
        """The agent leaves; the caller and the target talk."""
        _own_or_supervisor(user, agent_id)
        with _control_errors():
            return control_out(await control.complete(agent_id))

    @router.post("/transfer/cancel", response_model=CallControlOut)
    async def cancel(agent_id: AgentId, user: AnyUser) -> CallControlOut:
        """The consultation ends; the agent is back with the caller."""
        _own_or_supervisor(user, agent_id)
        with _control_errors():
            return control_out(await control.cancel(agent_id))

    return router


def build_router(routing: RoutingService, auth: AuthDeps) -> APIRouter:
    """Routing's routes under ``/api/routing``, and call control under ``/api/agents``."""
    outer = APIRouter()
    outer.include_router(_build_routing_router(routing, auth))
    outer.include_router(build_call_router(routing, auth))
    return outer


def _build_routing_router(routing: RoutingService, auth: AuthDeps) -> APIRouter:
    router = APIRouter(prefix="/api/routing", tags=["routing"])
    AnyUser = Annotated[Principal, Depends(auth.require(Role.AGENT))]
    Supervisor = Annotated[Principal, Depends(auth.require(Role.SUPERVISOR))]
    Admin = Annotated[Principal, Depends(auth.require(Role.ADMIN))]

    @router.get("/agents", response_model=list[AgentOut])
    async def list_agents(_user: Supervisor) -> list[AgentOut]:
        """Every configured agent with their live state (supervisors)."""
        return [agent_out(p, s) for p, s in await routing.agents()]

    @router.get("/agents/{agent_id}", response_model=AgentOut)
    async def get_agent(agent_id: AgentId, user: AnyUser) -> AgentOut:
        """One agent with their live state: the agent themselves, or a supervisor."""
        _own_or_supervisor(user, agent_id)
        with _http_errors():
            return agent_out(routing.profile(agent_id), await routing.agent_state(agent_id))

    @router.put("/agents/{agent_id}", response_model=AgentOut)
    async def put_agent(agent_id: AgentId, body: AgentIn, _user: Admin) -> AgentOut:
        """Create or replace an agent's configuration, skills included (admins)."""
        with _http_errors():
            agent = Agent(
                agent_id,
                body.name.strip(),
                body.skills,
                frozenset(body.languages),
                body.team,
                body.max_occupancy,
            )
            saved = await routing.save_agent(AgentProfile(agent, body.active))
            return agent_out(saved, await routing.agent_state(agent_id))

    @router.put("/agents/{agent_id}/skills/{skill}", response_model=AgentOut)
    async def put_skill(agent_id: AgentId, skill: SkillName, body: SkillIn, _user: Admin) -> AgentOut:
        """Set one skill's level (admins)."""
        with _http_errors():
            saved = await routing.set_skill(agent_id, skill, body.level)
            return agent_out(saved, await routing.agent_state(agent_id))

    @router.delete("/agents/{agent_id}/skills/{skill}", response_model=AgentOut)
    async def delete_skill(agent_id: AgentId, skill: SkillName, _user: Admin) -> AgentOut:
        """Take a skill away from an agent (admins)."""
        with _http_errors():
            saved = await routing.set_skill(agent_id, skill, None)
            return agent_out(saved, await routing.agent_state(agent_id))

    async def _change(agent_id: str, event: AgentEvent) -> AgentStateOut:
        with _http_errors():
            return state_out(await routing.change_agent(agent_id, event))

    @router.post("/agents/{agent_id}/login", response_model=AgentStateOut)
    async def login(agent_id: AgentId, user: AnyUser) -> AgentStateOut:
        """The agent logs in (not ready, reason ``logged_in``, until they choose ready)."""
        _own(user, agent_id)
        return await _change(agent_id, Login())

    @router.post("/agents/{agent_id}/ready", response_model=AgentStateOut)
    async def ready(agent_id: AgentId, user: AnyUser) -> AgentStateOut:
        """The agent is ready for calls; a waiting call they can take rings them at once."""
        _own(user, agent_id)
        return await _change(agent_id, Ready())

    @router.post("/agents/{agent_id}/wrap-up-done", response_model=AgentStateOut)
    async def wrap_up_done(agent_id: AgentId, user: AnyUser) -> AgentStateOut:
        """The agent finished their after-call work before its deadline."""
        _own(user, agent_id)
        return await _change(agent_id, WrapUpDone())

    @router.post("/agents/{agent_id}/not-ready", response_model=AgentStateOut)
    async def not_ready(agent_id: AgentId, user: AnyUser, body: NotReadyIn | None = None) -> AgentStateOut:
        """Not ready with a reason code: the agent themselves, or a supervisor forcing it (recorded
        with the supervisor's name)."""
        reason = (body or NotReadyIn()).reason
        if user.username == agent_id:
            return await _change(agent_id, NotReady(reason))
        _own_or_supervisor(user, agent_id)
        return await _change(agent_id, ForceNotReady(reason, user.username))

    @router.post("/agents/{agent_id}/logout", response_model=AgentStateOut)
    async def logout(agent_id: AgentId, user: AnyUser) -> AgentStateOut:
        """Log out: the agent themselves, or a supervisor forcing it (never mid-conversation)."""
        if user.username == agent_id:
            return await _change(agent_id, Logout())
        _own_or_supervisor(user, agent_id)
        return await _change(agent_id, ForceLogout(user.username))

    @router.get("/services", response_model=list[ServiceRoutingOut])
    async def list_services(_user: Supervisor) -> list[ServiceRoutingOut]:
        """The services with a routing configuration (others route by the defaults)."""
        return [routing_out(c.service_id, c.dnis, c.routing) for c in await routing.service_configs()]

    @router.put("/services/{service_id}", response_model=ServiceRoutingOut)
    async def put_service(service_id: int, body: ServiceRoutingIn, _user: Admin) -> ServiceRoutingOut:
        """Create or replace a service's routing (admins); it applies to waiting calls at once."""
        with _http_errors():
            config = ServiceRouting(
                name="",
                strategy=body.strategy,
                needs=tuple(SkillNeed(n.skill, n.min_level, n.optional) for n in body.needs),
                relaxations=tuple(
                    Relaxation(r.after_seconds, r.lower_levels_by, r.drop_optional, r.any_language)
                    for r in body.relaxations
                ),
                max_wait_seconds=body.max_wait_seconds,
                overflow=Overflow(body.overflow.kind, body.overflow.target) if body.overflow else None,
                wrap_up_seconds=body.wrap_up_seconds,
                weight=body.weight,
            )
            saved = await routing.save_service(service_id, config)
            return routing_out(saved.service_id, saved.dnis, saved.routing)

    @router.get("/queues", response_model=list[QueueOut])
    async def queues(_user: Supervisor) -> list[QueueOut]:
        """Each service's waiting callers in line order, and how many are being connected now."""
        now = auth.clock()
        out = []
        for q in await routing.queues():
            waiting = [
                WaitingCallOut(
                    call=str(c.key),
                    service=c.service,
                    enqueued_at=c.enqueued_at,
                    waited_seconds=max(0.0, (now - c.enqueued_at).total_seconds()),
                    priority=c.priority,
                    language=c.language,
                    needs=[
                        NeedIn(skill=n.skill, min_level=n.min_level, optional=n.optional) for n in c.needs
                    ],
                    attempts=c.attempts,
                    avoid=sorted(c.avoid),
                )
                for c in q.waiting
            ]
            longest = max((w.waited_seconds for w in waiting), default=0.0)
            out.append(
                QueueOut(
                    service=q.service,
                    waiting=waiting,
                    connecting=q.connecting,
                    ready_agents=q.ready_agents,
                    longest_wait_seconds=longest,
                )
            )
        return out

    @router.get("/decisions", response_model=list[DecisionOut])
    async def decisions(
        _user: Supervisor, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[DecisionOut]:
        """The routing decisions, newest first, each with its rule and best candidates."""
        return [decision_out(d) for d in await routing.decisions(limit)]

    return router
