"""Queue callbacks keep the caller's place: pure tests of their keys, dial strings and ordering
against the live policy (``RoutingBoard``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.model import CallKey
from routing.callbacks import callback_channel, callback_key, callback_waiting_call, task_of
from routing.model import (
    Agent,
    AgentState,
    AgentStatus,
    Overflow,
    OverflowKind,
    ServiceRouting,
    SkillNeed,
    WaitingCall,
)
from routing.policy import Outcome, RoutingBoard

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
