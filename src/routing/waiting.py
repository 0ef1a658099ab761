"""The waiting caller's experience: where they are in line, how long they should expect to wait,
and what happens when their service's maximum wait passes (voicemail or a callback).

The pure part computes, from the router's own view (waiting calls, agents, recent handle times),
each waiting caller's position and expected wait (``plan_announcements``), and turns it into the
channel variables the dialplan's ``cti-wait`` context reads between pieces of music
(``Announcement.variables``). Nothing here reads a clock or does I/O; ``now`` is passed in.

The I/O part, ``WaitingAnnouncer``, sends those variables to the caller's channel with AMI
``Setvar`` (only when they changed, each value validated), and carries out overflows to voicemail
and to a callback by redirecting the caller to the dialplan's ``cti-overflow`` context.

How the dialplan uses the variables (see ``extensions.conf.j2``): the caller hears music in slices
of ``CTI_WAIT_EVERY`` seconds (``0``: music only, no announcements); after each slice, if
``CTI_WAIT_POSITION`` is set, it raises ``UserEvent(WaitAnnounced)`` and says the position and the
expected wait in minutes (``CTI_WAIT_MINUTES``), with Asterisk's own sounds in English or the
synthesised prompt ``CTI_WAIT_SOUND`` in the caller's language. The caller stays in ``cti-wait``
the whole time, so an announcement never costs them their place in line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cti.model import CallChange, CallKey, CallSnapshot
from cti.ports import ActionFailed, ActionOutcomeUnknown, ActionSink, LinkDown
from routing.model import Agent, AgentState, AgentStatus, Overflow, ServiceRouting, WaitingCall
from routing.policy import Decision

log = logging.getLogger("cti.routing.waiting")

#: How many recent handle times per service the expected wait is averaged over.
HANDLE_TIMES_KEPT = 50
#: The handle time assumed for a service that has handled no call yet.
DEFAULT_HANDLE_SECONDS = 180.0
#: Positions and minutes above these are said as these (nobody counts further on hold).
MAX_POSITION = 999
MAX_MINUTES = 999
#: Announcements every 10 s at the most: shorter would be all talk and no music.
MIN_EVERY_SECONDS = 10
MAX_EVERY_SECONDS = 3600
#: Languages the dialplan can say with sounds of its own; others get a synthesised prompt or English.
SAID_LANGUAGES = ("en", "zh")
#: The dialplan's context that carries out overflows (``voicemail`` and ``callback`` extensions).
OVERFLOW_CONTEXT = "cti-overflow"

_FORBIDDEN_IN_AMI = ("\r", "\n", "\x00")
# A sound as Playback() takes it: an absolute path without extension, or a core sound's name.
_SOUND = re.compile(r"^/?[A-Za-z0-9_][A-Za-z0-9_./-]{0,200}$")

# Channel variables the dialplan reads (names are fixed; values are validated before sending).
VAR_EVERY = "CTI_WAIT_EVERY"
VAR_POSITION = "CTI_WAIT_POSITION"
VAR_MINUTES = "CTI_WAIT_MINUTES"
VAR_LANGUAGE = "CTI_WAIT_LANGUAGE"
VAR_SOUND = "CTI_WAIT_SOUND"
# What an overflowing caller hears in their language (set before the redirect to ``cti-overflow``;
# unset: Asterisk's English sounds).
VAR_OVERFLOW_SOUND = "CTI_OVERFLOW_SOUND"
VAR_OVERFLOW_BYE = "CTI_OVERFLOW_BYE"

#: The overflow messages in the languages the PBX has no sounds of its own for, by kind and
#: language: what is said first (before the beep of a voicemail, or the callback's promise), and
#: after a voicemail is recorded ("" for a callback, whose first message says goodbye too).
OVERFLOW_WORDS: Mapping[tuple[str, str], tuple[str, str]] = {
    ("voicemail", "zh"): (
        "现在无人接听，请在提示音后留言。",
        "谢谢您的留言，再见。",
    ),
    ("callback", "zh"): ("感谢您的耐心等待，我们会尽快给您回电。再见。", ""),
}


# --------------------------------------------------------------------------------------- pure


def validate_every(seconds: int) -> int:
    """An announcement interval: 0 (off) or ``MIN_EVERY_SECONDS``..``MAX_EVERY_SECONDS``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValueError(f"an announcement interval is whole seconds, not {seconds!r}")
    if seconds != 0 and not MIN_EVERY_SECONDS <= seconds <= MAX_EVERY_SECONDS:
        raise ValueError(
            f"an announcement interval is 0 (off) or {MIN_EVERY_SECONDS}..{MAX_EVERY_SECONDS} s: {seconds}"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class Announcing:
    """Which services announce, and how often: ``every`` by service name, else ``default_every``
    (0: off). Validated on construction."""

    default_every: int = 0
    every: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        validate_every(self.default_every)
        for name, seconds in (self.every or {}).items():
            if not name or any(c in name for c in _FORBIDDEN_IN_AMI):
                raise ValueError(f"not a service name: {name!r}")
            validate_every(seconds)

    def every_for(self, service: str) -> int:
        return (self.every or {}).get(service, self.default_every)

    @property
    def anywhere(self) -> bool:
        """Whether any service announces. When none does, the PBX configuration is rendered to
        play music only to a caller the platform has told nothing (``wait_announcements``)."""
        return self.default_every > 0 or any(seconds > 0 for seconds in (self.every or {}).values())


def said_language(language: str | None) -> str:
    """The language the dialplan says the announcement in: ``zh`` for any Chinese, else ``en``."""
    base = (language or "").split("-")[0].split("_")[0].lower()
    if base in ("zh", "cmn", "mandarin", "chinese"):
        return "zh"
    return "en"


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a waiting caller is told: their ``position`` in their service's line (1: next), the
    expected wait in whole ``minutes`` (``None``: nobody is staffed to say), in ``language``
    (``en`` or ``zh``), every ``every`` seconds (0: never)."""

    position: int
    minutes: int | None
    language: str
    every: int

    def __post_init__(self) -> None:
        if not 1 <= self.position <= MAX_POSITION:
            raise ValueError(f"position must be 1..{MAX_POSITION}: {self.position}")
        if self.minutes is not None and not 1 <= self.minutes <= MAX_MINUTES:
            raise ValueError(f"minutes must be 1..{MAX_MINUTES}: {self.minutes}")
        if self.language not in SAID_LANGUAGES:
            raise ValueError(f"language must be one of {SAID_LANGUAGES}: {self.language!r}")
        validate_every(self.every)

    def variables(self, sound: str | None = None) -> dict[str, str]:
        """The channel variables for the dialplan, in the order to set them (the interval last, so
        a slice of music never ends with a half-set announcement). ``sound``: a synthesised prompt
        saying this announcement in the caller's language (``ValueError`` if it is not a plain
        path)."""
        if sound is not None and not _SOUND.fullmatch(sound):
            raise ValueError(f"not a sound Playback() can take: {sound!r}")
        return {
            VAR_POSITION: str(self.position),
            VAR_MINUTES: "" if self.minutes is None else str(self.minutes),
            VAR_LANGUAGE: self.language,
            VAR_SOUND: sound or "",
            VAR_EVERY: str(self.every),
        }

    def text(self) -> str:
        """The announcement as words, for a synthesised prompt in the caller's language."""
        if self.language == "zh":
            first = "您是下一位。" if self.position == 1 else f"您前面还有{self.position - 1}位客户。"
            wait = "" if self.minutes is None else f"预计等待时间约{self.minutes}分钟。"
            return first + wait
        first = "You are next in line." if self.position == 1 else f"You are number {self.position} in line."
        wait = "" if self.minutes is None else f" The expected wait is about {self.minutes} minutes."
        return first + wait


def line_order(call: WaitingCall) -> tuple[int, float, str, str]:
    """A service's line as a caller experiences it: higher priority first, then who waited longest
    (``enqueued_at``: relaxation, ring-no-answer and overflow never change it)."""
    return (-call.priority, call.enqueued_at.timestamp(), call.key.pbx, call.key.linkedid)


def line_positions(calls: Iterable[WaitingCall]) -> dict[CallKey, int]:
    """Each waiting call's position (1 = next) in its own service's line."""
    by_service: dict[str, list[WaitingCall]] = {}
    for call in calls:
        by_service.setdefault(call.service, []).append(call)
    positions: dict[CallKey, int] = {}
    for line in by_service.values():
        for place, call in enumerate(sorted(line, key=line_order), start=1):
            positions[call.key] = place
    return positions


_STAFFED = (AgentStatus.READY, AgentStatus.RESERVED, AgentStatus.ON_CALL, AgentStatus.WRAP_UP)


def staffed_for(service: ServiceRouting, agents: Iterable[tuple[Agent, AgentState]]) -> int:
    """How many agents work the service's line now: logged in and not on a break (ready, ringing,
    talking or wrapping up), holding every skill the service always needs (at any level)."""
    needed = [n.skill for n in service.needs if not n.optional]
    return sum(
        1
        for agent, state in agents
        if state.status in _STAFFED and all(skill in agent.skills for skill in needed)
    )


def staffed_counts(
    services: Iterable[ServiceRouting], agents: Iterable[tuple[Agent, AgentState]]
) -> dict[str, int]:
    """``staffed_for`` of several services at once: each needed skill's holders are found once
    among the staffed agents, and a service's count is the size of their intersection."""
    staffed = [agent.skills for agent, state in agents if state.status in _STAFFED]
    holders: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for service in services:
        needed = {n.skill for n in service.needs if not n.optional}
        found = set(range(len(staffed)))
        for skill in needed:
            if skill not in holders:
                holders[skill] = {i for i, skills in enumerate(staffed) if skill in skills}
            found &= holders[skill]
        counts[service.name] = len(found)
    return counts


def expected_wait_seconds(
    position: int, staffed: int, handle_times: Sequence[float], default_handle: float = DEFAULT_HANDLE_SECONDS
) -> float | None:
    """The expected wait of the caller at ``position`` with ``staffed`` agents working the line:
    ``position`` × the average recent handle time ÷ ``staffed`` (each agent frees up once per
    handle time, and the callers ahead take the first ``position - 1`` of those). ``None`` when
    nobody is staffed: no honest figure can be given."""
    if staffed <= 0:
        return None
    average = sum(handle_times) / len(handle_times) if handle_times else default_handle
    return position * max(0.0, average) / staffed


def wait_minutes(seconds: float | None) -> int | None:
    """Whole minutes as said to a caller: rounded up, at least 1, at most ``MAX_MINUTES``."""
    if seconds is None:
        return None
    return max(1, min(MAX_MINUTES, math.ceil(seconds / 60.0)))


class HandleTimes:
    """The last ``HANDLE_TIMES_KEPT`` handle times (talk + wrap-up, seconds) of each service."""

    def __init__(self, kept: int = HANDLE_TIMES_KEPT) -> None:
        self._kept = kept
        self._by_service: dict[str, deque[float]] = {}

    def record(self, service: str, seconds: float) -> None:
        if seconds >= 0 and math.isfinite(seconds):
            self._by_service.setdefault(service, deque(maxlen=self._kept)).append(seconds)

    def recent(self, service: str) -> tuple[float, ...]:
        return tuple(self._by_service.get(service, ()))


def plan_announcements(
    calls: Iterable[WaitingCall],
    services: Mapping[str, ServiceRouting],
    agents: Sequence[tuple[Agent, AgentState]],
    handle_times: HandleTimes,
    announcing: Announcing,
    *,
    default_handle: float = DEFAULT_HANDLE_SECONDS,
) -> dict[CallKey, Announcement]:
    """What each waiting call is told now. Calls of a service that does not announce get an
    ``Announcement`` with ``every == 0`` (the dialplan then plays music only)."""
    waiting = list(calls)
    positions = line_positions(waiting)
    in_use = {c.service: services.get(c.service) or ServiceRouting(c.service) for c in waiting}
    staffed = staffed_counts(in_use.values(), agents)
    plan: dict[CallKey, Announcement] = {}
    for call in waiting:
        position = min(positions[call.key], MAX_POSITION)
        seconds = expected_wait_seconds(
            position, staffed[call.service], handle_times.recent(call.service), default_handle
        )
        plan[call.key] = Announcement(
            position, wait_minutes(seconds), said_language(call.language), announcing.every_for(call.service)
        )
    return plan


def safe_channel(channel: str) -> str:
    """A channel name as Asterisk gave it; ``ValueError`` if empty or with CR, LF or NUL."""
    if not channel or any(c in channel for c in _FORBIDDEN_IN_AMI):
        raise ValueError(f"invalid channel name {channel!r}")
    return channel


def setvar_headers(channel: str, name: str, value: str) -> dict[str, str]:
    """One AMI ``Setvar`` on ``channel``; ``ValueError`` for an unsafe channel or value."""
    if any(c in value for c in _FORBIDDEN_IN_AMI):
        raise ValueError(f"unsafe value for {name}: {value!r}")
    return {"Channel": safe_channel(channel), "Variable": name, "Value": value}


def overflow_words(kind: str, language: str | None) -> tuple[str, str] | None:
    """What a caller overflowing to ``kind`` is told in their language (``said_language``), as text
    to synthesise; ``None`` when the PBX says it with its own (English) sounds."""
    return OVERFLOW_WORDS.get((kind, said_language(language)))


def overflow_variables(channel: str, sound: str, bye: str | None) -> list[dict[str, str]]:
    """The ``Setvar`` actions giving the caller on ``channel`` the overflow messages ``sound`` (and
    ``bye`` after a voicemail): plain sound paths only (``ValueError`` otherwise)."""
    out = []
    for name, value in ((VAR_OVERFLOW_SOUND, sound), (VAR_OVERFLOW_BYE, bye or "")):
        if value and not _SOUND.fullmatch(value):
            raise ValueError(f"not a sound Playback() can take: {value!r}")
        out.append(setvar_headers(channel, name, value))
    return out


def overflow_redirect_headers(channel: str, kind: str) -> dict[str, str]:
    """The ``Redirect`` that carries out an overflow: ``kind`` is ``voicemail`` or ``callback``."""
    if kind not in ("voicemail", "callback"):
        raise ValueError(f"not an overflow the dialplan carries out: {kind!r}")
    return {"Channel": safe_channel(channel), "Context": OVERFLOW_CONTEXT, "Exten": kind, "Priority": "1"}


# ---------------------------------------------------------------------------------------- I/O


#: The router's line as the announcer reads it: the waiting calls, the live calls by key, the
#: services' routing by name, and the active agents with their states.
LineView = tuple[
    list[WaitingCall],
    Mapping[CallKey, CallSnapshot],
    Mapping[str, ServiceRouting],
    list[tuple[Agent, AgentState]],
]


class WaitingView(Protocol):
    """What the announcer reads from the router (``RoutingService`` provides it)."""

    def waiting_view(self) -> LineView: ...


#: Builds a prompt saying an announcement in the caller's language; returns the sound as the PBX
#: plays it (``None``: say it with Asterisk's own English sounds).
AnnouncementSound = Callable[[Announcement], Awaitable[str | None]]


class WaitingAnnouncer:
    """Keeps every waiting caller's channel variables up to date (``refresh``, run every
    ``interval`` seconds by ``run``). Sends a variable only when its value changed; a failed send
    is tried again on the next refresh (``Setvar`` is idempotent)."""

    def __init__(
        self,
        view: WaitingView,
        actions: ActionSink,
        announcing: Announcing,
        *,
        handle_times: HandleTimes | None = None,
        sound: AnnouncementSound | None = None,
        default_handle: float = DEFAULT_HANDLE_SECONDS,
        interval: float = 1.0,
    ) -> None:
        self.view = view
        self.actions = actions
        self.announcing = announcing
        self.handle_times = handle_times or HandleTimes()
        self.sound = sound
        self.default_handle = default_handle
        self.interval = interval
        self.sent: dict[tuple[CallKey, str], dict[str, str]] = {}  # (call, channel) -> variables set
        self._sounds: dict[tuple[str, str], str | None] = {}  # (language, words) -> sound, once built
        self.setvars = 0
        self.failures = 0

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bad refresh must not end announcements for everyone
                self.failures += 1
                log.exception("waiting announcements failed; continuing")
            await asyncio.sleep(self.interval)

    async def refresh(self) -> int:
        """Bring every waiting caller's variables up to date; returns how many were sent."""
        calls, snapshots, services, agents = self.view.waiting_view()
        plan = plan_announcements(
            calls, services, agents, self.handle_times, self.announcing, default_handle=self.default_handle
        )
        live = set()
        sent = 0
        for key, announcement in plan.items():
            snap = snapshots.get(key)
            if snap is None or not snap.anchor_channel:
                continue  # a callback waiting for its customer to be dialled: nobody to tell
            live.add((key, snap.anchor_channel))
            sent += await self._update(key, snap.anchor_channel, announcement)
        for gone in set(self.sent) - live:
            del self.sent[gone]
        return sent

    async def _update(self, key: CallKey, channel: str, announcement: Announcement) -> int:
        sound = None
        if announcement.every and announcement.language != "en" and self.sound is not None:
            words = (announcement.language, announcement.text())
            if words not in self._sounds:
                try:
                    self._sounds[words] = await self.sound(announcement)
                except Exception as exc:  # English from Asterisk's own sounds beats silence
                    log.warning("announcement prompt not built (%s); saying it in English", exc)
                    self._sounds[words] = None
            sound = self._sounds[words]
        if not announcement.every and not self.announcing.anywhere:
            # The dialplan already plays music only to callers nobody has told anything: one AMI
            # action per waiting caller saved.
            return 0
        wanted = (
            announcement.variables(sound)
            if announcement.every
            else {VAR_EVERY: "0"}  # music only: nothing else to tell the dialplan
        )
        have = self.sent.setdefault((key, channel), {})
        sent = 0
        for name, value in wanted.items():
            if have.get(name) == value:
                continue
            try:
                await self.actions.send("Setvar", setvar_headers(channel, name, value))
            except (ActionFailed, LinkDown, ActionOutcomeUnknown, TimeoutError) as exc:
                # The caller may have just left; anything else is retried next refresh.
                self.failures += 1
                log.debug("call %s: %s not set (%s)", key, name, exc)
                return sent
            have[name] = value
            sent += 1
            self.setvars += 1
        return sent

    def forget(self, key: CallKey) -> None:
        for sent in [s for s in self.sent if s[0] == key]:
            with contextlib.suppress(KeyError):
                del self.sent[sent]


class WaitingHooks(Protocol):
    """What ``RoutingService`` asks of the waiting experience (``routing.callbacks.QueueCallbacks``
    implements it). Every method runs on the router's loop under its lock and must not block."""

    async def loaded(self, now: datetime) -> None:
        """The router loaded its configuration and agents: restore what the live state kept."""

    async def call_changed(self, change: CallChange, now: datetime) -> None:
        """Every call change the router reads, before it acts on it."""

    def is_virtual(self, key: CallKey) -> bool:
        """Whether ``key`` is a waiting call without a caller on the line (a queue callback)."""

    async def connect_virtual(self, decision: Decision, now: datetime) -> None:
        """Carry out a CONNECT decision for a virtual call: dial the customer for the agent."""

    async def overflow(self, call: WaitingCall, target: Overflow, now: datetime) -> bool:
        """Carry out an overflow to voicemail or a callback; False leaves the caller in line."""

    def dial_ahead(self, call: WaitingCall) -> float:
        """How many seconds before an agent's wrap-up ends ``call`` may be dialled for them (a queue
        callback, by its service); 0: not before the agent is free (every caller on hold)."""

    def dial_ahead_max(self) -> float:
        """The largest ``dial_ahead`` of any call waiting now; 0 when nothing can be dialled ahead."""

    def dial_ahead_times(self) -> frozenset[float]:
        """Every ``dial_ahead`` above 0 a call waiting now may have (the router wakes that long
        before each wrap-up ends); empty when nothing can be dialled ahead."""

    async def reservation_dropped(self, agent_id: str, key: CallKey, now: datetime) -> None:
        """The agent reserved ahead for ``key`` left their wrap-up another way (not ready, logged
        out): stop dialling and put the call back in line with its place."""
