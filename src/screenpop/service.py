"""The screen-pop service: follows the bus and pushes to consoles through the hub.

* ``CallChange`` of a call whose caller is a known customer and that has no agent yet (in the IVR,
  waiting) → the customer's card is read ahead into a bounded cache (``screenpop.cards``);
  ``CustomerChanged`` (and the end of any of the customer's calls) drops it and reads it again for
  a caller still waiting.
* ``AgentOffered`` (routing chose an agent, before their phone rings) → a ``screenpop`` to that
  agent at once, with the customer's full card when it was read ahead; otherwise with what the call
  itself knows of the customer (name, tier), then the same ``screenpop`` again with the full card
  once it is read.
* ``AgentStateChanged`` → ``agent_state`` to the agent and to supervisors.
* ``CallChange`` of a call an agent has → ``call`` to that agent.
* every ``wallboard_interval`` seconds while a supervisor is connected → ``wallboard``.

It keeps what a console needs when it (re)connects: each agent's state, current call and last pop.
Supervisors' listen, whisper and barge are ``ChanSpy`` calls to their own phone, originated here.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cti.bus import Bus, Subscription
from cti.model import (
    AgentOffered,
    AgentStateChanged,
    CallChange,
    CallControlled,
    CallKey,
    CallPhase,
    ChangeKind,
    CustomerChanged,
    LiveCallsResynced,
    RecordingChanged,
)
from cti.originate import new_channel_id
from cti.ports import ActionSink
from screenpop import model
from screenpop.cards import CardCache, Read
from screenpop.hub import Console, Hub

log = logging.getLogger("cti.screenpop")

MESSAGES: tuple[type, ...] = (
    AgentOffered,
    AgentStateChanged,
    CallChange,
    LiveCallsResynced,
    CallControlled,
    RecordingChanged,
    CustomerChanged,
)
#: Phases of a call that has no agent yet: its customer's card is read ahead.
_BEFORE_AGENT = frozenset({CallPhase.ARRIVING, CallPhase.IN_IVR, CallPhase.WAITING})
#: The prefix of the channel ids of spy calls (the supervisor's phone's channel starts the call, so
#: its id is the call's linkedid).
SPY_PREFIX = "spy-"
#: ChanSpy options per mode: q quiet (no beep), w whisper to the agent, B barge (talk to both).
SPY_OPTIONS = {"listen": "q", "whisper": "qw", "barge": "qB"}
_AGENT_CHANNEL = re.compile(r"^PJSIP/[0-9]{1,32}-[0-9A-Za-z]{1,16}$")
_ENDPOINT = re.compile(r"^[0-9]{1,32}$")


def _coalesce(message: object) -> Hashable | None:
    """Call changes and agent states carry whole states: keep the newest per call or agent.
    Offers are never coalesced (each is a pop)."""
    if isinstance(message, CallChange):
        return ("call", message.call.key)
    if isinstance(message, AgentStateChanged):
        return ("agent", message.agent_id)
    return None


def subscribe(bus: Bus, name: str = "screenpop", *, offers: bool = True) -> Subscription:
    """The service's mailbox; subscribe before routing runs so no offer is missed. ``offers=False``
    when offers are handed to ``ScreenpopService.handle`` directly, as routing makes them (the pop then
    skips a turn of the event loop: it is queued for the console before the PBX is asked to ring)."""
    types = MESSAGES if offers else tuple(t for t in MESSAGES if t is not AgentOffered)
    return bus.subscribe(name, types, maxsize=100_000, coalesce=_coalesce)


@dataclass
class ConsolePorts:
    """What the service reads from other capabilities (wired by the composition root).

    ``customer_card(id)``: the card or ``None``; ``agents()``: every agent as ``{"id", "name",
    "status", "since", "reason", "call", "service", "services"}`` (``services``: the services whose
    calls they can take); ``queues()``: per service ``{"service",
    "waiting", "longest_wait_seconds", "ready_agents"}``; ``stats_today()``: per service the day's
    figures with their ``intervals`` (``screenpop.intervals.day_figures``).
    """

    customer_card: Callable[[int], Awaitable[dict[str, Any] | None]]
    agents: Callable[[], Awaitable[list[dict[str, Any]]]]
    queues: Callable[[], Awaitable[list[dict[str, Any]]]]
    stats_today: Callable[[], Awaitable[list[dict[str, Any]]]]
    #: ``work_ended(call, agent_id, at)``: the agent finished the call (``pbx/linkedid``) at ``at``
    work_ended: Callable[[str, str, datetime], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Thresholds:
    """A wallboard alert when a service's longest wait passes ``longest_wait_seconds`` or today's
    service level falls below ``service_level`` (with at least ``min_calls`` settled calls)."""

    longest_wait_seconds: float = 60.0
    service_level: float = 0.8
    min_calls: int = 5


class SpyError(Exception):
    """A listen/whisper/barge request that cannot be carried out; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ScreenpopHealth:
    pops: int = 0
    cards: int = 0
    card_errors: int = 0
    #: offers whose first pop carried the full card read ahead, and those that had to wait for it
    card_hits: int = 0
    card_misses: int = 0
    cards_read_ahead: int = 0
    wallboards: int = 0
    bus_overflows: int = 0
    errors: int = 0


class ScreenpopService:
    def __init__(
        self,
        *,
        subscription: Subscription,
        hub: Hub,
        ports: ConsolePorts,
        actions: ActionSink,
        clock: Callable[[], datetime] = utcnow,
        wallboard_interval: float = 1.0,
        stats_interval: float = 5.0,
        thresholds: Thresholds | None = None,
        crm_pop_urls: dict[str, str] | None = None,
        cards: CardCache | None = None,
    ) -> None:
        self.hub = hub
        self.ports = ports
        self.actions = actions
        self.clock = clock
        self.wallboard_interval = wallboard_interval
        self.stats_interval = stats_interval
        self.thresholds = thresholds or Thresholds()
        self.crm_pop_urls = crm_pop_urls or {}
        self.health = ScreenpopHealth()
        self._sub = subscription
        self.agent_states: dict[str, dict[str, Any]] = {}
        self.agent_calls: dict[str, CallChange] = {}
        #: each current call's agent (the reverse of ``agent_calls``)
        self._call_agents: dict[CallKey, str] = {}
        self.pops: dict[str, dict[str, Any]] = {}
        self.wallboard: dict[str, Any] | None = None
        self._stats: list[dict[str, Any]] = []
        self._stats_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.cards = cards or CardCache()
        #: customers' cards being read: customer id → the read and its task
        self._reads: dict[int, tuple[Read, asyncio.Task[dict[str, Any] | None]]] = {}
        #: calls without an agent yet whose caller is a known customer: call → customer id
        self._before_agent: dict[CallKey, int] = {}

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        board = asyncio.create_task(self._wallboard_loop(), name="screenpop-wallboard")
        try:
            while True:
                message = await self._sub.get()
                try:
                    self.handle(message)
                except Exception:
                    self.health.errors += 1
                    log.exception("screen-pop failed on %s; continuing", type(message).__name__)
                if self._sub.overflowed:
                    self._sub.overflowed = False
                    self.health.bus_overflows += 1
                    log.error("screen-pop mailbox overflowed: some messages were dropped")
        finally:
            board.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(board, *self._tasks, return_exceptions=True)
            self._sub.close()

    def handle(self, message: object) -> None:
        """Apply one bus message: update what reconnecting consoles get, and push to the connected."""
        if isinstance(message, AgentOffered):
            self._offered(message)
        elif isinstance(message, AgentStateChanged):
            view = model.agent_state(message)
            finished = model.call_finished(self.agent_states.get(message.agent_id), view)
            if finished is not None and self.ports.work_ended is not None:
                self._spawn(
                    self.ports.work_ended(finished, message.agent_id, message.since), "screenpop-work-end"
                )
            self.agent_states[message.agent_id] = view
            text = model.encode(view)
            self.hub.send_to_agent(message.agent_id, text)
            self.hub.send_to_supervisors(text)
        elif isinstance(message, CallChange):
            if message.call.key.linkedid.startswith(SPY_PREFIX):
                return  # a supervisor's listen, whisper or barge call: not a call of any agent
            self._read_ahead(message)
            agent = message.call.agent
            if agent:
                current = self.pops.get(agent)
                if message.call.phase is CallPhase.RINGING_AGENT and (
                    current is None or current["call"]["key"] != str(message.call.key)
                ):
                    # Rung without routing's offer (dialled to the agent directly): pop as it rings.
                    self._offered(self._direct_offer(message))
                key = message.call.key
                before = self._call_agents.get(key)
                if before is not None and before != agent:
                    # Transferred: the call is no longer the previous agent's current call.
                    previous = self.agent_calls.get(before)
                    if previous is not None and previous.call.key == key:
                        del self.agent_calls[before]
                if message.kind is ChangeKind.CLOSED:
                    self.agent_calls.pop(agent, None)
                    self._call_agents.pop(key, None)
                else:
                    self.agent_calls[agent] = message
                    self._call_agents[key] = agent
                self.hub.send_to_agent(agent, model.call_message(message.call))
        elif isinstance(message, CallControlled):
            text = model.encode(model.call_control(message))
            self.hub.send_to_agent(message.agent_id, text)
            self.hub.send_to_supervisors(text)
        elif isinstance(message, RecordingChanged):
            for agent, change in self.agent_calls.items():
                if change.call.key == message.call:
                    self.hub.send_to_agent(agent, model.recording(message))
        elif isinstance(message, CustomerChanged):
            self._customer_changed(message.customer_id)
        elif isinstance(message, LiveCallsResynced):
            for agent, change in list(self.agent_calls.items()):
                if change.call.key.pbx == message.pbx and change.call.key not in message.live:
                    del self.agent_calls[agent]
                    self._call_agents.pop(change.call.key, None)
            for key in [k for k in self._before_agent if k.pbx == message.pbx and k not in message.live]:
                del self._before_agent[key]

    # ------------------------------------------------------------------ customer cards

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _read_ahead(self, change: CallChange) -> None:
        """Read the card of a known caller who has no agent yet, unless it is cached or being read."""
        call = change.call
        c = call.classification
        customer_id = c.customer_id if c is not None else None
        if change.kind in (ChangeKind.ENDED, ChangeKind.CLOSED) or call.phase not in _BEFORE_AGENT:
            self._before_agent.pop(call.key, None)
            if customer_id is not None and change.kind is ChangeKind.ENDED:
                # The call's log now holds how it ended: the customer's history changed.
                self._customer_changed(customer_id)
            return
        if customer_id is None:
            return
        self._before_agent[call.key] = customer_id
        now = self._now()
        if self.cards.get(customer_id, now) is None and self._reading(customer_id, now) is None:
            self._start_read(customer_id, now)

    def _customer_changed(self, customer_id: int) -> None:
        now = self._now()
        self.cards.invalidate(customer_id, now)
        self._reads.pop(customer_id, None)
        if customer_id in self._before_agent.values():
            self._start_read(customer_id, now)  # a caller of theirs is still waiting: read it again

    def _reading(self, customer_id: int, now: float) -> asyncio.Task[dict[str, Any] | None] | None:
        """The read of the customer's card in flight that will give current values, if any."""
        entry = self._reads.get(customer_id)
        if entry is None:
            return None
        read, task = entry
        if not self.cards.current(read, now):
            del self._reads[customer_id]
            return None
        return task

    def _start_read(self, customer_id: int, now: float) -> asyncio.Task[dict[str, Any] | None]:
        read = self.cards.begin(customer_id, now)
        task = asyncio.create_task(self._read_card(read), name="screenpop-card-ahead")
        self._reads[customer_id] = (read, task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_card(self, read: Read) -> dict[str, Any] | None:
        customer_id = read.customer_id
        try:
            card = await self.ports.customer_card(customer_id)
        except Exception:
            self.health.card_errors += 1
            log.exception("customer card %s not read", customer_id)
            card = None
        finally:
            entry = self._reads.get(customer_id)
            if entry is not None and entry[0] is read:
                del self._reads[customer_id]
        if self.cards.store(read, card, self._now()):
            self.health.cards_read_ahead += 1
        return card

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                self.health.errors += 1
                log.exception("%s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _direct_offer(self, change: CallChange) -> AgentOffered:
        call = change.call
        c = call.classification
        now = self.clock()
        return AgentOffered(
            call=call,
            agent_id=call.agent or "",
            service=(c.service_name if c and c.service_name else call.dnis),
            rule=model.DIRECT_RULE,
            waited_seconds=max(0.0, (now - call.started_at).total_seconds()),
            candidates=(),
            candidates_total=1,
            relaxed=False,
            at=now,
        )

    def _offered(self, offer: AgentOffered) -> None:
        self.health.pops += 1
        c = offer.call.classification
        self._before_agent.pop(offer.call.key, None)
        customer: dict[str, Any] | None = None
        if c is not None and c.customer_id is not None:
            customer = self.cards.get(c.customer_id, self._now())
            if customer is not None:
                self.health.card_hits += 1
            else:
                self.health.card_misses += 1
                customer = {
                    "id": c.customer_id,
                    "name": c.customer_name,
                    "tier": c.customer_tier,
                    "partial": True,
                }
        pop = self._pop(offer, customer)
        self.pops[offer.agent_id] = pop
        self.hub.send_to_agent(offer.agent_id, pop)
        if c is not None and c.customer_id is not None and customer is not None and customer.get("partial"):
            # The card was not read ahead (or the customer changed since): the second pop brings it.
            task = asyncio.create_task(self._send_card(offer, c.customer_id), name="screenpop-card")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _pop(self, offer: AgentOffered, customer: dict[str, Any] | None) -> dict[str, Any]:
        pop = model.screenpop(offer, customer)
        template = self.crm_pop_urls.get(offer.service)
        pop["crm_url"] = model.crm_url(template, pop["call"]) if template else None
        return pop

    async def _send_card(self, offer: AgentOffered, customer_id: int) -> None:
        now = self._now()
        read = self._reading(customer_id, now) or self._start_read(customer_id, now)
        card = await asyncio.shield(read)
        if card is None:
            return
        pop = self._pop(offer, card)
        current = self.pops.get(offer.agent_id)
        if current is None or current["call"]["key"] != pop["call"]["key"]:
            return  # the agent has moved on to another call
        self.health.cards += 1
        self.pops[offer.agent_id] = pop
        self.hub.send_to_agent(offer.agent_id, pop)

    # ------------------------------------------------------------------ consoles

    def current_state(self, console: Console) -> dict[str, Any]:
        """The full state a console gets on (re)connect."""
        agent = console.agent_id
        change = self.agent_calls.get(agent) if agent else None
        state: dict[str, Any] = {
            "type": model.STATE,
            "agent": self.agent_states.get(agent) if agent else None,
            "call": model.call_view(change.call, self.clock()) if change else None,
            "pop": self.pops.get(agent) if agent else None,
        }
        if console.supervisor:
            state["wallboard"] = self.wallboard
            state["agents"] = list(self.agent_states.values())
        return state

    # ------------------------------------------------------------------ wallboard

    async def _wallboard_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.wallboard_interval)
            if not self.hub.has_supervisors():
                continue
            try:
                if loop.time() - self._stats_at >= self.stats_interval:
                    self._stats = await self.ports.stats_today()
                    self._stats_at = loop.time()
                self.wallboard = await self.build_wallboard()
                self.health.wallboards += 1
                self.hub.send_to_supervisors(self.wallboard)
            except Exception:
                self.health.errors += 1
                log.exception("wallboard not built; trying again")

    async def build_wallboard(self) -> dict[str, Any]:
        now = self.clock()
        agents = await self.ports.agents()
        queues = await self.ports.queues()
        by_state, by_service = model.agents_by_state(agents)
        for a in agents:
            since = a.get("since")
            a["seconds_in_state"] = (
                round((now - datetime.fromisoformat(since)).total_seconds()) if since else None
            )
            change = self.agent_calls.get(a["id"])
            a["current_call"] = model.call_view(change.call, now) if change else None
        stats = {s["service"]: s for s in self._stats}
        services = []
        alerts = []
        t = self.thresholds
        for q in queues:
            figures = stats.get(q["service"], {})
            row = {**q, **{k: v for k, v in figures.items() if k != "service"}}
            row["agents_by_state"] = by_service.get(q["service"], {})
            services.append(row)
            if q["longest_wait_seconds"] > t.longest_wait_seconds:
                alerts.append(
                    {
                        "service": q["service"],
                        "kind": "longest_wait",
                        "message": f"{q['service']}: a caller has waited {q['longest_wait_seconds']:.0f} s",
                    }
                )
            level = figures.get("service_level")
            settled = figures.get("answered", 0) + figures.get("abandoned", 0)
            if level is not None and settled >= t.min_calls and level < t.service_level:
                alerts.append(
                    {
                        "service": q["service"],
                        "kind": "service_level",
                        "message": f"{q['service']}: service level {level:.0%} below {t.service_level:.0%}",
                    }
                )
        for name, figures in stats.items():
            if name not in {q["service"] for q in queues}:
                services.append(
                    {
                        "service": name,
                        "waiting": [],
                        "longest_wait_seconds": 0.0,
                        **figures,
                        "agents_by_state": by_service.get(name, {}),
                    }
                )
        return {
            "type": model.WALLBOARD,
            "at": now.isoformat(),
            "services": services,
            "agents": agents,
            "agents_by_state": by_state,
            "alerts": alerts,
        }

    # ------------------------------------------------------------------ supervisors

    async def spy(self, agent_id: str, mode: str, phone: str) -> dict[str, str]:
        """Ring the supervisor's ``phone`` (a PJSIP endpoint) and, when answered, spy on the agent's
        channel: ``listen`` (hear both), ``whisper`` (also talk to the agent), ``barge`` (talk to both).

        ``SpyError`` 422 for a bad mode or endpoint, 409 when the agent has no call to spy on, 502
        when Asterisk refused or the link is down."""
        options = SPY_OPTIONS.get(mode)
        if options is None:
            raise SpyError(422, f"mode must be one of {sorted(SPY_OPTIONS)}")
        if not _ENDPOINT.fullmatch(phone) or not _ENDPOINT.fullmatch(agent_id):
            raise SpyError(422, "agent and phone must be digits (PJSIP endpoints)")
        if phone == agent_id:
            raise SpyError(422, "the supervisor's phone cannot be the agent's")
        change = self.agent_calls.get(agent_id)
        if change is None or change.call.phase not in model.ACTIVE_PHASES:
            raise SpyError(409, f"agent {agent_id} has no call in progress")
        channel = model.agent_channel(change.call, agent_id)
        if channel is None or not _AGENT_CHANNEL.fullmatch(channel):
            raise SpyError(409, f"agent {agent_id}'s channel is not known yet")
        channel_id = new_channel_id(SPY_PREFIX.rstrip("-"))
        headers = {
            "Channel": f"PJSIP/{phone}",
            "Application": "ChanSpy",
            # The full channel name: ChanSpy matches by prefix, and ids are fixed width.
            "Data": f"{channel},{options}",
            "CallerID": f'"{mode}" <{agent_id}>',
            "Timeout": "30000",
            "ChannelId": channel_id,
            "Async": "true",
        }
        try:
            await self.actions.send("Originate", headers)
        except ValueError as exc:
            raise SpyError(422, str(exc)) from exc
        except Exception as exc:
            log.warning("spy on %s for %s failed: %s", channel, phone, exc)
            raise SpyError(502, f"the PBX did not start the call: {exc}") from exc
        log.info("%s on agent %s (%s) to phone %s", mode, agent_id, channel, phone)
        return {
            "mode": mode,
            "agent_id": agent_id,
            "channel": channel,
            "phone": phone,
            "channel_id": channel_id,
        }
