"""``cti demo``: the sandbox PBX, the platform with demo data, simulated agents and a trickle of callers.

``run_demo`` brings the sandbox PBX up exactly as ``cti pbx up`` does, seeds the demo customers,
services and users (their passwords generated once and kept in ``<state_dir>/demo-logins.json``, so
every run prints the same logins), runs the platform, and once its AMI link is up starts one
auto-answering SIPp phone per sandbox agent and places SIPp calls: the seeded customers (Chinese and
English names) and unknown callers, to every demo service. Some callers walk the IVR, pressing keys:
a Mandarin caller checks their balance with a PIN, an English caller asks for an agent, another leaves
a message; each walk's path and outcome is printed as it ends. It runs until Ctrl-C or SIGTERM (or for
``duration`` seconds), then ends the simulated calls, stops the platform cleanly and leaves the
sandbox PBX running for the next run (``cti pbx down`` stops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from app.cli import DEMO_SERVICES, pbx_files
from app.compose import Platform
from crm import campaigns as crm_campaigns
from crm import db as crm_db
from crm.service import Conflict, add_user, authenticate, list_customers, seed_demo_data
from crm.voicemail import set_self_service
from cti.auth import Role
from cti.model import CampaignPaced
from cti.settings import Settings
from dialer.model import CallingWindow, Campaign, DialMode, Outcome
from dialplans.wiring import sandbox_agents
from ivr.model import BusinessHours, Flow
from ivr.service import IvrFinished
from routing.directory import AgentProfile
from routing.model import Agent, AgentStatus, Login, Ready
from sandbox import SandboxError
from sandbox.procs import check_port_free
from sandbox.service import Sandbox
from sandbox.traffic import (
    SIPP,
    VOICE,
    Caller,
    Customers,
    SippProcess,
    call_with_keys,
    free_udp_port,
    start_agent_phone,
    start_callers,
    start_customers,
)

LOGINS_FILE = "demo-logins.json"
#: The most simulated callers on the line at once; a call due while this many are on is skipped.
MAX_CALLERS = 10
#: A caller to a hold service hangs up after this many seconds (uniformly drawn).
HOLD_SECONDS = (5.0, 20.0)
#: Each simulated agent talks this long (milliseconds, drawn per agent) before hanging up.
TALK_MS = (3000, 8000)
HEALTH_TIMEOUT = 60.0
MAX_KNOWN_CALLERS = 200

SERVICE_NAMES = {"8001": "support", "8002": "sales", "8009": "agent 1001"}
SERVICE_NAMES.update({"4008001234": "support hotline IVR", "18005550100": "sales line IVR"})

# Callers the customer record does not know: Chinese and English names with generated numbers.
UNKNOWN_NAMES = ("赵敏", "王小明", "欧阳娜娜", "孙丽", "黄志强", "Maria Garcia", "John Doe", "Priya Patel")

Say = Callable[[str], None]


@dataclass(frozen=True)
class IvrWalk:
    """A scripted caller of the IVR: who calls which IVR number, the keys they press (``(pause_ms,
    key)``: a pause, then the key; ``VOICE`` speaks for a message) and how long they stay at most."""

    what: str
    caller: Caller
    dnis: str
    keys: tuple[tuple[int, str], ...]
    hold_seconds: float
    #: When the flow is closed: the caller speaks this long after the call starts, once the greeting
    #: and the closed message (in the caller's language) have played.
    closed_speak_ms: int = 10_000


#: The PIN and balance the demo puts on 李娜's record for the Mandarin self-service walk.
DEMO_PIN = "135790"
DEMO_SELF_SERVICE: dict[str, dict[str, Any]] = {
    "+8613912345678": {"balance": {"amount": "3280.50", "currency": "CNY"}, "pin": DEMO_PIN},
    "+12015550123": {"last_order": {"reference": "A1024", "status": "shipped"}},
}

#: The IVR walks of the example flows (``ivr/flows``), timed to their prompts: a key pressed while a
#: prompt that cannot be interrupted plays is lost, and the walk then ends where the flow sends a
#: caller who pressed nothing. After hours both flows take a message instead, so a walk due then is
#: replaced by :func:`after_hours_walk`.
DEMO_IVR_WALKS: tuple[IvrWalk, ...] = (
    IvrWalk(
        "English, asks for an agent",
        Caller("Alice Smith", "+12015550123"),
        "4008001234",
        ((4000, "0"),),
        40.0,
        closed_speak_ms=9_500,  # "Hello, and welcome back, Alice Smith" then the English closed message
    ),
    IvrWalk(
        "Mandarin, balance with a PIN (self-service), then # to hang up",
        Caller("李娜", "+8613912345678"),
        "4008001234",
        ((5500, "1"), (2000, DEMO_PIN[0]), *((300, d) for d in DEMO_PIN[1:]), (300, "#"), (7000, "#")),
        35.0,
        closed_speak_ms=18_000,  # the Mandarin greeting and closed message take about 17 s
    ),
    IvrWalk(
        "English, leaves a message (voicemail)",
        Caller("Bob O'Brien", "+442079460958"),
        "18005550100",
        ((3500, "3"), (4500, VOICE)),
        35.0,
        closed_speak_ms=8_500,  # the sales line opens with its hours: the closed message, about 8 s
    ),
)


def _say(line: str = "") -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- logins


def demo_logins(state_dir: Path) -> dict[Role, str]:
    """The demo users' passwords by role (the demo user of each role is named after it).

    Read from ``state_dir/demo-logins.json``; generated with ``secrets.token_urlsafe`` and written
    there (mode 0600) when the file is missing or unreadable.
    """
    path = state_dir / LOGINS_FILE
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and all(isinstance(data.get(role.value), str) for role in Role):
            return {role: data[role.value] for role in Role}
    passwords = {role: secrets.token_urlsafe(9) for role in Role}
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({role.value: pw for role, pw in passwords.items()}, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)
    return passwords


# ---------------------------------------------------------------------- the call plan

#: How long the spoken message (SIPp's A-law recording) lasts, with a little to spare: the caller
#: hangs up this long after starting to speak.
MESSAGE_SECONDS = 9.0


def after_hours_walk(walk: IvrWalk, status: str) -> IvrWalk:
    """What ``walk``'s caller does when the flow is not open (``status`` ``closed`` or ``holiday``):
    no keys (the menu is not offered), a spoken message after the tone, then hang up, long before
    the message's time limit."""
    return IvrWalk(
        f"{walk.what.split(',')[0]}, finds it {status}: leaves a message (voicemail)",
        walk.caller,
        walk.dnis,
        ((walk.closed_speak_ms, VOICE),),
        walk.closed_speak_ms / 1000 + MESSAGE_SECONDS,
        walk.closed_speak_ms,
    )


def ivr_status(flow: Flow, now: datetime) -> str:
    """``open``, ``closed`` or ``holiday``: the first opening-hours branch of ``flow`` at ``now``
    (``open`` for a flow without one). The demo's flows have a single such branch."""
    for node in flow.nodes.values():
        if isinstance(node, BusinessHours):
            return node.status(now)
    return "open"


@dataclass(frozen=True)
class PlannedCall:
    """One simulated call: who calls which DNIS, and for how long they stay on hold (``None``: until
    the PBX hangs up, as when an agent answers and ends the call)."""

    caller: Caller
    dnis: str
    hold_seconds: float | None
    known: bool
    walk: IvrWalk | None = None  # an IVR caller pressing keys


@dataclass
class CallPlan:
    """The sequence of simulated calls, in rounds: each round dials every DNIS once in a shuffled
    order, and all but one of its callers are known customers (taken in turn from a shuffled deck),
    one is an unknown caller. So every service and both kinds of caller show up within the first
    few calls, whatever the seed."""

    rng: random.Random
    known: Sequence[Caller]
    hold_dnis: Sequence[str]
    direct_dnis: Sequence[str] = ()
    #: One IVR walk (taken in turn) opens each round, so the first call of the demo is an IVR caller.
    ivr_walks: Sequence[IvrWalk] = ()
    #: Whether an IVR number's flow is ``open``, ``closed`` or on ``holiday`` now (read at each walk).
    ivr_status: Callable[[str], str] = lambda _dnis: "open"
    _round: list[tuple[str, bool]] = field(default_factory=list)
    _walks: int = 0
    _deck: list[Caller] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hold_dnis and not self.direct_dnis:
            raise ValueError("no DNIS to call")
        self._taken = {c.number for c in self.known}

    def next(self) -> PlannedCall:
        if not self._round:
            numbers = [*self.hold_dnis, *self.direct_dnis]
            self.rng.shuffle(numbers)
            odd_one = self.rng.randrange(len(numbers)) if self.known else -1
            self._round = [(d, i == odd_one or not self.known) for i, d in enumerate(numbers)]
            if self.ivr_walks:
                walk = self.ivr_walks[self._walks % len(self.ivr_walks)]
                self._walks += 1
                if (status := self.ivr_status(walk.dnis)) != "open":
                    walk = after_hours_walk(walk, status)
                return PlannedCall(walk.caller, walk.dnis, walk.hold_seconds, True, walk)
        dnis, unknown = self._round.pop(0)
        if unknown:
            caller, known = self._unknown_caller(), False
        else:
            if not self._deck:
                self._deck = list(self.known)
                self.rng.shuffle(self._deck)
            caller, known = self._deck.pop(), True
        hold = None if dnis in self.direct_dnis else round(self.rng.uniform(*HOLD_SECONDS), 1)
        return PlannedCall(caller, dnis, hold, known)

    def _unknown_caller(self) -> Caller:
        rng = self.rng
        name = rng.choice(UNKNOWN_NAMES)
        while True:
            if name.isascii():
                # Numbers set aside for fiction: +1 NXX 555-01xx and London's 020 7946 0xxx.
                number = rng.choice(
                    (f"+1201555{rng.randrange(100, 200):04d}", f"+44207946{rng.randrange(1000):04d}")
                )
            else:
                number = f"+861{rng.choice('3589')}{rng.randrange(10**9):09d}"
            if number not in self._taken:
                return Caller(name, number)


def _known_callers(customers: Iterable[Any]) -> list[Caller]:
    """A caller per stored customer phone; a name SIPp cannot carry (quotes, brackets) is left out."""
    callers = []
    for customer in customers:
        for phone in customer.phones:
            with contextlib.suppress(ValueError):
                callers.append(Caller(customer.name, phone.e164))
    return callers


# ---------------------------------------------------------------------- simulated traffic


class _Reserved:
    """Ports SIPp must not take: the PBX's own, its RTP range, the agents' phones, and those already
    handed to a SIPp that may not have bound them yet."""

    def __init__(self, settings: Settings) -> None:
        sb = settings.sandbox
        self.rtp = range(sb.rtp_start, sb.rtp_end + 1)
        self.fixed = {sb.sip_port, *(a.port for a in sandbox_agents(settings))}
        self.handed: set[int] = set()

    def __contains__(self, port: object) -> bool:
        return port in self.rtp or port in self.fixed or port in self.handed

    def take(self, span: int) -> list[int]:
        base = free_udp_port(span, avoid=self)
        ports = list(range(base, base + span))
        self.handed.update(ports)
        return ports

    def give_back(self, ports: Iterable[int]) -> None:
        self.handed.difference_update(ports)


@dataclass
class _Active:
    number: int
    call: PlannedCall
    proc: SippProcess
    ports: list[int]
    started: float


class Traffic:
    """The demo's SIPp processes: one phone per agent, and the callers on the line. Every process is
    tracked until it has exited; ``stop()`` ends them all."""

    def __init__(self, settings: Settings, rng: random.Random, say: Say = _say) -> None:
        self.settings = settings
        self.rng = rng
        self.say = say
        self.ports = _Reserved(settings)
        self.agents: list[tuple[str, int, SippProcess]] = []
        self.talk_ms: dict[str, int] = {}
        self.callers: dict[int, _Active] = {}
        self.watchers: set[asyncio.Task[None]] = set()
        self.placed = 0
        self.stopping = False

    async def start_agents(self) -> None:
        """An auto-answering phone for every sandbox agent, on the port the PBX rings it at."""
        for agent in sandbox_agents(self.settings):
            check_port_free(
                agent.host,
                agent.port,
                f"agent {agent.id}'s phone",
                proto="udp",
                setting="CTI_SANDBOX__AGENT_BASE_PORT",
            )
            talk = self.rng.randrange(TALK_MS[0], TALK_MS[1] + 1, 500)
            media = self.ports.take(4)[0]
            phone = await start_agent_phone(port=agent.port, media_port=media, talk_ms=talk)
            self.agents.append((agent.id, agent.port, phone))
            self.talk_ms[agent.id] = talk

    async def place(self, call: PlannedCall) -> bool:
        """Start one SIPp caller for ``call``; ``False`` (and nothing started) when ``MAX_CALLERS``
        are on the line already."""
        if len(self.callers) >= MAX_CALLERS:
            return False
        sip_port = self.ports.take(1)
        media = self.ports.take(4)
        hold_ms = None if call.hold_seconds is None else int(call.hold_seconds * 1000)
        try:
            if call.walk is not None:
                proc = await call_with_keys(
                    pbx_port=self.settings.sandbox.sip_port,
                    dnis=call.dnis,
                    caller=call.caller,
                    keys=call.walk.keys,
                    port=sip_port[0],
                    media_port=media[0],
                    hold_ms=hold_ms or 30_000,
                )
            else:
                proc = await start_callers(
                    pbx_port=self.settings.sandbox.sip_port,
                    dnis=call.dnis,
                    callers=[call.caller],
                    port=sip_port[0],
                    media_port=media[0],
                    hangup_after_ms=hold_ms,
                )
        except BaseException:
            self.ports.give_back(sip_port + media)
            raise
        self.placed += 1
        active = _Active(self.placed, call, proc, sip_port + media, time.monotonic())
        self.callers[proc.pid] = active
        who = "customer" if call.known else "unknown caller"
        what = SERVICE_NAMES.get(call.dnis, call.dnis)
        stay = f"hangs up after {call.hold_seconds:.0f} s" if call.hold_seconds else "answered by the agent"
        if call.walk is not None:
            stay = f"walks the IVR: {call.walk.what}"
        self.say(
            f"{time.strftime('%H:%M:%S')}  call #{active.number}: {call.caller.name} "
            f"({call.caller.number}, {who}) → {call.dnis} {what}, {stay}"
        )
        watcher = asyncio.create_task(self._watch(active))
        self.watchers.add(watcher)
        watcher.add_done_callback(self.watchers.discard)
        return True

    async def _watch(self, active: _Active) -> None:
        result = await active.proc.wait()
        self.callers.pop(active.proc.pid, None)
        self.ports.give_back(active.ports)
        if self.stopping:
            return
        took = time.monotonic() - active.started
        stamp = time.strftime("%H:%M:%S")
        if result.ok and not result.calls_failed:
            self.say(f"{stamp}  call #{active.number} ended after {took:.0f} s")
        else:
            detail = (result.errors.strip().splitlines() or [f"SIPp exit status {result.returncode}"])[-1]
            self.say(f"{stamp}  call #{active.number} failed after {took:.0f} s: {detail[:200]}")

    async def stop(self) -> None:
        """End every caller and phone: callers at once, then any channel they left in the PBX (a
        caller killed mid-call, or by the terminal's Ctrl-C, never sent its BYE), then the phones once
        their calls are over."""
        self.stopping = True
        callers = list(self.callers.values())
        await asyncio.gather(*(a.proc.stop(grace=0.5) for a in callers), return_exceptions=True)
        if callers:
            await self._hang_up({a.call.caller.number for a in callers})
        grace = max(self.talk_ms.values(), default=0) / 1000 + 1.0
        await asyncio.gather(
            *(phone.stop(grace=grace) for _, _, phone in self.agents), return_exceptions=True
        )
        self.agents.clear()
        if self.watchers:
            await asyncio.gather(*self.watchers, return_exceptions=True)

    async def _hang_up(self, numbers: set[str]) -> None:
        # SIPp 3.6 cannot be told to hang up a call it has already placed, so a caller still on hold
        # was killed: hang its channels up in Asterisk, or they would wait there forever. Only these
        # callers' numbers, so nobody else's call on this PBX is cut.
        box = Sandbox(self.settings)
        try:
            listing = await box.cli_rx("core show channels concise")
            for line in listing.splitlines():
                fields = line.split("!")
                if len(fields) > 7 and fields[7] in numbers:
                    await box.cli_rx(f"channel request hangup {fields[0]}")
        except (SandboxError, OSError, TimeoutError) as exc:
            self.say(f"could not hang up the simulated callers' channels: {exc}")


def ivr_line(finished: IvrFinished) -> str:
    """How the demo shows a caller's walk through the IVR: the path, what they pressed (secrets
    masked), the language and where the call went."""
    record = finished.record
    inputs = ", ".join(f"{name}={value}" for name, value in record.inputs) or "no keys"
    goes = {
        "route": "handed to routing (waits for an agent)",
        "voicemail": "left a voicemail (on the customer's record, callback task created)",
        "callback": "booked a callback",
        "hangup": "heard goodbye",
        "abandoned": "hung up in the IVR",
        "fallback": "took the dialplan's fallback",
    }.get(record.outcome, record.outcome)
    return (
        f"{time.strftime('%H:%M:%S')}  IVR {finished.dnis} ({finished.flow}): {finished.ani or 'withheld'} "
        f"in {record.language}: {' → '.join(record.path)}; {inputs}; {goes}"
    )


async def _self_service_data(platform: Platform, customers: Iterable[Any]) -> None:
    """Put the demo's self-service answers (a balance behind a PIN, an order) on the demo customers."""
    for customer in customers:
        for phone in customer.phones:
            data = DEMO_SELF_SERVICE.get(phone.e164)
            if data is not None:
                with contextlib.suppress(LookupError):
                    await set_self_service(platform.sessionmaker, customer.id, data)


async def _place_calls(traffic: Traffic, plan: CallPlan, calls_per_minute: float, rng: random.Random) -> None:
    interval = 60.0 / calls_per_minute
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            await traffic.place(plan.next())
        except (OSError, RuntimeError, ValueError) as exc:
            traffic.say(f"could not start a simulated caller: {exc}")
        due += interval * rng.uniform(0.5, 1.5)


# ---------------------------------------------------------------------- the platform


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - matching, not binding


def _base_url(settings: Settings) -> str:
    host = _client_host(settings.http.host)
    return f"http://[{host}]:{settings.http.port}" if ":" in host else f"http://{host}:{settings.http.port}"


def _get_health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - our own http:// URL
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def _wait_healthy(
    platform: Platform, run: asyncio.Task[None], url: str, timeout: float, stop: asyncio.Event
) -> str | None:
    """``None`` once ``GET /api/health`` reports the AMI link up, or as soon as ``stop`` is set;
    else why the platform is not healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if run.done():
            exc = run.exception()
            return f"the platform stopped during start-up: {exc!r}" if exc else "the platform stopped"
        if platform.calls.health.link_up:
            health = await asyncio.to_thread(_get_health, url)
            if health is not None and health.get("ami") == "up":
                return None
        await asyncio.sleep(0.2)
    return (
        f"the platform's AMI link was not up within {timeout:.0f} s "
        f"(AMI {platform.settings.ami.host}:{platform.settings.ami.port}; see the log lines above)"
    )


async def _stop_platform(platform: Platform, run: asyncio.Task[None]) -> bool:
    platform.stop()
    try:
        await run
    except Exception as exc:
        _warn(f"cti demo: the platform stopped with an error: {exc!r}")
        return False
    return True


def _banner(
    settings: Settings,
    platform: Platform,
    traffic: Traffic,
    plan: CallPlan,
    logins: dict[Role, str],
    calls_per_minute: float,
    duration: float,
    asterisk: str | None,
) -> str:
    sb, ami = settings.sandbox, settings.ami
    base = _base_url(settings)
    agents = ", ".join(
        f"{aid} (udp {port}, talks {traffic.talk_ms[aid] / 1000:.1f} s)" for aid, port, _ in traffic.agents
    )
    dialled = {*plan.hold_dnis, *plan.direct_dnis}
    services = ", ".join(
        f"{dnis} {SERVICE_NAMES.get(dnis, dnis)} ({mode})" for dnis, mode in DEMO_SERVICES if dnis in dialled
    )
    if crm_db.is_sqlite(platform.database_url):
        database = platform.database_url.split("///", 1)[-1]
    else:
        database = "the configured database (CTI_DATABASE_URL)"
    rule = "─" * 100
    admin = logins[Role.ADMIN]
    lines = [
        rule,
        "The demo is running:",
        f"  sandbox PBX  instance '{sb.instance}', Asterisk {asterisk or '?'}, "
        f"SIP udp {sb.sip_host}:{sb.sip_port}, AMI {ami.host}:{ami.port}",
        f"  platform     pbx '{settings.pbx_id}', HTTP {base}, database {database}",
        f"  agents       {agents}",
        f"  callers      about {calls_per_minute:g} a minute (at most {MAX_CALLERS} at once) to {services}",
        *(
            [
                f"  IVR          {', '.join(f'{d} {SERVICE_NAMES.get(d, d)}' for d in _ivr_numbers(plan))}; "
                f"each round opens with an IVR caller (lines starting 'IVR' show their walks)"
            ]
            if plan.ivr_walks
            else []
        ),
        "",
        f"  API          {base}/docs",
        f"  health       {base}/api/health",
        f"  console      {base}/console (agents), {base}/supervisor (supervisors: live wallboard)",
        f"               agents sign in as their id ({', '.join(a for a, _, _ in traffic.agents)}) "
        f"with the agent password; the supervisor as supervisor",
        f"  logins (user / password, kept in {settings.state_dir / LOGINS_FILE}):",
        *(f"    {role.value} / {logins[role]}" for role in (Role.ADMIN, Role.SUPERVISOR, Role.AGENT)),
        "",
        "  Log in and list the calls:",
        f"    TOKEN=$(curl -s -X POST {base}/api/auth/login -H 'content-type: application/json' \\",
        f'      -d \'{{"username": "admin", "password": "{admin}"}}\' \\',
        "      | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"    curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/api/calls?limit=10'",
        "",
        f"  Runs for {duration:g} s; Ctrl-C stops it sooner." if duration > 0 else "  Ctrl-C stops it.",
        rule,
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- run_demo


def _ivr_numbers(plan: CallPlan) -> list[str]:
    return list(dict.fromkeys(w.dnis for w in plan.ivr_walks))


#: The simulated agents' skills (taken in turn): every one can take both demo services' calls, the
#: first kind is the better choice for support, the second for sales.
DEMO_AGENT_SKILLS: tuple[dict[str, int], ...] = (
    {"support": 8, "mandarin": 9, "sales": 4, "english": 6},
    {"support": 5, "mandarin": 5, "sales": 8, "english": 9},
)
#: Their languages, taken in turn like the skills: the support kind speaks Mandarin and English, the
#: sales kind English only, so a caller in Mandarin (by the customer record or the IVR) is routed to
#: a Mandarin speaker even on the sales line, and the decision log shows why.
DEMO_AGENT_LANGUAGES_BY_KIND: tuple[frozenset[str], ...] = (frozenset({"zh-CN", "en"}), frozenset({"en"}))
DEMO_AGENT_LANGUAGES = frozenset({"zh-CN", "en"})  # every language the simulated agents speak


async def _agents_ready(platform: Platform, agent_ids: Sequence[str]) -> None:
    """Configure the simulated agents for routing, log them in and make them ready, so the calls to
    the hold services are routed to their phones."""
    for n, agent_id in enumerate(agent_ids):
        skills = DEMO_AGENT_SKILLS[n % len(DEMO_AGENT_SKILLS)]
        languages = DEMO_AGENT_LANGUAGES_BY_KIND[n % len(DEMO_AGENT_LANGUAGES_BY_KIND)]
        agent = Agent(agent_id, f"agent {agent_id}", skills, languages)
        await platform.routing.save_agent(AgentProfile(agent))
        if (await platform.routing.agent_state(agent_id)).status is AgentStatus.LOGGED_OUT:
            await platform.routing.change_agent(agent_id, Login())
        if (await platform.routing.agent_state(agent_id)).status is AgentStatus.NOT_READY:
            await platform.routing.change_agent(agent_id, Ready())


#: The demo campaign's customers, by what they do when called (``sandbox.traffic.CUSTOMER_BEHAVIOURS``:
#: the number's last digit): busy first, so something settles even while inbound calls keep the
#: agents busy (inbound calls come first: blending).
DEMO_CAMPAIGN_LEADS = (("2", "busy"), ("1", "person"), ("5", "machine"), ("1", "person"), ("4", "hangs up"),
                       ("3", "no answer"), ("1", "person"))  # fmt: skip
DEMO_CAMPAIGN = "demo"


class DemoCampaign:
    """A small predictive campaign against SIPp customers on the PBX's outside endpoint: its pace,
    connects and outcomes are printed as they happen."""

    def __init__(self, platform: Platform, rng: random.Random, say: Say = _say) -> None:
        self.platform = platform
        self.rng = rng
        self.say = say
        self.customers: Customers | None = None
        self.numbers: dict[int, tuple[str, str]] = {}  # lead id -> (number, behaviour)
        self.printer: asyncio.Task[None] | None = None

    async def start(self, settings: Settings, hold_dnis: str) -> None:
        port = settings.sandbox.outside_port
        if port is None:
            self.say("campaign demo: no outside endpoint (CTI_SANDBOX__OUTSIDE_PORT unset): no campaign")
            return
        check_port_free(
            "127.0.0.1", port, "the campaign's customers", proto="udp", setting="CTI_SANDBOX__OUTSIDE_PORT"
        )
        media = free_udp_port(4)
        self.customers = await start_customers(
            port=port, media_port=media, log_dir=settings.state_dir / "demo-customers"
        )
        now = datetime.now(UTC)
        campaign = Campaign(
            DEMO_CAMPAIGN, "Demo renewals", hold_dnis, "+862161234567", DialMode.PREDICTIVE,
            CallingWindow(clock_time(0), clock_time(23, 59), frozenset(range(1, 8))), ring_seconds=15,
        )  # fmt: skip
        store = self.platform.campaigns.store
        await store.save_campaign(campaign, True, now)
        # New numbers each run (the leads of earlier runs are done): 139 + 7 random digits + behaviour.
        leads = [
            crm_campaigns.NewLead(f"+86139{self.rng.randrange(10**7):07d}{digit}", f"demo {what}")
            for digit, what in DEMO_CAMPAIGN_LEADS
        ]
        await crm_campaigns.add_leads(
            self.platform.sessionmaker, DEMO_CAMPAIGN, leads, filename="demo.csv", encoding="utf-8",
            rows=len(leads), merged_in_file=0, rejected=0, rejected_report=b"", created_by=None, now=now,
        )  # fmt: skip
        pairs = zip(leads, DEMO_CAMPAIGN_LEADS, strict=True)
        behaviour = {lead.phone_e164: what for lead, (_, what) in pairs}
        for view in await store.leads(DEMO_CAMPAIGN, None, 1000, 0):
            if view.lead.phone in behaviour:
                self.numbers[view.lead.id] = (view.lead.phone, behaviour[view.lead.phone])
        self.platform.campaigns.runner.outcome_listeners.append(self._outcome)
        subscription = self.platform.bus.subscribe("demo-campaign", (CampaignPaced,), maxsize=1000)
        self.printer = asyncio.create_task(self._print_paces(subscription))
        self.say(
            f"campaign demo: predictive, {len(leads)} leads (customers who answer, are busy, do not answer, "
            f"hang up at once, or are answering machines) on the outside endpoint (port {port})"
        )

    def _outcome(self, campaign_id: str, lead_id: int, outcome: Outcome) -> None:
        if campaign_id != DEMO_CAMPAIGN:
            return
        number, what = self.numbers.get(lead_id, ("?", "?"))
        self.say(f"{time.strftime('%H:%M:%S')}  campaign demo: {number} ({what}) → {outcome.value}")

    async def _print_paces(self, subscription: Any) -> None:
        last = ""
        async for paced in subscription:
            if paced.campaign_id != DEMO_CAMPAIGN or (paced.reason == last and not paced.placed):
                continue
            last = paced.reason
            dialled = f"dialled {paced.placed}; " if paced.placed else ""
            self.say(
                f"{time.strftime('%H:%M:%S')}  campaign demo pace: {dialled}{paced.reason} "
                f"[24 h: {paced.attempts_24h} attempts, {paced.contacts_24h} connected, "
                f"{paced.abandonment_24h:.1%} abandoned]"
            )

    async def stop(self, settings: Settings) -> None:
        """Stop dialling, end the customers and any campaign channel they left in the PBX."""
        with contextlib.suppress(Exception):
            store = self.platform.campaigns.store
            stored = await store.campaign(DEMO_CAMPAIGN)
            await store.save_campaign(stored.campaign, False, datetime.now(UTC))
        if self.printer is not None:
            self.printer.cancel()
        if self.customers is not None:
            await self.customers.stop()
            endpoint = settings.routing.callback_endpoint
            box = Sandbox(settings)
            with contextlib.suppress(SandboxError, OSError, TimeoutError):
                for line in (await box.cli_rx("core show channels concise")).splitlines():
                    name = line.split("!")[0]
                    if name.startswith(f"PJSIP/{endpoint}-"):
                        await box.cli_rx(f"channel request hangup {name}")


async def run_demo(
    settings: Settings,
    *,
    calls_per_minute: float = 6.0,
    duration: float = 0.0,
    seed: int | None = None,
) -> int:
    """Run the demo until SIGINT/SIGTERM, or for ``duration`` seconds (> 0) after it is up.

    ``calls_per_minute`` 0 places no calls; ``seed`` makes the callers' sequence repeatable. Progress
    goes to standard output, failures to standard error. Returns the exit code: 0 after a clean stop, 1 when
    something could not start (the message says what). The sandbox PBX is left running.
    """
    if os.geteuid() != 0:
        _warn("cti demo needs root: it starts the sandbox PBX (a chroot with Asterisk). Run it as root.")
        return 1
    if calls_per_minute < 0 or duration < 0:
        _warn("cti demo: --calls-per-minute and --duration cannot be negative")
        return 1
    if shutil.which(SIPP) is None:
        _warn(f"cti demo needs SIPp ({SIPP} is missing): run ./scripts/setup")
        return 1
    try:
        check_port_free(settings.http.host, settings.http.port, "HTTP", proto="tcp", setting="CTI_HTTP__PORT")
        _say(f"sandbox PBX '{settings.sandbox.instance}': starting")
        files = pbx_files(settings)
        status = await Sandbox(settings).up(files, lambda line: _say(f"  {line}"))
    except ValueError as exc:  # settings the PBX configuration cannot be rendered for
        _warn(f"cti demo: the sandbox PBX configuration is invalid: {exc}")
        return 1
    except SandboxError as exc:
        _warn(f"cti demo: {exc}")
        return 1
    _say(status.describe())

    # The schema migrations' step-by-step log says nothing a demo user needs.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logins = demo_logins(settings.state_dir)
    platform = Platform(settings)
    await crm_db.migrate_async(platform.database_url)
    summary = await seed_demo_data(platform.sessionmaker, passwords=logins)
    if summary.customers or summary.services or summary.users:
        _say(
            f"demo data: added {summary.customers} customers, {summary.services} services, "
            f"{summary.users} users"
        )
    # The simulated agents' own users (a user named by an agent id is that agent in the console),
    # with the agent's demo password: a newcomer signs in as one and gets its calls' screen-pops.
    for agent in sandbox_agents(settings):
        with contextlib.suppress(Conflict):
            await add_user(platform.sessionmaker, agent.id, logins[Role.AGENT], Role.AGENT)
    for role, password in logins.items():
        if await authenticate(platform.sessionmaker, role.value, password) is None:
            _warn(
                f"cti demo: the user '{role.value}' existed before {LOGINS_FILE} was written and keeps its "
                f"own password, not the one printed below (or is disabled)"
            )
    customers = await list_customers(
        platform.sessionmaker, default_region=settings.default_region, limit=MAX_KNOWN_CALLERS
    )
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not secrets
    hold = [dnis for dnis, mode in DEMO_SERVICES if mode == "hold"]
    direct = [dnis for dnis, mode in DEMO_SERVICES if mode == "direct"]
    ivr_numbers = {dnis for dnis, mode in DEMO_SERVICES if mode == "ivr"}
    walks = [w for w in DEMO_IVR_WALKS if w.dnis in ivr_numbers] if platform.ivr is not None else []
    flows = platform.ivr.flows if platform.ivr is not None else {}
    plan = CallPlan(
        rng,
        _known_callers(customers),
        hold,
        direct,
        walks,
        lambda dnis: ivr_status(flows[dnis], datetime.now(UTC)) if dnis in flows else "open",
    )
    await _self_service_data(platform, customers)
    if platform.ivr is not None:
        platform.ivr.listeners.append(lambda finished: _say(ivr_line(finished)))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    run = asyncio.create_task(platform.run(), name="platform")
    traffic = Traffic(settings, rng)
    demo_campaign = DemoCampaign(platform, rng)
    callers: asyncio.Task[None] | None = None
    code = 0
    try:
        health_url = f"{_base_url(settings)}/api/health"
        problem = await _wait_healthy(platform, run, health_url, HEALTH_TIMEOUT, stop)
        if problem is None and not stop.is_set():
            try:
                await traffic.start_agents()
                await _agents_ready(platform, [agent_id for agent_id, _, _ in traffic.agents])
            except (SandboxError, RuntimeError, OSError) as exc:
                problem = f"the simulated agents could not start: {exc}"
        if problem is not None:
            _warn(f"cti demo: {problem}")
            code = 1
        elif not stop.is_set():
            _say(
                _banner(
                    settings,
                    platform,
                    traffic,
                    plan,
                    logins,
                    calls_per_minute,
                    duration,
                    status.asterisk_version,
                )
            )
            if calls_per_minute > 0:
                callers = asyncio.create_task(_place_calls(traffic, plan, calls_per_minute, rng))
            if hold:
                try:
                    await demo_campaign.start(settings, hold[0])
                except (SandboxError, RuntimeError, OSError) as exc:
                    _warn(f"cti demo: the demo campaign could not start: {exc}")
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                {stopped, run},
                timeout=duration if duration > 0 else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            stopped.cancel()
            if run in done:
                _warn("cti demo: the platform stopped unexpectedly")
                code = 1
            _say("stopping: ending the simulated calls and agents…")
    finally:
        if callers is not None:
            callers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await callers
        await demo_campaign.stop(settings)
        await traffic.stop()
        # Give the platform a moment to see the last hang-ups, so their call logs are closed.
        for _ in range(30):
            if not len(platform.book) or run.done():
                break
            await asyncio.sleep(0.1)
        if not await _stop_platform(platform, run):
            code = 1
        for signum in signals:
            loop.remove_signal_handler(signum)
    _say(
        f"platform stopped. The sandbox PBX '{settings.sandbox.instance}' is still running "
        f"(SIP {settings.sandbox.sip_host}:{settings.sandbox.sip_port}); stop it with `cti pbx down`."
    )
    return code
