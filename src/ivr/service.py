"""Running IVR flows for live calls: the step executor between the pure engine and an AGI channel.

``IvrService.handle(channel)`` is the FastAGI endpoint. It reads who is calling what from the AGI
variables, finds the flow by DNIS, asks the composition root's ports who the caller is, and then
performs the engine's steps on the channel until the engine hands the call on (``Route``: the
dialplan continues to waiting) or ends it (``Hangup``). It tells the dialplan where the caller goes
in the channel variable ``CTI_IVR_NEXT`` (``wait`` or ``hangup``); it sets nothing when it cannot run
the flow (unknown DNIS, a failure), and the dialplan then takes the service's fallback.

Every call into the rest of the platform, and speech synthesised on demand, has a deadline
(``step_timeout``): a customer lookup that never returns (the database hangs, say) ends the session
after that long, and the dialplan's fallback takes the caller, so nobody is kept in silence by a
stalled dependency. A voicemail whose filing stalls is
kept on disk (the log names the file) and the caller still hears the goodbye.

The IVR does not import the customer record: :class:`IvrPorts` are plain async functions the root
builds (classification, self-service answers, voicemail and callback storage, and ``record_ivr``
which puts what the IVR learned on the live call). Digits are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from cti.audio import measure_and_compress
from cti.model import CallClassification, IvrRecord, RoutingRequest, SkillNeed
from ivr import flow as engine
from ivr.agi import AgiChannel, ChannelGone, CommandFailed
from ivr.model import Flow
from ivr.prompts import BuildReport, PromptBuilder, text_sound_name

log = logging.getLogger("ivr")
_T = TypeVar("_T")

ALL_KEYS = "0123456789*#"
NEXT_VARIABLE = "CTI_IVR_NEXT"
INTER_DIGIT_MS = 3000
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class VoicemailMessage:
    """A voicemail to file: the WAV as the platform reads it, a compressed copy, its length."""

    call_key: str
    customer_id: int | None
    ani: str | None
    file_path: str
    compressed_path: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class CallbackBooking:
    """A callback the caller booked in the IVR. ``number`` is the number confirmed or typed by the
    caller (digits, ``+`` allowed); ``joined_at`` is when the caller reached the IVR (UTC), the moment
    their place in line counts from when ``keep_place`` is set."""

    call_key: str
    customer_id: int | None
    ani: str | None
    number: str
    skills: tuple[str, ...]
    language: str
    priority: int
    keep_place: bool
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class IvrFinished:
    """One caller's walk through the IVR as it ended: what the listeners of :class:`IvrService` get.
    ``record.outcome`` is ``route``, ``voicemail``, ``callback``, ``hangup``, ``abandoned`` or
    ``fallback``; secret inputs are masked already."""

    call_key: str
    dnis: str
    flow: str
    ani: str | None
    record: IvrRecord


class StepStalled(Exception):
    """A call into the platform (a lookup, a booking) did not answer within the step's deadline."""


@dataclass(frozen=True, slots=True)
class IvrPorts:
    """What the IVR needs from the rest of the platform, as the composition root provides it.

    ``classify(ani, dnis)`` may return None (no answer in time); ``lookup(customer_id, query, pin)``
    answers self-service; ``record_ivr(linkedid, record, routing)`` updates the live call.
    """

    classify: Callable[[str, str], Awaitable[CallClassification | None]]
    lookup: Callable[[int, str, str | None], Awaitable[engine.LookupResult]]
    store_voicemail: Callable[[VoicemailMessage], Awaitable[None]]
    store_callback: Callable[[CallbackBooking], Awaitable[None]]
    record_ivr: Callable[[str, IvrRecord, RoutingRequest | None], Awaitable[None]]


@dataclass
class IvrStats:
    calls: int = 0
    stalled: int = 0
    unknown_dnis: int = 0
    routed: int = 0
    hung_up: int = 0
    abandoned: int = 0
    voicemails: int = 0
    callbacks: int = 0


@dataclass
class IvrService:
    """Runs ``flows`` (by DNIS) on AGI channels.

    ``sounds_dir`` is where prompts are built on the platform's side; ``pbx_sounds_dir`` the same
    folder as Asterisk reads it. ``voicemail_dir`` / ``pbx_voicemail_dir`` likewise for recordings.
    """

    flows: Mapping[str, Flow]
    ports: IvrPorts
    sounds_dir: Path
    pbx_sounds_dir: str
    voicemail_dir: Path
    pbx_voicemail_dir: str
    reports: dict[str, BuildReport] = field(default_factory=dict)
    compressed_format: str = "mp3"
    classify_timeout: float = 2.0
    step_timeout: float = 4.0
    recordings_dir: Path | None = None  # recorded prompts flows name as {file: ...}
    stats: IvrStats = field(default_factory=IvrStats)
    #: Called (on the event loop, must not block) with each walk as it ends; the demo prints them.
    listeners: list[Callable[[IvrFinished], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.builder = PromptBuilder(self.sounds_dir)

    async def build_prompts(self, progress: Callable[[int, int, str], None] | None = None) -> int:
        """Build every flow's prompts that are not built yet; returns how many were built."""
        built = 0
        for dnis, flow in self.flows.items():
            report = await self.builder.build_async(
                flow,
                (lambda done, total, sound: progress(done, total, sound.sound)) if progress else None,
                self.recordings_dir,
            )
            self.reports[dnis] = report
            built += report.built
        return built

    # ------------------------------------------------------------------ one call

    async def handle(self, channel: AgiChannel) -> None:
        """The FastAGI endpoint for one call."""
        env = channel.env
        dnis = env.get("agi_extension", "")
        raw_ani = env.get("agi_callerid", "")
        ani = None if raw_ani in ("", "unknown") else raw_ani
        flow = self.flows.get(dnis)
        self.stats.calls += 1
        if flow is None:
            self.stats.unknown_dnis += 1
            log.warning("no IVR flow for DNIS %s; the dialplan's fallback takes the call", dnis[:32])
            return
        linkedid = await channel.variable("${CHANNEL(linkedid)}") or env.get("agi_uniqueid", "")
        found = await self._classify(ani or "", dnis)
        context = engine.CallContext.from_classification(ani, dnis, found)
        call = _Call(channel, flow, context, linkedid, env.get("agi_uniqueid", linkedid))
        state, step = engine.start(flow, context, _now())
        try:
            while not state.finished:
                got = await self._perform(call, state, step)
                state, step = engine.advance(flow, state, got, _now())
        except ChannelGone:
            state, step = engine.advance(flow, state, engine.CallerHungUp(), _now())
            self.stats.abandoned += 1
            await self._publish(call, state, "abandoned", None)
            return
        except StepStalled as exc:
            # CTI_IVR_NEXT stays unset: the dialplan takes the service's fallback at once.
            self.stats.stalled += 1
            log.warning(
                "IVR step at node %s stalled (%s); the dialplan's fallback takes the caller", state.node, exc
            )
            await self._publish(call, state, "fallback", None)
            return
        await self._finish(call, state, step)

    async def _within_deadline(self, what: str, call: Awaitable[_T]) -> _T:
        """``call``'s answer, or :class:`StepStalled` once ``step_timeout`` has passed."""
        try:
            return await asyncio.wait_for(call, self.step_timeout)
        except TimeoutError:
            raise StepStalled(f"{what} gave no answer within {self.step_timeout:g} s") from None

    async def _classify(self, ani: str, dnis: str) -> CallClassification | None:
        try:
            return await asyncio.wait_for(self.ports.classify(ani, dnis), self.classify_timeout)
        except Exception as exc:  # an unknown caller is better than a caller kept waiting
            log.warning("caller lookup for the IVR failed: %s", exc)
            return None

    async def _finish(self, call: _Call, state: engine.IvrState, step: engine.Step) -> None:
        if isinstance(step, engine.Route):
            self.stats.routed += 1
            keep = " keep_place" if call.callback_booked else ""
            routing = RoutingRequest(
                service=call.flow.dnis,
                skills=tuple(SkillNeed(s) for s in step.skills),
                language=step.language,
                priority=step.priority,
                reason=f"ivr:{state.path[-1] if state.path else ''}{keep}",
            )
            await self._publish(call, state, "callback" if call.callback_booked else "route", routing)
            await call.channel.set_variable(NEXT_VARIABLE, "wait")
            return
        assert isinstance(step, engine.Hangup)
        self.stats.hung_up += 1
        outcome = "voicemail" if state.voicemail else "callback" if call.callback_booked else "hangup"
        await self._publish(call, state, outcome, None)
        try:
            await self._play(call, step.prompts, "")
        finally:
            await call.channel.set_variable(NEXT_VARIABLE, "hangup")

    async def _publish(
        self, call: _Call, state: engine.IvrState, outcome: str, routing: RoutingRequest | None
    ) -> None:
        record = IvrRecord(
            path=state.path,
            inputs=tuple((f"{i.node}.{i.name}", str(i.value)) for i in state.inputs),
            language=state.language,
            outcome=outcome,
        )
        try:
            await self._within_deadline(
                "putting the IVR record on the call", self.ports.record_ivr(call.linkedid, record, routing)
            )
        except Exception:
            log.exception("could not put the IVR's record on call %s", call.linkedid)
        finished = IvrFinished(call.linkedid, call.flow.dnis, call.flow.name, call.context.ani, record)
        for listener in self.listeners:
            try:
                listener(finished)
            except Exception:
                log.exception("an IVR listener failed")

    # ------------------------------------------------------------------ steps

    async def _perform(self, call: _Call, state: engine.IvrState, step: engine.Step) -> engine.Input:
        match step:
            case engine.Play(prompts, interruptible):
                await self._play(call, prompts, ALL_KEYS if interruptible else "")
                return engine.Done()
            case engine.Collect():
                return await self._collect(call, step)
            case engine.SayNumber(number, language):
                await self._say(call, "NUMBER", str(number), language, str(number))
                return engine.Done()
            case engine.SayDigits(digits, language):
                await self._say(call, "DIGITS", digits, language, " ".join(digits))
                return engine.Done()
            case engine.SayAlpha(text, language):
                safe = "".join(c for c in text if c.isascii() and c.isalnum())
                await self._say(call, "ALPHA", safe, language, " ".join(safe))
                return engine.Done()
            case engine.SayMoney(amount, currency, language):
                await self._speak(call, _money_text(amount, currency, language), language)
                return engine.Done()
            case engine.Speak(text, language):
                await self._speak(call, text, language)
                return engine.Done()
            case engine.Lookup(query, customer_id, pin):
                return await self._within_deadline(
                    f"the {query.value} lookup",
                    self.ports.lookup(customer_id, query.value, None if pin is None else pin.reveal()),
                )
            case engine.RecordVoicemail(max_seconds, beep):
                return await self._record(call, max_seconds, beep)
            case engine.RequestCallback():
                booking = CallbackBooking(
                    call.key, _customer_id(call), call.context.ani, step.number, step.skills,
                    step.language, step.priority, step.keep_place, call.joined_at,
                )  # fmt: skip
                await self._within_deadline("booking the callback", self.ports.store_callback(booking))
                call.callback_booked = True
                self.stats.callbacks += 1
                return engine.Done()
            case _:
                raise RuntimeError(f"the IVR cannot perform {type(step).__name__} here")

    def _sound(self, call: _Call, ref: engine.PromptRef) -> str:
        report = self.reports.get(call.flow.dnis)
        try:
            if report is not None:
                return f"{self.pbx_sounds_dir}/{report.sound_for(ref.prompt, ref.language)}"
        except KeyError:
            pass
        # Text prompts have predictable names; a prompt that was never built plays as silence.
        variant = call.flow.prompts[ref.prompt].variants[ref.language]
        text = getattr(variant, "text", "")
        return f"{self.pbx_sounds_dir}/{text_sound_name(text, ref.language)}"

    async def _play(self, call: _Call, prompts: tuple[engine.PromptRef, ...], escape: str) -> str:
        for ref in prompts:
            key = await call.channel.stream(self._sound(call, ref), escape)
            if key:
                return key
        return ""

    async def _collect(self, call: _Call, step: engine.Collect) -> engine.Input:
        keys = await self._play(call, step.prompts, ALL_KEYS)
        timeout_ms = step.timeout_seconds * 1000
        while len(keys) < min(step.max_digits, engine.MAX_INPUT_KEYS):
            if step.terminator is not None and keys.endswith(step.terminator):
                break
            key = await call.channel.wait_for_digit(
                timeout_ms if not keys else min(timeout_ms, INTER_DIGIT_MS)
            )
            if not key:
                break
            keys += key
        return engine.Digits(keys) if keys else engine.Timeout()

    async def _say(self, call: _Call, kind: str, value: str, language: str, spoken: str) -> None:
        # Asterisk's Say applications need its own sound files in the language; the sandbox has
        # English ones only, so other languages are synthesised like a name.
        if language.split("-")[0] == "en" and value:
            await call.channel.say(kind, value)
        elif spoken:
            await self._speak(call, spoken, language)

    async def _speak(self, call: _Call, text: str, language: str) -> None:
        # Synthesis on demand (a name, an amount) shares the step deadline: a stuck synthesiser
        # must not keep the caller in silence either.
        sound = await self._within_deadline("speech synthesis", self.builder.speak_async(text, language))
        await call.channel.stream(f"{self.pbx_sounds_dir}/{sound.sound}")

    async def _record(self, call: _Call, max_seconds: int, beep: bool) -> engine.Input:
        self.voicemail_dir.mkdir(parents=True, exist_ok=True)
        name = f"vm-{_UNSAFE_NAME.sub('_', call.uniqueid)}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        gone = False
        try:
            await call.channel.record(
                f"{self.pbx_voicemail_dir}/{name}", max_ms=max_seconds * 1000, beep=beep
            )
        except ChannelGone:
            gone = True  # most callers end a message by hanging up: the recording is still kept
        except CommandFailed:
            pass  # a hang-up during the recording, usually: the next command says so; the file is kept
        wav = self.voicemail_dir / f"{name}.wav"
        measured = await asyncio.to_thread(measure_and_compress, wav, self.compressed_format)
        if measured.seconds > 0:
            compressed = str(measured.compressed) if measured.compressed is not None else None
            message = VoicemailMessage(
                call.key, _customer_id(call), call.context.ani, str(wav), compressed, measured.seconds
            )
            try:
                await self._within_deadline("filing the voicemail", self.ports.store_voicemail(message))
                self.stats.voicemails += 1
            except StepStalled as exc:
                # The message is on disk; the caller has said it and hears the goodbye all the same.
                log.error("voicemail %s kept on disk but not filed: %s", wav.name, exc)
        if gone:
            raise ChannelGone("hung up after recording")
        return engine.Recorded(str(wav), measured.seconds)


@dataclass
class _Call:
    channel: AgiChannel
    flow: Flow
    context: engine.CallContext
    linkedid: str
    uniqueid: str
    callback_booked: bool = False
    joined_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def key(self) -> str:
        return self.linkedid


def _customer_id(call: _Call) -> int | None:
    return call.context.customer.id if call.context.customer is not None else None


def _now() -> datetime:
    return datetime.now(UTC)


def _money_text(amount: object, currency: str, language: str) -> str:
    if language.split("-")[0] == "zh":
        unit = {"CNY": "元", "USD": "美元", "EUR": "欧元"}.get(currency, currency)
        return f"{amount}{unit}"
    unit = {"USD": "dollars", "CNY": "yuan", "EUR": "euros"}.get(currency, currency)
    return f"{amount} {unit}"
