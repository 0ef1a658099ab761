"""The live call model: a pure book of calls that applies typed events and yields changes.

A *call* is one customer conversation, keyed by its PBX and the ``Linkedid`` of its first channel
(the *anchor*: the caller's leg for an inbound call). Other channels join the call when they share its
Linkedid (a ``Dial`` from the dialplan, a Local channel pair) or when they enter a bridge with the
anchor (an agent leg originated separately, the target of an attended transfer). The call keeps its
key while its other channels come and go, so it survives Local-channel optimisation and transfers.

Every method takes ``now`` (timezone-aware UTC) and returns the ``CallChange`` values it caused; the
book never reads a clock and does no I/O. Applying the same event twice, or an event for a channel
the book never saw, changes nothing: after a resync, replays are harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cti.events import (
    BridgeEntered,
    BridgeLeft,
    CallerIdChanged,
    ChannelEvent,
    ChannelListed,
    ChannelRenamed,
    ChannelStateChanged,
    DialBegan,
    DialEnded,
    Event,
    HoldEnded,
    HoldStarted,
    HungUp,
    NewChannel,
    UserEventRaised,
)
from cti.model import (
    CallChange,
    CallClassification,
    CallKey,
    CallPhase,
    CallSnapshot,
    ChangeKind,
    Direction,
    EndReason,
    IvrRecord,
    LiveCallsResynced,
    PhaseMark,
    RoutingRequest,
)

_UP = 6  # Asterisk's AST_STATE_UP
_TERMINAL = (CallPhase.WRAP_UP, CallPhase.ENDED)
# UserEvent(CallPhase,Phase: ...) from the dialplan may set only these; the rest are derived from
# bridges, dials and holds, which Asterisk reports itself.
_DIALPLAN_PHASES = {p.value: p for p in (CallPhase.IN_IVR, CallPhase.WAITING)}
# Applications that tell, at resync, what a channel we did not see arrive is doing.
_APP_PHASES = {
    "AGI": CallPhase.IN_IVR,
    "Read": CallPhase.IN_IVR,
    "Dial": CallPhase.RINGING_AGENT,
    "MusicOnHold": CallPhase.WAITING,
    "Wait": CallPhase.WAITING,
    "Queue": CallPhase.WAITING,
}


def endpoint_of(channel: str) -> str:
    """``PJSIP/1001-0000000a`` → ``1001``: the device part of a channel name."""
    _, _, rest = channel.partition("/")
    device, sep, _ = rest.rpartition("-")
    return device if sep else rest


_PARTY_DIAL = re.compile(r"^\+?([0-9]{6,15})@[A-Za-z0-9_-]{1,40}$")


def outbound_party(dial_string: str) -> str | None:
    """The customer an Originate dialled, in E.164, from its dial string; ``None`` for anything
    else (an agent's or supervisor's phone is dialled by endpoint name, with no number).

    The platform dials customers (campaign leads, queue callbacks, preview calls) by the digits of
    their E.164 number at a trunk endpoint (``8613800138000@outside``), so the digits are the
    number without its ``+``.
    """
    m = _PARTY_DIAL.fullmatch(dial_string)
    return f"+{m.group(1)}" if m else None


def is_local(channel: str) -> bool:
    return channel.startswith("Local/")


@dataclass(slots=True)
class _Channel:
    uniqueid: str
    name: str
    call: str  # the linkedid (key) of the call it belongs to
    bridge: str = ""


@dataclass(slots=True)
class _Call:
    snapshot: CallSnapshot
    channels: set[str] = field(default_factory=set)  # uniqueids
    phase_before_ring: CallPhase = CallPhase.ARRIVING
    wrap_up_until: datetime | None = None


class CallBook:
    """All live calls of one PBX.

    ``inbound_contexts`` are the dialplan contexts where trunk calls enter (the anchor's context
    decides the call's direction); ``wrap_up_seconds`` keeps a call that had an agent in ``WRAP_UP``
    that long after the caller hangs up, unless ``close`` ends it sooner. ``outside_endpoints`` are
    PJSIP endpoints that are not agents (the line out of the centre): a caller bridged to one of them
    (a transfer to an outside number) keeps the agent they last had.
    """

    def __init__(
        self,
        pbx: str,
        *,
        inbound_contexts: Iterable[str] = ("from-trunk",),
        wrap_up_seconds: float = 0.0,
        outside_endpoints: Iterable[str] = (),
    ) -> None:
        self.pbx = pbx
        self.outside_endpoints = frozenset(outside_endpoints)
        self.inbound_contexts = frozenset(inbound_contexts)
        self.wrap_up = timedelta(seconds=wrap_up_seconds)
        self._calls: dict[str, _Call] = {}
        self._channels: dict[str, _Channel] = {}
        self._bridges: dict[str, set[str]] = {}
        self._expected: dict[str, str] = {}  # pre-assigned channel id -> call linkedid

    # ----------------------------------------------------------------- reading

    def get(self, key: CallKey) -> CallSnapshot | None:
        call = self._calls.get(key.linkedid) if key.pbx == self.pbx else None
        return None if call is None else call.snapshot

    def calls(self) -> list[CallSnapshot]:
        return [c.snapshot for c in self._calls.values()]

    def __len__(self) -> int:
        return len(self._calls)

    def channel_count(self) -> int:
        return len(self._channels)

    # ----------------------------------------------------------------- commands

    def expect_channel(self, uniqueid: str, key: CallKey) -> None:
        """A channel we are about to create (Originate with a pre-assigned ``ChannelId``) joins ``key``."""
        if key.pbx == self.pbx:
            self._expected[uniqueid] = key.linkedid

    def classify(self, key: CallKey, classification: CallClassification, now: datetime) -> list[CallChange]:
        """Attach the ANI/DNIS lookup's answer to a live call (a no-op for a call that has closed)."""
        call = self._calls.get(key.linkedid) if key.pbx == self.pbx else None
        if call is None:
            return []
        return self._update(call, classification=classification)

    def record_ivr(
        self, key: CallKey, ivr: IvrRecord, now: datetime, routing: RoutingRequest | None = None
    ) -> list[CallChange]:
        """Keep what the IVR learned (and, when it hands the call on, what it asks of the agent)."""
        call = self._calls.get(key.linkedid) if key.pbx == self.pbx else None
        if call is None:
            return []
        if routing is None:
            return self._update(call, ivr=ivr)
        return self._update(call, ivr=ivr, routing=routing)

    def close(self, key: CallKey, now: datetime) -> list[CallChange]:
        """End a call's wrap-up now (the agent finished the after-call work)."""
        call = self._calls.get(key.linkedid) if key.pbx == self.pbx else None
        if call is None or call.snapshot.phase is not CallPhase.WRAP_UP:
            return []
        return self._close(call, now)

    def tick(self, now: datetime) -> list[CallChange]:
        """Close every call whose wrap-up time has passed."""
        out: list[CallChange] = []
        for call in list(self._calls.values()):
            if call.wrap_up_until is not None and now >= call.wrap_up_until:
                out += self._close(call, now)
        return out

    def resync(
        self, listed: Iterable[ChannelListed], now: datetime, reason: EndReason
    ) -> tuple[list[CallChange], LiveCallsResynced]:
        """Rebuild from a ``CoreShowChannels`` list: the truth after a (re)login or a lost event.

        Calls whose anchor is not listed ended while we could not see them: they close with
        ``reason`` and ``ended_at = now``. Listed channels we do not know are added, with a start time
        estimated from their age and a phase guessed from their application and bridge. The returned
        ``LiveCallsResynced`` tells consumers holding open records which calls are still live.
        """
        items = {c.uniqueid: c for c in listed if c.uniqueid}
        out: list[CallChange] = []
        for uid in [u for u in self._channels if u not in items]:
            chan = self._channels.get(uid)
            if chan is None:
                continue  # already forgotten with its call
            call = self._calls.get(chan.call)
            if call is not None and call.snapshot.anchor_uniqueid == uid:
                out += self._end_anchor(call, now, cause=None, cause_txt=None, reason=reason)
            self._forget_channel(uid)
        # Anchors first, so that other legs find their call.
        for item in sorted(items.values(), key=lambda c: c.uniqueid != c.linkedid):
            if item.uniqueid not in self._channels:
                started = now - timedelta(seconds=item.duration_seconds)
                out += self._new_channel(item, started)
                call = self._calls.get(self._channels[item.uniqueid].call)
                if call is not None and call.snapshot.anchor_uniqueid == item.uniqueid:
                    if item.state == _UP and call.snapshot.answered_at is None:
                        out += self._update(call, answered_at=started)
                    guess = _APP_PHASES.get(item.application)
                    if guess is not None and call.snapshot.phase is CallPhase.ARRIVING:
                        out += self._set_phase(call, guess, now)
            if item.bridge_id:
                out += self._enter_bridge(item.uniqueid, item.bridge_id, "", now)
        live = frozenset(CallKey(self.pbx, k) for k, c in self._calls.items() if c.snapshot.ended_at is None)
        return _squash(out), LiveCallsResynced(self.pbx, live, reason, now)

    # ----------------------------------------------------------------- events

    def apply(self, event: Event, now: datetime) -> list[CallChange]:
        """Apply one typed event; return the changes it caused (often none)."""
        match event:
            case NewChannel():
                return self._new_channel(event, now)
            case ChannelStateChanged():
                return self._state(event, now)
            case CallerIdChanged():
                return self._caller_id(event)
            case DialBegan():
                return self._dial_began(event, now)
            case DialEnded():
                return self._dial_ended(event, now)
            case BridgeEntered():
                return self._enter_bridge(event.uniqueid, event.bridge_id, event.swap_uniqueid, now)
            case BridgeLeft():
                return self._leave_bridge(event.uniqueid, event.bridge_id, now)
            case HoldStarted():
                return self._hold(event, now, held=True)
            case HoldEnded():
                return self._hold(event, now, held=False)
            case HungUp():
                return self._hangup(event, now)
            case UserEventRaised():
                return self._user_event(event, now)
            case ChannelRenamed():
                chan = self._channels.get(event.uniqueid)
                if chan is not None:
                    chan.name = event.new_name
                    call = self._calls.get(chan.call)
                    if call is not None:
                        return self._update(call, channels=self._channel_names(call))
                return []
            case _:
                return []

    def _new_channel(self, ev: ChannelEvent, now: datetime) -> list[CallChange]:
        if not ev.uniqueid or ev.uniqueid in self._channels:
            return []
        owner = self._expected.pop(ev.uniqueid, None) or ev.linkedid or ev.uniqueid
        call = self._calls.get(owner)
        if call is not None and call.snapshot.ended_at is None:
            self._channels[ev.uniqueid] = _Channel(ev.uniqueid, ev.channel, owner)
            call.channels.add(ev.uniqueid)
            return self._update(call, channels=self._channel_names(call))
        if call is not None:
            return []  # a late leg of a call whose caller already left: not a new call
        direction = Direction.INBOUND if ev.context in self.inbound_contexts else Direction.INTERNAL
        snap = CallSnapshot(
            key=CallKey(self.pbx, owner),
            phase=CallPhase.ARRIVING,
            direction=direction,
            started_at=now,
            ani=ev.caller_num,
            caller_name=ev.caller_name,
            dnis=ev.exten if direction is Direction.INBOUND else "",
            anchor_channel=ev.channel,
            anchor_uniqueid=ev.uniqueid,
            channels=(ev.channel,),
            history=(PhaseMark(CallPhase.ARRIVING, now),),
        )
        self._calls[owner] = _Call(snapshot=snap, channels={ev.uniqueid})
        self._channels[ev.uniqueid] = _Channel(ev.uniqueid, ev.channel, owner)
        if ev.state == _UP:
            snap = replace(snap, answered_at=now)
            self._calls[owner].snapshot = snap
        return [CallChange(ChangeKind.STARTED, snap)]

    def _anchor_call(self, uniqueid: str) -> _Call | None:
        chan = self._channels.get(uniqueid)
        if chan is None:
            return None
        call = self._calls.get(chan.call)
        if call is None or call.snapshot.anchor_uniqueid != uniqueid:
            return None
        return call

    def _state(self, ev: ChannelStateChanged, now: datetime) -> list[CallChange]:
        call = self._anchor_call(ev.uniqueid)
        if call is None or ev.state != _UP or call.snapshot.answered_at is not None:
            return []
        return self._update(call, answered_at=now)

    def _caller_id(self, ev: CallerIdChanged) -> list[CallChange]:
        call = self._anchor_call(ev.uniqueid)
        if call is None or call.snapshot.phase in _TERMINAL:
            return []
        if (ev.caller_num, ev.caller_name) == (call.snapshot.ani, call.snapshot.caller_name):
            return []
        return self._update(call, ani=ev.caller_num, caller_name=ev.caller_name)

    def _call_of(self, uniqueid: str) -> _Call | None:
        chan = self._channels.get(uniqueid)
        return None if chan is None else self._calls.get(chan.call)

    def _dial_began(self, ev: DialBegan, now: datetime) -> list[CallChange]:
        if is_local(ev.dest_channel):
            return []
        call = self._call_of(ev.dest_uniqueid) or self._call_of(ev.uniqueid)
        if call is None or call.snapshot.phase in (*_TERMINAL, CallPhase.TALKING, CallPhase.HELD):
            return []
        if ev.dest_uniqueid and ev.dest_uniqueid == call.snapshot.anchor_uniqueid:
            # An Originate ringing the party the call was placed to (a campaign's lead, a queue
            # callback's customer): their phone ringing is not an agent's. The call is outbound,
            # and its ANI is the customer's number, as on an inbound call, so that the call log
            # and the lookup find the customer (the number shown to them is not theirs).
            party = None if ev.uniqueid else outbound_party(ev.dial_string)
            if party is None or (call.snapshot.direction, call.snapshot.ani) == (Direction.OUTBOUND, party):
                return []
            return self._update(call, direction=Direction.OUTBOUND, ani=party, caller_name="")
        if call.snapshot.phase is not CallPhase.RINGING_AGENT:
            call.phase_before_ring = call.snapshot.phase
        return self._set_phase(call, CallPhase.RINGING_AGENT, now, agent=endpoint_of(ev.dest_channel))

    def _dial_ended(self, ev: DialEnded, now: datetime) -> list[CallChange]:
        if is_local(ev.dest_channel) or ev.dial_status == "ANSWER":
            return []
        call = self._call_of(ev.dest_uniqueid) or self._call_of(ev.uniqueid)
        if call is None or call.snapshot.phase is not CallPhase.RINGING_AGENT:
            return []
        back = call.phase_before_ring
        agent = call.snapshot.agent if call.snapshot.connected_at is not None else None
        return self._set_phase(call, back, now, agent=agent)

    def _enter_bridge(self, uniqueid: str, bridge_id: str, swap: str, now: datetime) -> list[CallChange]:
        chan = self._channels.get(uniqueid)
        if chan is None or not bridge_id:
            return []
        if chan.bridge and chan.bridge != bridge_id:
            self._bridges.get(chan.bridge, set()).discard(uniqueid)
        chan.bridge = bridge_id
        members = self._bridges.setdefault(bridge_id, set())
        if swap:
            members.discard(swap)
        members.add(uniqueid)
        return self._settle_bridge(bridge_id, now)

    def _settle_bridge(self, bridge_id: str, now: datetime) -> list[CallChange]:
        """A bridge holding a call's anchor makes every other member part of that call."""
        members = self._bridges.get(bridge_id, set())
        anchors = [
            c for u in members if (c := self._anchor_call(u)) is not None and c.snapshot.ended_at is None
        ]
        if len(anchors) != 1:
            return []
        call = anchors[0]
        out: list[CallChange] = []
        agent: str | None = None
        for uid in members:
            chan = self._channels[uid]
            if chan.call != call.snapshot.key.linkedid:
                old = self._calls.get(chan.call)
                if old is not None:
                    old.channels.discard(uid)
                chan.call = call.snapshot.key.linkedid
                call.channels.add(uid)
            if (
                uid != call.snapshot.anchor_uniqueid
                and not is_local(chan.name)
                and endpoint_of(chan.name) not in self.outside_endpoints
            ):
                agent = endpoint_of(chan.name)
        if agent is None:
            return self._update(call, channels=self._channel_names(call))
        snap = call.snapshot
        changes: dict[str, object] = {"agent": agent, "channels": self._channel_names(call)}
        if snap.connected_at is None:
            changes["connected_at"] = now
        if snap.phase is not CallPhase.HELD:
            out += self._set_phase(call, CallPhase.TALKING, now, **changes)
        else:
            out += self._update(call, **changes)
        return out

    def _leave_bridge(self, uniqueid: str, bridge_id: str, now: datetime) -> list[CallChange]:
        chan = self._channels.get(uniqueid)
        if chan is None:
            return []
        members = self._bridges.get(bridge_id)
        if members is not None:
            members.discard(uniqueid)
            if not members:
                del self._bridges[bridge_id]
        if chan.bridge == bridge_id:
            chan.bridge = ""
        # No phase change: when a bridge breaks up, both legs leave it whether the caller is hanging up
        # or going back into the dialplan; the next event (Hangup, a dial, a dialplan phase mark) says which.
        call = self._calls.get(chan.call)
        return [] if call is None else self._update(call, channels=self._channel_names(call))

    def _bridged_with_agent(self, call: _Call) -> bool:
        anchor = self._channels.get(call.snapshot.anchor_uniqueid)
        if anchor is None or not anchor.bridge:
            return False
        return any(
            u != anchor.uniqueid and not is_local(self._channels[u].name)
            for u in self._bridges.get(anchor.bridge, ())
        )

    def _hold(self, ev: ChannelEvent, now: datetime, *, held: bool) -> list[CallChange]:
        call = self._call_of(ev.uniqueid)
        if call is None:
            return []
        phase = call.snapshot.phase
        if held and phase is CallPhase.TALKING:
            return self._set_phase(call, CallPhase.HELD, now)
        if not held and phase is CallPhase.HELD:
            return self._set_phase(call, CallPhase.TALKING, now)
        return []

    def _user_event(self, ev: UserEventRaised, now: datetime) -> list[CallChange]:
        call = self._anchor_call(ev.uniqueid)
        if call is None or call.snapshot.phase in _TERMINAL:
            return []
        if ev.name == "CallArrived":
            updates: dict[str, object] = {}
            dnis = ev.get("DNIS")
            if dnis and dnis != call.snapshot.dnis:
                updates["dnis"] = dnis
            direction = ev.get("Direction")
            if direction in Direction.__members__.values() and direction != call.snapshot.direction:
                updates["direction"] = Direction(direction)
            return self._update(call, **updates) if updates else []
        if ev.name == "CallPhase":
            phase = _DIALPLAN_PHASES.get(ev.get("Phase"))
            if phase is None or phase is call.snapshot.phase:
                return []
            if call.snapshot.phase is CallPhase.RINGING_AGENT or self._bridged_with_agent(call):
                return []  # Asterisk's own bridge and dial events outrank the dialplan's markers
            return self._set_phase(call, phase, now)
        return []

    def _hangup(self, ev: HungUp, now: datetime) -> list[CallChange]:
        chan = self._channels.get(ev.uniqueid)
        if chan is None:
            return []
        call = self._calls.get(chan.call)
        out: list[CallChange] = []
        if call is not None and call.snapshot.anchor_uniqueid == ev.uniqueid:
            out = self._end_anchor(call, now, cause=ev.cause, cause_txt=ev.cause_txt, reason=EndReason.HANGUP)
        self._forget_channel(ev.uniqueid)
        if call is not None and call.snapshot.key.linkedid in self._calls and not out:
            out = self._update(call, channels=self._channel_names(call))
        return out

    # ----------------------------------------------------------------- internals

    def _end_anchor(
        self, call: _Call, now: datetime, *, cause: int | None, cause_txt: str | None, reason: EndReason
    ) -> list[CallChange]:
        if call.snapshot.ended_at is not None:
            return []
        snap = call.snapshot
        ended = {"ended_at": now, "hangup_cause": cause, "hangup_cause_txt": cause_txt, "end_reason": reason}
        if snap.connected_at is not None and self.wrap_up and reason is EndReason.HANGUP:
            call.wrap_up_until = now + self.wrap_up
            changes = self._set_phase(call, CallPhase.WRAP_UP, now, **ended)
            return [CallChange(ChangeKind.ENDED, c.call) for c in changes]
        call.snapshot = replace(snap, **ended)  # type: ignore[arg-type]
        return self._close(call, now)

    def _close(self, call: _Call, now: datetime) -> list[CallChange]:
        snap = call.snapshot
        snap = replace(
            snap,
            phase=CallPhase.ENDED,
            history=(*snap.history, PhaseMark(CallPhase.ENDED, now)),
            channels=(),
        )
        key = snap.key.linkedid
        for uid in list(call.channels):
            chan = self._channels.get(uid)
            if chan is not None and chan.call == key:
                self._forget_channel(uid)
        del self._calls[key]
        return [CallChange(ChangeKind.CLOSED, snap)]

    def _forget_channel(self, uid: str) -> None:
        chan = self._channels.pop(uid, None)
        if chan is None:
            return
        if chan.bridge:
            members = self._bridges.get(chan.bridge)
            if members is not None:
                members.discard(uid)
                if not members:
                    del self._bridges[chan.bridge]
        call = self._calls.get(chan.call)
        if call is not None:
            call.channels.discard(uid)

    def _channel_names(self, call: _Call) -> tuple[str, ...]:
        anchor = call.snapshot.anchor_uniqueid
        names = [self._channels[u].name for u in sorted(call.channels, key=lambda u: (u != anchor, u))]
        return tuple(names)

    def _set_phase(self, call: _Call, phase: CallPhase, now: datetime, **changes: object) -> list[CallChange]:
        snap = call.snapshot
        if phase is not snap.phase:
            changes["phase"] = phase
            changes["history"] = (*snap.history, PhaseMark(phase, now))
        return self._update(call, **changes)

    def _update(self, call: _Call, **changes: object) -> list[CallChange]:
        snap = call.snapshot
        if all(getattr(snap, k) == v for k, v in changes.items()):
            return []
        call.snapshot = replace(snap, **changes)  # type: ignore[arg-type]
        return [CallChange(ChangeKind.UPDATED, call.snapshot)]


def _squash(changes: list[CallChange]) -> list[CallChange]:
    """Keep only the last change per call, in the order calls first changed (resync output)."""
    last: dict[CallKey, CallChange] = {}
    for change in changes:
        key = change.call.key
        first = last.get(key)
        if first is not None and first.kind is ChangeKind.STARTED and change.kind is ChangeKind.UPDATED:
            change = CallChange(ChangeKind.STARTED, change.call)
        last[key] = change
    return list(last.values())
