"""The core's pure types for calls: what every capability sees of a call.

Frozen values only. The call book (``cti.callbook``) produces them; capabilities consume them from
the bus. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class CallPhase(enum.StrEnum):
    """Where a call is in its life. The order is the usual order, but calls may skip phases."""

    ARRIVING = "arriving"
    IN_IVR = "in_ivr"
    WAITING = "waiting"
    RINGING_AGENT = "ringing_agent"
    TALKING = "talking"
    HELD = "held"
    WRAP_UP = "wrap_up"
    ENDED = "ended"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class EndReason(enum.StrEnum):
    """Why a call ended, as the call log records it."""

    HANGUP = "hangup"  # seen: Asterisk told us the channel hung up
    LINK_LOST = "ended_while_ami_link_down"  # gone at resync after our AMI link was down
    PBX_RESTARTED = "ended_by_pbx_restart"  # gone at resync and Asterisk's start time changed
    PLATFORM_DOWN = "ended_while_platform_down"  # open in the call log at start-up, not live at resync
    EVENTS_DROPPED = "ended_while_events_were_dropped"  # gone at a resync forced by an event overflow


@dataclass(frozen=True, slots=True)
class CallKey:
    """A call's identity across PBXs and platform nodes: the PBX it lives on and Asterisk's Linkedid."""

    pbx: str
    linkedid: str

    def __str__(self) -> str:
        return f"{self.pbx}/{self.linkedid}"


@dataclass(frozen=True, slots=True)
class CallClassification:
    """What the ANI/DNIS lookup found. Unknown callers and DNIS are answers, not errors.

    ``ani_e164`` is the caller's number in E.164 when it parses as a valid number, else ``None``.
    ``customer_match`` says how the customer was chosen (the rule for shared numbers is in docs/crm.md).
    """

    ani_e164: str | None
    customer_id: int | None
    customer_name: str | None
    customer_tier: str | None
    new_contact: bool
    customer_match: str
    service_id: int | None
    service_name: str | None
    language: str | None
    required_skills: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SkillNeed:
    """A skill a call needs, at ``min_level`` (1 to 10) or above; ``optional`` ones may be relaxed away."""

    skill: str
    min_level: int = 1
    optional: bool = False


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """What the IVR (or the service's defaults) asks of the agent who takes this call.

    ``priority``: higher is served first; 0 is normal. ``reason`` says where it came from (for the
    decision log and the screen-pop).
    """

    service: str | None
    skills: tuple[SkillNeed, ...] = ()
    language: str | None = None
    priority: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class IvrRecord:
    """What the IVR learned, kept with the call. Secret inputs are already masked (never the digits)."""

    path: tuple[str, ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()
    language: str | None = None
    outcome: str = ""  # route, voicemail, callback, hangup, abandoned, fallback


@dataclass(frozen=True, slots=True)
class PhaseMark:
    phase: CallPhase
    at: datetime


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    """Everything known about one call at one moment.

    Times are timezone-aware UTC. ``answered_at`` is when the PBX answered the caller's leg;
    ``connected_at`` is when the caller was first bridged to an agent. ``wait_seconds`` runs from start
    to connection (or to the end for a call never connected); ``talk_seconds`` from connection to end.
    """

    key: CallKey
    phase: CallPhase
    direction: Direction
    started_at: datetime
    ani: str
    caller_name: str
    dnis: str
    anchor_channel: str
    anchor_uniqueid: str
    answered_at: datetime | None = None
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    agent: str | None = None
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    end_reason: EndReason | None = None
    classification: CallClassification | None = None
    channels: tuple[str, ...] = ()
    history: tuple[PhaseMark, ...] = field(default=())
    ivr: IvrRecord | None = None
    routing: RoutingRequest | None = None

    @property
    def wait_seconds(self) -> float | None:
        stop = self.connected_at or self.ended_at
        return None if stop is None else max(0.0, (stop - self.started_at).total_seconds())

    @property
    def talk_seconds(self) -> float | None:
        if self.connected_at is None:
            return 0.0 if self.ended_at is not None else None
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.connected_at).total_seconds())


class ChangeKind(enum.StrEnum):
    STARTED = "started"
    UPDATED = "updated"
    ENDED = "ended"  # the caller's leg is gone: times, cause and reason are final
    CLOSED = "closed"  # wrap-up is over: the call leaves the live model


@dataclass(frozen=True, slots=True)
class CallChange:
    """One change to one call, as published on the bus."""

    kind: ChangeKind
    call: CallSnapshot


@dataclass(frozen=True, slots=True)
class AgentOffered:
    """Routing chose ``agent_id`` for ``call`` and is about to ring their phone.

    Published before the PBX is asked to ring the agent, so a console can show the customer's
    record before the phone rings. ``rule`` names the rule that chose; ``candidates`` are the
    agents weighed, best first, as ``(agent_id, skill_score, idle_seconds)``; ``relaxed`` says
    whether the call's skill needs had been widened by its wait. ``callback``: a queue callback,
    published as the agent's phone rings for the customer who was called back.
    """

    call: CallSnapshot
    agent_id: str
    service: str
    rule: str
    waited_seconds: float
    candidates: tuple[tuple[str, int, float], ...]
    candidates_total: int
    relaxed: bool
    at: datetime
    callback: bool = False


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """An agent's live state as routing now holds it (published on every change, for consoles and
    wallboards). ``status`` is routing's status name (``ready``, ``not_ready``, ``reserved``,
    ``on_call``, ``wrap_up``, ``logged_out``); ``call`` is the call's key as text, if any;
    ``reserved_for``, in wrap-up, the queue callback being dialled ahead for the agent."""

    agent_id: str
    status: str
    since: datetime
    reason: str | None = None
    call: str | None = None
    service: str | None = None
    wrap_up_until: datetime | None = None
    reserved_for: str | None = None


class RecordingState(enum.StrEnum):
    """A call recording's state, as Asterisk last confirmed it."""

    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RecordingChanged:
    """Asterisk confirmed a change to the recording of ``call`` (its MixMonitor on ``channel``).

    Published by the call service from Asterisk's own events only (``MixMonitorStart``,
    ``MixMonitorMute``, ``MixMonitorStop``), never from a request: a console showing ``paused``
    can trust that the PBX has stopped writing the call's audio.
    """

    call: CallKey
    channel: str
    state: RecordingState
    at: datetime


@dataclass(frozen=True, slots=True)
class LiveCallsResynced:
    """Published after every resync: the calls Asterisk has right now on ``pbx``.

    A consumer holding open records for this PBX that are not in ``live`` closes them with
    ``reason`` (nothing told us how they ended).
    """

    pbx: str
    live: frozenset[CallKey]
    reason: EndReason
    at: datetime


@dataclass(frozen=True, slots=True)
class CallControlled:
    """Call control acted on ``agent_id``'s call and Asterisk accepted it.

    ``action`` is ``hangup``, ``hold``, ``resume``, ``transfer``, ``complete`` or ``cancel``;
    ``state`` where the call is now for the agent (``hung_up``, ``held``, ``talking``,
    ``transferring``, ``consulting``); ``target`` the transfer's target as ``kind:value``
    (``agent:1002``, ``service:sales``, ``number:8613800138000``). A hold is not a phase of the call
    (the caller's leg plays music outside any bridge), so consoles learn it from this message.
    """

    call: CallKey
    agent_id: str
    action: str
    state: str
    target: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class CustomerChanged:
    """Something a screen-pop shows of customer ``customer_id`` was written (a phone added, a call's
    disposition or notes saved, a call linked to them). Published after the write is committed, so
    a reader that sees this message reads the new values."""

    customer_id: int
    at: datetime


@dataclass(frozen=True, slots=True)
class CampaignPaced:
    """The dialler paced ``campaign_id`` (published after every pacing pass that changed something,
    and at least every few seconds while the campaign runs), for the supervisor's live panel.

    ``mode`` is the dial mode (``progressive``, ``predictive``); ``dial`` how many calls the pace
    allowed on this pass and ``placed`` how many were dialled (fewer when no lead was due);
    ``reason`` the pacer's explanation in words; ``running`` false when the campaign is stopped or
    blocked (``reason`` says why: a stale registry list, outside every lead's window, no agent).
    Agents: ``ready``, ``talking``, ``wrapping`` counted for the campaign (agents needed by waiting
    inbound calls taken off); ``ringing`` and ``waiting`` the campaign's calls dialled and not yet
    answered, answered and waiting for an agent. Statistics: ``attempts``/``contacts``/
    ``abandoned``/``live_answers`` over 24 hours, ``abandonment_24h`` and ``abandonment_30d`` as
    shares (0..1) of live answers, ``cap`` the campaign's legal cap, ``talk_seconds_per_agent_hour``
    over the last hour.
    """

    campaign_id: str
    mode: str
    running: bool
    dial: int
    placed: int
    reason: str
    ready: int
    talking: int
    wrapping: int
    ringing: int
    waiting: int
    attempts_24h: int
    contacts_24h: int
    live_answers_24h: int
    abandoned_24h: int
    abandonment_24h: float
    abandonment_30d: float
    cap: float
    talk_seconds_per_agent_hour: float
    at: datetime
