"""Encoding AMI actions, and which actions may be repeated.

Pure: no I/O. The AMI client calls ``encode_action`` before it writes anything, so an invalid action
never reaches Asterisk, in whole or in part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Asterisk matches header names case-insensitively, so the reserved names are compared lowercased.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_RESERVED = frozenset({"action", "actionid"})

NON_IDEMPOTENT: frozenset[str] = frozenset(
    {
        # Calls and channels: a repeat dials a customer twice, moves or ends the wrong leg.
        "Originate",
        "Redirect",
        "BlindTransfer",
        "Atxfer",
        "CancelAtxfer",
        "Hangup",
        "Bridge",
        "BridgeKick",
        "BridgeDestroy",
        "Park",
        "PlayDTMF",
        "PlayMF",
        "SendText",
        "SendFlash",
        "MessageSend",
        "AGI",
        "AOCMessage",
        # Recordings: a second MixMonitor records the call twice (two files, two rows).
        "MixMonitor",
        "StopMixMonitor",
        "MixMonitorMute",
        "Monitor",
        "StopMonitor",
        "ChangeMonitor",
        "PauseMonitor",
        "UnpauseMonitor",
        # Queues and agents: each one writes queue_log rows and changes routing.
        "QueueAdd",
        "QueueRemove",
        "QueuePause",
        "QueuePenalty",
        "QueueLog",
        "QueueMemberRingInUse",
        "QueueReset",
        "QueueReload",
        "AgentLogoff",
        # Shared state and side channels: a repeat may overwrite a newer change made meanwhile by
        # someone else, or emit a second event, or run an arbitrary command twice.
        "Setvar",
        "UserEvent",
        "DBPut",
        "DBDel",
        "DBDelTree",
        "UpdateConfig",
        "CreateConfig",
        "Command",
        "Reload",
        "ModuleLoad",
        "LoggerRotate",
        "ConfbridgeKick",
        "ConfbridgeStartRecord",
        "ConfbridgeStopRecord",
        "ConfbridgeLock",
        "ConfbridgeUnlock",
        "ConfbridgeMute",
        "ConfbridgeUnmute",
        "ConfbridgeSetSingleVideoSrc",
        "MuteAudio",
        "PJSIPNotify",
        "PJSIPHangup",
        "PJSIPRegister",
        "PJSIPUnregister",
        "PresenceStateChange",
    }
)
"""Actions never sent twice: if the link drops before Asterisk answers one, the caller gets
``ActionOutcomeUnknown`` and reconciles (an Originate through the ``ChannelId`` it pre-assigned)."""

IDEMPOTENT: frozenset[str] = frozenset(
    {
        "Ping",
        "Challenge",
        "Events",
        "Filter",
        "WaitEvent",
        "CoreSettings",
        "CoreStatus",
        "CoreShowChannels",
        "CoreShowChannelMap",
        "Status",
        "Getvar",
        "GetConfig",
        "GetConfigJSON",
        "ListCategories",
        "ListCommands",
        "ShowDialPlan",
        "ModuleCheck",
        "ExtensionState",
        "ExtensionStateList",
        "DeviceStateList",
        "PresenceState",
        "PresenceStateList",
        "MailboxCount",
        "MailboxStatus",
        "VoicemailUsersList",
        "VoicemailUserStatus",
        "QueueStatus",
        "QueueSummary",
        "QueueRule",
        "Queues",
        "Agents",
        "BridgeList",
        "BridgeInfo",
        "BridgeTechnologyList",
        "ConfbridgeList",
        "ConfbridgeListRooms",
        "ParkedCalls",
        "Parkinglots",
        "DBGet",
        "DBGetTree",
        "PJSIPQualify",
        "PJSIPShowEndpoints",
        "PJSIPShowEndpoint",
        "PJSIPShowContacts",
        "PJSIPShowAors",
        "PJSIPShowAuths",
        "PJSIPShowRegistrationsInbound",
        "PJSIPShowRegistrationsOutbound",
        "PJSIPShowRegistrationInboundContactStatuses",
        "PJSIPShowSubscriptionsInbound",
        "PJSIPShowSubscriptionsOutbound",
        "PJSIPShowResourceLists",
    }
)
"""Actions that may be repeated without harm: they read state (``Status``, ``QueueStatus``, ``Getvar``),
answer a liveness check (``Ping``), or only change this manager session, which a reconnect replaces
anyway (``Events``, ``Filter``). ``PJSIPQualify`` sends an OPTIONS ping, which a repeat only refreshes.
If the link drops while one of these awaits its answer the caller gets ``LinkDown`` and may retry."""

_IDEMPOTENT_LOWER = frozenset(name.lower() for name in IDEMPOTENT)


def safe_to_retry(action: str) -> bool:
    """Whether ``action`` may be sent again after a lost answer (case-insensitive, as Asterisk is).

    Only the actions in ``IDEMPOTENT`` are. An action in neither list is treated as non-idempotent:
    guessing wrong that way costs a reconciliation; the other way, a customer dialled twice.
    """
    return action.lower() in _IDEMPOTENT_LOWER


def encode_action(
    action: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    action_id: str,
) -> bytes:
    """The bytes of one AMI action, ``Action`` and ``ActionID`` first, UTF-8, CRLF, blank-line ended.

    Raises ``ValueError`` (naming the header, never quoting its value, which may be a secret) when:
    the action name or a header name is not ``[A-Za-z][A-Za-z0-9_-]*``; a header is ``Action`` or
    ``ActionID`` (the client assigns the ActionID); any name or value contains CR, LF or NUL (they
    would inject headers or a second action; they are never silently stripped); a ``Variable`` value
    contains a comma (Asterisk splits an Originate's ``Variable`` on commas, so one value would set
    several variables). Raises ``TypeError`` for a value that is not a ``str``.
    Repeated headers (several ``Variable`` lines) are given as an iterable of pairs.
    """
    if not isinstance(action, str) or not _NAME.fullmatch(action):
        raise ValueError(f"invalid AMI action name {_show(action)}")
    if not isinstance(action_id, str) or not action_id or _FORBIDDEN.search(action_id):
        raise ValueError("invalid ActionID: empty or containing CR, LF or NUL")
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    lines = [f"Action: {action}", f"ActionID: {action_id}"]
    for key, value in pairs:
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ValueError(f"{action}: invalid header name {_show(key)}")
        lowered = key.lower()
        if lowered in _RESERVED:
            raise ValueError(f"{action}: header {key!r} is reserved (the client assigns the ActionID)")
        if not isinstance(value, str):
            raise TypeError(f"{action}: header {key!r} must be a str, not {type(value).__name__}")
        if _FORBIDDEN.search(value):
            raise ValueError(f"{action}: header {key!r} contains CR, LF or NUL")
        if lowered == "variable" and "," in value:
            raise ValueError(f"{action}: header {key!r} contains a comma, which Asterisk splits on")
        lines.append(f"{key}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


def _show(name: object) -> str:
    """A name for an error message: repr, cut short, since it is invalid and may be anything."""
    text = repr(name)
    return text if len(text) <= 40 else text[:37] + "..."
