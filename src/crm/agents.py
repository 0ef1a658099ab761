"""Agents' persistent configuration for routing: who each agent is, their skills, and how each
service routes.

Tables: ``agents`` (the id is the agent's phone endpoint, digits such as ``1001``), ``agent_skills``
(one level 1..10 per agent and skill) and ``service_routing`` (one row per configured service of the
``services`` table). Live states (ready, on call, ...) are not here: they belong to routing's live
state. The records returned are plain values; the composition root maps them to routing's types, so
routing never depends on this package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    delete,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import SessionMaker
from crm.model import Base, Id, Service, UTCDateTime
from crm.service import InvalidInput, NotFound

AGENT_ID = re.compile(r"^[0-9]{1,32}$")
_SKILL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_TEAM = re.compile(r"^[^\x00-\x1f\x7f]{0,64}$")
MIN_LEVEL, MAX_LEVEL = 1, 10


class AgentRow(Base):
    __tablename__ = "agents"

    # Digits only: the id is also the PJSIP endpoint the PBX dials and a dialplan extension.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    team: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    max_occupancy: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AgentSkillRow(Base):
    __tablename__ = "agent_skills"
    __table_args__ = (CheckConstraint("level >= 1 AND level <= 10", name="level"),)

    agent_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    skill: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[int] = mapped_column(Integer)


class ServiceRoutingRow(Base):
    """How one service of the ``services`` table routes; a service without a row routes by defaults."""

    __tablename__ = "service_routing"

    service_id: Mapped[int] = mapped_column(
        Id, ForeignKey("services.id", ondelete="CASCADE"), primary_key=True
    )
    strategy: Mapped[str] = mapped_column(String(32))
    # [[skill, min_level, optional], ...] and [{"after_seconds": .., ...}, ...]: small, read whole.
    needs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    relaxations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    max_wait_seconds: Mapped[float | None] = mapped_column(Float)
    overflow_kind: Mapped[str | None] = mapped_column(String(16))
    overflow_target: Mapped[str | None] = mapped_column(String(100))
    wrap_up_seconds: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: str
    name: str
    languages: tuple[str, ...] = ()
    team: str = ""
    active: bool = True
    max_occupancy: float | None = None
    skills: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceRoutingRecord:
    """A service's routing row with the service's identity. ``needs`` are ``(skill, min_level,
    optional)``; ``relaxations`` are mappings with ``after_seconds``, ``lower_levels_by``,
    ``drop_optional``, ``any_language``."""

    service_id: int
    dnis: str
    name: str
    strategy: str
    needs: tuple[tuple[str, int, bool], ...] = ()
    relaxations: tuple[Mapping[str, Any], ...] = ()
    max_wait_seconds: float | None = None
    overflow_kind: str | None = None
    overflow_target: str | None = None
    wrap_up_seconds: int = 30
    weight: float = 1.0


def _check_agent(record: AgentRecord) -> None:
    if not AGENT_ID.fullmatch(record.id):
        raise InvalidInput(("id",), f"an agent id is 1 to 32 digits, got {record.id!r}")
    if not record.name.strip() or len(record.name) > 200 or "\x00" in record.name:
        raise InvalidInput(("name",), "an agent's name is 1 to 200 characters")
    if not _TEAM.fullmatch(record.team):
        raise InvalidInput(("team",), "a team is at most 64 printable characters")
    for index, language in enumerate(record.languages):
        if len(language) > 35 or not _LANGUAGE.fullmatch(language):
            raise InvalidInput(("languages", index), f"not a BCP 47 language tag: {language!r}")
    if record.max_occupancy is not None and not 0.0 < record.max_occupancy <= 1.0:
        raise InvalidInput(("max_occupancy",), "max_occupancy is in (0, 1]")
    for skill, level in record.skills.items():
        _check_skill(skill, level)


def _check_skill(skill: str, level: int) -> None:
    if not _SKILL.fullmatch(skill):
        raise InvalidInput(("skills", skill), f"invalid skill name {skill!r}")
    if isinstance(level, bool) or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise InvalidInput(("skills", skill), f"a level is {MIN_LEVEL} to {MAX_LEVEL}, got {level!r}")


async def _record(session: AsyncSession, row: AgentRow) -> AgentRecord:
    skills = await session.execute(
        select(AgentSkillRow.skill, AgentSkillRow.level)
        .where(AgentSkillRow.agent_id == row.id)
        .order_by(AgentSkillRow.skill)
    )
    return AgentRecord(
        id=row.id,
        name=row.name,
        languages=tuple(row.languages or ()),
        team=row.team,
        active=row.active,
        max_occupancy=row.max_occupancy,
        skills={skill: level for skill, level in skills.all()},
    )


async def save_agent(
    sessionmaker: SessionMaker, record: AgentRecord, *, now: datetime | None = None
) -> AgentRecord:
    """Create or replace an agent and their whole skill set (``InvalidInput`` on bad values)."""
    _check_agent(record)
    stamp = now or datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        row = await session.get(AgentRow, record.id)
        if row is None:
            row = AgentRow(id=record.id, created_at=stamp)
            session.add(row)
        row.name = record.name.strip()
        row.languages = list(dict.fromkeys(record.languages))
        row.team = record.team
        row.active = record.active
        row.max_occupancy = record.max_occupancy
        row.updated_at = stamp
        await session.flush()
        await session.execute(delete(AgentSkillRow).where(AgentSkillRow.agent_id == record.id))
        session.add_all(AgentSkillRow(agent_id=record.id, skill=s, level=v) for s, v in record.skills.items())
        await session.flush()
        return await _record(session, row)


async def set_agent_skill(
    sessionmaker: SessionMaker, agent_id: str, skill: str, level: int | None, *, now: datetime | None = None
) -> AgentRecord:
    """Set one skill's level, or remove the skill with ``level=None``; ``NotFound`` for an unknown agent."""
    if level is not None:
        _check_skill(skill, level)
    stamp = now or datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        row = await session.get(AgentRow, agent_id)
        if row is None:
            raise NotFound(f"no agent {agent_id}")
        existing = await session.get(AgentSkillRow, (agent_id, skill))
        if level is None:
            if existing is not None:
                await session.delete(existing)
        elif existing is None:
            session.add(AgentSkillRow(agent_id=agent_id, skill=skill, level=level))
        else:
            existing.level = level
        row.updated_at = stamp
        await session.flush()
        return await _record(session, row)


async def get_agent(sessionmaker: SessionMaker, agent_id: str) -> AgentRecord | None:
    async with sessionmaker() as session:
        row = await session.get(AgentRow, agent_id)
        return None if row is None else await _record(session, row)


async def list_agents(sessionmaker: SessionMaker) -> list[AgentRecord]:
    """Every agent with their skills, by id."""
    async with sessionmaker() as session:
        rows = list(await session.scalars(select(AgentRow).order_by(AgentRow.id)))
        skills: dict[str, dict[str, int]] = {}
        for agent_id, skill, level in await session.execute(
            select(AgentSkillRow.agent_id, AgentSkillRow.skill, AgentSkillRow.level).order_by(
                AgentSkillRow.agent_id, AgentSkillRow.skill
            )
        ):
            skills.setdefault(agent_id, {})[skill] = level
    return [
        AgentRecord(
            id=r.id,
            name=r.name,
            languages=tuple(r.languages or ()),
            team=r.team,
            active=r.active,
            max_occupancy=r.max_occupancy,
            skills=skills.get(r.id, {}),
        )
        for r in rows
    ]


def _routing_record(service: Service, row: ServiceRoutingRow) -> ServiceRoutingRecord:
    return ServiceRoutingRecord(
        service_id=service.id,
        dnis=service.dnis,
        name=service.name,
        strategy=row.strategy,
        needs=tuple((str(s), int(v), bool(o)) for s, v, o in row.needs or ()),
        relaxations=tuple(dict(r) for r in row.relaxations or ()),
        max_wait_seconds=row.max_wait_seconds,
        overflow_kind=row.overflow_kind,
        overflow_target=row.overflow_target,
        wrap_up_seconds=row.wrap_up_seconds,
        weight=row.weight,
    )


async def save_service_routing(
    sessionmaker: SessionMaker, record: ServiceRoutingRecord, *, now: datetime | None = None
) -> ServiceRoutingRecord:
    """Create or replace the routing of ``record.service_id`` (its ``dnis`` and ``name`` are ignored
    and returned from the service). ``NotFound`` for an unknown service. The values' meaning is
    routing's to check; this stores them."""
    for index, (skill, level, _optional) in enumerate(record.needs):
        if not _SKILL.fullmatch(skill) or not MIN_LEVEL <= level <= MAX_LEVEL:
            raise InvalidInput(("needs", index), f"invalid need {skill!r} at level {level!r}")
    stamp = now or datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        service = await session.get(Service, record.service_id)
        if service is None:
            raise NotFound(f"no service {record.service_id}")
        row = await session.get(ServiceRoutingRow, record.service_id)
        if row is None:
            row = ServiceRoutingRow(service_id=record.service_id)
            session.add(row)
        row.strategy = record.strategy
        row.needs = [[s, v, o] for s, v, o in record.needs]
        row.relaxations = [dict(r) for r in record.relaxations]
        row.max_wait_seconds = record.max_wait_seconds
        row.overflow_kind = record.overflow_kind
        row.overflow_target = record.overflow_target
        row.wrap_up_seconds = record.wrap_up_seconds
        row.weight = record.weight
        row.updated_at = stamp
        await session.flush()
        return _routing_record(service, row)


async def list_service_routing(sessionmaker: SessionMaker) -> list[ServiceRoutingRecord]:
    """The routing of every configured service, by DNIS."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Service, ServiceRoutingRow)
            .join(ServiceRoutingRow, ServiceRoutingRow.service_id == Service.id)
            .order_by(Service.dnis)
        )
        return [_routing_record(service, row) for service, row in rows]

