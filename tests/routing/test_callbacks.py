"""Queue callbacks keep the caller's place: pure tests of their keys, dial strings and ordering
against the live policy (``RoutingBoard``), then the router with its hooks stepped by hand
(overflow, one Originate per dial, the outcomes)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cti.bus import Bus
from cti.model import AgentOffered, CallKey, CallPhase, CallSnapshot, ChangeKind, Direction, PhaseMark
from cti.ports import ActionFailed, ActionOutcomeUnknown
from routing import handlers
from routing.callbacks import (
    CallbackPorts,
    QueueCallbacks,
    callback_channel,
    callback_key,
    callback_waiting_call,
    task_of,
)
from routing.directory import AgentProfile, InMemoryDirectory
from routing.model import (
    Agent,
    AgentState,
    AgentStatus,
    ForceNotReady,
    Login,
    Logout,
    NotReady,
    Overflow,
    OverflowKind,
    Ready,
    ServiceRouting,
    SkillNeed,
    WaitingCall,
)
from routing.policy import Outcome, RoutingBoard, Trigger
from routing.service import RoutingService
from routing.state import InProcessLiveState
from tests.routing.test_service import Clock, Harness, RecordingSink

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
SUPPORT = ServiceRouting(
    "support",
    needs=(SkillNeed("mandarin"),),
    max_wait_seconds=60,
    overflow=Overflow(OverflowKind.CALLBACK, ""),
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def caller(n: int, enqueued: float, priority: int = 0) -> WaitingCall:
    return WaitingCall(CallKey("pbx1", f"1700000000.{n}"), "support", at(enqueued), (SkillNeed("mandarin"),),
                       "zh", priority)  # fmt: skip


def ready(agent_id: str, since: float = 0) -> tuple[Agent, AgentState]:
    return (
        Agent(agent_id, f"agent {agent_id}", {"mandarin": 5}, frozenset({"zh"})),
        AgentState(agent_id, AgentStatus.READY, at(since), idle_since=at(since), logged_in_at=T0),
    )


def test_a_callback_has_one_key_per_task_that_is_never_a_callers() -> None:
    assert callback_key("pbx1", 42) == CallKey("pbx1", "callback-42")
    assert task_of(callback_key("pbx1", 42)) == 42
    assert task_of(CallKey("pbx1", "1700000000.42")) is None
    assert task_of(CallKey("pbx1", "callback-x")) is None


def test_the_callback_keeps_the_callers_place_needs_and_priority() -> None:
    waited = caller(1, enqueued=0, priority=50).after_ring_no_answer("1002")
    callback = callback_waiting_call(waited, 7, "pbx1")
    assert callback.key == CallKey("pbx1", "callback-7")
    assert (callback.enqueued_at, callback.service, callback.needs, callback.language, callback.priority) == (
        waited.enqueued_at, waited.service, waited.needs, waited.language, waited.priority,
    )  # fmt: skip
    assert callback.attempts == 0 and callback.avoid == frozenset()


def test_a_freed_agent_takes_the_callback_before_a_caller_who_joined_later() -> None:
    board = RoutingBoard({"support": SUPPORT})
    board.put_call(caller(2, enqueued=20))
    board.put_call(callback_waiting_call(caller(1, enqueued=0), 7, "pbx1"))
    board.put_agent(*ready("1001"))
    decision = board.agent_freed("1001", at(30))
    assert decision is not None and decision.outcome is Outcome.CONNECT
    assert decision.call == CallKey("pbx1", "callback-7")


def test_a_caller_who_joined_earlier_still_goes_before_the_callback() -> None:
    board = RoutingBoard({"support": SUPPORT})
    board.put_call(caller(2, enqueued=0))
    board.put_call(callback_waiting_call(caller(1, enqueued=20), 7, "pbx1"))
    board.put_agent(*ready("1001"))
    decision = board.agent_freed("1001", at(30))
    assert decision is not None and decision.call == CallKey("pbx1", "1700000000.2")


def test_the_overflow_to_a_callback_falls_due_and_the_callback_keeps_the_place() -> None:
    board = RoutingBoard({"support": SUPPORT})
    first = caller(1, enqueued=0)
    board.put_call(first)
    board.put_call(caller(2, enqueued=30))
    (decision,) = board.timer(at(59), at(60))
    assert decision.outcome is Outcome.OVERFLOW and decision.call == first.key
    assert decision.overflow == Overflow(OverflowKind.CALLBACK, "")
    # What the router does next: the caller leaves, the callback takes their place.
    board.remove_call(first.key)
    board.put_call(callback_waiting_call(first, 9, "pbx1"))
    board.put_agent(*ready("1001"))
    freed = board.agent_freed("1001", at(61))
    assert freed is not None and freed.call == CallKey("pbx1", "callback-9")


@pytest.mark.parametrize(
    ("number", "endpoint", "channel"),
    [
        ("+8613800000001", "outside", "PJSIP/+8613800000001@outside"),
        ("02087654321", "trunk_2", "PJSIP/02087654321@trunk_2"),
    ],
)
def test_the_dial_string_is_the_number_at_the_outbound_endpoint(number, endpoint, channel) -> None:
    assert callback_channel(number, endpoint) == channel


@pytest.mark.parametrize(
    ("number", "endpoint"),
    [
        ("110", "outside"),  # a short code: never called back
        ("+86138&PJSIP/1001", "outside"),  # a second target
        ("13800000001,t", "outside"),  # dial options
        ("1380000000\r\n1", "outside"),
        ("+8613800000001", "out/side"),
        ("+8613800000001", ""),
    ],
)
def test_anything_else_never_reaches_an_originate(number, endpoint) -> None:
    with pytest.raises(ValueError):
        callback_channel(number, endpoint)


# --- the router with its hooks: overflow, dialling, outcomes ------------------------------------------
# The service runs on the real in-process live state and directory; Asterisk's side is an action
# sink that records what would be written (``tests/routing/test_service.py``'s), because these tests
# step the clock by hand. ``tests/e2e/test_waiting.py`` runs the same path against the sandbox PBX.


class Link(RecordingSink):
    """The sink as an ``OriginatingLink`` too: its channel list is what the test says is live."""

    def __init__(self) -> None:
        super().__init__()
        self.live_ids: list[str] = []

    async def send_list(self, action, headers=None):
        return {"Response": "Success"}, [{"Uniqueid": uid} for uid in self.live_ids]

    async def wait_connected(self, timeout: float) -> None:
        return None

    def originates(self) -> list[dict[str, str]]:
        return [h for a, h in self.sent if a == "Originate"]


class Tasks:
    """The customer record's side, in memory: booked tasks and what became of them."""

    def __init__(self) -> None:
        self.booked: dict[int, str] = {}
        self.finished: list[tuple[int, str, str | None]] = []
        self.voicemails: list[tuple[CallKey, str]] = []

    def ports(self) -> CallbackPorts:
        async def book(call: CallSnapshot, number: str) -> tuple[int, str]:
            task_id = 100 + len(self.booked)
            self.booked[task_id] = "+86" + number
            return task_id, self.booked[task_id]

        async def finished(task_id: int, status: str, call_key: str | None) -> None:
            self.finished.append((task_id, status, call_key))
            self.booked.pop(task_id, None)

        async def pending() -> dict[int, str]:
            return dict(self.booked)

        async def file_voicemail(call: CallSnapshot, name: str) -> None:
            self.voicemails.append((call.key, name))

        return CallbackPorts(book, finished, pending, file_voicemail)


@pytest.fixture
async def cb():
    clock, link, tasks = Clock(), Link(), Tasks()
    offers: list[AgentOffered] = []
    service = RoutingService(
        subscription=handlers.subscribe(Bus()), live=InProcessLiveState(), actions=link,
        directory=InMemoryDirectory({1: ("8000", "support")}), clock=clock, default_wrap_up_seconds=0,
        on_offer=offers.append,
    )  # fmt: skip
    callbacks = QueueCallbacks(service, tasks.ports(), link, "pbx1", max_attempts=2, retry_seconds=10)
    await service._load(clock())
    overflow = Overflow(OverflowKind.CALLBACK, "")
    await service.save_service(
        1,
        ServiceRouting(
            "", needs=(SkillNeed("mandarin"),), max_wait_seconds=60, overflow=overflow, wrap_up_seconds=0
        ),
    )
    await service.save_agent(AgentProfile(Agent("1001", "李娜", {"mandarin": 8})))
    h = Harness(clock, link, service)
    yield h, link, tasks, callbacks, offers
    await callbacks.close()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def overflow_to_callback(h: Harness, link: Link) -> CallKey:
    await h.feed(h.call(1))
    await h.tick(61)
    redirect = {
        "Channel": "PJSIP/trunk-00000001", "Context": "cti-overflow", "Exten": "callback", "Priority": "1"
    }  # fmt: skip
    assert link.sent[-1] == ("Redirect", redirect)
    (waiting,) = await h.service.live.waiting_calls()
    assert waiting.key == CallKey("pbx1", "callback-100") and waiting.enqueued_at == T0
    return waiting.key


def customer_call(h: Harness, channel_id: str, phase: CallPhase, agent: str | None = None) -> CallSnapshot:
    now = h.clock()
    return CallSnapshot(
        CallKey("pbx1", channel_id), phase, Direction.INTERNAL, now, "", "", "",
        f"PJSIP/outside-{channel_id}", channel_id, agent=agent,
        history=(PhaseMark(CallPhase.ARRIVING, now), PhaseMark(phase, now)),
    )  # fmt: skip


async def test_the_callback_is_dialled_once_for_the_chosen_agent_and_marked_done_when_answered(cb) -> None:
    h, link, tasks, _, offers = cb
    await overflow_to_callback(h, link)
    await h.service.change_agent("1001", Login())
    await h.service.change_agent("1001", Ready())
    await settle()
    (originate,) = link.originates()
    channel_id = originate["ChannelId"]
    assert channel_id.startswith("cti-cb-")
    assert (originate["Channel"], originate["Context"], originate["Exten"]) == (
        "PJSIP/+8613800138001@outside", "cti-callback", "1001"
    )  # fmt: skip
    assert await h.state("1001") is AgentStatus.RESERVED
    assert await h.service.live.waiting_calls() == []
    await h.feed(customer_call(h, channel_id, CallPhase.RINGING_AGENT, "1001"))
    assert [(o.agent_id, o.callback) for o in offers] == [("1001", True)]
    await h.feed(customer_call(h, channel_id, CallPhase.TALKING, "1001"))
    await settle()
    assert await h.state("1001") is AgentStatus.ON_CALL
    assert tasks.finished == [(100, "done", f"pbx1/{channel_id}")]
    ended = replace(customer_call(h, channel_id, CallPhase.ENDED, "1001"), ended_at=h.clock())
    await h.feed(ended, ChangeKind.ENDED)
    assert await h.state("1001") is AgentStatus.READY
    assert len(link.originates()) == 1


async def test_an_unanswered_callback_goes_back_in_line_with_its_place_then_fails(cb) -> None:
    h, link, tasks, _, _ = cb
    key = await overflow_to_callback(h, link)
    await h.service.change_agent("1001", Login())
    await h.service.change_agent("1001", Ready())
    await settle()
    channel_id = link.originates()[0]["ChannelId"]
    # The customer never answered: the call appears and ends without reaching the agent.
    gone = replace(customer_call(h, channel_id, CallPhase.ENDED), ended_at=h.clock())
    await h.feed(gone, ChangeKind.ENDED)
    state = await h.service.agent_state("1001")
    assert (state.status, state.reason) == (AgentStatus.READY, "customer_not_reached")
    assert len(link.originates()) == 1  # not dialled again at once
    await h.tick(11)
    await settle()
    assert len(link.originates()) == 2  # after the retry delay, with the same place
    second = link.originates()[1]["ChannelId"]
    assert second != channel_id
    await h.feed(replace(customer_call(h, second, CallPhase.ENDED), ended_at=h.clock()), ChangeKind.ENDED)
    assert tasks.finished == [(100, "failed", None)]  # max_attempts = 2
    assert key not in {c.key for c in await h.service.live.waiting_calls()}


async def test_a_lost_originate_answer_is_reconciled_and_never_resent(cb) -> None:
    h, link, _, _, _ = cb
    await overflow_to_callback(h, link)
    link.fail_next.append(ActionOutcomeUnknown("link lost after writing"))
    await h.service.change_agent("1001", Login())
    await h.service.change_agent("1001", Ready())
    await settle()
    # Reconciled by its ChannelId: not among the live channels, so the dial did not happen. The
    # agent is freed and the callback waits its retry; the Originate was written once.
    assert len(link.originates()) == 1
    assert await h.state("1001") is AgentStatus.READY
    assert [c.key.linkedid for c in await h.service.live.waiting_calls()] == ["callback-100"]


async def test_a_resync_keeps_the_callbacks_in_line(cb) -> None:
    h, link, _, _, _ = cb
    from cti.model import EndReason, LiveCallsResynced

    key = await overflow_to_callback(h, link)
    async with h.service._lock:
        await h.service._on_message(LiveCallsResynced("pbx1", frozenset(), EndReason.HANGUP, h.clock()))
    assert [c.key for c in await h.service.live.waiting_calls()] == [key]


async def test_a_restarted_router_puts_back_the_callbacks_still_pending(cb) -> None:
    h, link, tasks, _, _ = cb
    key = await overflow_to_callback(h, link)
    fresh = RoutingService(
        subscription=handlers.subscribe(Bus()), live=h.service.live, actions=link,
        directory=h.service.directory, clock=h.clock,
    )  # fmt: skip
    QueueCallbacks(fresh, tasks.ports(), link, "pbx1")
    await fresh._load(h.clock())
    assert [c.key for c in fresh.board.waiting_calls()] == [key]
    assert fresh.hooks is not None and fresh.hooks.is_virtual(key)


async def test_a_callback_booked_in_the_ivr_joins_the_line_from_when_the_caller_reached_it(cb) -> None:
    h, link, _, callbacks, _ = cb
    in_ivr = h.step(h.call(3), CallPhase.IN_IVR)
    await h.feed(in_ivr)
    reached = h.clock() - timedelta(seconds=30)
    later = h.call(4)
    await h.feed(later)  # a caller who joined the line after this one reached the IVR
    virtual = await callbacks.book_for_call(
        in_ivr.key, 7, "+8613800138003", skills=("billing",), language="zh", priority=5, since=reached
    )
    assert virtual.key == CallKey("pbx1", "callback-7") and virtual.service == "support"
    assert virtual.enqueued_at == reached and virtual.priority == 5 and virtual.language == "zh"
    assert {n.skill for n in virtual.needs} == {"mandarin", "billing"}
    line = sorted(await h.service.live.waiting_calls(), key=lambda c: c.enqueued_at)
    assert [c.key for c in line] == [virtual.key, later.key]
    assert link.originates() == []  # nobody ready: it waits like a caller


async def test_an_agent_who_lets_the_callback_ring_out_goes_not_ready_and_it_waits_for_another(cb) -> None:
    h, link, tasks, _, _ = cb
    key = await overflow_to_callback(h, link)
    await h.service.change_agent("1001", Login())
    await h.service.change_agent("1001", Ready())
    await settle()
    channel_id = link.originates()[0]["ChannelId"]
    ringing = customer_call(h, channel_id, CallPhase.RINGING_AGENT, "1001")
    await h.feed(ringing)
    rang_out = replace(h.step(ringing, CallPhase.ENDED), ended_at=h.clock())
    await h.feed(rang_out, ChangeKind.ENDED)
    state = await h.service.agent_state("1001")
    assert (state.status, state.reason) == (AgentStatus.NOT_READY, "ring_no_answer")
    await h.tick(11)
    (waiting,) = await h.service.live.waiting_calls()
    assert waiting.key == key and waiting.avoid == frozenset({"1001"}) and waiting.enqueued_at == T0
    assert tasks.finished == []


# --- dialled ahead: an agent about to be free ---------------------------------------------------------
# The service's wrap-up is 20 s and callbacks are dialled up to 10 s before an agent's wrap-up ends.


@pytest.fixture
async def ahead():
    clock, link, tasks = Clock(), Link(), Tasks()
    service = RoutingService(
        subscription=handlers.subscribe(Bus()), live=InProcessLiveState(), actions=link,
        directory=InMemoryDirectory({1: ("8000", "support")}), clock=clock, default_wrap_up_seconds=0,
    )  # fmt: skip
    callbacks = QueueCallbacks(
        service, tasks.ports(), link, "pbx1", max_attempts=3, retry_seconds=10, dial_ahead_seconds=10
    )
    await service._load(clock())
    overflow = Overflow(OverflowKind.CALLBACK, "")
    routing = ServiceRouting(
        "", needs=(SkillNeed("mandarin"),), max_wait_seconds=60, overflow=overflow, wrap_up_seconds=20
    )
    await service.save_service(1, routing)
    await service.save_agent(AgentProfile(Agent("1001", "李娜", {"mandarin": 8})))
    h = Harness(clock, link, service)
    yield h, link, tasks
    await callbacks.close()


async def wrapping_up_with_a_callback_waiting(h: Harness, link: Link) -> None:
    """1001 talks to caller 1 while caller 2 overflows to a callback (kept at caller 2's place, T0);
    caller 1 hangs up at 61 s: 1001 wraps up until 81 s."""
    await h.service.change_agent("1001", Login())
    await h.service.change_agent("1001", Ready())
    first = h.call(1)
    await h.feed(first)
    talking = h.step(h.step(first, CallPhase.RINGING_AGENT, "1001"), CallPhase.TALKING, "1001")
    await h.feed(talking)
    await h.feed(h.call(2))
    await h.tick(61)
    assert [c.key.linkedid for c in await h.service.live.waiting_calls()] == ["callback-100"]
    await h.feed(replace(h.step(talking, CallPhase.ENDED, "1001"), ended_at=h.clock()), ChangeKind.ENDED)
    state = await h.service.agent_state("1001")
    assert (state.status, state.wrap_up_until) == (AgentStatus.WRAP_UP, at(81))


async def reserved_ahead(h: Harness, link: Link) -> str:
    await wrapping_up_with_a_callback_waiting(h, link)
    # The router wakes when the dial-ahead time opens: 10 s before the wrap-up ends.
    assert h.service._seconds_to_next_wake() == pytest.approx(10, abs=0.01)
    await h.tick(9.9)
    await settle()
    assert link.originates() == []  # 10.1 s left: not yet
    await h.tick(0.1)
    await settle()
    (originate,) = link.originates()
    return originate["ChannelId"]


async def test_a_callback_is_dialled_when_its_agent_is_about_to_be_free_and_they_are_reserved_for_it(
    ahead,
) -> None:
    h, link, tasks = ahead
    channel_id = await reserved_ahead(h, link)
    state = await h.service.agent_state("1001")
    # Still wrapping up, reserved for the customer's call, and the reservation says why.
    assert (state.status, state.wrap_up_until) == (AgentStatus.WRAP_UP, at(81))
    assert state.reserved_for == CallKey("pbx1", channel_id) and state.history[-1].reason == "reserved_ahead"
    assert await h.service.live.waiting_calls() == []
    (decision, *_) = await h.service.decisions()
    assert decision.trigger is Trigger.AGENT_ABOUT_FREE and decision.agent_id == "1001"
    assert decision.call == CallKey("pbx1", "callback-100")
    assert "wrap-up ends in 10.0 s" in decision.rule
    # Nothing else is offered to them meanwhile, even once their wrap-up is over.
    await h.feed(h.call(3))
    await h.tick(10)
    state = await h.service.agent_state("1001")
    assert (state.status, state.call, state.reason) == (
        AgentStatus.RESERVED, CallKey("pbx1", channel_id), "reserved_ahead",
    )  # fmt: skip
    assert link.redirects() == [("PJSIP/trunk-00000001", "1001"), ("PJSIP/trunk-00000002", "callback")]
    # The customer answers after the wrap-up ended: the agent's phone rings, and they talk.
    await h.feed(customer_call(h, channel_id, CallPhase.RINGING_AGENT, "1001"))
    await h.feed(customer_call(h, channel_id, CallPhase.TALKING, "1001"))
    await settle()
    assert await h.state("1001") is AgentStatus.ON_CALL
    assert tasks.finished == [(100, "done", f"pbx1/{channel_id}")]


async def test_a_customer_who_answers_before_the_wrap_up_ends_is_put_through_at_once(ahead) -> None:
    h, link, tasks = ahead
    channel_id = await reserved_ahead(h, link)
    await h.tick(4)  # 6 s of wrap-up left: the customer answers, the dialplan rings the agent
    await h.feed(customer_call(h, channel_id, CallPhase.RINGING_AGENT, "1001"))
    state = await h.service.agent_state("1001")
    assert (state.status, state.since, state.call) == (
        AgentStatus.RESERVED,
        at(75),
        CallKey("pbx1", channel_id),
    )
    await h.feed(customer_call(h, channel_id, CallPhase.TALKING, "1001"))
    await settle()
    assert await h.state("1001") is AgentStatus.ON_CALL
    assert tasks.finished == [(100, "done", f"pbx1/{channel_id}")]


async def test_no_answer_releases_the_agent_and_the_callback_goes_back_with_its_place(ahead) -> None:
    h, link, tasks = ahead
    channel_id = await reserved_ahead(h, link)
    await h.tick(5)
    await h.feed(replace(customer_call(h, channel_id, CallPhase.ENDED), ended_at=h.clock()), ChangeKind.ENDED)
    state = await h.service.agent_state("1001")
    # The wrap-up goes on to its end, without the reservation; the callback waits its retry.
    assert (state.status, state.wrap_up_until, state.reserved_for) == (AgentStatus.WRAP_UP, at(81), None)
    assert state.history[-1].reason == "customer_not_reached"
    await h.tick(10)
    await settle()
    assert await h.state("1001") is AgentStatus.RESERVED  # the retry is dialled for the ready agent
    (waiting_for_retry,) = [o for o in link.originates() if o["ChannelId"] != channel_id]
    assert waiting_for_retry["Channel"] == "PJSIP/+8613800138002@outside"
    assert tasks.finished == []


@pytest.mark.parametrize("event", [NotReady("lunch"), Logout(), ForceNotReady("coaching", "sup-9")])
async def test_leaving_the_wrap_up_cancels_the_reservation_and_the_dial(ahead, event) -> None:
    h, link, tasks = ahead
    channel_id = await reserved_ahead(h, link)
    await h.service.change_agent("1001", event)
    await settle()
    state = await h.service.agent_state("1001")
    assert state.status in (AgentStatus.NOT_READY, AgentStatus.LOGGED_OUT) and state.reserved_for is None
    # The customer's phone stops ringing (hung up by its ChannelId) and the callback is back in
    # line with its place and its attempts, for the next agent.
    assert link.sent[-1] == ("Hangup", {"Channel": channel_id, "Cause": "16"})
    (waiting,) = await h.service.live.waiting_calls()
    assert (waiting.key.linkedid, waiting.enqueued_at, waiting.attempts) == ("callback-100", T0, 0)
    await h.service.save_agent(AgentProfile(Agent("1002", "王芳", {"mandarin": 3})))
    await h.service.change_agent("1002", Login())
    await h.service.change_agent("1002", Ready())
    await settle()
    assert [o["Exten"] for o in link.originates()] == ["1001", "1002"]
    assert tasks.finished == []


async def test_a_dial_withdrawn_before_its_channel_showed_is_hung_up_when_it_does(ahead) -> None:
    h, link, _ = ahead
    channel_id = await reserved_ahead(h, link)
    link.fail_next.append(ActionFailed("Hangup", "No such channel"))
    await h.service.change_agent("1001", NotReady("lunch"))
    await settle()
    await h.feed(customer_call(h, channel_id, CallPhase.ARRIVING))
    await settle()
    assert link.sent[-1] == ("Hangup", {"Channel": f"PJSIP/outside-{channel_id}", "Cause": "16"})
