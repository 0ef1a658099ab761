"""The live-state interface: one suite, run against the in-process store and a real Redis server."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cti.model import CallKey
from routing.model import (
    AgentState,
    AgentStatus,
    Answer,
    CallControlState,
    Hangup,
    HeldCall,
    InvalidTransition,
    Login,
    NotReady,
    Overflow,
    OverflowKind,
    PendingTransfer,
    Ready,
    Relaxed,
    ReserveAhead,
    SkillNeed,
    Target,
    TargetKind,
    TransferMode,
    WaitingCall,
    WrapUpDone,
)
from routing.policy import Candidate, Decision, Outcome, Trigger
from routing.state import (
    InProcessLiveState,
    RedisLiveState,
    agent_state_from_json,
    agent_state_to_json,
    call_control_from_json,
    call_control_to_json,
    decision_from_json,
    decision_to_json,
    waiting_call_from_json,
    waiting_call_to_json,
)

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def key(n: int) -> CallKey:
    return CallKey("pbx-上海", f"1700000000.{n}")


def waiting(n, service="billing", enqueued=0, priority=0):
    return WaitingCall(key(n), service, at(enqueued), (SkillNeed("billing", 3),), "zh", priority)


def decision(n):
    return Decision(
        at=at(n), trigger=Trigger.ROUND, outcome=Outcome.CONNECT, call=key(n), service="billing",
        rule="best_skill", relaxed=Relaxed(1, 2, False, True), waited_seconds=n + 0.5, agent_id="1001",
        candidates=(Candidate("1001", 9, 12.5, 300.0), Candidate("1002", 7, 80.0, 10.0)), candidates_total=2,
    )  # fmt: skip


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.redis)])
async def nodes(request):
    """A factory of platform nodes sharing one live state: each call is another node's view."""
    if request.param == "in_process":
        shared = InProcessLiveState(decision_log_size=3)
        yield lambda: shared
        return
    server = request.getfixturevalue("redis_server")
    prefix = f"test:{uuid.uuid4().hex}"
    opened: list[RedisLiveState] = []

    def node():
        opened.append(RedisLiveState.from_url(server.url, prefix, decision_log_size=3))
        return opened[-1]

    yield node
    for state in opened:
        await state.close()


@pytest.fixture
def live(nodes):
    return nodes()


async def ready_agent(live, agent_id="1001"):
    await live.apply(agent_id, Login(), at(0))
    return await live.apply(agent_id, Ready(), at(1))


async def test_agents_are_stored_and_listed(live):
    assert await live.get_agent("1001") is None
    state = await ready_agent(live)
    await live.put_agent(AgentState.logged_out("1002", at(0)))
    assert await live.get_agent("1001") == state
    assert sorted(s.agent_id for s in await live.agent_states()) == ["1001", "1002"]


async def test_apply_runs_the_state_machine_and_refuses_what_it_forbids(live):
    state = await ready_agent(live)
    assert state.status is AgentStatus.READY and len(state.history) == 3
    with pytest.raises(InvalidTransition):
        await live.apply("1001", Answer(), at(2))
    assert await live.get_agent("1001") == state


async def test_reserve_takes_only_a_ready_agent(live):
    await ready_agent(live)
    reserved = await live.reserve("1001", key(1), "billing", at(5))
    assert reserved.status is AgentStatus.RESERVED and reserved.call == key(1)
    assert await live.reserve("1001", key(2), "billing", at(6)) is None
    await live.apply("1002", Login(), at(0))
    assert await live.reserve("1002", key(2), "billing", at(6)) is None  # not ready
    assert await live.reserve("never-seen", key(2), "billing", at(6)) is None


async def test_two_nodes_reserving_the_same_agent_exactly_one_wins(nodes):
    first, second = nodes(), nodes()
    agents = [f"{1000 + n}" for n in range(25)]
    for agent_id in agents:
        await ready_agent(first, agent_id)
    # Both nodes hold an open connection before the race, so their transactions truly interleave
    # (a node still connecting would simply arrive second).
    await second.get_agent(agents[0])
    for agent_id in agents:
        results = await asyncio.gather(
            first.reserve(agent_id, key(1), "billing", at(5)),
            second.reserve(agent_id, key(2), "sales", at(5)),
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        stored = await first.get_agent(agent_id)
        assert stored.status is AgentStatus.RESERVED and stored.call == winners[0].call


async def test_two_nodes_reserving_the_same_agent_ahead_exactly_one_wins(nodes):
    first, second = nodes(), nodes()
    await ready_agent(first)
    await first.reserve("1001", key(1), "billing", at(2))
    await first.apply("1001", Answer(), at(3))
    await first.apply("1001", Hangup(30), at(10))  # wrap-up until 40 s
    await second.get_agent("1001")
    results = await asyncio.gather(
        first.apply("1001", ReserveAhead(key(2), "billing"), at(31)),
        second.apply("1001", ReserveAhead(key(3), "billing"), at(31)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, AgentState)]
    assert len(winners) == 1 and sum(isinstance(r, InvalidTransition) for r in results) == 1
    stored = await second.get_agent("1001")
    assert stored.status is AgentStatus.WRAP_UP and stored.reserved_for == winners[0].reserved_for
    reserved = await second.apply("1001", WrapUpDone(), at(40))
    assert (reserved.status, reserved.call) == (AgentStatus.RESERVED, winners[0].reserved_for)


async def test_concurrent_changes_to_one_agent_are_never_lost(nodes):
    views = [nodes() for _ in range(4)]
    await ready_agent(views[0])
    await asyncio.gather(*(v.apply("1001", NotReady(f"break {n}"), at(10 + n)) for n, v in enumerate(views)))
    state = await views[0].get_agent("1001")
    assert len(state.history) == 3 + len(views)


async def test_waiting_calls_are_listed_in_line_order_per_service(live):
    for c in [waiting(1, enqueued=5), waiting(2, enqueued=0), waiting(3, enqueued=9, priority=100),
              waiting(4, "sales", enqueued=1)]:  # fmt: skip
        await live.add_call(c)
    assert [c.key for c in await live.waiting_calls("billing")] == [key(3), key(2), key(1)]
    assert [c.key for c in await live.waiting_calls()] == [key(3), key(2), key(4), key(1)]
    await live.add_call(waiting(1, enqueued=5).after_ring_no_answer("1001"))
    (replaced,) = [c for c in await live.waiting_calls() if c.key == key(1)]
    assert replaced.avoid == {"1001"} and replaced.enqueued_at == at(5)


async def test_a_call_is_taken_by_exactly_one_node(nodes):
    first, second = nodes(), nodes()
    await first.add_call(waiting(1))
    results = await asyncio.gather(first.take_call(key(1)), second.take_call(key(1)))
    assert sorted(r is not None for r in results) == [False, True]
    assert await first.waiting_calls() == []
    assert await first.take_call(key(9)) is None


async def test_the_decision_log_keeps_the_newest(live):
    for n in range(5):
        await live.record_decision(decision(n))
    assert await live.recent_decisions() == [decision(4), decision(3), decision(2)]
    assert await live.recent_decisions(limit=1) == [decision(4)]
    assert await live.recent_decisions(limit=0) == []


async def test_what_call_control_did_to_a_call_is_shared_replaced_and_removed(nodes):
    first, second = nodes(), nodes()
    assert await first.call_control(key(1)) is None and await first.call_controls() == {}
    held = CallControlState(held=HeldCall("1001", "PJSIP/1001-0000000a", at(5)), controlled=True)
    await first.put_call_control(key(1), held)
    consulting = CallControlState(transfer=transfer(), controlled=True)
    await first.put_call_control(key(2), consulting)
    assert await second.call_control(key(1)) == held
    assert await second.call_controls() == {key(1): held, key(2): consulting}
    resumed = CallControlState(controlled=True)
    await second.put_call_control(key(1), resumed)
    assert await first.call_control(key(1)) == resumed
    await second.put_call_control(key(2), CallControlState())  # nothing left: removed
    assert await first.call_controls() == {key(1): resumed}


def transfer(**changes):
    pending = PendingTransfer(
        TransferMode.ATTENDED, Target(TargetKind.AGENT, "1002"), "1001", "PJSIP/1001-0000000a", at(9)
    )
    return replace(pending, **changes)


# --- the JSON that nodes share ------------------------------------------------------------------


def test_agent_state_json_round_trip_keeps_history_and_chinese_reasons():
    state = AgentState.logged_out("1001", at(0))
    state = AgentState(
        "1001", AgentStatus.WRAP_UP, at(300), idle_since=at(5), reason=None, call=key(1), service="账单",
        wrap_up_until=at(330), calls_handled=3, talk_seconds=412.5, logged_in_at=at(0),
        logged_in_seconds=60.0, history=state.history,
    )  # fmt: skip
    assert agent_state_from_json(agent_state_to_json(state)) == state
    noted = AgentState("1002", AgentStatus.NOT_READY, at(1), reason="午休")
    assert agent_state_from_json(agent_state_to_json(noted).encode()) == noted
    ahead = replace(state, reserved_for=CallKey("pbx-上海", "cti-cb-00ff"), reserved_service="账单")
    assert agent_state_from_json(agent_state_to_json(ahead)) == ahead


def test_an_agent_state_written_before_reservations_ahead_existed_is_read_without_one():
    state = AgentState("1001", AgentStatus.WRAP_UP, at(300), wrap_up_until=at(330))
    old = json.loads(agent_state_to_json(state))
    del old["reserved_for"], old["reserved_service"]
    assert agent_state_from_json(json.dumps(old)) == state


@pytest.mark.parametrize(
    "control",
    [
        CallControlState(held=HeldCall("1001", "PJSIP/1001-0000000a", at(5)), controlled=True),
        CallControlState(transfer=transfer(target_leg_seen=True, completing=True), controlled=True),
        CallControlState(
            transfer=replace(transfer(), mode=TransferMode.BLIND, target=Target(TargetKind.SERVICE, "销售")),
            moved_to_service="销售",
        ),
        CallControlState(left=True),
    ],
)
def test_call_control_json_round_trip(control):
    assert call_control_from_json(call_control_to_json(control)) == control


def test_waiting_call_and_decision_json_round_trip():
    call = waiting(1, priority=50).after_ring_no_answer("1001").moved_to("sales", at(90))
    assert waiting_call_from_json(waiting_call_to_json(call)) == call
    assert decision_from_json(decision_to_json(decision(3))) == decision(3)
    overflowed = Decision(
        at=at(120), trigger=Trigger.ROUND, outcome=Outcome.OVERFLOW, call=key(1), service="billing",
        rule="overflow", relaxed=Relaxed(), waited_seconds=120.0,
        overflow=Overflow(OverflowKind.VOICEMAIL, "billing-mailbox"),
    )  # fmt: skip
    assert decision_from_json(decision_to_json(overflowed)) == overflowed
