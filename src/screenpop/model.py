"""The console message contract and the pure rules of the websocket: tickets, rate limits, origins.

Every message is a JSON object with a ``type`` (docs/console.md has the full contract). Builders
here turn the core's typed values into those objects; nothing here does I/O or reads a clock (the
caller passes ``now``).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from jinja2.sandbox import SandboxedEnvironment

from cti.auth import Principal
from cti.model import (
    AgentOffered,
    AgentStateChanged,
    CallControlled,
    CallPhase,
    CallSnapshot,
    RecordingChanged,
)

#: Message types the server sends.
HELLO = "hello"
STATE = "state"
SCREENPOP = "screenpop"
AGENT_STATE = "agent_state"
CALL = "call"
CALL_CONTROL = "call_control"
RECORDING = "recording"
WALLBOARD = "wallboard"
PONG = "pong"
ERROR = "error"

#: Message types a console may send.
CLIENT_TYPES = frozenset({"ping", "resync"})


def encode(message: dict[str, Any]) -> str:
    """One message as the JSON text sent on the wire (UTF-8 names kept as they are)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def call_view(call: CallSnapshot, now: datetime | None = None) -> dict[str, Any]:
    """What a console shows of a call: ANI, DNIS, caller name, phase, IVR path and inputs, waits."""
    c = call.classification
    ivr = call.ivr
    waited = call.wait_seconds
    if waited is None and now is not None:
        waited = max(0.0, (now - call.started_at).total_seconds())
    return {
        "key": str(call.key),
        "pbx": call.key.pbx,
        "linkedid": call.key.linkedid,
        "phase": call.phase.value,
        "ani": call.ani,
        "ani_e164": c.ani_e164 if c else None,
        "caller_name": call.caller_name,
        "dnis": call.dnis,
        "service": (c.service_name if c else None),
        "agent": call.agent,
        "started_at": _iso(call.started_at),
        "connected_at": _iso(call.connected_at),
        "ended_at": _iso(call.ended_at),
        "wait_seconds": None if waited is None else round(waited, 1),
        "ivr_path": list(ivr.path) if ivr else [],
        "ivr_inputs": dict(ivr.inputs) if ivr else {},
        "ivr_language": ivr.language if ivr else None,
        "routing_reason": call.routing.reason if call.routing else "",
        "customer_id": c.customer_id if c else None,
        "customer_name": c.customer_name if c else None,
        "customer_tier": c.customer_tier if c else None,
        "customer_match": c.customer_match if c else None,
    }


#: The rule of a pop for a call that rang the agent without routing choosing them.
DIRECT_RULE = "direct"


def offer_reason(offer: AgentOffered) -> str:
    """Why this agent was chosen, in words an agent reads."""
    if offer.rule == DIRECT_RULE:
        return "the call was dialled to this agent directly"
    others = offer.candidates_total - 1
    text = f"chosen by rule '{offer.rule}' among {offer.candidates_total} agent(s)"
    if others <= 0:
        text = f"chosen by rule '{offer.rule}': the only agent available"
    if offer.relaxed:
        text += "; the call's skill needs were widened by its wait"
    return text


def screenpop(offer: AgentOffered, customer: dict[str, Any] | None) -> dict[str, Any]:
    """The screen-pop for the offered agent: the call, why they were chosen, the customer card
    (``None`` for an unknown caller: the console offers to create or link one)."""
    return {
        "type": SCREENPOP,
        "agent_id": offer.agent_id,
        "call": call_view(offer.call, offer.at),
        "service": offer.service,
        "waited_seconds": round(offer.waited_seconds, 1),
        "reason": offer_reason(offer),
        "rule": offer.rule,
        "candidates": [
            {"agent_id": a, "skill_score": s, "idle_seconds": round(i, 1)} for a, s, i in offer.candidates
        ],
        "customer": customer,
        "offered_at": _iso(offer.at),
    }


def agent_state(change: AgentStateChanged) -> dict[str, Any]:
    return {
        "type": AGENT_STATE,
        "agent_id": change.agent_id,
        "status": change.status,
        "since": _iso(change.since),
        "reason": change.reason,
        "call": change.call,
        "service": change.service,
        "wrap_up_until": _iso(change.wrap_up_until),
    }


#: An agent's states in which they still work on a call (talking, or the after-call work).
_WORKING = frozenset({"on_call", "wrap_up"})


def call_finished(before: dict[str, Any] | None, after: dict[str, Any]) -> str | None:
    """The call (key as text) an agent finished with this change of their ``agent_state``: they
    were on it (talking or wrapping up) and now are on no call or another one; else ``None``."""
    if before is None or before["status"] not in _WORKING or not before["call"]:
        return None
    if after["status"] in _WORKING and after["call"] == before["call"]:
        return None
    return str(before["call"])


def call_control(message: CallControlled) -> dict[str, Any]:
    """What call control did to an agent's call (a hold shows here: it is not a phase of the call)."""
    return {
        "type": CALL_CONTROL,
        "call": str(message.call),
        "agent_id": message.agent_id,
        "action": message.action,
        "state": message.state,
        "target": message.target,
        "at": _iso(message.at),
    }


def recording(message: RecordingChanged) -> dict[str, Any]:
    """The recording's state as Asterisk confirmed it (``active``, ``paused``, ``stopped``)."""
    return {
        "type": RECORDING,
        "call": str(message.call),
        "state": message.state.value,
        "at": _iso(message.at),
    }


def call_message(call: CallSnapshot) -> dict[str, Any]:
    return {"type": CALL, "call": call_view(call)}


def agent_of_channel(channel: str) -> str | None:
    """The agent id of an agent's PJSIP channel (``PJSIP/1001-0000000a`` → ``1001``)."""
    if not channel.startswith("PJSIP/"):
        return None
    device, _, _ = channel[len("PJSIP/") :].partition("-")
    return device if device.isdigit() else None


def agent_channel(call: CallSnapshot, agent_id: str) -> str | None:
    """The agent's own channel in ``call`` (the one a supervisor spies on), if it has one now."""
    for channel in call.channels:
        if agent_of_channel(channel) == agent_id:
            return channel
    return None


def agents_by_state(agents: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Agents counted by ``status``: over all, and per service for each service in an agent's
    ``services`` (an agent who can take several services counts in each of them)."""
    overall: dict[str, int] = {}
    per_service: dict[str, dict[str, int]] = {}
    for agent in agents:
        status = agent["status"]
        overall[status] = overall.get(status, 0) + 1
        for service in agent.get("services") or ():
            counts = per_service.setdefault(service, {})
            counts[status] = counts.get(status, 0) + 1
    return overall, per_service


ACTIVE_PHASES = frozenset({CallPhase.RINGING_AGENT, CallPhase.TALKING, CallPhase.HELD})


_URL_ENV = SandboxedEnvironment(autoescape=False)


def crm_url(template: str, call: dict[str, Any]) -> str | None:
    """The external CRM page for a pop: ``template`` (jinja2, sandboxed: no attribute access to
    Python internals) rendered with the call's view (``ani``, ``ani_e164``, ``dnis``, ``customer_id``,
    ``linkedid``, ...). Only an http(s) URL without control characters is returned; anything else,
    or a template that fails, gives ``None``."""
    try:
        url = _URL_ENV.from_string(template).render(**call).strip()
    except Exception:
        return None
    if not url.startswith(("https://", "http://")) or any(ord(ch) < 32 or ch == "\x7f" for ch in url):
        return None
    return url


# ---------------------------------------------------------------------- tickets


@dataclass
class TicketBook:
    """Short-lived, single-use websocket tickets.

    A console asks for one over authenticated HTTP (``POST /api/ws-ticket``) and presents it when
    opening ``/ws``: a browser cannot put an ``Authorization`` header on a websocket, and a ticket in
    the URL is harmless once used or expired. At most ``capacity`` tickets are outstanding (the
    oldest are forgotten first).
    """

    ttl: timedelta = timedelta(seconds=30)
    capacity: int = 10_000
    _tickets: dict[str, tuple[Principal, datetime]] = field(default_factory=dict)

    def issue(self, principal: Principal, now: datetime) -> tuple[str, datetime]:
        self._prune(now)
        while len(self._tickets) >= self.capacity:
            self._tickets.pop(next(iter(self._tickets)))
        ticket = secrets.token_urlsafe(32)
        expires = now + self.ttl
        self._tickets[ticket] = (principal, expires)
        return ticket, expires

    def redeem(self, ticket: str, now: datetime) -> Principal | None:
        """The ticket's principal, once: ``None`` for an unknown, used or expired ticket."""
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            return None
        principal, expires = entry
        return principal if now < expires else None

    def __len__(self) -> int:
        return len(self._tickets)

    def _prune(self, now: datetime) -> None:
        for ticket in [t for t, (_, exp) in self._tickets.items() if exp <= now]:
            del self._tickets[ticket]


# ---------------------------------------------------------------------- limits


@dataclass
class RateLimit:
    """A token bucket for messages a console sends: ``rate`` per second, bursts of ``burst``.
    ``allow(now_seconds)`` takes a monotonic time in seconds."""

    rate: float = 5.0
    burst: float = 20.0
    _tokens: float | None = None
    _last: float = 0.0

    def allow(self, now: float) -> bool:
        if self._tokens is None:
            self._tokens, self._last = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def origin_allowed(origin: str | None, host: str | None, allowed: list[str] | tuple[str, ...]) -> bool:
    """A websocket's ``Origin`` must be a configured origin or the platform's own (same host and
    port as the request's ``Host``). A missing Origin is refused: browsers always send one, and
    other clients can send theirs."""
    if not origin:
        return False
    origin = origin.rstrip("/")
    if origin in {a.rstrip("/") for a in allowed}:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host and not parts.path
