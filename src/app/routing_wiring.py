"""Wiring of the routing capability: its directory port onto the customer record's tables, its live
state (in process, or Redis when configured), and the AMI client as its action sink.

Routing and crm never import each other; this module maps crm's records to routing's types.
"""

from __future__ import annotations

from dataclasses import replace

from crm import agents as crm_agents
from crm import service as crm_service
from crm.db import SessionMaker
from cti.bus import Bus
from cti.ports import ActionSink
from cti.settings import Settings
from routing import handlers as routing_handlers
from routing.directory import AgentProfile, InvalidConfig, ServiceConfig, UnknownAgent, UnknownService
from routing.model import Agent, Overflow, OverflowKind, Relaxation, ServiceRouting, SkillNeed, Strategy
from routing.service import RoutingService
from routing.state import InProcessLiveState, LiveState, RedisLiveState


def _profile(record: crm_agents.AgentRecord) -> AgentProfile:
    agent = Agent(
        record.id,
        record.name,
        dict(record.skills),
        frozenset(record.languages),
        record.team,
        record.max_occupancy,
    )
    return AgentProfile(agent, record.active)


def _routing(record: crm_agents.ServiceRoutingRecord) -> ServiceConfig:
    overflow = (
        Overflow(OverflowKind(record.overflow_kind), record.overflow_target or "")
        if record.overflow_kind
        else None
    )
    routing = ServiceRouting(
        name=record.name,
        strategy=Strategy(record.strategy),
        needs=tuple(SkillNeed(s, v, o) for s, v, o in record.needs),
        relaxations=tuple(
            Relaxation(
                float(r.get("after_seconds", 0)),
                int(r.get("lower_levels_by", 0)),
                bool(r.get("drop_optional", False)),
                bool(r.get("any_language", False)),
            )
            for r in record.relaxations
        ),
        max_wait_seconds=record.max_wait_seconds if overflow else None,
        overflow=overflow if record.max_wait_seconds is not None else None,
        wrap_up_seconds=record.wrap_up_seconds,
        weight=record.weight,
    )
    return ServiceConfig(record.service_id, record.dnis, routing)


class CrmRoutingDirectory:
    """``routing.directory.RoutingDirectory`` on the customer record's ``agents``, ``agent_skills``
    and ``service_routing`` tables."""

    def __init__(self, sessionmaker: SessionMaker) -> None:
        self._sessionmaker = sessionmaker

    async def agents(self) -> list[AgentProfile]:
        return [_profile(r) for r in await crm_agents.list_agents(self._sessionmaker)]

    async def save_agent(self, profile: AgentProfile) -> AgentProfile:
        a = profile.agent
        record = crm_agents.AgentRecord(
            a.id, a.name, tuple(sorted(a.languages)), a.team, profile.active, a.max_occupancy, dict(a.skills)
        )
        try:
            return _profile(await crm_agents.save_agent(self._sessionmaker, record))
        except crm_service.InvalidInput as exc:
            raise InvalidConfig(tuple(exc.loc), exc.message) from exc

    async def set_skill(self, agent_id: str, skill: str, level: int | None) -> AgentProfile:
        try:
            return _profile(await crm_agents.set_agent_skill(self._sessionmaker, agent_id, skill, level))
        except crm_service.NotFound as exc:
            raise UnknownAgent(agent_id) from exc
        except crm_service.InvalidInput as exc:
            raise InvalidConfig(tuple(exc.loc), exc.message) from exc

    async def services(self) -> list[ServiceConfig]:
        zones = await self._zones()
        return [
            replace(c, time_zone=zones.get(c.service_id, "UTC"))
            for c in (_routing(r) for r in await crm_agents.list_service_routing(self._sessionmaker))
        ]

    async def _zones(self) -> dict[int, str]:
        """Each service's time zone: its local midnight ends the day of the agents working for it."""
        return {s.id: s.time_zone for s in await crm_service.list_services(self._sessionmaker)}

    async def save_service(self, service_id: int, routing: ServiceRouting) -> ServiceConfig:
        record = crm_agents.ServiceRoutingRecord(
            service_id=service_id,
            dnis="",
            name="",
            strategy=routing.strategy.value,
            needs=tuple((n.skill, n.min_level, n.optional) for n in routing.needs),
            relaxations=tuple(
                {
                    "after_seconds": r.after_seconds,
                    "lower_levels_by": r.lower_levels_by,
                    "drop_optional": r.drop_optional,
                    "any_language": r.any_language,
                }
                for r in routing.relaxations
            ),
            max_wait_seconds=routing.max_wait_seconds,
            overflow_kind=routing.overflow.kind.value if routing.overflow else None,
            overflow_target=routing.overflow.target if routing.overflow else None,
            wrap_up_seconds=routing.wrap_up_seconds,
            weight=routing.weight,
        )
        try:
            saved = _routing(await crm_agents.save_service_routing(self._sessionmaker, record))
            return replace(saved, time_zone=(await self._zones()).get(saved.service_id, "UTC"))
        except crm_service.NotFound as exc:
            raise UnknownService(service_id) from exc
        except crm_service.InvalidInput as exc:
            raise InvalidConfig(tuple(exc.loc), exc.message) from exc


def live_state(settings: Settings) -> LiveState:
    """Redis when ``routing.redis_url`` is set (several platform nodes share it), else in process."""
    if settings.routing.redis_url:
        return RedisLiveState.from_url(settings.routing.redis_url, settings.routing.redis_prefix)
    return InProcessLiveState()


def build_routing(
    settings: Settings, sessionmaker: SessionMaker, bus: Bus, actions: ActionSink
) -> RoutingService:
    """The routing service of ``cti serve``. Built before the call service runs, so its mailbox sees
    every call from the first one."""
    r = settings.routing
    service = RoutingService(
        subscription=routing_handlers.subscribe(bus),
        live=live_state(settings),
        actions=actions,
        directory=CrmRoutingDirectory(sessionmaker),
        default_wrap_up_seconds=r.default_wrap_up_seconds,
        ring_timeout_seconds=r.ring_timeout_seconds,
        connect_grace_seconds=r.connect_grace_seconds,
        on_offer=bus.publish,
        on_agent_state=bus.publish,
    )
    service.control.publish = bus.publish  # holds and transfers, for consoles (cti.model.CallControlled)
    send_list = getattr(actions, "send_list", None)  # the AMI client lists Asterisk's channels
    if send_list is not None:

        async def channels() -> list[dict[str, str]]:
            _, listed = await send_list("CoreShowChannels")
            return [dict(c) for c in listed]

        # What a blind transfer whose answer was lost really did is read from Asterisk's channels.
        service.control.channels = channels
    return service
