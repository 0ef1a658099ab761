"""The routing service against hand-built call snapshots and an action sink that records actions.

The loop itself is not run: each test feeds messages through the same handler the loop uses, with a
clock the test moves, so every step is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cti.bus import Bus
from cti.model import (
    AgentOffered,
    CallChange,
    CallClassification,
    CallKey,
    CallPhase,
    CallSnapshot,
    ChangeKind,
    Direction,
    EndReason,
    LiveCallsResynced,
    PhaseMark,
    RoutingRequest,
)
from cti.model import SkillNeed as CallSkillNeed
from cti.ports import ActionFailed, ActionOutcomeUnknown, LinkDown
from routing import handlers
from routing.directory import AgentProfile, InMemoryDirectory, UnknownAgent
from routing.model import (
    Agent,
    AgentStatus,
    InvalidTransition,
    Login,
    NotReady,
    Ready,
    ServiceRouting,
    SkillNeed,
)
from routing.service import RoutingService, redirect_headers
from routing.state import InProcessLiveState

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class RecordingSink:
    """An ``ActionSink`` that records what it is asked to send and raises what the test queues."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.fail_next: list[Exception] = []

    async def send(self, action: str, headers: Mapping[str, str] | None = None) -> Mapping[str, str]:
        self.sent.append((action, dict(headers or {})))
        if self.fail_next:
            raise self.fail_next.pop(0)
        return {"Response": "Success"}

    def redirects(self) -> list[tuple[str, str]]:
        return [(h["Channel"], h["Exten"]) for a, h in self.sent if a == "Redirect"]


class Harness:
    def __init__(self, clock: Clock, sink: RecordingSink, service: RoutingService) -> None:
        self.clock, self.sink, self.service = clock, sink, service
        self.snaps: dict[str, CallSnapshot] = {}

    async def feed(self, snap: CallSnapshot, kind: ChangeKind = ChangeKind.UPDATED) -> None:
        async with self.service._lock:
            await self.service._on_message(CallChange(kind, snap))
            await self.service._on_time(self.clock())

    async def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        async with self.service._lock:
            await self.service._on_time(self.clock())

    async def state(self, agent_id: str) -> AgentStatus:
        return (await self.service.agent_state(agent_id)).status

    def call(
        self, n: int, *, service: str = "support", tier: str | None = None, **changes: object
    ) -> CallSnapshot:
        """Call ``n`` waiting on hold since now (classified for ``service``)."""
        now = self.clock()
        snap = CallSnapshot(
            key=CallKey("pbx1", f"100.{n}"),
            phase=CallPhase.WAITING,
            direction=Direction.INBOUND,
            started_at=now,
            ani=f"1380013800{n}",
            caller_name="张伟",
            dnis="8000",
            anchor_channel=f"PJSIP/trunk-0000000{n}",
            anchor_uniqueid=f"100.{n}",
            classification=CallClassification(
                ani_e164=None, customer_id=None, customer_name=None, customer_tier=tier, new_contact=True,
                customer_match="none", service_id=1, service_name=service, language=None,
            ),
            history=(PhaseMark(CallPhase.ARRIVING, now), PhaseMark(CallPhase.WAITING, now)),
        )  # fmt: skip
        return replace(snap, **changes)  # type: ignore[arg-type]

    def step(self, snap: CallSnapshot, phase: CallPhase, agent: str | None = None) -> CallSnapshot:
        return replace(
            snap, phase=phase, agent=agent, history=(*snap.history, PhaseMark(phase, self.clock()))
        )


@pytest.fixture
async def h() -> Harness:
    clock, sink = Clock(), RecordingSink()
    directory = InMemoryDirectory({1: ("8000", "support")})
    service = RoutingService(
        subscription=handlers.subscribe(Bus()),
        live=InProcessLiveState(),
        actions=sink,
        directory=directory,
        clock=clock,
        default_wrap_up_seconds=5,
        connect_grace_seconds=10,
    )
    await service._load(clock())
    await service.save_service(1, ServiceRouting("", needs=(SkillNeed("mandarin", 5),), wrap_up_seconds=20))
    await service.save_agent(AgentProfile(Agent("1001", "李娜", {"mandarin": 8}, frozenset({"zh-CN"}))))
    await service.save_agent(AgentProfile(Agent("1002", "Bob", {"mandarin": 6, "english": 6})))
    return Harness(clock, sink, service)


async def ready(h: Harness, *agents: str) -> None:
    for agent in agents:
        await h.service.change_agent(agent, Login())
        await h.service.change_agent(agent, Ready())


async def test_a_waiting_call_is_redirected_to_the_best_skilled_ready_agent(h: Harness) -> None:
    await ready(h, "1001", "1002")
    await h.feed(h.call(1))
    assert h.sink.sent == [
        (
            "Redirect",
            {"Channel": "PJSIP/trunk-00000001", "Context": "cti-agents", "Exten": "1001", "Priority": "1"},
        )
    ]
    assert await h.state("1001") is AgentStatus.RESERVED
    (decision,) = await h.service.decisions()
    assert decision.agent_id == "1001" and decision.rule.startswith("best_skill")
    assert [c.agent_id for c in decision.candidates] == ["1001", "1002"]


async def test_ringing_then_talking_then_hangup_walks_the_agent_through_wrap_up_to_ready(h: Harness) -> None:
    await ready(h, "1001")
    snap = h.call(1)
    await h.feed(snap)
    snap = h.step(snap, CallPhase.RINGING_AGENT, "1001")
    await h.feed(snap)
    assert await h.state("1001") is AgentStatus.RESERVED
    h.clock.advance(2)
    snap = replace(h.step(snap, CallPhase.TALKING, "1001"), connected_at=h.clock())
    await h.feed(snap)
    assert await h.state("1001") is AgentStatus.ON_CALL
    h.clock.advance(30)
    ended = replace(h.step(snap, CallPhase.ENDED, "1001"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.CLOSED)
    state = await h.service.agent_state("1001")
    assert state.status is AgentStatus.WRAP_UP and state.calls_handled == 1
    assert state.wrap_up_until == h.clock() + timedelta(seconds=20)  # the service's wrap-up
    # During wrap-up a new call waits.
    await h.feed(h.call(2))
    assert len(h.sink.redirects()) == 1
    await h.tick(19)
    assert await h.state("1001") is AgentStatus.WRAP_UP
    await h.tick(1)
    # Wrap-up over: READY, and the waiting call rings them at once.
    assert h.sink.redirects()[-1] == ("PJSIP/trunk-00000002", "1001")
    assert await h.state("1001") is AgentStatus.RESERVED


async def test_a_call_with_no_ready_agent_waits_and_goes_to_the_first_agent_who_becomes_ready(
    h: Harness,
) -> None:
    await h.feed(h.call(1))
    assert h.sink.sent == []
    (queue,) = [q for q in await h.service.queues() if q.service == "support"]
    assert [c.key.linkedid for c in queue.waiting] == ["100.1"]
    await ready(h, "1002")
    assert h.sink.redirects() == [("PJSIP/trunk-00000001", "1002")]
    (decision, *_) = await h.service.decisions()
    assert decision.trigger == "agent_freed"
    assert [q.waiting for q in await h.service.queues() if q.service == "support"] == [()]


async def test_ring_no_answer_makes_the_agent_not_ready_and_the_call_goes_to_the_other_agent(
    h: Harness,
) -> None:
    await ready(h, "1001", "1002")
    snap = h.call(1)
    await h.feed(snap)
    snap = h.step(snap, CallPhase.RINGING_AGENT, "1001")
    await h.feed(snap)
    h.clock.advance(15)
    await h.feed(h.step(snap, CallPhase.WAITING))
    state = await h.service.agent_state("1001")
    assert state.status is AgentStatus.NOT_READY and state.reason == "ring_no_answer"
    assert h.sink.redirects() == [("PJSIP/trunk-00000001", "1001"), ("PJSIP/trunk-00000001", "1002")]
    # The call kept its place in line: it waited since the start, not since the ring-out.
    (decision, *_) = await h.service.decisions()
    assert decision.agent_id == "1002" and decision.waited_seconds == pytest.approx(15)


async def test_a_ring_out_seen_only_in_the_history_still_counts(h: Harness) -> None:
    """The mailbox coalesces per call: the router may never see the RINGING_AGENT snapshot."""
    await ready(h, "1001", "1002")
    snap = h.call(1)
    await h.feed(snap)
    h.clock.advance(1)
    rang = h.step(snap, CallPhase.RINGING_AGENT, "1001")
    h.clock.advance(15)
    await h.feed(h.step(rang, CallPhase.WAITING))
    assert (await h.service.agent_state("1001")).reason == "ring_no_answer"
    assert h.sink.redirects()[-1][1] == "1002"


async def test_the_caller_hanging_up_while_the_phone_rings_frees_the_agent(h: Harness) -> None:
    await ready(h, "1001")
    snap = h.call(1)
    await h.feed(snap)
    snap = h.step(snap, CallPhase.RINGING_AGENT, "1001")
    await h.feed(snap)
    await h.feed(replace(h.step(snap, CallPhase.ENDED), ended_at=h.clock()), ChangeKind.CLOSED)
    state = await h.service.agent_state("1001")
    assert state.status is AgentStatus.READY and state.reason == "caller_abandoned"


async def test_a_vip_call_goes_before_a_call_that_waited_longer(h: Harness) -> None:
    await h.feed(h.call(1))
    h.clock.advance(60)
    await h.feed(h.call(2, tier="vip"))
    await ready(h, "1002")
    assert h.sink.redirects() == [("PJSIP/trunk-00000002", "1002")]


async def test_the_ivr_routing_request_adds_needs_and_priority(h: Harness) -> None:
    await ready(h, "1001", "1002")
    request = RoutingRequest("support", (CallSkillNeed("english", 5),), priority=5, reason="ivr")
    await h.feed(h.call(1, routing=request))
    assert h.sink.redirects() == [("PJSIP/trunk-00000001", "1002")]  # only 1002 speaks english


async def test_an_unclassified_call_waits_for_the_lookup_then_routes_by_the_defaults(h: Harness) -> None:
    await ready(h, "1002")
    await h.feed(h.call(1, classification=None))
    assert h.sink.sent == []
    await h.tick(3)
    assert h.sink.redirects() == [("PJSIP/trunk-00000001", "1002")]


async def test_a_lost_redirect_answer_is_never_resent_blindly(h: Harness) -> None:
    await ready(h, "1001")
    h.sink.fail_next.append(ActionOutcomeUnknown("link dropped"))
    snap = h.call(1)
    await h.feed(snap)
    assert len(h.sink.redirects()) == 1
    assert await h.state("1001") is AgentStatus.RESERVED
    await h.tick(5)
    await h.feed(snap)
    assert len(h.sink.redirects()) == 1  # still waiting for evidence
    await h.tick(6)
    # Ten seconds without a ring at the agent: the redirect did not take. Now, and only now, again.
    assert len(h.sink.redirects()) == 2


async def test_a_lost_redirect_that_did_ring_is_kept(h: Harness) -> None:
    await ready(h, "1001")
    h.sink.fail_next.append(ActionOutcomeUnknown("link dropped"))
    snap = h.call(1)
    await h.feed(snap)
    await h.feed(h.step(snap, CallPhase.RINGING_AGENT, "1001"))
    await h.tick(30)
    assert len(h.sink.redirects()) == 1
    assert await h.state("1001") is AgentStatus.RESERVED


async def test_a_link_down_pauses_routing_until_the_resync(h: Harness) -> None:
    await ready(h, "1001")
    h.sink.fail_next.append(LinkDown("not connected"))
    snap = h.call(1)
    await h.feed(snap)
    assert await h.state("1001") is AgentStatus.READY
    await h.tick(5)
    assert len(h.sink.redirects()) == 1
    async with h.service._lock:
        await h.service._on_message(
            LiveCallsResynced("pbx1", frozenset({snap.key}), EndReason.LINK_LOST, h.clock())
        )
    await h.tick(0.1)
    assert len(h.sink.redirects()) == 2


async def test_a_refused_redirect_frees_the_agent_and_retries_later(h: Harness) -> None:
    await ready(h, "1001")
    h.sink.fail_next.append(ActionFailed("Redirect", "Channel not found"))
    await h.feed(h.call(1))
    assert await h.state("1001") is AgentStatus.READY
    await h.tick(2)
    assert len(h.sink.redirects()) == 2


async def test_calls_gone_at_a_resync_free_their_agents(h: Harness) -> None:
    await ready(h, "1001")
    await h.feed(h.call(1))
    async with h.service._lock:
        await h.service._on_message(LiveCallsResynced("pbx1", frozenset(), EndReason.LINK_LOST, h.clock()))
    assert await h.state("1001") is AgentStatus.READY


async def test_a_direct_dial_to_a_ready_agent_reserves_them(h: Harness) -> None:
    await ready(h, "1001")
    snap = h.call(1, phase=CallPhase.RINGING_AGENT, agent="1001", classification=None)
    await h.feed(snap)
    assert h.sink.sent == []
    assert await h.state("1001") is AgentStatus.RESERVED
    await h.feed(h.step(snap, CallPhase.TALKING, "1001"))
    assert await h.state("1001") is AgentStatus.ON_CALL


async def test_agents_state_rules_and_unknown_agents(h: Harness) -> None:
    with pytest.raises(InvalidTransition):
        await h.service.change_agent("1001", Ready())
    with pytest.raises(UnknownAgent):
        await h.service.change_agent("1999", Login())
    await h.service.change_agent("1001", Login())
    state = await h.service.change_agent("1001", NotReady("lunch"))
    assert state.reason == "lunch"


async def test_outbound_calls_are_not_routed(h: Harness) -> None:
    await ready(h, "1001")
    await h.feed(h.call(1, direction=Direction.OUTBOUND))
    assert h.sink.sent == []


@pytest.mark.parametrize(
    ("channel", "agent"),
    [("PJSIP/x\r\nAction: Hangup", "1001"), ("", "1001"), ("PJSIP/x-1", "10 01"), ("PJSIP/x-1", "1001\n")],
)
def test_redirect_values_are_validated(channel: str, agent: str) -> None:
    with pytest.raises(ValueError, match=r"agent id|channel"):
        redirect_headers(channel, agent)


async def test_an_unsafe_channel_name_is_never_sent(h: Harness) -> None:
    await ready(h, "1001")
    await h.feed(h.call(1, anchor_channel="PJSIP/a\r\nAction: Originate"))
    assert h.sink.sent == []
    assert await h.state("1001") is AgentStatus.READY


async def test_the_offer_is_published_before_the_agents_phone_is_rung(h: Harness) -> None:
    seen: list[tuple[AgentOffered, int]] = []
    h.service.on_offer = lambda offer: seen.append((offer, len(h.sink.sent)))
    await ready(h, "1001", "1002")
    await h.feed(h.call(1, tier="gold"))
    ((offer, actions_before),) = seen
    assert actions_before == 0  # the console hears of the call before the Redirect goes out
    assert offer.agent_id == "1001" and offer.service == "support"
    assert offer.call.key == CallKey("pbx1", "100.1") and offer.call.caller_name == "张伟"
    assert offer.rule.startswith("best_skill") and not offer.relaxed
    assert [c[0] for c in offer.candidates] == ["1001", "1002"] and offer.candidates_total == 2


async def test_an_agent_reserved_for_an_outbound_call_is_offered_nothing_else_and_follows_it(
    h: Harness,
) -> None:
    """A preview campaign call: the agent is reserved before the customer is dialled; the call,
    which routing did not place, is followed as theirs once it rings them."""
    await ready(h, "1001")
    key = CallKey("pbx1", "dial-0123456789abcdef")
    assert await h.service.reserve_outbound("1001", key, "8099") is True
    assert await h.state("1001") is AgentStatus.RESERVED
    assert await h.service.reserve_outbound("1001", CallKey("pbx1", "dial-other"), "8099") is False
    await h.feed(h.call(1))  # an inbound caller meanwhile: not offered to the reserved agent
    assert h.sink.redirects() == []
    now = h.clock()
    out = CallSnapshot(
        key=key, phase=CallPhase.RINGING_AGENT, direction=Direction.INTERNAL, started_at=now,
        ani="+862161234567", caller_name="", dnis="", anchor_channel="PJSIP/outside-00000001",
        anchor_uniqueid=key.linkedid, answered_at=now, agent="1001",
    )  # fmt: skip
    await h.feed(out)
    h.clock.advance(2)
    talking = replace(out, phase=CallPhase.TALKING, connected_at=h.clock())
    await h.feed(talking)
    assert await h.state("1001") is AgentStatus.ON_CALL
    h.clock.advance(30)
    ended = replace(talking, phase=CallPhase.ENDED, ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.CLOSED)
    assert await h.state("1001") is AgentStatus.WRAP_UP  # the default service's wrap-up


async def test_an_outbound_reservation_with_nothing_dialled_is_released(h: Harness) -> None:
    await ready(h, "1002")
    key = CallKey("pbx1", "dial-fedcba9876543210")
    assert await h.service.reserve_outbound("1002", key, "8099") is True
    await h.service.release_outbound("1002", key, "campaign_call_not_dialled")
    assert await h.state("1002") is AgentStatus.READY
    assert key not in h.service.connections()
