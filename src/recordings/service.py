"""The recordings loop: pause and resume confirmed by Asterisk, filing each call's recording, purging.

Recordings are started by the PBX's dialplan (``[cti-record]``, by the service's policy), so the
platform never needs the AMI ``system`` class. This service

* follows the calls (``CallChange`` from the bus) to know which call an agent is on, and Asterisk's
  own word on each recording (``RecordingChanged``, published by the call service from the
  ``MixMonitorStart``/``MixMonitorMute``/``MixMonitorStop`` events);
* pauses and resumes a call's recording with the AMI action ``MixMonitorMute`` and answers only once
  Asterisk's ``MixMonitorMute`` event confirmed the new state; without that event within
  ``confirm_seconds`` it raises ``NotConfirmed`` and the state stays whatever Asterisk last said
  (fail closed: nobody is told "paused" on a request's word);
* files each connected call's recording when the call ends: measured and compressed with pydub off
  the event loop, stored once per call (``missing`` or ``empty`` when the PBX wrote nothing);
* deletes recordings past their retention (``purge_expired``), files first, then rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cti.audio import Measured, measure_and_compress
from cti.bus import Bus, subscribe_to_calls
from cti.model import (
    CallChange,
    CallKey,
    CallPhase,
    CallSnapshot,
    LiveCallsResynced,
    RecordingChanged,
    RecordingState,
)
from cti.ports import ActionFailed, ActionOutcomeUnknown, ActionSink, LinkDown
from recordings.policy import RecordingPolicy, check_linkedid, expires_before, file_name, selects

log = logging.getLogger("cti.recordings")

#: Call phases in which an agent's call recording may be paused or resumed.
CONTROLLABLE: frozenset[CallPhase] = frozenset({CallPhase.TALKING, CallPhase.HELD})
_FORBIDDEN = ("\r", "\n", "\0")


class NoCall(LookupError):
    """The agent has no call in a state where its recording can be paused or resumed."""


class NotRecording(LookupError):
    """The agent's call is not being recorded (its service's policy, or the recording ended)."""


class NotConfirmed(TimeoutError):
    """Asterisk did not confirm the change in time; the recording's state is as it last said."""


class PbxUnavailable(RuntimeError):
    """The request could not be put to Asterisk (the link is down, or Asterisk refused it)."""


@dataclass(frozen=True, slots=True)
class FiledRecording:
    """A call's recording as the writer files it. Paths are the platform's, never a request's."""

    pbx: str
    linkedid: str
    customer_id: int | None
    agent: str | None
    status: str
    file_path: str | None
    compressed_path: str | None
    duration_seconds: float
    started_at: datetime


@dataclass(frozen=True, slots=True)
class StoredFiles:
    """A stored recording's id and files, as the purge sees it."""

    id: int
    file_path: str | None
    compressed_path: str | None


@dataclass(frozen=True, slots=True)
class RecordingPorts:
    """The customer record, as the composition root wires it: ``store`` is idempotent per call;
    ``expired(before)`` lists recordings made before then; ``delete(ids)`` removes their rows."""

    store: Callable[[FiledRecording], Awaitable[None]]
    expired: Callable[[datetime], Awaitable[list[StoredFiles]]]
    delete: Callable[[list[int]], Awaitable[int]]


@dataclass
class _Live:
    channel: str
    state: RecordingState


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RecordingService:
    """One PBX's recordings. Build it before the call service runs (it subscribes in ``__post_init__``)."""

    bus: Bus
    actions: ActionSink
    ports: RecordingPorts
    pbx: str
    monitor_dir: Path
    policy_for: Callable[[str], RecordingPolicy]
    confirm_seconds: float = 3.0
    compressed_format: str = "mp3"
    stop_wait_seconds: float = 5.0
    clock: Callable[[], datetime] = _utcnow
    _calls: dict[CallKey, CallSnapshot] = field(default_factory=dict)
    _live: dict[CallKey, _Live] = field(default_factory=dict)
    _stopped: dict[CallKey, asyncio.Event] = field(default_factory=dict)
    _waiters: dict[CallKey, list[tuple[RecordingState, asyncio.Future[RecordingState]]]] = field(
        default_factory=dict
    )
    _filing: set[CallKey] = field(default_factory=set)
    #: Calls already filed (the newest few thousand): later changes of an ended call file nothing.
    _done: OrderedDict[CallKey, None] = field(default_factory=OrderedDict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._call_sub = subscribe_to_calls(self.bus, "recordings-calls")
        self._rec_sub = self.bus.subscribe("recordings", (RecordingChanged,))

    # ------------------------------------------------------------------ the loops

    async def run(self) -> None:
        """Follow calls and recordings until cancelled; filings under way are cancelled with it."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow_calls(), name="recordings-calls")
                tasks.create_task(self._follow_recordings(), name="recordings-events")
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow_calls(self) -> None:
        async for message in self._call_sub:
            try:
                if isinstance(message, CallChange):
                    self.on_call(message.call)
                elif isinstance(message, LiveCallsResynced) and message.pbx == self.pbx:
                    for key, call in list(self._calls.items()):
                        if key not in message.live:
                            self._ended(call)
            except Exception:  # one bad message must not stop recordings
                log.exception("recordings: failed on %s", type(message).__name__)

    async def _follow_recordings(self) -> None:
        async for message in self._rec_sub:
            if isinstance(message, RecordingChanged):
                self.on_recording(message)

    def on_call(self, call: CallSnapshot) -> None:
        if call.key.pbx != self.pbx or call.key in self._done:
            return
        self._calls[call.key] = call
        if call.ended_at is not None or call.phase in (CallPhase.WRAP_UP, CallPhase.ENDED):
            self._ended(call)

    def on_recording(self, change: RecordingChanged) -> None:
        if change.call.pbx != self.pbx:
            return
        live = self._live.get(change.call)
        if live is None:
            live = self._live[change.call] = _Live(change.channel, change.state)
        live.channel, live.state = change.channel, change.state
        if change.state is RecordingState.STOPPED:
            self._stopped.setdefault(change.call, asyncio.Event()).set()
        for wanted, future in self._waiters.get(change.call, []):
            if wanted is change.state and not future.done():
                future.set_result(change.state)

    # ------------------------------------------------------------------ pause and resume

    def call_of(self, agent_id: str) -> CallSnapshot:
        """The agent's call whose recording may be controlled now; ``NoCall`` if none."""
        for call in self._calls.values():
            if call.agent == agent_id and call.ended_at is None and call.phase in CONTROLLABLE:
                return call
        raise NoCall(f"agent {agent_id} has no call in progress")

    def state_of(self, agent_id: str) -> RecordingState:
        """The recording state of the agent's call as Asterisk last confirmed it."""
        call = self.call_of(agent_id)
        live = self._live.get(call.key)
        if live is None:
            raise NotRecording(f"the call of agent {agent_id} is not being recorded")
        return live.state

    async def set_paused(self, agent_id: str, paused: bool) -> RecordingState:
        """Pause (``paused``) or resume the recording of the agent's call; the state Asterisk confirmed.

        Raises ``NoCall``, ``NotRecording``, ``PbxUnavailable``, or ``NotConfirmed`` when Asterisk's
        ``MixMonitorMute`` event did not arrive within ``confirm_seconds``.
        """
        call = self.call_of(agent_id)
        live = self._live.get(call.key)
        if live is not None and live.state is RecordingState.STOPPED:
            raise NotRecording(f"the recording of agent {agent_id}'s call has ended")
        if live is None and not self._expected(call):
            raise NotRecording(f"the call of agent {agent_id} is not being recorded")
        # Without Asterisk's MixMonitorStart (the platform started after the call did), the policy
        # says the dialplan recorded the caller's channel: ask, and let Asterisk's answer decide.
        channel = live.channel if live is not None else call.anchor_channel
        if not channel or any(bad in channel for bad in _FORBIDDEN):
            raise NotRecording(f"the call of agent {agent_id} has no usable recording channel")
        wanted = RecordingState.PAUSED if paused else RecordingState.ACTIVE
        future: asyncio.Future[RecordingState] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(call.key, [])
        waiters.append((wanted, future))  # before sending: the event may beat the response
        try:
            try:
                await self.actions.send(
                    "MixMonitorMute",
                    {"Channel": channel, "Direction": "both", "State": "1" if paused else "0"},
                )
            except ActionFailed as exc:
                if live is None:  # no MixMonitor on the channel after all
                    raise NotRecording(f"the call of agent {agent_id} is not being recorded") from exc
                raise PbxUnavailable(f"Asterisk refused: {exc.message}") from exc
            except LinkDown as exc:
                raise PbxUnavailable("the link to Asterisk is down") from exc
            except (ActionOutcomeUnknown, TimeoutError):
                pass  # only Asterisk's event can tell; wait for it as for any other answer
            try:
                return await asyncio.wait_for(asyncio.shield(future), self.confirm_seconds)
            except TimeoutError:
                raise NotConfirmed(
                    f"Asterisk did not confirm the recording {wanted.value} within {self.confirm_seconds} s"
                ) from None
        finally:
            waiters.remove((wanted, future))
            if not waiters:
                self._waiters.pop(call.key, None)

    # ------------------------------------------------------------------ filing

    def _expected(self, call: CallSnapshot) -> bool:
        """Whether the PBX should have recorded ``call``: it was connected and its policy selects it."""
        if call.connected_at is None:
            return False
        try:
            return selects(self.policy_for(call.dnis), call.key.linkedid)
        except ValueError:
            return False

    def _ended(self, call: CallSnapshot) -> None:
        key = call.key
        if key in self._filing or key in self._done:
            return
        self._filing.add(key)
        task = asyncio.create_task(self._file(call), name=f"recording-{key.linkedid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _file(self, call: CallSnapshot) -> None:
        key = call.key
        try:
            started = key in self._live
            if not started and not self._expected(call):
                return
            if started and self._live[key].state is not RecordingState.STOPPED:
                # MixMonitor closes its file when the caller's channel goes; wait for its word.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stopped.setdefault(key, asyncio.Event()).wait(), self.stop_wait_seconds
                    )
            try:
                wav = self.monitor_dir / file_name(key.linkedid)
            except ValueError:
                log.warning("call %s: Linkedid not usable as a file name; recording not filed", key)
                return
            if call.connected_at is None:
                # Recorded only while bridged: a call never connected has no conversation to keep.
                with contextlib.suppress(OSError):
                    if wav.is_file() and wav.stat().st_size <= 44:
                        wav.unlink()
                return
            measured = await asyncio.to_thread(self._measure, wav)
            classification = call.classification
            await self.ports.store(
                FiledRecording(
                    pbx=key.pbx,
                    linkedid=key.linkedid,
                    customer_id=classification.customer_id if classification else None,
                    agent=call.agent,
                    status=measured.status,
                    file_path=str(wav) if measured.status != "missing" else None,
                    compressed_path=str(measured.compressed) if measured.compressed else None,
                    duration_seconds=measured.seconds,
                    started_at=call.connected_at,
                )
            )
            log.info("call %s: recording filed (%s, %.1f s)", key, measured.status, measured.seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: recording not filed", key)
        finally:
            self._calls.pop(key, None)
            self._live.pop(key, None)
            self._stopped.pop(key, None)
            self._filing.discard(key)
            self._done[key] = None
            while len(self._done) > 10_000:
                self._done.popitem(last=False)

    def _measure(self, wav: Path) -> Measured:
        return measure_and_compress(wav, self.compressed_format)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until the filings under way are done (for shutdown and tests)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)


# ---------------------------------------------------------------------- retention


@dataclass(frozen=True, slots=True)
class PurgeResult:
    rows: int
    files: int


def _inside(path: str | None, folder: Path) -> Path | None:
    """``path`` if it is a file inside ``folder`` (a stored path is never trusted to point elsewhere)."""
    if not path:
        return None
    candidate = Path(path).resolve()
    return candidate if candidate.parent == folder.resolve() else None


def _delete_files(found: list[StoredFiles], folder: Path) -> int:
    deleted = 0
    for item in found:
        for path in (item.file_path, item.compressed_path):
            target = _inside(path, folder)
            if target is None:
                continue
            try:
                target.unlink()
                deleted += 1
            except FileNotFoundError:
                pass
    return deleted


async def purge_expired(
    ports: RecordingPorts, monitor_dir: Path, retention_days: int, now: datetime | None = None
) -> PurgeResult:
    """Delete recordings older than ``retention_days``: their files (only inside ``monitor_dir``),
    then their rows. A file already gone is no error; a row is deleted only after its files."""
    before = expires_before(now or _utcnow(), retention_days)
    rows = files = 0
    while True:
        found = await ports.expired(before)
        if not found:
            return PurgeResult(rows, files)
        files += await asyncio.to_thread(_delete_files, found, monitor_dir)
        deleted = await ports.delete([item.id for item in found])
        rows += deleted
        if deleted == 0:  # nothing could be deleted: do not spin
            return PurgeResult(rows, files)


async def purge_forever(
    ports: RecordingPorts, monitor_dir: Path, retention_days: int, interval_seconds: float
) -> None:
    """Run ``purge_expired`` every ``interval_seconds`` until cancelled; a failed run is logged."""
    while True:
        try:
            result = await purge_expired(ports, monitor_dir, retention_days)
            if result.rows or result.files:
                log.info("recordings purged: %d rows, %d files", result.rows, result.files)
        except Exception:
            log.exception("recordings purge failed; trying again later")
        await asyncio.sleep(interval_seconds)


__all__ = [
    "FiledRecording",
    "NoCall",
    "NotConfirmed",
    "NotRecording",
    "PbxUnavailable",
    "PurgeResult",
    "RecordingPorts",
    "RecordingService",
    "StoredFiles",
    "check_linkedid",
    "purge_expired",
    "purge_forever",
]
