"""The call service: the loop that owns one PBX's call book.

It reads typed events from the AMI link's bounded queue, applies them to the pure ``CallBook`` and
publishes every change on the bus. On every (re)login, and whenever the link reports lost events, it
rebuilds the book from ``CoreShowChannels`` before trusting deltas again, and publishes
``LiveCallsResynced`` so that stores can close records of calls that ended unseen. New inbound calls
are classified (ANI → customer, DNIS → service) off the loop, so a slow database never delays events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cti.ami import LinkDown as LinkDownMarker
from cti.ami import LinkUp, ResyncNeeded
from cti.bus import Bus
from cti.callbook import CallBook
from cti.events import ChannelListed, MixMonitorMuted, MixMonitorStarted, MixMonitorStopped, translate
from cti.model import (
    CallChange,
    CallKey,
    ChangeKind,
    Direction,
    EndReason,
    IvrRecord,
    RecordingChanged,
    RecordingState,
    RoutingRequest,
)
from cti.ports import CallClassifier

log = logging.getLogger("cti.calls")


class AmiLink(Protocol):
    """What the call service needs of the AMI client."""

    events: asyncio.Queue[Any]

    async def send(self, action: str, headers: Mapping[str, str] | None = None) -> dict[str, str]: ...

    async def send_list(
        self, action: str, headers: Mapping[str, str] | None = None
    ) -> tuple[dict[str, str], list[dict[str, str]]]: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


def recording_changed(
    pbx: str, event: MixMonitorStarted | MixMonitorStopped | MixMonitorMuted, now: datetime
) -> RecordingChanged:
    """The bus message for one of Asterisk's MixMonitor events. A mute of one direction only is not
    a pause (the other side is still written), so only ``both`` counts as paused."""
    if isinstance(event, MixMonitorStarted):
        state = RecordingState.ACTIVE
    elif isinstance(event, MixMonitorStopped):
        state = RecordingState.STOPPED
    elif event.muted and event.direction == "both":
        state = RecordingState.PAUSED
    else:
        state = RecordingState.ACTIVE
    return RecordingChanged(CallKey(pbx, event.linkedid), event.channel, state, now)


@dataclass
class CallServiceHealth:
    link_up: bool = False
    logins: int = 0
    resyncs: int = 0
    last_resync_at: datetime | None = None
    events_applied: int = 0
    classify_failures: int = 0
    pbx_started: str | None = None
    last_link_down_reason: str | None = None
    errors: dict[str, int] = field(default_factory=dict)


class CallService:
    """Feeds the call book of one PBX and publishes its changes. ``run`` owns its helper tasks."""

    def __init__(
        self,
        *,
        book: CallBook,
        link: AmiLink,
        bus: Bus,
        classifier: CallClassifier | None = None,
        clock: Callable[[], datetime] = utcnow,
        tick_interval: float = 1.0,
        classify_attempts: int = 3,
    ) -> None:
        self.book = book
        self.link = link
        self.bus = bus
        self.classifier = classifier
        self.clock = clock
        self.tick_interval = tick_interval
        self.classify_attempts = classify_attempts
        self.health = CallServiceHealth()
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbound_classified: set[CallKey] = set()  # outbound calls whose lookup was started
        self._resynced_once = False
        self.resynced = asyncio.Event()

    async def run(self) -> None:
        ticker = asyncio.create_task(self._tick_forever(), name="calls-tick")
        try:
            while True:
                item = await self.link.events.get()
                try:
                    await self._handle(item)
                except Exception:  # one bad event must not stop the model
                    kind = type(item).__name__
                    self.health.errors[kind] = self.health.errors.get(kind, 0) + 1
                    log.exception("call model failed on %s; continuing", kind)
        finally:
            ticker.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(ticker, *self._tasks, return_exceptions=True)

    async def _handle(self, item: object) -> None:
        if isinstance(item, LinkUp):
            self.health.link_up = True
            self.health.logins += 1
            await self._resync_after_login()
        elif isinstance(item, ResyncNeeded):
            log.warning("resync: %s (%d events dropped)", item.reason, item.dropped)
            await self._resync(EndReason.EVENTS_DROPPED)
        elif isinstance(item, LinkDownMarker):
            self.health.link_up = False
            self.health.last_link_down_reason = item.reason
        elif isinstance(item, MixMonitorStarted | MixMonitorStopped | MixMonitorMuted):
            # Not call state: the recording's state as Asterisk confirmed it, for whoever controls it.
            self.health.events_applied += 1
            self.bus.publish(recording_changed(self.book.pbx, item, self.clock()))
        else:
            self.health.events_applied += 1
            self._publish(self.book.apply(item, self.clock()))  # type: ignore[arg-type]

    async def _resync_after_login(self) -> None:
        started: str | None = None
        try:
            status = await self.link.send("CoreStatus")
            started = f"{status.get('CoreStartupDate', '')} {status.get('CoreStartupTime', '')}".strip()
        except Exception as exc:  # the resync below still runs; we only lose restart detection
            log.warning("CoreStatus failed: %s", exc)
        if not self._resynced_once:
            reason = EndReason.PLATFORM_DOWN
        elif started and self.health.pbx_started and started != self.health.pbx_started:
            reason = EndReason.PBX_RESTARTED
        else:
            reason = EndReason.LINK_LOST
        if started:
            self.health.pbx_started = started
        await self._resync(reason)

    async def _resync(self, reason: EndReason) -> None:
        try:
            _, items = await self.link.send_list("CoreShowChannels")
        except Exception as exc:
            # The link dropped again mid-resync: the next LinkUp brings another resync.
            log.warning("CoreShowChannels failed, waiting for the next login: %s", exc)
            return
        listed = [e for e in map(translate, items) if isinstance(e, ChannelListed)]
        changes, resynced = self.book.resync(listed, self.clock(), reason)
        self._resynced_once = True
        self.health.resyncs += 1
        self.health.last_resync_at = resynced.at
        self._publish(changes)
        self.bus.publish(resynced)
        self.resynced.set()
        log.info("resynced %s: %d live calls (%s)", self.book.pbx, len(resynced.live), reason.value)

    def _publish(self, changes: list[CallChange]) -> None:
        for change in changes:
            self.bus.publish(change)
            call = change.call
            if self.classifier is None or call.classification is not None:
                if change.kind is ChangeKind.CLOSED:
                    self._outbound_classified.discard(call.key)
                continue
            if change.kind is ChangeKind.STARTED and call.direction is Direction.INBOUND:
                self._spawn(self._classify(change))
            elif (
                call.direction is Direction.OUTBOUND
                and call.ended_at is None
                and call.key not in self._outbound_classified
            ):
                # An outbound call is known as one only once its first leg is dialled (its ANI is
                # then the customer's number): looked up once, so the call log finds the customer.
                self._outbound_classified.add(call.key)
                self._spawn(self._classify(change))
            elif change.kind is ChangeKind.CLOSED:
                self._outbound_classified.discard(call.key)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _classify(self, change: CallChange) -> None:
        assert self.classifier is not None
        call = change.call
        delay = 0.2
        for attempt in range(1, self.classify_attempts + 1):
            try:
                result = await self.classifier.classify(call.ani, call.dnis)
            except Exception as exc:
                self.health.classify_failures += 1
                log.warning("lookup for call %s failed (attempt %d): %s", call.key, attempt, exc)
                await asyncio.sleep(delay)
                delay *= 2
                continue
            self._publish(self.book.classify(call.key, result, self.clock()))
            return

    def record_ivr(self, linkedid: str, ivr: IvrRecord, routing: RoutingRequest | None = None) -> None:
        """Put what the IVR learned (and what it asks of routing) on the live call ``linkedid``."""
        key = CallKey(self.book.pbx, linkedid)
        self._publish(self.book.record_ivr(key, ivr, self.clock(), routing))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self._publish(self.book.tick(self.clock()))
