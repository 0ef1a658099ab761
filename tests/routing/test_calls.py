"""Call control (``routing.calls``): the values it accepts, the AMI actions it sends for each
operation, and how agents' states follow, driven through the routing service with hand-built call
snapshots and an action sink that records (the same harness as ``test_service``)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from app.compose import Platform
from cti.auth import Role
from cti.bus import Bus
from cti.model import CallControlled, CallPhase, CallSnapshot, ChangeKind, EndReason
from cti.ports import ActionFailed, ActionOutcomeUnknown, LinkDown
from routing import handlers
from routing.calls import (
    InvalidTarget,
    NoCall,
    NotSent,
    OutcomeUnknown,
    Refused,
    agent_leg,
    attended_transfer_action,
    blind_transfer_action,
    cancel_transfer_actions,
    check_channel,
    complete_transfer_actions,
    hangup_action,
    hold_action,
    outside_digits,
    resume_action,
    transfer_not_done,
)
from routing.directory import AgentProfile, InMemoryDirectory
from routing.model import (
    Agent,
    AgentStatus,
    HeldCall,
    ServiceRouting,
    SkillNeed,
    Target,
    TargetKind,
    TransferMode,
)
from routing.service import RoutingService
from routing.state import InProcessLiveState
from tests.routing.test_api import call, platform
from tests.routing.test_service import Clock, Harness, RecordingSink, ready
from tests.routing.test_state import nodes

# The real app's fixture, shared with test_api; the live-state views (in process, and a real Redis)
# shared with test_state.
__all__ = ["nodes", "platform"]

CALLER = "PJSIP/trunk-00000001"
LEG = "PJSIP/1001-0000000a"
TARGET = "PJSIP/1002-0000000e"

# ---------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("number", "digits"),
    [
        ("+8613800138000", "8613800138000"),
        (" +44 20 7946 0018 ", "442079460018"),
        ("+14155552671", "14155552671"),
    ],
)
def test_outside_numbers_become_their_e164_digits(number: str, digits: str) -> None:
    assert outside_digits(number) == digits


@pytest.mark.parametrize(
    "number",
    [
        "13800138000",
        "+86138001380001234",
        "+1 415 555 2671,1",
        "+86abc",
        "+8613800138000\r\nAction: Originate",
        "",
        "+",
    ],
)
def test_outside_numbers_that_are_not_valid_e164_are_refused(number: str) -> None:
    with pytest.raises(InvalidTarget):
        outside_digits(number)


@pytest.mark.parametrize(
    "channel", ["", "PJSIP/trunk-1\r\nAction: Hangup", "PJSIP/a b", "trunk", "PJSIP/x\x00"]
)
def test_unsafe_channel_names_are_never_put_in_an_action(channel: str) -> None:
    with pytest.raises(ValueError, match="channel"):
        check_channel(channel)
    with pytest.raises(ValueError, match="channel"):
        hangup_action(channel)


def test_the_action_of_each_operation() -> None:
    assert hangup_action(CALLER) == ("Hangup", {"Channel": CALLER, "Cause": "16"})
    assert hold_action(CALLER, LEG) == (
        "Redirect",
        {
            "Channel": CALLER,
            "Context": "cti-hold",
            "Exten": "s",
            "Priority": "1",
            "ExtraChannel": LEG,
            "ExtraContext": "cti-hold-agent",
            "ExtraExten": "s",
            "ExtraPriority": "1",
        },
    )
    assert resume_action(CALLER, LEG) == ("Bridge", {"Channel1": CALLER, "Channel2": LEG, "Tone": "no"})
    to = blind_transfer_action
    assert to(CALLER, Target(TargetKind.AGENT, "1002"))[1] == {
        "Channel": CALLER, "Context": "cti-transfer", "Exten": "1002", "Priority": "1"
    }  # fmt: skip
    assert to(CALLER, Target(TargetKind.SERVICE, "sales"))[1]["Context"] == "cti-wait"
    assert to(CALLER, Target(TargetKind.NUMBER, "8613800138000"))[1] == {
        "Channel": CALLER, "Context": "cti-outside", "Exten": "8613800138000", "Priority": "1"
    }  # fmt: skip
    with pytest.raises(InvalidTarget):
        to(CALLER, Target(TargetKind.NUMBER, "+86138&PJSIP/1001"))
    with pytest.raises(InvalidTarget):
        to(CALLER, Target(TargetKind.AGENT, "1002,T"))
    assert attended_transfer_action(CALLER, LEG, "1002") == (
        "Redirect",
        {
            "Channel": CALLER,
            "Context": "cti-hold",
            "Exten": "s",
            "Priority": "1",
            "ExtraChannel": LEG,
            "ExtraContext": "cti-consult",
            "ExtraExten": "1002",
            "ExtraPriority": "1",
        },
    )
    assert complete_transfer_actions(CALLER, LEG, TARGET) == [
        ("Bridge", {"Channel1": CALLER, "Channel2": TARGET, "Tone": "no"}),
        ("Hangup", {"Channel": LEG, "Cause": "16"}),
    ]
    assert cancel_transfer_actions(CALLER, LEG, TARGET) == [
        ("Hangup", {"Channel": TARGET, "Cause": "16"}),
        ("Bridge", {"Channel1": CALLER, "Channel2": LEG, "Tone": "no"}),
    ]
    assert cancel_transfer_actions(CALLER, LEG, None) == [resume_action(CALLER, LEG)]


def test_the_agents_leg_is_found_by_its_endpoint() -> None:
    snap = CallSnapshot.__new__(CallSnapshot)
    object.__setattr__(snap, "channels", (CALLER, "PJSIP/10010-00000003", LEG, "Local/1002@cti-consult-1;1"))
    assert agent_leg(snap, "1001") == LEG
    assert agent_leg(snap, "1002") is None


# ---------------------------------------------------------------------- through the service


@pytest.fixture
async def h() -> Harness:
    clock, sink = Clock(), RecordingSink()
    directory = InMemoryDirectory({1: ("8000", "support"), 2: ("8001", "sales")})
    service = RoutingService(
        subscription=handlers.subscribe(Bus()),
        live=InProcessLiveState(),
        actions=sink,
        directory=directory,
        clock=clock,
        default_wrap_up_seconds=5,
    )
    await service._load(clock())
    await service.save_service(1, ServiceRouting("", needs=(SkillNeed("mandarin", 1),), wrap_up_seconds=20))
    await service.save_service(2, ServiceRouting("", needs=(SkillNeed("english", 1),), wrap_up_seconds=20))
    await service.save_agent(AgentProfile(Agent("1001", "李娜", {"mandarin": 8})))
    await service.save_agent(AgentProfile(Agent("1002", "Bob", {"mandarin": 6, "english": 6})))
    await service.save_agent(AgentProfile(Agent("1003", "Wu", {"english": 9})))
    return Harness(clock, sink, service)


async def talking(h: Harness) -> CallSnapshot:
    """Call 1 routed to agent 1001 and talking; the sink is emptied."""
    await ready(h, "1001")
    snap = h.call(1)
    await h.feed(snap)
    snap = h.step(snap, CallPhase.RINGING_AGENT, "1001")
    await h.feed(snap)
    h.clock.advance(2)
    snap = replace(h.step(snap, CallPhase.TALKING, "1001"), connected_at=h.clock(), channels=(CALLER, LEG))
    await h.feed(snap)
    assert await h.state("1001") is AgentStatus.ON_CALL
    h.sink.sent.clear()
    return snap


async def test_hangup_hangs_up_the_caller_and_the_agent_wraps_up(h: Harness) -> None:
    snap = await talking(h)
    result = await h.service.control.hangup("1001")
    assert result.call == snap.key and result.state == "hung_up"
    assert h.sink.sent == [("Hangup", {"Channel": CALLER, "Cause": "16"})]
    with pytest.raises(NoCall, match="1002 has no call"):
        await h.service.control.hangup("1002")
    ended = replace(h.step(snap, CallPhase.ENDED, "1001"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.CLOSED)
    assert await h.state("1001") is AgentStatus.WRAP_UP
    with pytest.raises(NoCall):
        await h.service.control.hangup("1001")


async def test_hold_then_resume(h: Harness) -> None:
    snap = await talking(h)
    control = h.service.control
    told: list[CallControlled] = []
    control.publish = told.append
    assert (await control.hold("1001")).state == "held"
    with pytest.raises(NoCall, match="already on hold"):
        await control.hold("1001")
    with pytest.raises(NoCall, match="resume it first"):
        await control.transfer("1001", TransferMode.BLIND, TargetKind.AGENT, "1002")
    assert (await control.resume("1001")).state == "talking"
    with pytest.raises(NoCall, match="not on hold"):
        await control.resume("1001")
    assert [a for a, _ in h.sink.sent] == ["Redirect", "Bridge"]
    assert h.sink.sent[0] == hold_action(CALLER, LEG) and h.sink.sent[1] == resume_action(CALLER, LEG)
    assert await h.state("1001") is AgentStatus.ON_CALL
    # Consoles are told of what Asterisk accepted, and only that.
    assert [(m.call, m.agent_id, m.action, m.state, m.target) for m in told] == [
        (snap.key, "1001", "hold", "held", None),
        (snap.key, "1001", "resume", "talking", None),
    ]


async def test_an_action_whose_answer_was_lost_is_never_sent_again(h: Harness) -> None:
    await talking(h)
    control = h.service.control
    h.sink.fail_next = [ActionOutcomeUnknown("link dropped")]
    with pytest.raises(OutcomeUnknown, match="not sent again"):
        await control.hold("1001")
    assert len(h.sink.sent) == 1
    # It may have taken: the agent can resume (one Bridge), and nothing repeats the Redirect.
    await control.resume("1001")
    assert [a for a, _ in h.sink.sent] == ["Redirect", "Bridge"]
    assert control.health.actions_unknown == 1 and control.health.actions_sent == 1


async def test_a_refused_or_unsent_action_changes_nothing(h: Harness) -> None:
    await talking(h)
    await ready(h, "1002")
    control = h.service.control
    h.sink.fail_next = [ActionFailed("Redirect", "No such channel")]
    with pytest.raises(Refused, match="No such channel"):
        await control.transfer("1001", TransferMode.BLIND, TargetKind.AGENT, "1002")
    assert await h.state("1002") is AgentStatus.READY  # the target's reservation is released
    h.sink.fail_next = [LinkDown("down")]
    with pytest.raises(NotSent):
        await control.hold("1001")
    assert not control.held(h.call(1).key)
    assert await h.state("1001") is AgentStatus.ON_CALL


async def test_blind_transfer_to_an_agent(h: Harness) -> None:
    snap = await talking(h)
    await ready(h, "1002")
    result = await h.service.control.transfer("1001", TransferMode.BLIND, TargetKind.AGENT, "1002")
    assert result.state == "transferring"
    assert h.sink.sent == [blind_transfer_action(CALLER, Target(TargetKind.AGENT, "1002"))]
    assert await h.state("1002") is AgentStatus.RESERVED  # kept for this call while it rings
    # The caller leaves agent 1001 (back to waiting, ringing the target) ...
    snap = replace(h.step(snap, CallPhase.WAITING, None), channels=(CALLER,))
    await h.feed(snap)
    state = await h.service.agent_state("1001")
    assert state.status is AgentStatus.WRAP_UP and state.calls_handled == 1
    assert await h.service.queues() and all(not q.waiting for q in await h.service.queues())
    snap = h.step(snap, CallPhase.RINGING_AGENT, "1002")
    await h.feed(snap)
    assert await h.state("1002") is AgentStatus.RESERVED
    snap = replace(h.step(snap, CallPhase.TALKING, "1002"), channels=(CALLER, "PJSIP/1002-0000000c"))
    await h.feed(snap)
    assert await h.state("1002") is AgentStatus.ON_CALL
    assert len(h.sink.sent) == 1  # routing sent nothing of its own
    ended = replace(h.step(snap, CallPhase.ENDED, "1002"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.CLOSED)
    assert await h.state("1002") is AgentStatus.WRAP_UP


async def test_a_target_who_is_not_ready_is_refused_and_nothing_is_sent(h: Harness) -> None:
    await talking(h)
    control = h.service.control
    with pytest.raises(NoCall, match="1002 is logged_out, not ready"):
        await control.transfer("1001", TransferMode.BLIND, TargetKind.AGENT, "1002")
    with pytest.raises(InvalidTarget, match="no agent 1999"):
        await control.transfer("1001", TransferMode.BLIND, TargetKind.AGENT, "1999")
    with pytest.raises(InvalidTarget, match="themselves"):
        await control.transfer("1001", TransferMode.BLIND, TargetKind.AGENT, "1001")
    with pytest.raises(InvalidTarget, match="no service"):
        await control.transfer("1001", TransferMode.BLIND, TargetKind.SERVICE, "9999")
    with pytest.raises(InvalidTarget, match="attended transfer goes to an agent"):
        await control.transfer("1001", TransferMode.ATTENDED, TargetKind.NUMBER, "+8613800138000")
    assert h.sink.sent == []


async def test_blind_transfer_to_a_service_puts_the_caller_in_its_line(h: Harness) -> None:
    snap = await talking(h)
    await ready(h, "1003")
    await h.service.control.transfer("1001", TransferMode.BLIND, TargetKind.SERVICE, "8001")
    assert h.sink.sent == [
        ("Redirect", {"Channel": CALLER, "Context": "cti-wait", "Exten": "s", "Priority": "1"})
    ]
    snap = replace(h.step(snap, CallPhase.WAITING, None), channels=(CALLER,))
    await h.feed(snap)
    assert await h.state("1001") is AgentStatus.WRAP_UP
    # Routing chose for the sales line: the English speaker, by the same Redirect as any routed call.
    assert h.sink.sent[-1] == (
        "Redirect",
        {"Channel": CALLER, "Context": "cti-agents", "Exten": "1003", "Priority": "1"},
    )
    (decision, *_) = await h.service.decisions()
    assert decision.service == "sales" and decision.agent_id == "1003"


async def test_blind_transfer_to_an_outside_number_ends_the_agents_part(h: Harness) -> None:
    snap = await talking(h)
    told: list[CallControlled] = []
    h.service.control.publish = told.append
    result = await h.service.control.transfer(
        "1001", TransferMode.BLIND, TargetKind.NUMBER, "+86 138 0013 8000"
    )
    assert result.target == Target(TargetKind.NUMBER, "8613800138000")
    assert h.sink.sent == [
        ("Redirect", {"Channel": CALLER, "Context": "cti-outside", "Exten": "8613800138000", "Priority": "1"})
    ]
    assert await h.state("1001") is AgentStatus.WRAP_UP
    assert [(m.action, m.state, m.target) for m in told] == [
        ("transfer", "transferring", "number:8613800138000")
    ]
    # The outside party answers: routing leaves the call alone (nobody is reserved or offered it).
    await ready(h, "1002")
    snap = replace(h.step(snap, CallPhase.TALKING, "outside"), channels=(CALLER, "PJSIP/outside-0000000d"))
    await h.feed(snap)
    h.clock.advance(30)
    ended = replace(h.step(snap, CallPhase.ENDED, "outside"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.CLOSED)
    assert await h.state("1002") is AgentStatus.READY
    assert len(h.sink.sent) == 1


async def test_an_outside_transfer_whose_answer_was_lost_is_read_from_the_call(h: Harness) -> None:
    snap = await talking(h)
    h.sink.fail_next = [TimeoutError("no answer")]
    with pytest.raises(OutcomeUnknown):
        await h.service.control.transfer("1001", TransferMode.BLIND, TargetKind.NUMBER, "+8613800138000")
    await h.feed(replace(snap, channels=(CALLER, LEG)))  # nothing moved yet: still the agent's call
    assert await h.state("1001") is AgentStatus.ON_CALL
    await h.feed(replace(snap, channels=(CALLER, "PJSIP/outside-0000000d")))  # it did take
    assert await h.state("1001") is AgentStatus.WRAP_UP
    assert len(h.sink.sent) == 1  # and it was never sent again


async def attended(h: Harness) -> CallSnapshot:
    snap = await talking(h)
    await ready(h, "1002")
    result = await h.service.control.transfer("1001", TransferMode.ATTENDED, TargetKind.AGENT, "1002")
    assert result.state == "consulting"
    assert h.sink.sent == [attended_transfer_action(CALLER, LEG, "1002")]
    assert await h.state("1002") is AgentStatus.RESERVED
    # The caller hears music; the agent's leg rings the target, who answers.
    snap = replace(snap, channels=(CALLER, LEG, TARGET))
    await h.feed(snap)
    return snap


async def test_attended_transfer_completed(h: Harness) -> None:
    snap = await attended(h)
    result = await h.service.control.complete("1001")
    assert result.state == "transferring"
    assert h.sink.sent[1:] == complete_transfer_actions(CALLER, LEG, TARGET)
    assert await h.state("1001") is AgentStatus.ON_CALL  # until the call shows the target with the caller
    snap = replace(h.step(snap, CallPhase.TALKING, "1002"), channels=(CALLER, TARGET))
    await h.feed(snap)
    assert await h.state("1001") is AgentStatus.WRAP_UP
    assert await h.state("1002") is AgentStatus.ON_CALL
    assert h.service.control.health.transfers_completed == 1
    with pytest.raises(NoCall, match="1001 has no call"):
        await h.service.control.complete("1001")
    ended = replace(h.step(snap, CallPhase.ENDED, "1002"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.CLOSED)
    assert await h.state("1002") is AgentStatus.WRAP_UP


async def test_attended_transfer_cancelled(h: Harness) -> None:
    await attended(h)
    with pytest.raises(NoCall, match="1002 has no call"):
        await h.service.control.cancel("1002")
    result = await h.service.control.cancel("1001")
    assert result.state == "talking"
    assert h.sink.sent[1:] == cancel_transfer_actions(CALLER, LEG, TARGET)
    assert await h.state("1001") is AgentStatus.ON_CALL
    assert await h.state("1002") is AgentStatus.READY


async def test_a_consultation_the_target_never_answers_gives_the_agent_back_the_caller(h: Harness) -> None:
    snap = await attended(h)
    with pytest.raises(NoCall, match="already being transferred"):
        await h.service.control.transfer("1001", TransferMode.BLIND, TargetKind.SERVICE, "8001")
    await h.feed(replace(snap, channels=(CALLER, LEG)))  # the target's phone stopped ringing
    assert h.sink.sent[1:] == [resume_action(CALLER, LEG)]
    assert await h.state("1002") is AgentStatus.READY
    assert await h.state("1001") is AgentStatus.ON_CALL
    with pytest.raises(NoCall, match="no attended transfer"):
        await h.service.control.complete("1001")


async def test_a_caller_who_hangs_up_during_a_consultation_ends_the_agents_leg(h: Harness) -> None:
    snap = await attended(h)
    ended = replace(h.step(snap, CallPhase.ENDED, "1001"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.ENDED)
    assert h.sink.sent[-1] == hangup_action(LEG)
    assert await h.state("1002") is AgentStatus.READY
    assert await h.state("1001") is AgentStatus.WRAP_UP


async def test_a_held_caller_who_hangs_up_ends_the_agents_waiting_leg(h: Harness) -> None:
    snap = await talking(h)
    await h.service.control.hold("1001")
    h.clock.advance(5)
    ended = replace(h.step(snap, CallPhase.ENDED, "1001"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await h.feed(ended, ChangeKind.ENDED)
    assert h.sink.sent[-1] == ("Hangup", {"Channel": LEG, "Cause": "16"})
    state = await h.service.agent_state("1001")
    assert state.status is AgentStatus.WRAP_UP
    assert state.wrap_up_until == h.clock() + timedelta(seconds=20)


async def test_an_agent_who_hangs_up_while_the_caller_is_held_ends_the_call(h: Harness) -> None:
    snap = await talking(h)
    await h.service.control.hold("1001")
    await h.feed(replace(snap, channels=(CALLER,)))
    assert h.sink.sent[-1] == ("Hangup", {"Channel": CALLER, "Cause": "16"})


# ---------------------------------------------------------------------- over HTTP: who may do what

CALL_ROUTES = [
    ("/api/agents/1001/call/hangup", None),
    ("/api/agents/1001/call/hold", None),
    ("/api/agents/1001/call/resume", None),
    ("/api/agents/1001/call/transfer", {"mode": "blind", "to": {"agent": "1002"}}),
    ("/api/agents/1001/call/transfer", {"mode": "attended", "to": {"agent": "1002"}}),
    ("/api/agents/1001/call/transfer/complete", None),
    ("/api/agents/1001/call/transfer/cancel", None),
]


@pytest.mark.parametrize(("path", "body"), CALL_ROUTES)
@pytest.mark.parametrize(
    ("role", "username", "expected"),
    [
        (None, None, 401),
        (Role.AGENT, "1002", 403),  # another agent
        (Role.AGENT, "1001", 409),  # the agent themselves: allowed, but they have no call
        (Role.SUPERVISOR, "boss", 409),
        (Role.ADMIN, "root", 409),
    ],
)
async def test_call_control_role_matrix(
    platform: Platform, path: str, body: Any, role: Role | None, username: str | None, expected: int
) -> None:
    for agent_id in ("1001", "1002"):
        agent = {"name": f"agent {agent_id}", "skills": {"mandarin": 5}}
        assert (
            await call(platform, "PUT", f"/api/routing/agents/{agent_id}", Role.ADMIN, agent)
        ).status_code == 200
    response = await call(platform, "POST", path, role, body, username=username)
    assert response.status_code == expected, response.text
    if expected == 409:
        assert response.json()["detail"] == "agent 1001 has no call"


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "blind", "to": {}},
        {"mode": "blind", "to": {"agent": "1002", "number": "+8613800138000"}},
        {"mode": "blind", "to": {"number": "13800138000"}},
        {"mode": "blind", "to": {"number": "+86 1380\r\n"}},
        {"mode": "blind", "to": {"agent": "10;02"}},
        {"mode": "sideways", "to": {"agent": "1002"}},
    ],
)
async def test_a_bad_transfer_target_is_a_422(platform: Platform, body: Any) -> None:
    response = await call(platform, "POST", "/api/agents/1001/call/transfer", Role.SUPERVISOR, body)
    assert response.status_code == 422, response.text


async def test_routing_health_is_in_the_platform_health_details(platform: Platform) -> None:
    response = await call(platform, "GET", "/api/health/details", Role.ADMIN)
    assert response.status_code == 200, response.text
    routing = response.json()["routing"]
    for key in ("decisions", "redirects_sent", "redirects_failed", "redirects_unknown", "reservations_lost"):
        assert routing[key] == 0
    assert routing["paused"] is False
    assert routing["call_control_actions_unknown"] == 0


# ---------------------------------------------------------------------- hold and transfer in the live state


async def harness_on(live) -> Harness:
    """The fixture ``h``'s router on the given live state (in process, or a real Redis)."""
    clock, sink = Clock(), RecordingSink()
    directory = InMemoryDirectory({1: ("8000", "support"), 2: ("8001", "sales")})
    service = RoutingService(
        subscription=handlers.subscribe(Bus()), live=live, actions=sink, directory=directory, clock=clock,
        default_wrap_up_seconds=5,
    )  # fmt: skip
    await service._load(clock())
    await service.save_service(1, ServiceRouting("", needs=(SkillNeed("mandarin", 1),), wrap_up_seconds=20))
    await service.save_agent(AgentProfile(Agent("1001", "李娜", {"mandarin": 8})))
    await service.save_agent(AgentProfile(Agent("1002", "Bob", {"mandarin": 6})))
    return Harness(clock, sink, service)


async def restarted(h: Harness, live) -> Harness:
    """Another router (a restarted platform, or another node) on the same live state and PBX."""
    sink = RecordingSink()
    service = RoutingService(
        subscription=handlers.subscribe(Bus()), live=live, actions=sink, directory=h.service.directory,
        clock=h.clock, default_wrap_up_seconds=5,
    )  # fmt: skip
    await service._load(h.clock())
    return Harness(h.clock, sink, service)


async def test_a_held_call_is_known_to_another_node_and_resumed_after_a_restart(nodes) -> None:
    h = await harness_on(nodes())
    snap = await talking(h)
    await h.service.control.hold("1001")
    other = nodes()
    held = await other.call_control(snap.key)
    assert held is not None and held.held == HeldCall("1001", LEG, h.clock()) and held.controlled
    # The platform restarts with the caller still on hold: it knows, and the agent can resume.
    after = await restarted(h, nodes())
    assert after.service.control.held(snap.key)
    await after.feed(snap)  # the call as Asterisk shows it at the resync
    assert (await after.service.control.resume("1001")).state == "talking"
    assert after.sink.sent == [resume_action(CALLER, LEG)]
    assert (await other.call_control(snap.key)).held is None
    ended = replace(h.step(snap, CallPhase.ENDED, "1001"), ended_at=h.clock(), end_reason=EndReason.HANGUP)
    await after.feed(ended, ChangeKind.CLOSED)
    assert await other.call_control(snap.key) is None
    assert await after.state("1001") is AgentStatus.WRAP_UP


async def test_a_consultation_in_progress_is_known_to_another_node(nodes) -> None:
    h = await harness_on(nodes())
    snap = await talking(h)
    await ready(h, "1002")
    await h.service.control.transfer("1001", TransferMode.ATTENDED, TargetKind.AGENT, "1002")
    await h.feed(replace(snap, channels=(CALLER, LEG, TARGET)))  # the target answered the consultation
    other = nodes()
    record = await other.call_control(snap.key)
    assert record is not None and record.transfer is not None
    assert (record.transfer.mode, record.transfer.target, record.transfer.from_agent) == (
        TransferMode.ATTENDED, Target(TargetKind.AGENT, "1002"), "1001",
    )  # fmt: skip
    assert record.transfer.target_leg_seen and not record.transfer.completing
    await h.service.control.cancel("1001")
    record = await other.call_control(snap.key)
    assert record is not None and record.transfer is None and record.controlled  # legs still its own


async def test_a_restarted_platform_lets_go_of_calls_that_ended_while_it_was_down(nodes) -> None:
    from cti.model import LiveCallsResynced

    h = await harness_on(nodes())
    snap = await talking(h)
    await h.service.control.hold("1001")
    after = await restarted(h, nodes())
    async with after.service._lock:
        await after.service._on_message(LiveCallsResynced("pbx1", frozenset(), EndReason.HANGUP, h.clock()))
    assert not after.service.control.held(snap.key)
    assert await nodes().call_controls() == {}


# ---------------------------------------------------------------------- a lost answer to a blind transfer
# Against the scripted AMI server (tests/support/ami_server.py) and the real AMI client: a real
# Asterisk cannot be made to drop its answer to one Redirect on cue; the scripted one drops the
# connection right after reading it, and then lists the channels the test says Asterisk has.

SECRET = "s3cret-transfer"
LINKEDID = "100.1"  # the Harness's call 1


@pytest.fixture
async def scripted():
    from pydantic import SecretStr

    from cti.ami import AmiClient
    from cti.settings import AmiSettings
    from tests.support.ami_server import FakeAmi

    async with FakeAmi(secret=SECRET) as server:
        client = AmiClient(
            AmiSettings(
                host="127.0.0.1", port=server.port, username="cti", secret=SecretStr(SECRET),
                connect_timeout=2.0, action_timeout=2.0, reconnect_min=0.02, reconnect_max=0.1,
            ),
            decode_event=lambda frame: None,
        )  # fmt: skip
        task = asyncio.create_task(client.run())
        await client.wait_connected(5)
        clock = Clock()
        service = RoutingService(
            subscription=handlers.subscribe(Bus()), live=InProcessLiveState(), actions=client,
            directory=InMemoryDirectory({1: ("8000", "support")}), clock=clock, default_wrap_up_seconds=5,
            connect_grace_seconds=10,
        )  # fmt: skip

        async def channels() -> list[dict[str, str]]:
            _, listed = await client.send_list("CoreShowChannels")
            return [dict(c) for c in listed]

        service.control.channels = channels  # as the composition root sets it
        await service._load(clock())
        await service.save_service(1, ServiceRouting("", needs=(SkillNeed("mandarin", 1),)))
        await service.save_agent(AgentProfile(Agent("1001", "李娜", {"mandarin": 8})))
        await service.save_agent(AgentProfile(Agent("1002", "Bob", {"mandarin": 6})))
        h = Harness(clock, RecordingSink(), service)
        try:
            yield h, server, client
        finally:
            await client.close()
            await task


async def transfer_answer_lost(h: Harness, server, client) -> CallSnapshot:
    """1001 talks to call 1 and blind-transfers it to 1002; the link drops right after the Redirect."""
    await ready(h, "1001")
    snap = h.call(1)
    await h.feed(snap)
    snap = replace(h.step(snap, CallPhase.TALKING, "1001"), connected_at=h.clock(), channels=(CALLER, LEG))
    await h.feed(snap)
    await ready(h, "1002")
    server.drop_after = {"Redirect"}
    with pytest.raises(OutcomeUnknown):
        await h.service.control.transfer("1001", TransferMode.BLIND, TargetKind.AGENT, "1002")
    server.drop_after = set()
    assert len(server.actions("Redirect")) == 2  # 1001's connection, then the transfer: once each
    assert await h.state("1002") is AgentStatus.RESERVED
    await client.wait_connected(5)
    # The link is back: the call service resyncs; the call is still live.
    from cti.model import LiveCallsResynced

    async with h.service._lock:
        await h.service._on_message(
            LiveCallsResynced("pbx1", frozenset({snap.key}), EndReason.HANGUP, h.clock())
        )
    return snap


def bridged(*legs: str, bridge: str = "b-1") -> list[dict[str, str]]:
    return [
        {"Channel": leg, "Linkedid": LINKEDID, "Context": "cti-agents", "BridgeId": bridge} for leg in legs
    ]


async def test_a_blind_transfer_that_never_happened_releases_its_target_after_the_grace(scripted) -> None:
    h, server, client = scripted
    await transfer_answer_lost(h, server, client)
    # Asterisk has the caller still bridged with 1001's leg, and no channel of 1002.
    server.channels = bridged(CALLER, LEG)
    await h.tick(9)
    assert await h.state("1002") is AgentStatus.RESERVED  # within the grace: the calls may yet show it
    assert server.actions("CoreShowChannels") == []
    await h.tick(1)
    assert len(server.actions("CoreShowChannels")) == 1
    state = await h.service.agent_state("1002")
    assert (state.status, state.reason) == (AgentStatus.READY, "transfer_not_done")
    assert await h.state("1001") is AgentStatus.ON_CALL
    assert h.service.control.pending_transfer(h.call(1).key) is None
    assert h.service.control.health.transfers_not_done == 1
    assert len(server.actions("Redirect")) == 2  # never re-sent
    # The agent may act on the call again.
    assert (await h.service.control.hold("1001")).state == "held"


@pytest.mark.parametrize(
    "channels",
    [
        # The caller rings the target from the transfer context ...
        [{"Channel": CALLER, "Linkedid": LINKEDID, "Context": "cti-transfer", "BridgeId": ""},
         {"Channel": "PJSIP/1002-0000000e", "Linkedid": LINKEDID, "Context": "cti-agents", "BridgeId": ""}],
        # ... or is already bridged with them.
        bridged(CALLER, "PJSIP/1002-0000000e", bridge="b-2"),
    ],
)  # fmt: skip
async def test_a_blind_transfer_that_happened_keeps_its_target(scripted, channels) -> None:
    h, server, client = scripted
    await transfer_answer_lost(h, server, client)
    server.channels = channels
    await h.tick(10)
    assert len(server.actions("CoreShowChannels")) == 1
    assert await h.state("1002") is AgentStatus.RESERVED
    pending = h.service.control.pending_transfer(h.call(1).key)
    assert pending is not None and not pending.outcome_unknown  # followed as any blind transfer


@pytest.mark.parametrize(
    ("channels", "caller", "expected"),
    [
        (bridged(CALLER, LEG), CALLER, True),
        (bridged(CALLER) + bridged(LEG, bridge="b-9"), CALLER, False),  # not in the same bridge
        (bridged(CALLER, LEG) + bridged("PJSIP/1002-0000000e", bridge=""), CALLER, False),
        (bridged(LEG), CALLER, False),  # the caller is gone
        ([{**c, "BridgeId": ""} for c in bridged(CALLER, LEG)], CALLER, False),  # not bridged
    ],
)
def test_what_shows_a_transfer_never_happened(channels, caller, expected) -> None:
    assert transfer_not_done(channels, caller, LINKEDID, "1001", "1002") is expected
