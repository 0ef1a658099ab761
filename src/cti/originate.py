"""Originate without ever dialling twice.

Every Originate carries a ``ChannelId`` chosen by us before it is sent, so the channel it creates has
a Uniqueid we know. If the AMI link drops after the action is written and before Asterisk answers,
the outcome is unknown: instead of sending it again (which could ring a customer twice), we wait for
the link to come back and look for our ChannelId among Asterisk's live channels. Found: the call
exists. Not found: it was never created, or it already ended; either way it is reported as such and
never re-dialled here: the caller (routing, the dialer) decides, with its own audit trail.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cti.ports import ActionFailed, ActionOutcomeUnknown, LinkDown

# Only a technology and a device name: no dial-string options, no '&' (several targets) or ','.
_CHANNEL = re.compile(r"^(PJSIP|Local)/[A-Za-z0-9_.@+-]{1,80}$")
_EXTEN = re.compile(r"^[0-9*#+]{1,32}$|^s$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class OriginateOutcome(enum.StrEnum):
    ACCEPTED = "accepted"  # Asterisk answered Success: the channel is being created
    FAILED = "failed"  # Asterisk answered Error: nothing was created
    LIVE_AFTER_LOSS = "live_after_link_loss"  # link lost; our ChannelId is live in Asterisk
    ABSENT_AFTER_LOSS = "absent_after_link_loss"  # link lost; no channel has our ChannelId now
    UNRESOLVED = "unresolved"  # link lost and not back in time to look: still unknown, not retried


class OriginatingLink(Protocol):
    async def send(
        self, action: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> dict[str, str]: ...

    async def send_list(
        self, action: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> tuple[dict[str, str], list[dict[str, str]]]: ...

    async def wait_connected(self, timeout: float) -> None: ...


def new_channel_id(prefix: str = "cti") -> str:
    """An opaque, unguessable id for a channel we are about to create."""
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    """Ring ``channel`` and, when answered, run it at ``context``/``exten``/``priority``.

    Every field is validated here, before anything reaches Asterisk: a channel is a technology and a
    device name only, an extension digits (or ``s``), variables plain names with values free of
    commas and line breaks (Asterisk splits ``Variable`` on commas).
    """

    channel: str
    context: str
    exten: str
    priority: int = 1
    caller_id_num: str = ""
    caller_id_name: str = ""
    ring_seconds: int = 30
    variables: Mapping[str, str] = field(default_factory=dict)
    channel_id: str = field(default_factory=new_channel_id)
    other_channel_id: str | None = None

    def __post_init__(self) -> None:
        if not _CHANNEL.match(self.channel):
            raise ValueError(f"not a channel we originate to: {self.channel!r}")
        if not _NAME.match(self.context):
            raise ValueError(f"not a dialplan context: {self.context!r}")
        if not _EXTEN.match(self.exten):
            raise ValueError(f"not an extension: {self.exten!r}")
        if not 1 <= self.priority <= 999 or not 1 <= self.ring_seconds <= 600:
            raise ValueError("priority must be 1..999 and ring_seconds 1..600")
        if self.caller_id_num and not re.fullmatch(r"\+?[0-9]{1,20}", self.caller_id_num):
            raise ValueError(f"a caller id number is digits only: {self.caller_id_num!r}")
        for value in (self.caller_id_name, *self.variables.values()):
            if any(c in value for c in '\r\n\0,"<>'):
                raise ValueError(
                    f'a caller name or variable value cannot contain , " < > or line breaks: {value!r}'
                )
        for name in self.variables:
            if not _NAME.match(name):
                raise ValueError(f"not a variable name: {name!r}")
        for cid in (self.channel_id, self.other_channel_id):
            if cid is not None and not _CHANNEL_ID.match(cid):
                raise ValueError(f"not a channel id: {cid!r}")

    def headers(self) -> list[tuple[str, str]]:
        out = [
            ("Channel", self.channel),
            ("Context", self.context),
            ("Exten", self.exten),
            ("Priority", str(self.priority)),
            ("Timeout", str(self.ring_seconds * 1000)),
            ("ChannelId", self.channel_id),
            ("Async", "true"),
        ]
        if self.other_channel_id:
            out.append(("OtherChannelId", self.other_channel_id))
        if self.caller_id_num or self.caller_id_name:
            name = f'"{self.caller_id_name}" ' if self.caller_id_name else ""
            out.append(("CallerID", f"{name}<{self.caller_id_num}>"))
        out += [("Variable", f"{k}={v}") for k, v in self.variables.items()]
        return out


@dataclass(frozen=True, slots=True)
class OriginateResult:
    outcome: OriginateOutcome
    channel_id: str
    message: str = ""


async def originate(
    link: OriginatingLink, request: OriginateRequest, *, reconcile_within: float = 30.0
) -> OriginateResult:
    """Send one Originate; on a lost answer, reconcile by ``ChannelId``. Never sends it twice.

    Raises ``LinkDown`` only when the link was down before anything was written (nothing was sent;
    the caller may try later).
    """
    try:
        response = await link.send("Originate", request.headers())
    except ActionFailed as exc:
        return OriginateResult(OriginateOutcome.FAILED, request.channel_id, exc.message)
    except (ActionOutcomeUnknown, TimeoutError):
        return await _reconcile(link, request, reconcile_within)
    return OriginateResult(OriginateOutcome.ACCEPTED, request.channel_id, response.get("Message", ""))


async def _reconcile(link: OriginatingLink, request: OriginateRequest, within: float) -> OriginateResult:
    try:
        await link.wait_connected(within)
        _, channels = await link.send_list("CoreShowChannels")
    except (TimeoutError, LinkDown, ActionOutcomeUnknown) as exc:
        return OriginateResult(OriginateOutcome.UNRESOLVED, request.channel_id, f"could not look: {exc}")
    ours = {request.channel_id, request.other_channel_id}
    if any(c.get("Uniqueid") in ours for c in channels):
        return OriginateResult(OriginateOutcome.LIVE_AFTER_LOSS, request.channel_id, "found by ChannelId")
    return OriginateResult(
        OriginateOutcome.ABSENT_AFTER_LOSS, request.channel_id, "no live channel has its id"
    )
