"""Typed AMI events, built once at the edge.

``decode_event(frame)`` turns one complete AMI frame (bytes, as cut by ``cti.framing``) into a frozen
event, or ``None`` for events the platform does not use: those are skipped by looking at the
``Event:`` name alone, before any decoding, which is most of the AMI stream (``VarSet``, ``Newexten``,
``DeviceStateChange`` ...) and the main reason ingest is fast. ``translate(fields)`` does the same for
an already-parsed header dict (list-action results such as ``CoreShowChannel``).

Nothing downstream indexes a raw header dict: every value the platform uses is a typed field here.
Asterisk's placeholder ``<unknown>`` for a caller number or name becomes the empty string, and the
C escapes Asterisk puts into caller names are undone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cti.framing import parse_frame

_UNKNOWN = "<unknown>"


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """The channel headers Asterisk puts on every channel event."""

    channel: str
    uniqueid: str
    linkedid: str
    state: int
    caller_num: str
    caller_name: str
    context: str
    exten: str


@dataclass(frozen=True, slots=True)
class NewChannel(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class ChannelStateChanged(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class CallerIdChanged(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class HungUp(ChannelEvent):
    cause: int
    cause_txt: str


@dataclass(frozen=True, slots=True)
class DialBegan(ChannelEvent):
    """``channel`` fields are the calling side; they are empty for a dial started by Originate.

    ``dial_string`` is what was dialled after the technology (``1001``, ``8613800138000@outside``).
    """

    dest_channel: str
    dest_uniqueid: str
    dest_linkedid: str
    dial_string: str = ""


@dataclass(frozen=True, slots=True)
class DialEnded(ChannelEvent):
    dest_channel: str
    dest_uniqueid: str
    dest_linkedid: str
    dial_status: str


@dataclass(frozen=True, slots=True)
class BridgeEntered(ChannelEvent):
    bridge_id: str
    swap_uniqueid: str


@dataclass(frozen=True, slots=True)
class BridgeLeft(ChannelEvent):
    bridge_id: str


@dataclass(frozen=True, slots=True)
class HoldStarted(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class HoldEnded(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True)
class UserEventRaised(ChannelEvent):
    """A ``UserEvent()`` from our dialplan; ``fields`` are its own headers, in order."""

    name: str
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str = "") -> str:
        for k, v in self.fields:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class ChannelRenamed:
    uniqueid: str
    channel: str
    new_name: str


@dataclass(frozen=True, slots=True)
class LocalOptimized:
    """A Local channel pair optimised itself away; the real channels took its places in bridges."""

    local_one_uniqueid: str
    local_two_uniqueid: str
    success: bool


@dataclass(frozen=True, slots=True)
class FullyBooted:
    status: str


@dataclass(frozen=True, slots=True)
class PbxShuttingDown:
    restart: bool


@dataclass(frozen=True, slots=True)
class ChannelListed(ChannelEvent):
    """One item of a ``CoreShowChannels`` list: a channel alive at resync time."""

    bridge_id: str
    application: str
    duration_seconds: int


@dataclass(frozen=True, slots=True)
class MixMonitorStarted(ChannelEvent):
    """A MixMonitor recording started on ``channel``."""


@dataclass(frozen=True, slots=True)
class MixMonitorStopped(ChannelEvent):
    """A MixMonitor recording on ``channel`` stopped (its file is closed)."""


@dataclass(frozen=True, slots=True)
class MixMonitorMuted(ChannelEvent):
    """A MixMonitor recording on ``channel`` was muted (``muted``) or unmuted; ``direction`` is
    ``read``, ``write`` or ``both``, as Asterisk reports it."""

    direction: str
    muted: bool


Event = (
    NewChannel
    | ChannelStateChanged
    | CallerIdChanged
    | HungUp
    | DialBegan
    | DialEnded
    | BridgeEntered
    | BridgeLeft
    | HoldStarted
    | HoldEnded
    | UserEventRaised
    | ChannelRenamed
    | LocalOptimized
    | FullyBooted
    | PbxShuttingDown
    | ChannelListed
    | MixMonitorStarted
    | MixMonitorStopped
    | MixMonitorMuted
)


# Asterisk writes caller and connected-line names C-escaped: ``O'Brien?`` arrives as ``O\'Brien\?``.
_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", "'": "'", '"': '"', "?": "?"}  # fmt: skip


def _unescape_c(value: str) -> str:
    out: list[str] = []
    i = 0
    while (j := value.find("\\", i)) >= 0 and j + 1 < len(value):
        out.append(value[i:j])
        nxt = value[j + 1]
        out.append(_C_ESCAPES.get(nxt, "\\" + nxt))
        i = j + 2
    out.append(value[i:])
    return "".join(out)


def _name(value: str) -> str:
    if value == _UNKNOWN:
        return ""
    return _unescape_c(value) if "\\" in value else value


def _number(value: str) -> str:
    return "" if value == _UNKNOWN else value


def _int(value: str | None, default: int = 0) -> int:
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _channel_args(f: Mapping[str, str]) -> tuple[str, str, str, int, str, str, str, str]:
    get = f.get
    return (
        get("Channel", ""),
        get("Uniqueid", ""),
        get("Linkedid", ""),
        _int(get("ChannelState")),
        _number(get("CallerIDNum", "")),
        _name(get("CallerIDName", "")),
        get("Context", ""),
        get("Exten", ""),
    )


def _duration(value: str) -> int:
    """``HH:MM:SS`` as Asterisk prints a channel's age, in seconds (0 when unreadable)."""
    parts = value.split(":")
    if len(parts) != 3:
        return 0
    try:
        h, m, s = (int(p) for p in parts)
    except ValueError:
        return 0
    return h * 3600 + m * 60 + s


# Headers that every channel event carries; a UserEvent's own fields are what is left.
_CHANNEL_HEADERS = frozenset(
    {
        "Event",
        "Privilege",
        "Channel",
        "ChannelState",
        "ChannelStateDesc",
        "CallerIDNum",
        "CallerIDName",
        "ConnectedLineNum",
        "ConnectedLineName",
        "Language",
        "AccountCode",
        "Context",
        "Exten",
        "Priority",
        "Uniqueid",
        "Linkedid",
        "Tenantid",
        "UserEvent",
        "SystemName",
    }
)


def _user_event(f: Mapping[str, str]) -> UserEventRaised:
    own = tuple((k, v) for k, v in f.items() if k not in _CHANNEL_HEADERS)
    return UserEventRaised(*_channel_args(f), name=f.get("UserEvent", ""), fields=own)


_BUILDERS: dict[str, Callable[[Mapping[str, str]], Event]] = {
    "Newchannel": lambda f: NewChannel(*_channel_args(f)),
    "Newstate": lambda f: ChannelStateChanged(*_channel_args(f)),
    "NewCallerid": lambda f: CallerIdChanged(*_channel_args(f)),
    "Hangup": lambda f: HungUp(
        *_channel_args(f), cause=_int(f.get("Cause")), cause_txt=f.get("Cause-txt", "")
    ),
    "DialBegin": lambda f: DialBegan(
        *_channel_args(f),
        dest_channel=f.get("DestChannel", ""),
        dest_uniqueid=f.get("DestUniqueid", ""),
        dest_linkedid=f.get("DestLinkedid", ""),
        dial_string=f.get("DialString", ""),
    ),
    "DialEnd": lambda f: DialEnded(
        *_channel_args(f),
        dest_channel=f.get("DestChannel", ""),
        dest_uniqueid=f.get("DestUniqueid", ""),
        dest_linkedid=f.get("DestLinkedid", ""),
        dial_status=f.get("DialStatus", ""),
    ),
    "BridgeEnter": lambda f: BridgeEntered(
        *_channel_args(f), bridge_id=f.get("BridgeUniqueid", ""), swap_uniqueid=f.get("SwapUniqueid", "")
    ),
    "BridgeLeave": lambda f: BridgeLeft(*_channel_args(f), bridge_id=f.get("BridgeUniqueid", "")),
    "Hold": lambda f: HoldStarted(*_channel_args(f)),
    "Unhold": lambda f: HoldEnded(*_channel_args(f)),
    "UserEvent": _user_event,
    "Rename": lambda f: ChannelRenamed(
        uniqueid=f.get("Uniqueid", ""), channel=f.get("Channel", ""), new_name=f.get("Newname", "")
    ),
    "LocalOptimizationEnd": lambda f: LocalOptimized(
        local_one_uniqueid=f.get("LocalOneUniqueid", ""),
        local_two_uniqueid=f.get("LocalTwoUniqueid", ""),
        success=f.get("Success", "").lower() in ("yes", "true", "1"),
    ),
    "FullyBooted": lambda f: FullyBooted(status=f.get("Status", "")),
    "Shutdown": lambda f: PbxShuttingDown(restart=f.get("Restart", "").lower() in ("true", "yes")),
    "MixMonitorStart": lambda f: MixMonitorStarted(*_channel_args(f)),
    "MixMonitorStop": lambda f: MixMonitorStopped(*_channel_args(f)),
    "MixMonitorMute": lambda f: MixMonitorMuted(
        *_channel_args(f), direction=f.get("Direction", ""), muted=f.get("State", "") == "1"
    ),
    "CoreShowChannel": lambda f: ChannelListed(
        *_channel_args(f),
        bridge_id=f.get("BridgeId", ""),
        application=f.get("Application", ""),
        duration_seconds=_duration(f.get("Duration", "")),
    ),
}

# The same table keyed by the raw bytes of the name, for the fast path on undecoded frames.
_BUILDERS_BY_BYTES: dict[bytes, Callable[[Mapping[str, str]], Event]] = {
    name.encode("ascii"): build for name, build in _BUILDERS.items()
}

EVENT_NAMES: frozenset[str] = frozenset(_BUILDERS)


def translate(fields: Mapping[str, str]) -> Event | None:
    """The typed event for a parsed AMI event, or ``None`` if the platform does not use it."""
    build = _BUILDERS.get(fields.get("Event", ""))
    return None if build is None else build(fields)


def decode_event(frame: bytes) -> Event | None:
    """The typed event for one raw AMI frame, or ``None`` when it is not an event the platform uses.

    Only frames beginning with ``Event: `` are considered (responses are matched by the AMI client
    before this is called). The name is looked up on the raw bytes, so skipped events cost a slice and
    a dict lookup, and nothing else.
    """
    if not frame.startswith(b"Event: "):
        return None
    end = frame.find(b"\r\n")
    name = frame[7:] if end < 0 else frame[7:end]
    build = _BUILDERS_BY_BYTES.get(name)
    if build is None:
        return None
    return build(parse_frame(frame))
