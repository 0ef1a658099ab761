"""Call control: what an agent, or a supervisor for them, does to the agent's current call.

Hang up, hold and resume, blind transfer (to an agent, a service's line or an outside number) and
attended transfer (the agent talks to the target first, then completes or cancels). Every operation
is one AMI action, built here by a pure function from values checked first (channel names as
Asterisk gave them, agent ids and outside numbers as digits only), and written once through the
routing service's ``ActionSink``:

* hangup: ``Hangup`` of the caller's channel (the dialplan then ends the agent's leg too);
* hold: one ``Redirect`` of the caller to ``cti-hold`` (music) with ``ExtraChannel`` the agent's leg
  to ``cti-hold-agent`` (silence). Asterisk has no AMI hold action, and moving both legs in one
  action keeps both alive (moving only the caller would end the agent's leg);
* resume: ``Bridge`` of the two legs; after that bridge each leg goes on to its ``Hangup()``, so
  one side leaving ends the other, as in a routed call;
* blind, to an agent: ``Redirect`` of the caller to ``cti-transfer,<agent>``: the caller rings the
  target as a routed call does, and the first agent's leg ends;
* blind, to a service: ``Redirect`` of the caller to ``cti-wait``: the caller waits in that
  service's line and routing picks an agent;
* blind, to a number: ``Redirect`` of the caller to ``cti-outside,<digits>``, the number checked as
  E.164 with ``phonenumbers`` so that only digits reach the dial string;
* attended: one ``Redirect`` of the caller to ``cti-hold`` (music) with ``ExtraChannel`` the agent's
  leg to ``cti-consult,<agent>``, where it dials the target; the agent talks to the target;
* complete: ``Bridge`` of the caller and the target's leg, then ``Hangup`` of the agent's leg;
* cancel: ``Hangup`` of the target's leg, then ``Bridge`` of the caller and the agent's leg (also
  done on its own when the target does not answer or hangs up during the consultation).

(Asterisk's own attended transfer, AMI ``Atxfer``, needs transfer features on the agent's side of
every routed call: a phone's ``#`` would then blind-transfer behind routing's back. The consultation
built from hold and ``Bridge`` needs nothing enabled on the agents' phones.)

Complete and cancel are two actions: the second is sent only after Asterisk accepted the first.
An action is never sent twice. ``ActionFailed`` (Asterisk said no: the channel is gone, say) and
``LinkDown`` (nothing written) undo what was prepared (a target agent's reservation); a lost answer
(``ActionOutcomeUnknown`` or a timeout) keeps it, and the calls that follow say what happened.

Agents' states follow the calls, as for routed calls: a transfer target is reserved when the transfer
starts (409 if they are not ready) and goes on a call when the call shows them talking to the caller;
the transferring agent goes to wrap-up then. A call transferred to an outside number leaves routing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

import phonenumbers

from cti.model import CallControlled, CallKey, CallPhase, CallSnapshot
from cti.ports import ActionFailed, ActionOutcomeUnknown, LinkDown
from routing.model import (
    AgentStatus,
    Answer,
    CallControlState,
    CancelReservation,
    Hangup,
    HeldCall,
    PendingTransfer,
    Target,
    TargetKind,
    TransferMode,
)

if TYPE_CHECKING:
    from routing.service import Connection, RoutingService

log = logging.getLogger("cti.routing.calls")

HOLD_CONTEXT = "cti-hold"
HOLD_AGENT_CONTEXT = "cti-hold-agent"
TRANSFER_CONTEXT = "cti-transfer"
CONSULT_CONTEXT = "cti-consult"
OUTSIDE_CONTEXT = "cti-outside"
WAIT_CONTEXT = "cti-wait"

Action = tuple[str, dict[str, str]]

_DIGITS = re.compile(r"^[0-9]{1,32}$")
_NUMBER_TEXT = re.compile(r"^\+[0-9 ().-]+$")
# A channel name as Asterisk gives it: technology/resource, no spaces, no line breaks.
_CHANNEL = re.compile(r"^[A-Za-z0-9]{1,16}/[A-Za-z0-9_.@;:+-]{1,120}$")


class CallControlError(Exception):
    """Base of call control's refusals; ``str()`` is the sentence the API returns."""


class NoCall(CallControlError):
    """The agent has no call in a state that allows the operation (HTTP 409)."""


class InvalidTarget(CallControlError, ValueError):
    """A transfer target that is not an agent, a service or a valid outside number (HTTP 422)."""


class Refused(CallControlError):
    """Asterisk answered Error: nothing changed (HTTP 409: the call moved on meanwhile)."""


class NotSent(CallControlError):
    """The AMI link is down: nothing was written (HTTP 503; try again when it is back)."""


class OutcomeUnknown(CallControlError):
    """Written, but the answer was lost (HTTP 504). Not re-sent: the calls will show what happened."""


# ---------------------------------------------------------------------- pure: values and actions


def outside_digits(number: str) -> str:
    """The digits of an outside number given in E.164 (``+8613800138000`` → ``8613800138000``).

    ``InvalidTarget`` unless ``phonenumbers`` finds a valid number; only the digits of its E.164 form
    are returned, so nothing but digits can reach a dial string."""
    text = number.strip()
    if not text.startswith("+") or len(text) > 32:
        raise InvalidTarget(f"an outside number is E.164, starting with +: {number!r}")
    if not _NUMBER_TEXT.fullmatch(text):
        # Extensions (",1", "ext. 2"), letters and control characters are refused, not dropped.
        raise InvalidTarget(f"an outside number has digits, spaces and - ( ) . only: {number!r}")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidTarget(f"not a phone number: {number!r} ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidTarget(f"not a valid phone number: {number!r}")
    digits = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
    if not _DIGITS.fullmatch(digits):  # phonenumbers' E.164 is digits; checked again for the dial string
        raise InvalidTarget(f"not a dialable number: {number!r}")
    return digits


def check_channel(channel: str) -> str:
    """A channel name safe to put in an action: ``ValueError`` for an empty one or one with line
    breaks, NUL or characters Asterisk never puts in a channel name."""
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(f"not a channel name: {channel!r}")
    return channel


def check_agent_id(agent_id: str) -> str:
    if not _DIGITS.fullmatch(agent_id):
        raise InvalidTarget(f"an agent id is digits: {agent_id!r}")
    return agent_id


def agent_leg(snapshot: CallSnapshot, agent_id: str) -> str | None:
    """The agent's own channel in the call (``PJSIP/1001-0000000a``), or ``None``."""
    pattern = re.compile(rf"^PJSIP/{re.escape(agent_id)}-[0-9A-Za-z]+$")
    legs = [c for c in snapshot.channels if pattern.fullmatch(c)]
    return legs[-1] if legs else None


def _redirect(channel: str, context: str, exten: str) -> Action:
    return (
        "Redirect",
        {"Channel": check_channel(channel), "Context": context, "Exten": exten, "Priority": "1"},
    )


def hangup_action(caller_channel: str) -> Action:
    """End the call: hang up the caller (cause 16, normal clearing)."""
    return ("Hangup", {"Channel": check_channel(caller_channel), "Cause": "16"})


def hold_action(caller_channel: str, agent_channel: str) -> Action:
    """Caller to music on hold, the agent's leg to silence: one Redirect moving both at once."""
    context, headers = _redirect(caller_channel, HOLD_CONTEXT, "s")
    headers |= {
        "ExtraChannel": check_channel(agent_channel),
        "ExtraContext": HOLD_AGENT_CONTEXT,
        "ExtraExten": "s",
        "ExtraPriority": "1",
    }
    return context, headers


def resume_action(caller_channel: str, agent_channel: str) -> Action:
    """Bridge the held caller and the agent's leg again."""
    return (
        "Bridge",
        {"Channel1": check_channel(caller_channel), "Channel2": check_channel(agent_channel), "Tone": "no"},
    )


def blind_transfer_action(caller_channel: str, target: Target) -> Action:
    """Move the caller: to ring an agent, into a service's line (routing chooses), or out."""
    if target.kind is TargetKind.AGENT:
        return _redirect(caller_channel, TRANSFER_CONTEXT, check_agent_id(target.value))
    if target.kind is TargetKind.SERVICE:
        return _redirect(caller_channel, WAIT_CONTEXT, "s")
    if not _DIGITS.fullmatch(target.value):
        raise InvalidTarget(f"an outside number is dialled as digits: {target.value!r}")
    return _redirect(caller_channel, OUTSIDE_CONTEXT, target.value)


def attended_transfer_action(caller_channel: str, agent_channel: str, target_agent: str) -> Action:
    """The caller to music on hold and the agent's leg to ``<target>@cti-consult`` (it dials the
    target): one Redirect moving both at once, as for hold."""
    name, headers = _redirect(caller_channel, HOLD_CONTEXT, "s")
    headers |= {
        "ExtraChannel": check_channel(agent_channel),
        "ExtraContext": CONSULT_CONTEXT,
        "ExtraExten": check_agent_id(target_agent),
        "ExtraPriority": "1",
    }
    return name, headers


def complete_transfer_actions(caller_channel: str, agent_channel: str, target_channel: str) -> list[Action]:
    """The caller joins the target; then the transferring agent's leg ends."""
    return [resume_action(caller_channel, target_channel), hangup_action(agent_channel)]


def cancel_transfer_actions(
    caller_channel: str, agent_channel: str, target_channel: str | None
) -> list[Action]:
    """The target's leg ends (if it is still there); then the caller is back with the agent."""
    first = [hangup_action(target_channel)] if target_channel else []
    return [*first, resume_action(caller_channel, agent_channel)]


# ---------------------------------------------------------------------- live: the calls' control


@dataclass
class CallControlHealth:
    actions_sent: int = 0
    actions_failed: int = 0
    actions_unknown: int = 0
    transfers_completed: int = 0
    transfers_cancelled: int = 0
    transfers_not_done: int = 0  # a lost answer, and Asterisk showed the transfer never happened


#: Asterisk's live channels (AMI ``CoreShowChannels``: one header mapping per channel).
ChannelList = Callable[[], Awaitable[list[dict[str, str]]]]


def transfer_not_done(
    channels: list[dict[str, str]], caller_channel: str, linkedid: str, from_agent: str, target: str
) -> bool:
    """Whether Asterisk's channels (``CoreShowChannel`` events) show that a blind transfer of
    ``caller_channel`` to ``target`` did not happen: the caller is still bridged with
    ``from_agent``'s leg, and the target has no channel in the call. ``False`` when it did, or may
    have (the caller left that bridge, the target's phone is in the call, the caller is gone)."""
    caller = next((c for c in channels if c.get("Channel") == caller_channel), None)
    if caller is None:
        return False  # the caller is gone: the call's end says the rest
    bridge = caller.get("BridgeId", "")
    in_call = [c for c in channels if c.get("Linkedid") == linkedid]
    target_leg = re.compile(rf"^PJSIP/{re.escape(target)}-[0-9A-Za-z]+$")
    agent_leg_ = re.compile(rf"^PJSIP/{re.escape(from_agent)}-[0-9A-Za-z]+$")
    if any(target_leg.fullmatch(c.get("Channel", "")) for c in in_call):
        return False
    return bool(bridge) and any(
        agent_leg_.fullmatch(c.get("Channel", "")) and c.get("BridgeId") == bridge for c in in_call
    )


@dataclass(frozen=True, slots=True)
class ControlResult:
    """What an operation did: the call and where it is now."""

    call: CallKey
    agent_id: str
    state: str  # hung_up, held, talking, transferring, consulting
    target: Target | None = None


@dataclass
class CallControl:
    """Call control for one routing service (same loop, same lock). The service calls the hooks
    ``on_call``, ``on_gone`` and ``service_for``; the HTTP routes call the operations."""

    service: RoutingService
    health: CallControlHealth = field(default_factory=CallControlHealth)
    #: Told of every operation Asterisk accepted (the bus, for consoles); must not block.
    publish: Callable[[CallControlled], None] | None = None
    #: Asterisk's live channels, read to learn whether a blind transfer whose answer was lost took;
    #: without it, the calls as the call model shows them are the evidence.
    channels: ChannelList | None = None
    _held: dict[CallKey, HeldCall] = field(default_factory=dict)
    _transfers: dict[CallKey, PendingTransfer] = field(default_factory=dict)
    _moved_to_service: dict[CallKey, str] = field(default_factory=dict)
    _left: set[CallKey] = field(default_factory=set)
    _controlled: set[CallKey] = field(default_factory=set)  # legs moved by hold or a consultation
    # What the live state holds for each call (routing.state): the dicts above are this node's
    # working copy, written through to it whenever they change (``_sync``).
    _stored: dict[CallKey, CallControlState] = field(default_factory=dict)
    # Blind transfers whose answer was lost, and when to look at what Asterisk did.
    _check_at: dict[CallKey, datetime] = field(default_factory=dict)

    # ------------------------------------------------------------------ the live state

    def record(self, key: CallKey) -> CallControlState:
        """What call control has done to the call, as the live state keeps it."""
        return CallControlState(
            held=self._held.get(key),
            transfer=self._transfers.get(key),
            moved_to_service=self._moved_to_service.get(key),
            left=key in self._left,
            controlled=key in self._controlled,
        )

    async def load(self) -> None:
        """Take up what the live state says of calls under control (another node's, or this
        platform's before a restart). The router's resync then lets go of calls no longer live."""
        for key, record in (await self.service.live.call_controls()).items():
            self._put(key, record)
            self._stored[key] = record
            if record.transfer is not None and record.transfer.outcome_unknown:
                self._check_at[key] = self.service.clock() + self.service.connect_grace

    def keys(self) -> set[CallKey]:
        """Every call call control holds something for."""
        return set(self._stored) | set(self._held) | set(self._transfers) | self._left | self._controlled

    def _put(self, key: CallKey, record: CallControlState) -> None:
        if record.held is not None:
            self._held[key] = record.held
        if record.transfer is not None:
            self._transfers[key] = record.transfer
        if record.moved_to_service is not None:
            self._moved_to_service[key] = record.moved_to_service
        if record.left:
            self._left.add(key)
        if record.controlled:
            self._controlled.add(key)

    async def _sync(self, key: CallKey) -> None:
        """Write the call's record to the live state if it changed (removed once empty)."""
        record = self.record(key)
        if self._stored.get(key, CallControlState()) == record:
            return
        await self.service.live.put_call_control(key, record)
        if record.empty:
            self._stored.pop(key, None)
        else:
            self._stored[key] = record

    # ------------------------------------------------------------------ reading

    def held(self, key: CallKey) -> bool:
        return key in self._held

    def pending_transfer(self, key: CallKey) -> PendingTransfer | None:
        return self._transfers.get(key)

    def current_call(self, agent_id: str) -> tuple[CallSnapshot, Connection]:
        """The call the agent is talking on (or holding); ``NoCall`` if none."""
        for key, conn in self.service.connections().items():
            if conn.agent_id == agent_id and conn.answered:
                snap = self.service.call(key)
                if snap is not None and snap.ended_at is None:
                    return snap, conn
        raise NoCall(f"agent {agent_id} has no call")

    # ------------------------------------------------------------------ operations

    async def hangup(self, agent_id: str) -> ControlResult:
        async with self.service.lock:
            snap, _ = self.current_call(agent_id)
            await self._send(hangup_action(snap.anchor_channel))
            return self._tell("hangup", ControlResult(snap.key, agent_id, "hung_up"))

    async def hold(self, agent_id: str) -> ControlResult:
        async with self.service.lock:
            snap, _ = self.current_call(agent_id)
            try:
                return await self._hold(snap, agent_id)
            finally:
                await self._sync(snap.key)

    async def _hold(self, snap: CallSnapshot, agent_id: str) -> ControlResult:
        if snap.key in self._held:
            raise NoCall(f"agent {agent_id}'s call is already on hold")
        if snap.key in self._transfers:
            raise NoCall(f"agent {agent_id}'s call is being transferred")
        leg = self._leg(snap, agent_id)
        held = HeldCall(agent_id, leg, self.service.clock())
        self._controlled.add(snap.key)
        try:
            await self._send(hold_action(snap.anchor_channel, leg))
        except OutcomeUnknown:
            self._held[snap.key] = held  # it may have taken: resuming is allowed, and harmless if not
            raise
        self._held[snap.key] = held
        return self._tell("hold", ControlResult(snap.key, agent_id, "held"))

    async def resume(self, agent_id: str) -> ControlResult:
        async with self.service.lock:
            snap, _ = self.current_call(agent_id)
            try:
                return await self._resume(snap, agent_id)
            finally:
                await self._sync(snap.key)

    async def _resume(self, snap: CallSnapshot, agent_id: str) -> ControlResult:
        held = self._held.get(snap.key)
        if held is None:
            raise NoCall(f"agent {agent_id}'s call is not on hold")
        try:
            await self._send(resume_action(snap.anchor_channel, held.agent_channel))
        except OutcomeUnknown:
            self._held.pop(snap.key, None)
            raise
        self._held.pop(snap.key, None)
        return self._tell("resume", ControlResult(snap.key, agent_id, "talking"))

    async def transfer(
        self, agent_id: str, mode: TransferMode, kind: TargetKind, value: str
    ) -> ControlResult:
        """Start a transfer of the agent's call. Blind goes at once; attended starts the consultation."""
        async with self.service.lock:
            target = self._target(kind, value)
            if mode is TransferMode.ATTENDED and target.kind is not TargetKind.AGENT:
                raise InvalidTarget("an attended transfer goes to an agent")
            snap, conn = self.current_call(agent_id)
            try:
                return await self._transfer(snap, conn, agent_id, mode, target)
            finally:
                await self._sync(snap.key)

    async def _transfer(
        self, snap: CallSnapshot, conn: Connection, agent_id: str, mode: TransferMode, target: Target
    ) -> ControlResult:
        key = snap.key
        if key in self._held:
            raise NoCall(f"agent {agent_id}'s call is on hold: resume it first")
        if key in self._transfers:
            raise NoCall(f"agent {agent_id}'s call is already being transferred")
        if target.kind is TargetKind.AGENT and target.value == agent_id:
            raise InvalidTarget("an agent cannot transfer a call to themselves")
        leg = self._leg(snap, agent_id)
        now = self.service.clock()
        pending = PendingTransfer(mode, target, agent_id, leg, now)
        if target.kind is TargetKind.AGENT:
            await self._reserve(target.value, key, conn.service, now)
        if mode is TransferMode.ATTENDED:
            action = attended_transfer_action(snap.anchor_channel, leg, target.value)
        else:
            action = blind_transfer_action(snap.anchor_channel, target)
        self._transfers[key] = pending
        if mode is TransferMode.ATTENDED:
            self._controlled.add(key)
        if target.kind is TargetKind.SERVICE:
            self._moved_to_service[key] = target.value
        try:
            await self._send(action)
        except OutcomeUnknown:
            # Kept: the calls will show whether it happened. A blind transfer to an agent that never
            # happened would leave the target reserved until the call ends: after the grace, what
            # Asterisk did is looked at (``reconcile``).
            if mode is TransferMode.BLIND and target.kind is TargetKind.AGENT:
                self._transfers[key] = replace(pending, outcome_unknown=True)
                self._check_at[key] = now + self.service.connect_grace
            raise
        except CallControlError:
            await self._undo(key, pending, "transfer_failed")
            raise
        if target.kind is TargetKind.NUMBER:
            # The call leaves the centre: the agent's part is over, routing follows it no more.
            self._transfers.pop(key, None)
            self._left.add(key)
            await self._end_for_agent(key, conn)
        state = "consulting" if mode is TransferMode.ATTENDED else "transferring"
        return self._tell("transfer", ControlResult(key, agent_id, state, target))

    async def complete(self, agent_id: str) -> ControlResult:
        """Join the caller and the target; the transferring agent's leg ends."""
        async with self.service.lock:
            snap, pending = self._attended(agent_id)
            try:
                return await self._complete(snap, pending, agent_id)
            finally:
                await self._sync(snap.key)

    async def _complete(self, snap: CallSnapshot, pending: PendingTransfer, agent_id: str) -> ControlResult:
        target_leg = agent_leg(snap, pending.target.value)
        if target_leg is None:
            raise NoCall(f"agent {pending.target.value}'s phone is not in the call (yet)")
        bridge, hangup = complete_transfer_actions(snap.anchor_channel, pending.agent_channel, target_leg)
        await self._send(bridge)
        pending = self._transfers[snap.key] = replace(pending, completing=True)
        await self._send_quietly(hangup)  # if it fails, the agent's leg ends when the caller's does
        return self._tell("complete", ControlResult(snap.key, agent_id, "transferring", pending.target))

    async def cancel(self, agent_id: str) -> ControlResult:
        """End the consultation: the agent is back with the caller; the target is free again."""
        async with self.service.lock:
            snap, pending = self._attended(agent_id)
            try:
                await self._reconnect(snap, pending, "transfer_cancelled")
            finally:
                await self._sync(snap.key)
            return self._tell("cancel", ControlResult(snap.key, agent_id, "talking"))

    # ------------------------------------------------------------------ hooks (under the service's lock)

    def wake_moments(self) -> list[datetime]:
        """When ``on_time`` has something to look at."""
        return list(self._check_at.values())

    def on_resync(self, now: datetime) -> None:
        """The AMI link is back: the grace of transfers whose answer was lost counts from now (the
        calls shown after a resync are the first evidence of where they went)."""
        for key in self._check_at:
            self._check_at[key] = now + self.service.connect_grace

    async def on_time(self, now: datetime) -> None:
        for key, at in list(self._check_at.items()):
            if now >= at:
                try:
                    await self.reconcile(key, now)
                finally:
                    await self._sync(key)

    async def reconcile(self, key: CallKey, now: datetime) -> None:
        """A blind transfer to an agent whose answer was lost, and its grace passed without the
        calls showing it: ask Asterisk (its live channels) whether it happened. If the caller is still
        bridged with the transferring agent and the target has no channel in the call, it did not:
        the target's reservation is released and the agent may act on the call again."""
        self._check_at.pop(key, None)
        pending = self._transfers.get(key)
        snap = self.service.call(key)
        if pending is None or not pending.outcome_unknown or snap is None:
            return  # followed meanwhile, or the call ended (``on_gone`` releases the target)
        target = pending.target.value
        if self.channels is not None:
            try:
                live = await self.channels()
            except (LinkDown, ActionOutcomeUnknown, ActionFailed, TimeoutError) as exc:
                log.info("call %s: Asterisk's channels not read (%s); looking again later", key, exc)
                self._check_at[key] = now + self.service.connect_grace
                return
            not_done = transfer_not_done(live, snap.anchor_channel, key.linkedid, pending.from_agent, target)
        else:
            not_done = (
                snap.agent == pending.from_agent
                and snap.phase in (CallPhase.TALKING, CallPhase.HELD)
                and pending.agent_channel in snap.channels
                and agent_leg(snap, target) is None
            )
        if not not_done:
            # It took (or may have): from here it is followed as any blind transfer.
            self._transfers[key] = replace(pending, outcome_unknown=False)
            return
        log.warning(
            "call %s: the blind transfer to agent %s whose answer was lost never happened; %s is "
            "released and the call stays with agent %s",
            key,
            target,
            target,
            pending.from_agent,
        )
        self.health.transfers_not_done += 1
        await self._undo(key, pending, "transfer_not_done")

    def service_for(self, key: CallKey) -> str | None:
        """The service a call was transferred to, if it was: it waits in that line."""
        return self._moved_to_service.get(key)

    async def on_call(self, snap: CallSnapshot, now: datetime) -> bool:
        """Follow a live call under control. ``True``: handled here, routing leaves this change alone."""
        if snap.key not in self._held and snap.key not in self._transfers and snap.key not in self._left:
            return False  # the common case: nothing under control, nothing to write
        try:
            return await self._follow(snap, now)
        finally:
            await self._sync(snap.key)

    async def _follow(self, snap: CallSnapshot, now: datetime) -> bool:
        key = snap.key
        if key in self._left:
            return True
        held = self._held.get(key)
        if held is not None and held.agent_channel not in snap.channels:
            # The agent's leg hung up while the caller was on hold: nobody would ever come back.
            self._held.pop(key, None)
            await self._send_quietly(hangup_action(snap.anchor_channel))
            return False
        pending = self._transfers.get(key)
        if pending is None:
            return False
        conn = self.service.connections().get(key)
        target = pending.target
        if target.kind is TargetKind.SERVICE:
            if snap.phase is CallPhase.WAITING:
                self._transfers.pop(key, None)  # routing's own line takes it from here (service_for)
                self.health.transfers_completed += 1
            return False
        if target.kind is TargetKind.NUMBER:
            # Only after a lost answer is an outside transfer still pending here: the agent's leg
            # leaving the call is the sign that it took.
            if conn is None or conn.agent_id != pending.from_agent or pending.agent_channel in snap.channels:
                return False
            self._transfers.pop(key, None)
            self._left.add(key)
            await self._end_for_agent(key, conn)
            return True
        if pending.mode is TransferMode.BLIND:
            # Changes reach routing coalesced per call, so this reads where the call is now, not
            # which steps it took: back to waiting (on its way to the target), ringing the target,
            # or already talking to them.
            moved = snap.phase is CallPhase.WAITING or snap.agent == target.value
            if not moved or conn is None or conn.agent_id != pending.from_agent:
                return False
            self._transfers.pop(key, None)
            self.health.transfers_completed += 1
            await self._end_for_agent(key, conn)
            new = self.service.adopt_connection(key, target.value, conn.service, pending.since)
            if snap.agent == target.value and snap.phase in (CallPhase.TALKING, CallPhase.HELD):
                new.ringing = new.answered = True
                await self.service.agent_event(target.value, Answer(), now)
                return True
            if snap.agent == target.value and snap.phase is CallPhase.RINGING_AGENT:
                new.ringing = True
                return True
            # Waiting: still on its way to the target, unless it already rang there and came back
            # (a ring-no-answer, which routing handles as for any call it connected).
            return not any(m.phase is CallPhase.RINGING_AGENT and m.at >= pending.since for m in snap.history)
        # Attended.
        if snap.agent == target.value and conn is not None and conn.agent_id == pending.from_agent:
            self._transfers.pop(key, None)
            self.health.transfers_completed += 1
            await self._end_for_agent(key, conn)
            new = self.service.adopt_connection(key, target.value, conn.service, now)
            new.answered = new.ringing = True
            await self.service.agent_event(target.value, Answer(), now)
            return True
        if agent_leg(snap, target.value) is not None:
            if not pending.target_leg_seen:
                self._transfers[key] = replace(pending, target_leg_seen=True)
        elif pending.target_leg_seen and not pending.completing:
            # The consultation ended without a transfer (the target hung up or never answered):
            # the agent is given back the caller.
            await self._reconnect(snap, pending, "transfer_not_answered", send_errors=False)
        return False

    async def on_gone(self, key: CallKey, now: datetime) -> None:
        """The caller hung up: let go of whatever was prepared for the call, and end the agent's
        leg if it was moved by call control (on hold, consulting, or bridged again by this module:
        the dialplan cannot always end it by itself)."""
        self._left.discard(key)
        self._moved_to_service.pop(key, None)
        self._check_at.pop(key, None)
        legs: list[str] = []
        held = self._held.pop(key, None)
        if held is not None:
            legs.append(held.agent_channel)
        pending = self._transfers.pop(key, None)
        if pending is not None and pending.target.kind is TargetKind.AGENT:
            await self._release(pending.target.value, key, "caller_abandoned")
            if pending.mode is TransferMode.ATTENDED:
                legs.append(pending.agent_channel)
        snap = self.service.call(key)
        conn = self.service.connections().get(key)
        if key in self._controlled and snap is not None and conn is not None:
            leg = agent_leg(snap, conn.agent_id)
            if leg is not None:
                legs.append(leg)
        self._controlled.discard(key)
        await self._sync(key)
        for leg in dict.fromkeys(legs):
            await self._send_quietly(hangup_action(leg))

    # ------------------------------------------------------------------ internals

    def _tell(self, action: str, result: ControlResult) -> ControlResult:
        if self.publish is not None:
            target = f"{result.target.kind.value}:{result.target.value}" if result.target else None
            self.publish(
                CallControlled(
                    result.call, result.agent_id, action, result.state, target, self.service.clock()
                )
            )
        return result

    def _leg(self, snap: CallSnapshot, agent_id: str) -> str:
        leg = agent_leg(snap, agent_id)
        if leg is None:
            raise NoCall(f"agent {agent_id}'s phone is not in the call")
        return leg

    def _attended(self, agent_id: str) -> tuple[CallSnapshot, PendingTransfer]:
        snap, _ = self.current_call(agent_id)
        pending = self._transfers.get(snap.key)
        if pending is None or pending.mode is not TransferMode.ATTENDED:
            raise NoCall(f"agent {agent_id} has no attended transfer under way")
        return snap, pending

    def _target(self, kind: TargetKind, value: str) -> Target:
        if kind is TargetKind.AGENT:
            agent_id = check_agent_id(value)
            if not self.service.has_agent(agent_id):
                raise InvalidTarget(f"no agent {agent_id}")
            return Target(kind, agent_id)
        if kind is TargetKind.SERVICE:
            name = self.service.service_named(value)
            if name is None:
                raise InvalidTarget(f"no service {value!r}")
            return Target(kind, name)
        return Target(kind, outside_digits(value))

    async def _reserve(self, agent_id: str, key: CallKey, service: str, now: datetime) -> None:
        state = await self.service.live.reserve(agent_id, key, service, now)
        if state is None:
            current = await self.service.live.get_agent(agent_id)
            status = current.status.value if current else AgentStatus.LOGGED_OUT.value
            raise NoCall(f"agent {agent_id} is {status}, not ready: the call stays where it is")
        self.service.board_agent(agent_id, state)

    async def _release(self, agent_id: str, key: CallKey, reason: str) -> None:
        state = await self.service.live.get_agent(agent_id)
        if state is not None and state.status is AgentStatus.RESERVED and state.call == key:
            await self.service.agent_event(agent_id, CancelReservation(reason), self.service.clock())

    async def _undo(self, key: CallKey, pending: PendingTransfer, reason: str) -> None:
        self._transfers.pop(key, None)
        self._check_at.pop(key, None)
        self._moved_to_service.pop(key, None)
        if pending.target.kind is TargetKind.AGENT:
            await self._release(pending.target.value, key, reason)

    async def _reconnect(
        self, snap: CallSnapshot, pending: PendingTransfer, reason: str, *, send_errors: bool = True
    ) -> None:
        target_leg = agent_leg(snap, pending.target.value)
        actions = cancel_transfer_actions(snap.anchor_channel, pending.agent_channel, target_leg)
        if target_leg is not None:
            await self._send_quietly(actions.pop(0))
        if send_errors:
            await self._send(actions[0])
        else:
            await self._send_quietly(actions[0])
        await self._undo(snap.key, pending, reason)
        self.health.transfers_cancelled += 1

    async def _end_for_agent(self, key: CallKey, conn: Connection) -> None:
        """The transferring agent's part of the call is over: wrap-up, as after a hang-up."""
        self.service.drop_connection(key)
        wrap_up = self.service.wrap_up_seconds(conn.service)
        await self.service.agent_event(conn.agent_id, Hangup(wrap_up), self.service.clock())

    async def _send(self, action: Action) -> None:
        name, headers = action
        try:
            await self.service.actions.send(name, headers)
        except ActionFailed as exc:
            self.health.actions_failed += 1
            raise Refused(f"Asterisk refused {name}: {exc.message}") from exc
        except LinkDown as exc:
            self.health.actions_failed += 1
            raise NotSent(f"the PBX link is down; {name} was not sent") from exc
        except (ActionOutcomeUnknown, TimeoutError) as exc:
            self.health.actions_unknown += 1
            log.warning("%s: outcome unknown, not re-sent (%s)", name, exc)
            raise OutcomeUnknown(f"{name} was sent but its answer was lost; it is not sent again") from exc
        self.health.actions_sent += 1
        log.info("call control: %s %s", name, headers.get("Channel") or headers.get("Channel1"))

    async def _send_quietly(self, action: Action) -> None:
        try:
            await self._send(action)
        except (CallControlError, ValueError) as exc:
            log.info("call control: %s", exc)
