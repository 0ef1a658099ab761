"""The routing directory port: where agents' and services' routing configuration is kept.

Routing reads and writes its configuration only through ``RoutingDirectory``; the composition root
passes an implementation backed by the customer record's tables. ``InMemoryDirectory`` serves tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from routing.model import Agent, ServiceRouting


class UnknownService(LookupError):
    """No service has this id."""


class UnknownAgent(LookupError):
    """No agent has this id."""


class InvalidConfig(ValueError):
    """A configuration value the store refuses; ``loc`` names the field, as in a 422 answer."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """An agent as configured: who they are (``agent``) and whether routing may offer them calls."""

    agent: Agent
    active: bool = True


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """A service of the customer record (``service_id``, ``dnis``) and its routing; ``routing.name``
    is the service's name, the key calls carry in their classification."""

    service_id: int
    dnis: str
    routing: ServiceRouting
    time_zone: str = "UTC"  # the service's own (IANA); its local midnight ends its agents' day


class RoutingDirectory(Protocol):
    """Contract: values returned are complete and valid; writes replace what they name. Raises
    ``UnknownAgent``/``UnknownService`` for ids it does not know, ``InvalidConfig`` for values it
    refuses, and whatever its storage raises when it cannot be reached."""

    async def agents(self) -> list[AgentProfile]: ...

    async def save_agent(self, profile: AgentProfile) -> AgentProfile: ...

    async def set_skill(self, agent_id: str, skill: str, level: int | None) -> AgentProfile:
        """Set one skill's level; ``None`` removes the skill."""
        ...

    async def services(self) -> list[ServiceConfig]:
        """The services with a routing configuration."""
        ...

    async def save_service(self, service_id: int, routing: ServiceRouting) -> ServiceConfig:
        """Store ``routing`` for the service (its ``name`` is taken from the service, not ``routing``)."""
        ...


class InMemoryDirectory:
    """A ``RoutingDirectory`` in memory, with ``known_services`` as ``{id: (dnis, name)}``."""

    def __init__(self, known_services: dict[int, tuple[str, str]] | None = None) -> None:
        self._agents: dict[str, AgentProfile] = {}
        self._services: dict[int, ServiceConfig] = {}
        self.known_services = dict(known_services or {})

    async def agents(self) -> list[AgentProfile]:
        return [self._agents[k] for k in sorted(self._agents)]

    async def save_agent(self, profile: AgentProfile) -> AgentProfile:
        self._agents[profile.agent.id] = profile
        return profile

    async def set_skill(self, agent_id: str, skill: str, level: int | None) -> AgentProfile:
        profile = self._agents.get(agent_id)
        if profile is None:
            raise UnknownAgent(agent_id)
        skills = dict(profile.agent.skills)
        if level is None:
            skills.pop(skill, None)
        else:
            skills[skill] = level
        try:
            agent = replace(profile.agent, skills=skills)
        except ValueError as exc:
            raise InvalidConfig(("level",), str(exc)) from exc
        self._agents[agent_id] = updated = replace(profile, agent=agent)
        return updated

    async def services(self) -> list[ServiceConfig]:
        return [self._services[k] for k in sorted(self._services)]

    async def save_service(self, service_id: int, routing: ServiceRouting) -> ServiceConfig:
        known = self.known_services.get(service_id)
        if known is None:
            raise UnknownService(service_id)
        dnis, name = known
        self._services[service_id] = config = ServiceConfig(service_id, dnis, replace(routing, name=name))
        return config
