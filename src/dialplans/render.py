"""Render the Asterisk configuration of a PBX the platform runs beside (the sandbox, or a container).

Pure: the only input is a ``PbxConfigParams`` value, the only output a mapping of file name to text;
nothing here reads a clock, the environment or the network (the templates are this package's own data).
Every value that reaches a configuration file is validated first, because Asterisk's config syntax has
no quoting: a CR/LF would start a new line, ``;`` a comment, ``,`` a new list item or application
argument, ``[``/``]`` a new section. Bad values raise ``ValueError`` naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import jinja2

ServiceMode = Literal["hold", "direct", "ivr", "queue"]
SERVICE_MODES: tuple[ServiceMode, ...] = ("hold", "direct", "ivr", "queue")
IvrFallback = Literal["wait", "voicemail"]
IVR_FALLBACKS: tuple[IvrFallback, ...] = ("wait", "voicemail")

#: The files ``render_pbx_config`` returns, all of them meant for Asterisk's configuration directory.
CONFIG_FILES: tuple[str, ...] = (
    "asterisk.conf",
    "modules.conf",
    "logger.conf",
    "manager.conf",
    "pjsip.conf",
    "extensions.conf",
    "rtp.conf",
    "musiconhold.conf",
    "indications.conf",
    "queues.conf",
    "cdr.conf",
    "cel.conf",
    "features.conf",
    "udptl.conf",
    "ccss.conf",
    "acl.conf",
    "pjproject.conf",
    "stasis.conf",
    "queuerules.conf",
    "amd.conf",
)

_DIGITS = re.compile(r"^[0-9]{1,32}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")
# Printable ASCII without space, ';' (comment), ',' and '"' (list and quoting trouble in some parsers).
_SECRET = re.compile(r"^[!#-+\--:<-~]{8,128}$")
_FORBIDDEN = ("\r", "\n", "\0")
# A queues.conf setting: a lowercase option name and a plain value (no list or comment characters).
_QUEUE_OPTION = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_QUEUE_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent's phone: ``id`` (digits) is also its PJSIP endpoint name; it listens on ``host:port``."""

    id: str
    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Service:
    """A dialled number (DNIS) and what the PBX does with a call to it.

    ``hold``: answer, announce the call with user events and play music on hold until the caller hangs
    up or the platform redirects the call. ``direct``: answer and dial one agent's phone (``agent``, by
    default the first agent). ``ivr``: answer and run the platform's IVR over FastAGI; when the IVR
    cannot run (the FastAGI server is down, refuses, fails, or ends without saying where the caller
    goes), the dialplan itself sends the caller to ``fallback``: ``wait`` (hold for an agent, as
    ``hold``) or ``voicemail`` (a native recording into the PBX's IVR voicemail folder).
    ``queue``: answer and wait in Asterisk's own ``Queue()`` (queue ``cti-q<dnis>``), every agent's
    phone a member; the platform does not route these calls. It exists as the benchmark peer of the
    platform's routing: Asterisk's defaults, except ``ringinuse = no`` (an agent takes one call at a
    time, as with the platform), plus ``queue_settings`` (name, value) pairs when a benchmark tunes it.
    """

    dnis: str
    mode: ServiceMode
    agent: str | None = None
    fallback: IvrFallback = "wait"
    queue_settings: tuple[tuple[str, str], ...] = ()
    #: The share of this service's calls the PBX records (0 to 100): MixMonitor starts on the
    #: caller's channel when the call is answered, and writes only while the caller is bridged to
    #: someone (an agent), so the file holds the conversation, not the music on hold.
    record_percent: int = 0


@dataclass(frozen=True, slots=True)
class PbxDirs:
    """Asterisk's writable directories, as Asterisk sees them (inside its chroot or container)."""

    etc: str
    spool: str
    log: str
    run: str
    db: str
    cache: str


@dataclass(frozen=True, slots=True)
class PbxConfigParams:
    """Everything that varies between rendered PBX configurations."""

    dirs: PbxDirs
    sip_host: str
    sip_port: int
    trunk_match: str
    rtp_start: int
    rtp_end: int
    ami_host: str
    ami_port: int
    ami_username: str
    ami_secret: str
    agents: tuple[Agent, ...] = ()
    services: tuple[Service, ...] = ()
    #: A second AMI user that reads every event class and may run no action; only for capturing
    #: AMI byte streams for tests and benchmarks.
    capture_user: bool = False
    capture_username: str = "capture"
    capture_secret: str | None = None
    dial_timeout: int = 30
    #: Whether any service announces position and expected wait. When none does, a caller the
    #: platform has told nothing (``CTI_WAIT_EVERY`` unset) hears music only, with no 3-s slices
    #: waiting for word, and the platform sends waiting callers nothing.
    wait_announcements: bool = True
    #: Asterisk's verbosity (0 keeps the log quiet; 3 logs every dialplan step).
    verbose: int = 0
    #: Where the platform's permit ACL lets AMI clients in from.
    ami_permit: tuple[str, ...] = field(default=("127.0.0.1/255.255.255.255",))
    #: The platform's FastAGI server, for ``ivr`` services.
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    #: Where a ``voicemail`` fallback records, as Asterisk sees it (the platform files it later).
    ivr_voicemail_dir: str = "/var/spool/asterisk/ivr-voicemail"
    #: The phone that stands for outside numbers (transfers out of the centre): the PJSIP endpoint
    #: ``outside`` at this address; ``None`` renders no such endpoint (outside transfers are refused).
    outside_port: int | None = None
    outside_host: str = "127.0.0.1"


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    for bad in _FORBIDDEN:
        if bad in value:
            raise ValueError(f"{name} must not contain CR, LF or NUL: {value!r}")


def _check(name: str, value: str, pattern: re.Pattern[str], what: str) -> None:
    _check_text(name, value)
    if not pattern.match(value):
        raise ValueError(f"{name} must be {what}: {value!r}")


def _check_port(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{name} must be a port number 1-65535: {value!r}")


def _check_ip(name: str, value: str) -> None:
    """An IPv4 address: the sandbox lives on loopback, and ``host:port`` needs no brackets."""
    _check_text(name, value)
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{name} must be an IPv4 address (not a host name): {value!r}") from None


def _check_match(name: str, value: str) -> None:
    """``address``, ``address/mask`` or ``address:port`` (IPv4), as PJSIP's identify ``match`` takes it."""
    _check_text(name, value)
    host, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        raise ValueError(f"{name} must be an address, address/mask or IPv4 address:port: {value!r}") from None
    if port:
        if not port.isdigit():
            raise ValueError(f"{name} has a bad port: {value!r}")
        _check_port(name, int(port))


def _unique(name: str, values: Iterable[object]) -> None:
    seen: set[object] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{name} must be unique; {value!r} appears twice")
        seen.add(value)


def validate(params: PbxConfigParams) -> None:
    """Raise ``ValueError`` (naming the field) unless every value is safe to render."""
    for attr in ("etc", "spool", "log", "run", "db", "cache"):
        _check(
            f"dirs.{attr}", getattr(params.dirs, attr), _PATH, "an absolute path of letters, digits, _ . / -"
        )
    _check_ip("sip_host", params.sip_host)
    _check_port("sip_port", params.sip_port)
    _check_match("trunk_match", params.trunk_match)
    _check_port("rtp_start", params.rtp_start)
    _check_port("rtp_end", params.rtp_end)
    if params.rtp_start >= params.rtp_end:
        raise ValueError(f"rtp_start ({params.rtp_start}) must be below rtp_end ({params.rtp_end})")
    _check_ip("ami_host", params.ami_host)
    _check_port("ami_port", params.ami_port)
    _check("ami_username", params.ami_username, _NAME, "a name of letters, digits, _ . - (no [ ] ; ,)")
    _check("ami_secret", params.ami_secret, _SECRET, '8-128 printable ASCII characters without space ; , "')
    for i, permit in enumerate(params.ami_permit):
        _check_text(f"ami_permit[{i}]", permit)
        try:
            ipaddress.ip_network(permit.replace("/255.255.255.255", "/32"), strict=False)
        except ValueError:
            raise ValueError(f"ami_permit[{i}] must be address/mask: {permit!r}") from None
    if params.capture_user:
        _check("capture_username", params.capture_username, _NAME, "a name of letters, digits, _ . -")
        if params.capture_username == params.ami_username:
            raise ValueError("capture_username must differ from ami_username")
        if params.capture_secret is None:
            raise ValueError("capture_user needs capture_secret")
        _check("capture_secret", params.capture_secret, _SECRET, "8-128 printable ASCII characters")
    if isinstance(params.dial_timeout, bool) or not 1 <= params.dial_timeout <= 600:
        raise ValueError(f"dial_timeout must be 1-600 seconds: {params.dial_timeout!r}")
    if isinstance(params.verbose, bool) or not 0 <= params.verbose <= 10:
        raise ValueError(f"verbose must be 0-10: {params.verbose!r}")

    for i, agent in enumerate(params.agents):
        _check(f"agents[{i}].id", agent.id, _DIGITS, "digits only")
        _check_port(f"agents[{i}].port", agent.port)
        _check_ip(f"agents[{i}].host", agent.host)
        if (agent.host, agent.port) == (params.sip_host, params.sip_port):
            raise ValueError(f"agents[{i}] phone port {agent.port} is the PBX's own SIP port")
    _unique("agent ids", (a.id for a in params.agents))
    _unique("agent phone addresses", ((a.host, a.port) for a in params.agents))

    agent_ids = {a.id for a in params.agents}
    for i, service in enumerate(params.services):
        _check(f"services[{i}].dnis", service.dnis, _DIGITS, "digits only")
        if service.mode not in SERVICE_MODES:
            raise ValueError(
                f"services[{i}].mode must be one of {', '.join(SERVICE_MODES)}: {service.mode!r}"
            )
        if service.agent is not None:
            _check(f"services[{i}].agent", service.agent, _DIGITS, "digits only")
        if service.mode == "direct":
            if not params.agents:
                raise ValueError(f"services[{i}] ({service.dnis}) is 'direct' but there are no agents")
            if service.agent is not None and service.agent not in agent_ids:
                raise ValueError(
                    f"services[{i}] dials agent {service.agent!r}, which is not among the agents"
                )
        elif service.agent is not None:
            raise ValueError(f"services[{i}] ({service.dnis}) is '{service.mode}': it dials no agent")
        if service.queue_settings and service.mode != "queue":
            raise ValueError(f"services[{i}] ({service.dnis}) is '{service.mode}': it has no queue settings")
        for name, value in service.queue_settings:
            _check(f"services[{i}].queue_settings name", name, _QUEUE_OPTION, "a lowercase option name")
            if name == "member":
                raise ValueError(f"services[{i}].queue_settings: the members are the agents' phones")
            _check(f"services[{i}].queue_settings value", value, _QUEUE_VALUE, "letters, digits, _ . -")
        if service.mode == "queue" and not params.agents:
            raise ValueError(f"services[{i}] ({service.dnis}) is 'queue' but there are no agents")
        percent = service.record_percent
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"services[{i}].record_percent must be 0-100: {percent!r}")
        if service.fallback not in IVR_FALLBACKS:
            raise ValueError(
                f"services[{i}].fallback must be one of {', '.join(IVR_FALLBACKS)}: {service.fallback!r}"
            )
    _unique("service DNIS", (s.dnis for s in params.services))
    _check_ip("agi_host", params.agi_host)
    _check_port("agi_port", params.agi_port)
    _check(
        "ivr_voicemail_dir", params.ivr_voicemail_dir, _PATH, "an absolute path of letters, digits, _ . / -"
    )
    if params.outside_port is not None:
        _check_port("outside_port", params.outside_port)
        _check_ip("outside_host", params.outside_host)
        if (params.outside_host, params.outside_port) in {(a.host, a.port) for a in params.agents}:
            raise ValueError(f"outside_port {params.outside_port} is an agent's phone port")
    agent_collisions = agent_ids & {s.dnis for s in params.services}
    if agent_collisions:
        # Not a config error for Asterisk (different contexts), but a confusing plan for people.
        raise ValueError(f"a DNIS equals an agent id: {', '.join(sorted(agent_collisions))}")


#: AMI events Asterisk never formats for any client (manager.conf ``disabledevents``). Asterisk
#: builds an event's text once for all logged-in clients, before it checks who may read it, so an
#: event outside the platform's read classes still costs CPU on every call; the list holds the
#: frequent ones the platform, its tests and its benchmarks never read. ``VarSet`` alone is half of
#: all events (every ``Set()`` and variable Asterisk sets itself); ``Newexten``, ``DialState`` and
#: ``AGIExecStart`` stay, because tests and benchmarks follow calls by them.
AMI_DISABLED_EVENTS: tuple[str, ...] = (
    "VarSet",
    "TestEvent",
    "RTCPSent",
    "RTCPReceived",
    "DTMFBegin",
    "HangupRequest",
    "SoftHangupRequest",
    "NewConnectedLine",
    "NewAccountCode",
    "BridgeCreate",
    "BridgeDestroy",
    "LocalBridge",
    "LocalOptimizationBegin",
    "DeviceStateChange",
    "ExtensionStatus",
    "PresenceStateChange",
    "PresenceStatus",
    "AGIExecEnd",
    "Cdr",
    "CEL",
)

#: Stasis message types Asterisk never creates (stasis.conf ``declined_message_types``): those
#: behind the disabled events above that no loaded module routes by type. (DTMF key-down cannot be
#: declined: the manager routes it by type and refuses to start without it.)
STASIS_DECLINED_MESSAGES: tuple[str, ...] = (
    "ast_channel_varset_type",
    "ast_rtp_rtcp_sent_type",
    "ast_rtp_rtcp_received_type",
    "ast_test_suite_message_type",
)

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("dialplans", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # noqa: S701 - Asterisk configuration, not HTML; values are validated instead
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_pbx_config(params: PbxConfigParams) -> dict[str, str]:
    """The configuration files (name -> text) for ``params``; ``ValueError`` if a value is unsafe."""
    validate(params)
    first_agent = params.agents[0].id if params.agents else None
    services = [
        {
            "dnis": s.dnis,
            "mode": s.mode,
            "agent": s.agent if s.agent is not None else first_agent,
            "fallback": s.fallback,
            "queue_settings": s.queue_settings,
            "record_percent": s.record_percent,
        }
        for s in params.services
    ]
    context = {
        "p": params,
        "services": services,
        "disabled_events": AMI_DISABLED_EVENTS,
        "declined_messages": STASIS_DECLINED_MESSAGES,
    }
    return {name: _ENV.get_template(f"{name}.j2").render(context) for name in CONFIG_FILES}
