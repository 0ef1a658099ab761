"""Wiring of the screen-pop hub and the consoles' pages: their ports onto the customer record and
routing's live view, and their routes. Screenpop, agent_console, crm and routing never import each
other; this module maps their values onto the plain dicts the console's messages carry."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from agent_console.pages import build_router as build_pages_router
from crm import console as crm_console
from crm import service as crm_service
from crm.db import SessionMaker
from cti.bus import Bus
from cti.http import AuthDeps
from cti.model import AgentOffered, CustomerChanged
from cti.ports import ActionSink
from cti.settings import Settings
from routing.model import Agent, ServiceRouting
from routing.service import RoutingService
from screenpop import api as screenpop_api
from screenpop import intervals
from screenpop import service as screenpop_service
from screenpop.hub import Hub
from screenpop.model import TicketBook

log = logging.getLogger("cti.app.consoles")


def services_of(agent: Agent, services: Iterable[ServiceRouting]) -> list[str]:
    """The services whose line ``agent`` works, by routing's rule for staffing a line
    (``routing.waiting.staffed_for``): they hold every skill the service always needs, at any level
    (a service that needs no skill is worked by every agent)."""
    out = []
    for service in services:
        needed = [n.skill for n in service.needs if not n.optional]
        if all(skill in agent.skills for skill in needed):
            out.append(service.name)
    return sorted(out)


class Consoles:
    """The hub, the tickets and the screen-pop service of one platform."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: SessionMaker,
        bus: Bus,
        routing: RoutingService,
        actions: ActionSink,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.routing = routing
        self.bus = bus
        self.hub = Hub()
        self.tickets = TicketBook()
        c = settings.console
        self.service = screenpop_service.ScreenpopService(
            subscription=screenpop_service.subscribe(bus, offers=False),
            hub=self.hub,
            ports=screenpop_service.ConsolePorts(
                customer_card=self._card,
                agents=self._agents,
                queues=self._queues,
                stats_today=self._stats_today,
                work_ended=self._work_ended,
            ),
            actions=actions,
            thresholds=screenpop_service.Thresholds(
                longest_wait_seconds=c.alert_longest_wait_seconds, service_level=c.alert_service_level
            ),
            crm_pop_urls=dict(c.crm_pop_urls),
        )

        # Routing tells its offer hook before it asks the PBX to ring the agent: the pop is queued for
        # the agent's console right there, then the offer goes on the bus for everyone else.
        publish = routing.on_offer

        def offered(offer: AgentOffered) -> None:
            try:
                self.service.handle(offer)
            except Exception:  # a pop that fails must never stop routing
                log.exception("screen-pop for %s failed", offer.agent_id)
            if publish is not None:
                publish(offer)

        routing.on_offer = offered

    async def run(self) -> None:
        await self.service.run()

    def install(self, app: FastAPI, auth: AuthDeps, secret_provider: Any) -> None:
        settings = self.settings
        app.include_router(
            screenpop_api.build_router(
                hub=self.hub,
                service=self.service,
                tickets=self.tickets,
                auth=auth,
                allowed_origins=lambda: list(settings.http.allowed_origins),
            )
        )
        app.include_router(
            crm_console.build_router(
                self.sessionmaker, auth, settings, customer_changed=self.customer_changed
            )
        )

        async def authenticate(username: str, password: str) -> Any:
            return await crm_service.authenticate(self.sessionmaker, username, password)

        app.include_router(
            build_pages_router(
                auth=auth,
                authenticate=authenticate,
                secret_provider=secret_provider,
                token_ttl_seconds=settings.auth.token_ttl_seconds,
                dispositions=list(settings.console.dispositions),
            )
        )

    def customer_changed(self, customer_id: int) -> None:
        """A write changed what a customer's card shows: the screen-pop's read-ahead card is dropped
        (and read again for a caller of theirs still waiting)."""
        self.bus.publish(CustomerChanged(customer_id, datetime.now(UTC)))

    # ------------------------------------------------------------------ ports

    async def _card(self, customer_id: int) -> dict[str, Any] | None:
        return await crm_console.customer_card(self.sessionmaker, customer_id)

    async def _agents(self) -> list[dict[str, Any]]:
        services = self.routing.waiting_view()[2].values()
        out = []
        for profile, state in await self.routing.agents():
            out.append(
                {
                    "id": profile.agent.id,
                    "name": profile.agent.name,
                    "team": profile.agent.team,
                    "active": profile.active,
                    "status": state.status.value,
                    "since": state.since.isoformat(),
                    "reason": state.reason,
                    "call": str(state.call) if state.call else None,
                    "service": state.service,
                    "calls_handled": state.calls_handled,
                    # An inactive agent is offered no calls: they count for no service.
                    "services": services_of(profile.agent, services) if profile.active else [],
                }
            )
        return out

    async def _queues(self) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        out = []
        for q in await self.routing.queues():
            waiting: list[dict[str, Any]] = [
                {
                    "call": str(c.key),
                    "waited_seconds": round(max(0.0, (now - c.enqueued_at).total_seconds()), 1),
                    "priority": c.priority,
                }
                for c in q.waiting
            ]
            out.append(
                {
                    "service": q.service,
                    "waiting": waiting,
                    "connecting": q.connecting,
                    "ready_agents": q.ready_agents,
                    "longest_wait_seconds": max((float(w["waited_seconds"]) for w in waiting), default=0.0),
                }
            )
        return out

    async def _stats_today(self) -> list[dict[str, Any]]:
        """Each routed service's figures of its own day so far, per interval too."""
        now = datetime.now(UTC)
        zones = await crm_console.service_zones(self.sessionmaker)
        routed = set(self.routing.waiting_view()[2])
        services = [(name, tz) for name, tz in zones.values() if name in routed]
        # The earliest local midnight among the services' zones: every call of any service's day.
        since = min(
            (
                now.astimezone(intervals.zone(tz)).replace(hour=0, minute=0, second=0, microsecond=0)
                for _, tz in services
            ),
            default=now.replace(hour=0, minute=0, second=0, microsecond=0),
        )
        rows = await crm_console.day_calls(self.sessionmaker, since, zones)
        calls = [
            intervals.CallFacts(
                service=r["service"],
                time_zone=r["time_zone"],
                started_at=r["started_at"],
                connected_at=r["connected_at"],
                wait_seconds=r["wait_seconds"],
                ended_at=r["ended_at"],
                talk_seconds=r["talk_seconds"],
                work_ended_at=r["work_ended_at"],
            )
            for r in rows
        ]
        figures = intervals.day_figures(
            calls, now, minutes=self.settings.console.chart_interval_minutes, services=services
        )
        return list(figures.values())

    async def _work_ended(self, call: str, agent_id: str, at: datetime) -> None:
        pbx, _, linkedid = call.partition("/")
        await crm_console.record_work_end(self.sessionmaker, pbx, linkedid, agent_id, at)
