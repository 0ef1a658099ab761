"""Wiring of the waiting caller's experience: routing's announcements, overflows and queue callbacks
onto the customer record, the IVR's prompt builder and voicemail folder, and the AMI client.

Routing, the IVR and crm never import each other; this module maps between them:

* overflow voicemails are filed exactly as the IVR files its own (measured and compressed by the
  core's ``cti.audio``, stored with ``crm.voicemail.store_voicemail`` and a callback task for the number);
* callbacks booked in the IVR with ``keep_place`` join routing's line (the IVR's ``store_callback``
  port is wrapped: the task is stored as before, then handed to routing);
* announcements in a language other than English are synthesised with the IVR's prompt builder
  (espeak-ng, cached by content hash in the PBX's sounds folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime

from crm import voicemail as crm_voicemail
from crm.db import SessionMaker
from cti.ami import AmiClient
from cti.audio import measure_and_compress
from cti.model import CallKey, CallSnapshot
from cti.settings import Settings
from ivr.prompts import PromptBuilder
from ivr.service import CallbackBooking, IvrService
from routing.callbacks import CallbackPorts, QueueCallbacks
from routing.service import RoutingService
from routing.waiting import Announcement, AnnouncementSound, Announcing, WaitingAnnouncer

log = logging.getLogger("cti.app.waiting")


def callback_ports(settings: Settings, sessionmaker: SessionMaker) -> CallbackPorts:
    region = settings.default_region
    pbx = settings.pbx_id
    voicemail_dir = settings.ivr_dirs()[2]

    async def book(call: CallSnapshot, number: str) -> tuple[int, str]:
        record = await crm_voicemail.store_callback(
            sessionmaker,
            call_key=f"{pbx}/{call.key.linkedid}",
            customer_id=call.classification.customer_id if call.classification else None,
            ani=call.ani,
            number=number,
            default_region=region,
            due=datetime.now(UTC),
        )
        return record.id, record.number_e164

    async def finished(task_id: int, status: str, call_key: str | None) -> None:
        await crm_voicemail.finish_callback(sessionmaker, task_id, status, call_key)

    async def pending() -> dict[int, str]:
        return await crm_voicemail.pending_callback_numbers(sessionmaker)

    async def file_voicemail(call: CallSnapshot, file_name: str) -> None:
        wav = voicemail_dir / f"{file_name}.wav"
        measured = await asyncio.to_thread(measure_and_compress, wav, settings.ivr.voicemail_format)
        if measured.seconds <= 0:
            log.info("call %s left no message after the overflow", call.key)
            return
        customer_id = call.classification.customer_id if call.classification else None
        call_key = f"{pbx}/{call.key.linkedid}"
        await crm_voicemail.store_voicemail(
            sessionmaker,
            call_key=call_key,
            customer_id=customer_id,
            ani=call.ani or None,
            file_path=str(wav),
            compressed_path=str(measured.compressed) if measured.compressed is not None else None,
            duration_seconds=measured.seconds,
            default_region=region,
        )
        if call.ani:  # as for the IVR's messages: a call back to follow, when the number allows one
            with contextlib.suppress(ValueError):
                await crm_voicemail.store_callback(
                    sessionmaker,
                    call_key=call_key,
                    customer_id=customer_id,
                    ani=call.ani,
                    number=call.ani,
                    default_region=region,
                )

    return CallbackPorts(book, finished, pending, file_voicemail)


def announcement_sound(settings: Settings) -> AnnouncementSound:
    """Announcements in the caller's language (other than English), built with the IVR's prompt
    builder into its sounds folder and played from there by the PBX."""
    sounds, pbx_sounds, _, _ = settings.ivr_dirs()
    builder = PromptBuilder(sounds)

    async def sound(announcement: Announcement) -> str | None:
        built = await builder.speak_async(announcement.text(), announcement.language)
        return f"{pbx_sounds}/{built.sound}"

    return sound


class Waiting:
    """The announcer and the queue callbacks of one router; ``run`` is a long-lived task."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: SessionMaker,
        routing: RoutingService,
        ami: AmiClient,
        ivr: IvrService | None,
    ) -> None:
        r = settings.routing
        self.settings = settings
        self.callbacks = QueueCallbacks(
            routing,
            callback_ports(settings, sessionmaker),
            ami,
            settings.pbx_id,
            endpoint=r.callback_endpoint,
            ring_seconds=max(1, min(600, int(r.ring_timeout_seconds))),
            max_attempts=r.callback_max_attempts,
            retry_seconds=r.callback_retry_seconds,
            dial_ahead_seconds=r.callback_dial_ahead_seconds,
            dial_ahead_services=dict(r.callback_dial_ahead_services),
        )
        self.announcer = WaitingAnnouncer(
            routing,
            ami,
            Announcing(r.announce_every_seconds, dict(r.announce_services)),
            handle_times=routing.handle_times,
            sound=announcement_sound(settings),
            default_handle=r.default_handle_seconds,
        )
        if ivr is not None:
            self._join_ivr(ivr, sessionmaker)

    def _join_ivr(self, ivr: IvrService, sessionmaker: SessionMaker) -> None:
        """Callbacks the IVR books that keep the caller's place join routing's line."""
        settings = self.settings
        callbacks = self.callbacks

        async def store_callback(booking: CallbackBooking) -> None:
            record = await crm_voicemail.store_callback(
                sessionmaker,
                call_key=f"{settings.pbx_id}/{booking.call_key}",
                customer_id=booking.customer_id,
                ani=booking.ani,
                number=booking.number,
                default_region=settings.default_region,
                due=datetime.now(UTC),
            )
            if booking.keep_place:
                await callbacks.book_for_call(
                    CallKey(settings.pbx_id, booking.call_key),
                    record.id,
                    record.number_e164,
                    skills=booking.skills,
                    language=booking.language or None,
                    priority=booking.priority,
                    since=booking.joined_at,
                )

        ivr.ports = replace(ivr.ports, store_callback=store_callback)

    async def run(self) -> None:
        _prepare_voicemail_dir(self.settings)
        try:
            await self.announcer.run()
        finally:
            await self.callbacks.close()


def _prepare_voicemail_dir(settings: Settings) -> None:
    """Overflow voicemails are recorded into the IVR's folder by Asterisk as its own user."""
    folder = settings.ivr_dirs()[2]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        parent = folder.parent.stat()
        os.chown(folder, parent.st_uid, parent.st_gid)
    except OSError as exc:
        log.warning("voicemail folder %s not prepared: %s", folder, exc)
