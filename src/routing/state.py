"""Routing's live state: agents' states, waiting calls and the decision log, behind one interface.

``InProcessLiveState`` serves one platform node. ``RedisLiveState`` lets several nodes share the
state when one machine is outgrown; it is the project's only user of redis.

The contract both keep:

* ``apply`` changes an agent's state atomically through the pure state machine
  (``routing.model.transition``): two nodes applying events to one agent never lose an update.
* ``reserve`` is a compare-and-set: it reserves the agent only if they are READY *now*, so when
  two nodes pick the same agent for different calls exactly one wins; the other gets ``None`` and
  routes its call again.
* ``take_call`` removes a waiting call and returns it to exactly one caller.
* The decision log keeps the newest ``decision_log_size`` decisions.
* What call control has done to a live call (``CallControlState``: held, a transfer or a
  consultation under way) is kept per call, so another node or a restarted platform knows it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from cti.model import CallKey
from routing.model import (
    AgentEvent,
    AgentState,
    AgentStatus,
    CallControlState,
    HeldCall,
    InvalidTransition,
    Overflow,
    OverflowKind,
    PendingTransfer,
    Relaxed,
    Reserve,
    SkillNeed,
    StatusMark,
    Target,
    TargetKind,
    TransferMode,
    WaitingCall,
    transition,
)
from routing.policy import Candidate, Decision, Outcome, Trigger

DECISION_LOG_SIZE = 1000


class LiveState(Protocol):
    """Where the router keeps what is live. Every method is safe to call from several nodes."""

    async def get_agent(self, agent_id: str) -> AgentState | None: ...

    async def put_agent(self, state: AgentState) -> None:
        """Store ``state`` as is (seeding and resync); live changes go through ``apply``."""
        ...

    async def agent_states(self) -> list[AgentState]: ...

    async def apply(self, agent_id: str, event: AgentEvent, now: datetime) -> AgentState:
        """Apply ``event`` atomically; an agent never seen starts LOGGED_OUT. Raises
        ``InvalidTransition`` (and changes nothing) when the agent's status does not allow it."""
        ...

    async def reserve(self, agent_id: str, call: CallKey, service: str, now: datetime) -> AgentState | None:
        """Reserve the agent for ``call`` if they are READY now; ``None`` if not (another node won)."""
        ...

    async def add_call(self, call: WaitingCall) -> None:
        """Add a waiting call, or replace the one with the same key."""
        ...

    async def take_call(self, key: CallKey) -> WaitingCall | None:
        """Remove the call; it is returned to exactly one caller, ``None`` to the others."""
        ...

    async def waiting_calls(self, service: str | None = None) -> list[WaitingCall]:
        """The waiting calls (of one service, or all), in line order: priority, then place."""
        ...

    async def record_decision(self, decision: Decision) -> None: ...

    async def put_call_control(self, key: CallKey, control: CallControlState) -> None:
        """Store what call control has done to a live call (held, a transfer or consultation under
        way, ...), replacing what was there; an empty record removes it."""
        ...

    async def call_control(self, key: CallKey) -> CallControlState | None:
        """What call control has done to the call; ``None`` if nothing (or nothing any more)."""
        ...

    async def call_controls(self) -> dict[CallKey, CallControlState]:
        """Every call under control (a restarted platform takes them up)."""
        ...

    async def recent_decisions(self, limit: int = 100) -> list[Decision]:
        """The newest decisions first."""
        ...

    async def close(self) -> None: ...


def _line_order(call: WaitingCall) -> tuple[int, datetime]:
    return (-call.priority, call.enqueued_at)


class InProcessLiveState:
    """Live state in this process's memory: the default for a single platform node.

    No method awaits between reading and writing, so on one event loop every change is atomic."""

    def __init__(self, decision_log_size: int = DECISION_LOG_SIZE) -> None:
        self._agents: dict[str, AgentState] = {}
        self._calls: dict[CallKey, WaitingCall] = {}
        self._decisions: list[Decision] = []
        self._controls: dict[CallKey, CallControlState] = {}
        self._log_size = decision_log_size

    async def get_agent(self, agent_id: str) -> AgentState | None:
        return self._agents.get(agent_id)

    async def put_agent(self, state: AgentState) -> None:
        self._agents[state.agent_id] = state

    async def agent_states(self) -> list[AgentState]:
        return list(self._agents.values())

    async def apply(self, agent_id: str, event: AgentEvent, now: datetime) -> AgentState:
        state = self._agents.get(agent_id) or AgentState.logged_out(agent_id, now)
        new = transition(state, event, now)
        self._agents[agent_id] = new
        return new

    async def reserve(self, agent_id: str, call: CallKey, service: str, now: datetime) -> AgentState | None:
        try:
            return await self.apply(agent_id, Reserve(call, service), now)
        except InvalidTransition:
            return None

    async def add_call(self, call: WaitingCall) -> None:
        self._calls[call.key] = call

    async def take_call(self, key: CallKey) -> WaitingCall | None:
        return self._calls.pop(key, None)

    async def waiting_calls(self, service: str | None = None) -> list[WaitingCall]:
        calls = [c for c in self._calls.values() if service is None or c.service == service]
        return sorted(calls, key=_line_order)

    async def record_decision(self, decision: Decision) -> None:
        self._decisions.append(decision)
        if len(self._decisions) > self._log_size:
            del self._decisions[: len(self._decisions) - self._log_size]

    async def recent_decisions(self, limit: int = 100) -> list[Decision]:
        return self._decisions[::-1][:limit]

    async def put_call_control(self, key: CallKey, control: CallControlState) -> None:
        if control.empty:
            self._controls.pop(key, None)
        else:
            self._controls[key] = control

    async def call_control(self, key: CallKey) -> CallControlState | None:
        return self._controls.get(key)

    async def call_controls(self) -> dict[CallKey, CallControlState]:
        return dict(self._controls)

    async def close(self) -> None:
        return None


class RedisLiveState:
    """Live state in Redis, shared by every platform node that uses the same ``prefix``.

    Keys: ``{prefix}:agent:{id}`` (one JSON state per agent, so a transaction on one agent never
    conflicts with another), ``{prefix}:agents`` (the set of ids), ``{prefix}:calls`` (a hash of
    waiting calls), ``{prefix}:control`` (a hash of calls under call control: held, transferring)
    and ``{prefix}:decisions`` (a capped list, newest first). Agent changes are
    optimistic transactions (WATCH the agent's key, check with the state machine, MULTI/EXEC, retry
    if another node wrote in between), so the state machine's rules hold across nodes.
    """

    def __init__(
        self, client: aioredis.Redis, prefix: str = "cti:routing", decision_log_size: int = DECISION_LOG_SIZE
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._log_size = decision_log_size
        self._agents_key = f"{prefix}:agents"
        self._calls_key = f"{prefix}:calls"
        self._decisions_key = f"{prefix}:decisions"
        self._controls_key = f"{prefix}:control"

    @classmethod
    def from_url(cls, url: str, prefix: str = "cti:routing", **kwargs: Any) -> RedisLiveState:
        return cls(aioredis.Redis.from_url(url), prefix, **kwargs)

    def _agent_key(self, agent_id: str) -> str:
        return f"{self._prefix}:agent:{agent_id}"

    @staticmethod
    def _call_field(key: CallKey) -> str:
        return json.dumps([key.pbx, key.linkedid], ensure_ascii=False)

    async def get_agent(self, agent_id: str) -> AgentState | None:
        raw = await self._redis.get(self._agent_key(agent_id))
        return agent_state_from_json(raw) if raw is not None else None

    async def put_agent(self, state: AgentState) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._agent_key(state.agent_id), agent_state_to_json(state))
            pipe.sadd(self._agents_key, state.agent_id)
            await pipe.execute()

    async def agent_states(self) -> list[AgentState]:
        ids = sorted(
            m.decode() if isinstance(m, bytes) else m for m in await self._redis.smembers(self._agents_key)
        )
        if not ids:
            return []
        raws = await self._redis.mget([self._agent_key(i) for i in ids])
        return [agent_state_from_json(raw) for raw in raws if raw is not None]

    async def apply(self, agent_id: str, event: AgentEvent, now: datetime) -> AgentState:
        key = self._agent_key(agent_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    state = (
                        agent_state_from_json(raw)
                        if raw is not None
                        else AgentState.logged_out(agent_id, now)
                    )
                    new = transition(state, event, now)
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                    pipe.set(key, agent_state_to_json(new))
                    pipe.sadd(self._agents_key, agent_id)
                    await pipe.execute()
                    return new
                except WatchError:
                    continue  # another node changed this agent: decide again on what it wrote

    async def reserve(self, agent_id: str, call: CallKey, service: str, now: datetime) -> AgentState | None:
        try:
            return await self.apply(agent_id, Reserve(call, service), now)
        except InvalidTransition:
            return None

    async def add_call(self, call: WaitingCall) -> None:
        await self._redis.hset(self._calls_key, self._call_field(call.key), waiting_call_to_json(call))

    async def take_call(self, key: CallKey) -> WaitingCall | None:
        field = self._call_field(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._calls_key, field)
            pipe.hdel(self._calls_key, field)
            raw, removed = await pipe.execute()
        return waiting_call_from_json(raw) if removed else None

    async def waiting_calls(self, service: str | None = None) -> list[WaitingCall]:
        calls = [waiting_call_from_json(raw) for raw in (await self._redis.hgetall(self._calls_key)).values()]
        return sorted((c for c in calls if service is None or c.service == service), key=_line_order)

    async def record_decision(self, decision: Decision) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self._decisions_key, decision_to_json(decision))
            pipe.ltrim(self._decisions_key, 0, self._log_size - 1)
            await pipe.execute()

    async def recent_decisions(self, limit: int = 100) -> list[Decision]:
        raws = await self._redis.lrange(self._decisions_key, 0, max(0, limit - 1)) if limit > 0 else []
        return [decision_from_json(raw) for raw in raws]

    async def put_call_control(self, key: CallKey, control: CallControlState) -> None:
        field = self._call_field(key)
        if control.empty:
            await self._redis.hdel(self._controls_key, field)
        else:
            await self._redis.hset(self._controls_key, field, call_control_to_json(control))

    async def call_control(self, key: CallKey) -> CallControlState | None:
        raw = await self._redis.hget(self._controls_key, self._call_field(key))
        return call_control_from_json(raw) if raw is not None else None

    async def call_controls(self) -> dict[CallKey, CallControlState]:
        found = await self._redis.hgetall(self._controls_key)
        return {_parse_call_field(f): call_control_from_json(raw) for f, raw in found.items()}

    async def close(self) -> None:
        await self._redis.aclose()


# --- JSON ---------------------------------------------------------------------------------------
# Explicit, versionless encodings: every field is written, so a node reading another node's value
# never guesses a default.


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _key(key: CallKey | None) -> list[str] | None:
    return [key.pbx, key.linkedid] if key is not None else None


def _parse_key(value: list[str] | None) -> CallKey | None:
    return CallKey(value[0], value[1]) if value is not None else None


def _parse_call_field(raw: str | bytes) -> CallKey:
    pbx, linkedid = json.loads(raw)
    return CallKey(pbx, linkedid)


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def agent_state_to_json(state: AgentState) -> str:
    return _dumps(
        {
            "agent_id": state.agent_id,
            "status": state.status.value,
            "since": _time(state.since),
            "idle_since": _time(state.idle_since),
            "reason": state.reason,
            "call": _key(state.call),
            "service": state.service,
            "wrap_up_until": _time(state.wrap_up_until),
            "calls_handled": state.calls_handled,
            "talk_seconds": state.talk_seconds,
            "logged_in_at": _time(state.logged_in_at),
            "logged_in_seconds": state.logged_in_seconds,
            "history": [[m.status.value, _time(m.at), m.reason, _key(m.call), m.by] for m in state.history],
            "reserved_for": _key(state.reserved_for),
            "reserved_service": state.reserved_service,
        }
    )


def agent_state_from_json(raw: str | bytes) -> AgentState:
    d = json.loads(raw)
    since = _parse_time(d["since"])
    assert since is not None
    return AgentState(
        agent_id=d["agent_id"],
        status=AgentStatus(d["status"]),
        since=since,
        idle_since=_parse_time(d["idle_since"]),
        reason=d["reason"],
        call=_parse_key(d["call"]),
        service=d["service"],
        wrap_up_until=_parse_time(d["wrap_up_until"]),
        calls_handled=d["calls_handled"],
        talk_seconds=d["talk_seconds"],
        logged_in_at=_parse_time(d["logged_in_at"]),
        logged_in_seconds=d["logged_in_seconds"],
        history=tuple(
            StatusMark(AgentStatus(status), datetime.fromisoformat(at), reason, _parse_key(call), by)
            for status, at, reason, call, by in d["history"]
        ),
        # Absent in values written before reservations ahead existed.
        reserved_for=_parse_key(d.get("reserved_for")),
        reserved_service=d.get("reserved_service"),
    )


def waiting_call_to_json(call: WaitingCall) -> str:
    return _dumps(
        {
            "key": _key(call.key),
            "service": call.service,
            "enqueued_at": _time(call.enqueued_at),
            "service_since": _time(call.in_service_since),
            "needs": [[n.skill, n.min_level, n.optional] for n in call.needs],
            "language": call.language,
            "priority": call.priority,
            "attempts": call.attempts,
            "avoid": sorted(call.avoid),
            "customer_tier": call.customer_tier,
        }
    )


def waiting_call_from_json(raw: str | bytes) -> WaitingCall:
    d = json.loads(raw)
    key, enqueued_at = _parse_key(d["key"]), _parse_time(d["enqueued_at"])
    assert key is not None and enqueued_at is not None
    return WaitingCall(
        key=key,
        service=d["service"],
        enqueued_at=enqueued_at,
        service_since=_parse_time(d["service_since"]),
        needs=tuple(SkillNeed(skill, level, optional) for skill, level, optional in d["needs"]),
        language=d["language"],
        priority=d["priority"],
        attempts=d["attempts"],
        avoid=frozenset(d["avoid"]),
        customer_tier=d["customer_tier"],
    )


def decision_to_json(decision: Decision) -> str:
    r = decision.relaxed
    return _dumps(
        {
            "at": _time(decision.at),
            "trigger": decision.trigger.value,
            "outcome": decision.outcome.value,
            "call": _key(decision.call),
            "service": decision.service,
            "rule": decision.rule,
            "relaxed": [r.level, r.lower_levels_by, r.drop_optional, r.any_language],
            "waited_seconds": decision.waited_seconds,
            "agent_id": decision.agent_id,
            "overflow": (
                [decision.overflow.kind.value, decision.overflow.target] if decision.overflow else None
            ),
            "candidates": [
                [c.agent_id, c.skill_score, c.idle_seconds, c.talk_seconds] for c in decision.candidates
            ],
            "candidates_total": decision.candidates_total,
            "calls_considered": decision.calls_considered,
        }
    )


def decision_from_json(raw: str | bytes) -> Decision:
    d = json.loads(raw)
    at, call = _parse_time(d["at"]), _parse_key(d["call"])
    assert at is not None and call is not None
    overflow = d["overflow"]
    return Decision(
        at=at,
        trigger=Trigger(d["trigger"]),
        outcome=Outcome(d["outcome"]),
        call=call,
        service=d["service"],
        rule=d["rule"],
        relaxed=Relaxed(*d["relaxed"]),
        waited_seconds=d["waited_seconds"],
        agent_id=d["agent_id"],
        overflow=Overflow(OverflowKind(overflow[0]), overflow[1]) if overflow else None,
        candidates=tuple(Candidate(*c) for c in d["candidates"]),
        candidates_total=d["candidates_total"],
        calls_considered=d["calls_considered"],
    )


def call_control_to_json(control: CallControlState) -> str:
    held, transfer = control.held, control.transfer
    return _dumps(
        {
            "held": [held.agent_id, held.agent_channel, _time(held.since)] if held else None,
            "transfer": (
                {
                    "mode": transfer.mode.value,
                    "target": [transfer.target.kind.value, transfer.target.value],
                    "from_agent": transfer.from_agent,
                    "agent_channel": transfer.agent_channel,
                    "since": _time(transfer.since),
                    "target_leg_seen": transfer.target_leg_seen,
                    "completing": transfer.completing,
                    "outcome_unknown": transfer.outcome_unknown,
                }
                if transfer
                else None
            ),
            "moved_to_service": control.moved_to_service,
            "left": control.left,
            "controlled": control.controlled,
        }
    )


def call_control_from_json(raw: str | bytes) -> CallControlState:
    d = json.loads(raw)
    held, transfer = d["held"], d["transfer"]
    return CallControlState(
        held=HeldCall(held[0], held[1], datetime.fromisoformat(held[2])) if held else None,
        transfer=(
            PendingTransfer(
                mode=TransferMode(transfer["mode"]),
                target=Target(TargetKind(transfer["target"][0]), transfer["target"][1]),
                from_agent=transfer["from_agent"],
                agent_channel=transfer["agent_channel"],
                since=datetime.fromisoformat(transfer["since"]),
                target_leg_seen=transfer["target_leg_seen"],
                completing=transfer["completing"],
                outcome_unknown=transfer.get("outcome_unknown", False),
            )
            if transfer
            else None
        ),
        moved_to_service=d["moved_to_service"],
        left=d["left"],
        controlled=d["controlled"],
    )
