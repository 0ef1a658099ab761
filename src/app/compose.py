"""The composition root: the one place that builds every part and owns every long-lived task.

``Platform`` wires the AMI client, the call service, the bus, the customer record and the HTTP API
for one PBX; ``Platform.run()`` runs them all in one ``asyncio.TaskGroup`` until ``stop()`` (or a
signal, from the CLI). Nothing else in the code base imports more than one capability.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from starlette.responses import Response

from app.console_wiring import Consoles
from app.dialer_wiring import AgentDeskWiring, Campaigns, build_dialer_router
from app.recordings_wiring import build_recordings, recording_ports, recording_queries
from app.routing_wiring import build_routing
from app.waiting_wiring import Waiting
from crm import db as crm_db
from crm import handlers as crm_handlers
from crm import voicemail as crm_voicemail
from crm.api import build_router as build_crm_router
from crm.service import Classifier
from cti.ami import AmiClient
from cti.auth import Principal, Role, resolve_token_secret
from cti.bus import Bus
from cti.callbook import CallBook
from cti.events import decode_event
from cti.http import make_auth
from cti.service import CallService
from cti.settings import Settings
from dialer.api import build_live_router
from ivr.agi import FastAgiServer
from ivr.api import build_router as build_ivr_router
from ivr.service import IvrService
from recordings.api import build_router as build_recordings_router
from recordings.service import purge_forever
from routing.api import build_router as build_routing_router

log = logging.getLogger("cti.app")


class Platform:
    """Everything ``cti serve`` runs, built from one ``Settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database_url = settings.resolved_database_url()
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.token_secret = resolve_token_secret(settings.auth, settings.state_dir)
        self.engine = crm_db.make_engine(self.database_url)
        self.sessionmaker = crm_db.make_sessionmaker(self.engine)
        self.bus = Bus()
        # The line out (transfers to outside numbers) is not an agent: the call keeps its last agent.
        self.book = CallBook(
            settings.pbx_id, wrap_up_seconds=settings.wrap_up_seconds, outside_endpoints=("outside",)
        )
        # The client's name prefixes every ActionID, where '-' is not allowed; a PBX id may have one.
        ami_name = settings.pbx_id.replace("-", "_")
        self.ami = AmiClient(settings.effective_ami(), decode_event=decode_event, name=ami_name)
        self.calls = CallService(
            book=self.book,
            link=self.ami,
            bus=self.bus,
            classifier=Classifier(self.sessionmaker, settings.default_region),
        )
        self.call_log = crm_handlers.CallLogWriter(
            self.sessionmaker,
            crm_handlers.subscribe(self.bus),
            default_region=settings.default_region,
            spool_path=settings.state_dir / "spool" / f"call-logs-{settings.pbx_id}.json",
        )
        self.ivr, self.agi = build_ivr(settings, self.sessionmaker, self.calls)
        self.routing = build_routing(settings, self.sessionmaker, self.bus, self.ami)
        # Announcements, overflows to voicemail or a callback, and queue callbacks (routing's hooks).
        self.waiting = Waiting(settings, self.sessionmaker, self.routing, self.ami, self.ivr)
        self.consoles = Consoles(settings, self.sessionmaker, self.bus, self.routing, self.ami)
        self.recordings = build_recordings(settings, self.sessionmaker, self.bus, self.ami)
        # Campaign calls at the agent's desk: preview dialling, the lead's record, dispositions.
        self.desk = AgentDeskWiring(settings, self.sessionmaker, self.bus, self.routing, self.ami)
        # Progressive and predictive campaigns: paced from routing's agents, followed on the bus; a
        # callback booked for one agent is dialled for them the way the desk's preview Dial does.
        self.campaigns = Campaigns(
            settings, self.sessionmaker, self.bus, self.routing, self.ami, self.calls, desk=self.desk.desk
        )
        self.http = self._build_http()
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------------ HTTP

    def _build_http(self) -> FastAPI:
        app = FastAPI(
            title="Contact center platform",
            version="0.1.0",
            description="Customers, call logs and the live state of a contact center beside Asterisk.",
        )
        auth = make_auth(lambda: self.token_secret)
        app.include_router(
            build_crm_router(
                self.sessionmaker,
                auth,
                lambda: self.token_secret,
                self.settings,
                customer_changed=self.consoles.customer_changed,
            )
        )
        app.include_router(build_routing_router(self.routing, auth))
        self.consoles.install(app, auth, lambda: self.token_secret)
        app.include_router(build_dialer_router(self.sessionmaker, auth))
        app.include_router(build_live_router(self.campaigns.store, self.campaigns.live, auth))
        app.include_router(self.desk.router(auth))
        app.include_router(
            build_recordings_router(
                self.recordings, recording_queries(self.sessionmaker), auth, self.settings.monitor_dir()
            )
        )
        app.include_router(
            build_ivr_router(
                auth,
                lambda: (self.settings.ivr_recordings_dir(), self.settings.ivr_dirs()[0]),
                self.settings.ivr.max_upload_bytes,
            )
        )
        registry = CollectorRegistry()
        Gauge("cti_live_calls", "calls in the live model", registry=registry).set_function(
            lambda: len(self.book)
        )
        Gauge("cti_ami_link_up", "1 when the AMI link is logged in", registry=registry).set_function(
            lambda: 1.0 if self.ami.connected else 0.0
        )
        Gauge(
            "cti_call_log_pending", "call log writes waiting for the database", registry=registry
        ).set_function(lambda: float(self.call_log.pending()))
        admin = Depends(auth.require(Role.ADMIN))

        @app.get("/api/health", tags=["health"])
        async def health() -> dict[str, Any]:
            """Public liveness: whether the AMI link is up and the call model resynced. No details."""
            ami_up = self.ami.connected and self.calls.health.link_up
            return {
                "status": "ok" if ami_up else "degraded",
                "ami": "up" if ami_up else "down",
                "pbx": self.settings.pbx_id,
                "live_calls": len(self.book),
            }

        @app.get("/api/health/details", tags=["health"])
        async def health_details(user: Principal = admin) -> dict[str, Any]:
            """Counters of the AMI link, the call model and the call log writer (admins)."""
            calls = asdict(self.calls.health)
            return {
                "ami": {
                    "connected": self.ami.connected,
                    "generation": self.ami.generation,
                    "counters": self.ami.counters.as_dict(),
                },
                "calls": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in calls.items()},
                "call_log": {"pending": self.call_log.pending()},
                "routing": self.routing.health_report(),
                "bus": self.bus.stats(),
            }

        @app.get("/metrics", tags=["health"], include_in_schema=False)
        async def metrics(user: Principal = admin) -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

        return app

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Migrate the database, then run every part until ``stop()``; returns after a clean shutdown."""
        await crm_db.migrate_async(self.database_url)
        http = self.settings.http
        server = uvicorn.Server(
            uvicorn.Config(
                self.http,
                host=http.host,
                port=http.port,
                log_level="warning",
                lifespan="off",
                ws_max_size=64 * 1024,
            )
        )
        log.info(
            "platform %s: HTTP on http://%s:%d, AMI %s:%d",
            self.settings.pbx_id,
            http.host,
            http.port,
            self.settings.ami.host,
            self.settings.ami.port,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.ami.run(), name="ami")
                calls = tasks.create_task(self.calls.run(), name="calls")
                writer = tasks.create_task(self.call_log.run(), name="call-log")
                routing = tasks.create_task(self.routing.run(), name="routing")
                waiting = tasks.create_task(self.waiting.run(), name="routing-waiting")
                consoles = tasks.create_task(self.consoles.run(), name="consoles")
                recordings = tasks.create_task(self.recordings.run(), name="recordings")
                campaigns = tasks.create_task(self.campaigns.run(), name="campaigns")
                desk = tasks.create_task(self.desk.run(), name="dialer-desk")
                rec = self.settings.recordings
                purge = tasks.create_task(
                    purge_forever(
                        recording_ports(self.sessionmaker),
                        self.settings.monitor_dir(),
                        rec.retention_days,
                        rec.purge_interval_seconds,
                    ),
                    name="recordings-purge",
                )
                web = tasks.create_task(server.serve(), name="http")
                ivr_task = None
                if self.ivr is not None and self.agi is not None:
                    ivr_task = tasks.create_task(serve_ivr(self.settings, self.ivr, self.agi), name="ivr")
                await self._stopping.wait()
                server.should_exit = True
                if ivr_task is not None:
                    # Callers still in the IVR take the dialplan's fallback when their session drops.
                    ivr_task.cancel()
                await web
                # No new campaign call once stopping; calls already placed are reconciled at the next start.
                campaigns.cancel()
                calls.cancel()
                routing.cancel()
                waiting.cancel()
                consoles.cancel()
                desk.cancel()
                purge.cancel()
                # Recordings of calls that ended are filed before the database goes away.
                await self.recordings.drain(timeout=10.0)
                recordings.cancel()
                await self.ami.close()
                # The writer drains what it holds before it stops (bounded by its own retry policy).
                try:
                    await self.call_log.flush(timeout=10.0)
                except TimeoutError:
                    log.error("stopping with %d call log writes not yet stored", self.call_log.pending())
                writer.cancel()
        finally:
            await self.routing.live.close()
            await self.engine.dispose()

    def stop(self) -> None:
        self._stopping.set()


# ---------------------------------------------------------------------- IVR


def build_ivr(
    settings: Settings, sessionmaker: crm_db.SessionMaker, calls: CallService
) -> tuple[IvrService | None, FastAgiServer | None]:
    """The IVR and its FastAGI server, with ports onto the customer record and the live call.

    Returns ``(None, None)`` when the IVR is disabled or its flows do not load: the dialplan's
    fallback then takes every IVR call, and the log says why.
    """
    from datetime import UTC, datetime

    from ivr import flow as ivr_flow
    from ivr.files import example_flows, load_flows
    from ivr.model import FlowError
    from ivr.service import CallbackBooking, IvrPorts, VoicemailMessage

    if not settings.ivr.enabled:
        return None, None
    try:
        flows = load_flows(settings.ivr.flows_dir) if settings.ivr.flows_dir else example_flows()
    except (FlowError, OSError) as exc:
        log.error("IVR flows not loaded, IVR calls take the dialplan's fallback: %s", exc)
        return None, None
    region = settings.default_region
    classifier = Classifier(sessionmaker, region)

    async def lookup(customer_id: int, query: str, pin: str | None) -> ivr_flow.LookupResult:
        answer = await crm_voicemail.self_service_answer(sessionmaker, customer_id, query, pin)
        return ivr_flow.LookupResult(
            answer.found, answer.count, answer.amount, answer.currency, answer.reference, answer.status
        )

    async def store_voicemail(message: VoicemailMessage) -> None:
        await crm_voicemail.store_voicemail(
            sessionmaker,
            call_key=f"{settings.pbx_id}/{message.call_key}",
            customer_id=message.customer_id,
            ani=message.ani,
            file_path=message.file_path,
            compressed_path=message.compressed_path,
            duration_seconds=message.seconds,
            default_region=region,
        )
        if message.ani:  # a message asks for a call back: the task is on the list with the voicemail
            # A number we could not call back (ValueError) keeps the voicemail alone.
            with contextlib.suppress(ValueError):
                await crm_voicemail.store_callback(
                    sessionmaker,
                    call_key=f"{settings.pbx_id}/{message.call_key}",
                    customer_id=message.customer_id,
                    ani=message.ani,
                    number=message.ani,
                    default_region=region,
                )

    async def store_callback(booking: CallbackBooking) -> None:
        await crm_voicemail.store_callback(
            sessionmaker,
            call_key=f"{settings.pbx_id}/{booking.call_key}",
            customer_id=booking.customer_id,
            ani=booking.ani,
            number=booking.number,
            default_region=region,
            due=datetime.now(UTC),
        )

    async def record_ivr(linkedid: str, record: Any, routing: Any) -> None:
        calls.record_ivr(linkedid, record, routing)

    sounds, pbx_sounds, voicemail_dir, pbx_voicemail = settings.ivr_dirs()
    ivr = IvrService(
        flows=flows,
        ports=IvrPorts(classifier.classify, lookup, store_voicemail, store_callback, record_ivr),
        sounds_dir=sounds,
        pbx_sounds_dir=pbx_sounds,
        voicemail_dir=voicemail_dir,
        pbx_voicemail_dir=pbx_voicemail,
        compressed_format=settings.ivr.voicemail_format,
        step_timeout=settings.ivr.step_timeout_seconds,
        recordings_dir=settings.ivr_recordings_dir(),
    )
    return ivr, FastAgiServer(settings.ivr.agi_host, settings.ivr.agi_port, ivr.handle)


async def serve_ivr(settings: Settings, ivr: IvrService, agi: FastAgiServer) -> None:
    """Build missing prompts, then serve FastAGI until cancelled. Until it listens (and if it never
    does), Asterisk cannot connect and IVR calls take the dialplan's fallback."""
    import os

    _, _, voicemail_dir, _ = settings.ivr_dirs()
    try:
        voicemail_dir.mkdir(parents=True, exist_ok=True)
        # Asterisk records here as its own user: give the folder to whoever owns its parent (the spool).
        parent = voicemail_dir.parent.stat()
        os.chown(voicemail_dir, parent.st_uid, parent.st_gid)
    except OSError as exc:
        log.warning("voicemail folder %s not prepared: %s", voicemail_dir, exc)
    if settings.ivr.build_prompts_on_start:
        try:
            built = await ivr.build_prompts()
            log.info("IVR prompts ready (%d built)", built)
        except Exception:
            log.exception("IVR prompts could not be built; IVR calls take the dialplan's fallback")
            return
    try:
        await agi.run()
    except OSError as exc:
        log.error("FastAGI server not started on %s:%d: %s", agi.host, agi.port, exc)
