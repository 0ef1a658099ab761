"""The live benchmarks' figures from hand-built AMI event streams (the shapes the sandbox produces)."""

from __future__ import annotations

import math

import pytest
from benchmarks.call_figures import (
    TimedEvent,
    call_figures,
    handoffs,
    percentile,
    redirect_split,
    summary,
)


def ev(at: float, event: str, channel: str, **headers: str) -> TimedEvent:
    return TimedEvent(at, {"Event": event, "Channel": channel, **headers})


def caller(n: int) -> str:
    return f"PJSIP/trunk-{n:08x}"


def agent(agent_id: str, n: int) -> str:
    return f"PJSIP/{agent_id}-{n:08x}"


# Agent 1001 takes caller 1 at t=1, its phone hangs up at t=3; caller 2 (waiting since t=0.5) rings
# it at t=3.010. Then the phone hangs up at t=5 with nobody waiting; caller 3 arrives at t=6 and rings
# it at t=6.1: not a hand-off (the agent was idle).
STREAM = [
    ev(0.0, "Newchannel", caller(1)),
    ev(0.0 + 0.1, "UserEvent", caller(1), UserEvent="CallPhase", Phase="waiting"),
    ev(0.5, "Newchannel", caller(2)),
    ev(0.5 + 0.1, "UserEvent", caller(2), UserEvent="CallPhase", Phase="waiting"),
    ev(1.0, "Newchannel", agent("1001", 1)),
    ev(1.0, "DialBegin", caller(1), DestChannel=agent("1001", 1)),
    ev(1.2, "DialEnd", caller(1), DestChannel=agent("1001", 1), DialStatus="ANSWER"),
    ev(3.0, "Hangup", agent("1001", 1)),
    ev(3.001, "Hangup", caller(1)),
    ev(3.010, "Newchannel", agent("1001", 2)),
    ev(3.010, "DialBegin", caller(2), DestChannel=agent("1001", 2)),
    ev(3.21, "DialEnd", caller(2), DestChannel=agent("1001", 2), DialStatus="ANSWER"),
    ev(5.0, "Hangup", agent("1001", 2)),
    ev(5.0, "Hangup", caller(2)),
    ev(6.0, "Newchannel", caller(3)),
    ev(6.0 + 0.1, "UserEvent", caller(3), UserEvent="CallPhase", Phase="waiting"),
    ev(6.1, "Newchannel", agent("1001", 3)),
    ev(6.1, "DialBegin", caller(3), DestChannel=agent("1001", 3)),
    ev(6.3, "DialEnd", caller(3), DestChannel=agent("1001", 3), DialStatus="ANSWER"),
    ev(8.0, "Hangup", agent("1001", 3)),
    ev(8.0, "Hangup", caller(3)),
]


def test_a_handoff_is_the_agents_hangup_to_the_next_channel_while_someone_waits() -> None:
    found = handoffs(STREAM, ["1001", "1002"], settled=0.5)
    assert len(found) == 1
    assert found[0].agent == "1001"
    assert found[0].ms == pytest.approx(10.0)


def test_a_ring_nobody_answered_frees_nobody() -> None:
    # Ring-all: agent 1002 rang for caller 2 at 3.010 too, but 1001 answered; 1002's cancelled leg
    # ends at 3.3 while caller 4 waits, and its next ring is no hand-off.
    stream = [
        *STREAM[:8],
        ev(3.010, "Newchannel", agent("1002", 1)),
        ev(3.010, "DialBegin", caller(2), DestChannel=agent("1002", 1)),
        ev(3.3, "DialEnd", caller(2), DestChannel=agent("1002", 1), DialStatus="CANCEL"),
        ev(3.3, "Hangup", agent("1002", 1)),
        ev(2.0, "Newchannel", caller(4)),
        ev(4.0, "Newchannel", agent("1002", 2)),
        ev(4.0, "DialBegin", caller(4), DestChannel=agent("1002", 2)),
        *STREAM[8:],
    ]
    assert [h.agent for h in handoffs(stream, ["1001", "1002"], settled=0.5)] == ["1001"]
    _, handles, _ = call_figures(stream, ["1001", "1002"], since=0.0)
    assert len(handles) == 3  # the cancelled ring is nobody's handle time


def test_a_caller_who_just_arrived_does_not_count_as_waiting() -> None:
    # Caller 2 arrived 2.5 s before the agent was freed: with a 3 s settling time nobody waited.
    assert handoffs(STREAM, ["1001"], settled=3.0) == []


def test_summary_of_handoffs() -> None:
    row = summary(handoffs(STREAM, ["1001"], settled=0.5))
    assert row["handoffs"] == 1 and row["p50_ms"] == row["p99_ms"] == pytest.approx(10.0)
    assert summary([])["handoffs"] == 0


def test_waits_and_handle_times_of_the_calls() -> None:
    waits, handles, counted = call_figures(STREAM, ["1001"], since=0.0)
    assert counted == 3
    assert waits == pytest.approx([0.9, 2.41, 0.0])
    assert handles == pytest.approx([2.0, 1.99, 1.9])
    waits, _, counted = call_figures(STREAM, ["1001"], since=0.2)  # the warm-up leaves caller 1 out
    assert counted == 2 and waits == pytest.approx([2.41, 0.0])


def test_asterisks_queue_line_starts_at_queue_caller_join() -> None:
    stream = [ev(0.0, "Newchannel", caller(9)), ev(0.5, "QueueCallerJoin", caller(9))]
    stream += [ev(0.7, "DialBegin", caller(9), DestChannel=agent("1001", 9))]
    waits, _, counted = call_figures(stream, ["1001"], since=0.0)
    assert counted == 1 and waits == pytest.approx([0.2])


def test_a_caller_never_connected_counts_against_the_service_level() -> None:
    stream = [*STREAM, ev(9.0, "UserEvent", caller(4), UserEvent="CallPhase", Phase="waiting")]
    waits, _, counted = call_figures(stream, ["1001"], since=0.0)
    assert counted == 4 and len(waits) == 3


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_the_hand_off_splits_at_the_redirected_callers_first_step() -> None:
    stream = [*STREAM, ev(3.004, "Newexten", caller(2), Context="cti-agents")]
    found = handoffs(stream, ["1001"], settled=0.5)
    assert found[0].leg == agent("1001", 2)
    ((platform, dial),) = redirect_split(stream, found, "cti-agents")
    assert platform == pytest.approx(4.0) and dial == pytest.approx(6.0)
    assert redirect_split(STREAM, found, "cti-agents") == []  # Queue(): no redirect to split at
