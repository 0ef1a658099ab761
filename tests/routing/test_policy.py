"""The routing policy, table-driven: who gets which call, and why."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cti.model import CallKey
from routing.model import (
    Agent,
    AgentState,
    AgentStatus,
    Overflow,
    OverflowKind,
    Relaxation,
    ServiceRouting,
    SkillNeed,
    Strategy,
    WaitingCall,
)
from routing.policy import AGENT_FREED_RULE, OVERFLOW_RULE, RULES, Outcome, RoutingBoard, Trigger, decide

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def key(n: int) -> CallKey:
    return CallKey("pbx1", f"1700000000.{n}")


def agent(agent_id, skills, languages=("zh",), **kwargs):
    return Agent(agent_id, f"agent {agent_id}", skills, frozenset(languages), **kwargs)


def ready(agent_id, idle_since=0, talk_seconds=0.0, status=AgentStatus.READY, **kwargs):
    return AgentState(
        agent_id, status, at(idle_since), idle_since=at(idle_since), talk_seconds=talk_seconds,
        logged_in_at=T0, **kwargs,
    )  # fmt: skip


def call(n, service="billing", needs=(("billing", 1),), enqueued=0, language="zh", priority=0, **kwargs):
    wanted = tuple(SkillNeed(*need) for need in needs)
    return WaitingCall(key(n), service, at(enqueued), wanted, language, priority, **kwargs)


def board(*agents, services=(), calls=()):
    b = RoutingBoard({s.name: s for s in services})
    for a, state in agents:
        b.put_agent(a, state)
    for c in calls:
        b.put_call(c)
    return b


# --- skill, level, language ---------------------------------------------------------------------


def test_the_agent_must_hold_every_needed_skill_at_the_minimum_level():
    b = board(
        (agent("1001", {"billing": 4, "refunds": 9}), ready("1001")),
        (agent("1002", {"billing": 6}), ready("1002")),
        (agent("1003", {"billing": 9, "refunds": 5}), ready("1003")),
        (agent("1004", {"billing": 10, "refunds": 10}), ready("1004", status=AgentStatus.NOT_READY)),
    )
    decision = b.call_arrived(call(1, needs=(("billing", 5), ("refunds", 5))), at(10))
    assert decision is not None and decision.outcome is Outcome.CONNECT
    assert decision.agent_id == "1003"
    assert [c.agent_id for c in decision.candidates] == ["1003"] and decision.candidates_total == 1
    assert decision.candidates[0].skill_score == 14
    assert decision.trigger is Trigger.CALL_ARRIVED and decision.rule == RULES[Strategy.BEST_SKILL]


def test_nobody_qualified_means_the_call_waits():
    b = board((agent("1001", {"billing": 4}), ready("1001")))
    assert b.call_arrived(call(1, needs=(("billing", 5),)), at(10)) is None
    assert b.call_arrived(call(2, needs=(("sales", 1),)), at(10)) is None


@pytest.mark.parametrize(
    ("language", "expected"),
    [("zh", "1002"), ("en", "1001"), (None, "1001"), ("yue", None)],
)
def test_the_agent_must_speak_the_callers_language(language, expected):
    b = board(
        (agent("1001", {"billing": 9}, ("en",)), ready("1001")),
        (agent("1002", {"billing": 5}, ("zh", "en")), ready("1002")),
    )
    decision = b.call_arrived(call(1, language=language), at(10))
    assert (decision.agent_id if decision else None) == expected


# --- strategies ---------------------------------------------------------------------------------

STRATEGY_AGENTS = [
    # id, billing level, ready since (s), talk today (s)
    ("1001", 9, 50, 3000.0),  # the most skilled
    ("1002", 5, 0, 2000.0),  # idle the longest
    ("1003", 6, 20, 100.0),  # the least occupied
    ("1004", 9, 40, 2500.0),  # as skilled as 1001 and idle longer: wins the tie
]


@pytest.mark.parametrize(
    ("strategy", "expected", "order"),
    [
        (Strategy.BEST_SKILL, "1004", ["1004", "1001", "1003", "1002"]),
        (Strategy.LONGEST_IDLE, "1002", ["1002", "1003", "1004", "1001"]),
        (Strategy.LEAST_OCCUPIED, "1003", ["1003", "1002", "1004", "1001"]),
    ],
)
def test_the_services_strategy_chooses_among_candidates(strategy, expected, order):
    b = board(
        *[(agent(i, {"billing": level}), ready(i, idle, talk)) for i, level, idle, talk in STRATEGY_AGENTS],
        services=[ServiceRouting("billing", strategy=strategy)],
    )
    decision = b.call_arrived(call(1), at(100))
    assert decision.agent_id == expected
    assert [c.agent_id for c in decision.candidates] == order
    assert decision.rule == RULES[strategy]
    first = decision.candidates[0]
    assert first.idle_seconds == 100 - dict((i, idle) for i, _, idle, _ in STRATEGY_AGENTS)[expected]


def test_agents_over_their_maximum_occupancy_are_not_offered_calls():
    b = board(
        (agent("1001", {"billing": 9}, max_occupancy=0.5), ready("1001", talk_seconds=80.0)),
        (agent("1002", {"billing": 2}), ready("1002", talk_seconds=80.0)),
    )
    assert b.call_arrived(call(1), at(100)).agent_id == "1002"  # 1001 talked 80 % of 100 s


# --- priority, age and fairness -----------------------------------------------------------------


def test_a_vip_call_jumps_ahead_of_older_calls():
    calls = [call(1, enqueued=0), call(2, enqueued=10, priority=100), call(3, enqueued=5)]
    b = board((agent("1001", {"billing": 5}), ready("1001")), calls=calls)
    decision = b.agent_freed("1001", at(60))
    assert decision.call == key(2) and decision.agent_id == "1001"
    assert decision.trigger is Trigger.AGENT_FREED and decision.rule == AGENT_FREED_RULE
    assert decision.calls_considered == 3 and decision.waited_seconds == 50


def test_among_equal_priority_the_oldest_call_goes_first():
    calls = [call(1, enqueued=20), call(2, enqueued=5), call(3, enqueued=10)]
    b = board((agent("1001", {"billing": 5}), ready("1001")), (agent("1002", {"billing": 5}), ready("1002")),
              calls=calls)  # fmt: skip
    decisions = b.round(at(60))
    assert [(d.call, d.agent_id) for d in decisions] == [(key(2), "1001"), (key(3), "1002")]


def test_a_freed_agent_takes_the_first_call_they_can_serve():
    calls = [
        call(1, needs=(("sales", 1),), enqueued=0),
        call(2, enqueued=30, language="en"),
        call(3, enqueued=40),
    ]
    b = board((agent("1001", {"billing": 5}), ready("1001")), calls=calls)
    assert b.agent_freed("1001", at(60)).call == key(3)


def test_a_freed_agent_not_ready_on_the_board_gets_nothing():
    b = board((agent("1001", {"billing": 5}), ready("1001", status=AgentStatus.WRAP_UP)), calls=[call(1)])
    assert b.agent_freed("1001", at(60)) is None
    assert b.agent_freed("unknown", at(60)) is None


@pytest.mark.parametrize(
    ("sales_weight", "expected"),
    [(1.0, "billing"), (3.0, "sales")],
)
def test_fairness_between_services_weighs_wait_by_the_services_weight(sales_weight, expected):
    services = [ServiceRouting("billing"), ServiceRouting("sales", weight=sales_weight)]
    calls = [call(1, "billing", enqueued=0), call(2, "sales", needs=(("sales", 1),), enqueued=30)]
    both = agent("1001", {"billing": 5, "sales": 5})
    # at 60 s: billing waited 60 s × 1; sales waited 30 s × weight
    b = board((both, ready("1001")), services=services, calls=calls)
    assert b.agent_freed("1001", at(60)).service == expected
    assert [d.service for d in b.round(at(60))] == [expected]


# --- relaxation ---------------------------------------------------------------------------------

RELAXING = ServiceRouting(
    "billing",
    relaxations=(Relaxation(30, lower_levels_by=2), Relaxation(60, drop_optional=True, any_language=True)),
)


def test_relaxation_widens_levels_after_n_seconds_without_losing_the_callers_place():
    demanding = call(1, needs=(("billing", 8),), enqueued=0)
    easy = call(2, needs=(("billing", 6),), enqueued=10)
    b = board((agent("1001", {"billing": 6}), ready("1001")), services=[RELAXING], calls=[demanding, easy])
    before = b.round(at(29))
    assert [(d.call, d.relaxed.level) for d in before] == [(key(2), 0)]
    after = b.round(at(30))
    assert [(d.call, d.relaxed.level, d.relaxed.lower_levels_by) for d in after] == [(key(1), 1, 2)]
    assert after[0].waited_seconds == 30
    assert b.waiting_calls()[0].enqueued_at == T0


def test_later_steps_drop_optional_skills_and_accept_any_language():
    wanted = call(1, needs=(("billing", 5), ("vip_care", 5, True)), language="yue")
    b = board((agent("1001", {"billing": 5}, ("en",)), ready("1001")), services=[RELAXING], calls=[wanted])
    assert b.round(at(59)) == []
    decision = b.round(at(60))[0]
    assert decision.agent_id == "1001"
    assert decision.relaxed.drop_optional and decision.relaxed.any_language
    assert decision.candidates[0].skill_score == 5


def test_optional_skills_count_until_dropped():
    wanted = call(1, needs=(("billing", 5), ("vip_care", 5, True)))
    b = board(
        (agent("1001", {"billing": 9}), ready("1001")),
        (agent("1002", {"billing": 5, "vip_care": 6}), ready("1002")),
        services=[RELAXING],
    )
    assert b.call_arrived(wanted, at(0)).agent_id == "1002"


# --- ring-no-answer and overflow ----------------------------------------------------------------


def test_an_agent_who_let_the_call_ring_out_is_not_offered_it_again():
    rang_out = call(1).after_ring_no_answer("1001")
    b = board(
        (agent("1001", {"billing": 10}), ready("1001")),
        (agent("1002", {"billing": 2}), ready("1002")),
        calls=[rang_out],
    )
    assert b.call_arrived(rang_out, at(10)).agent_id == "1002"
    b.put_agent(agent("1002", {"billing": 2}), ready("1002", status=AgentStatus.NOT_READY))
    assert b.call_arrived(rang_out, at(10)) is None
    assert b.agent_freed("1001", at(10)) is None


OVERFLOWING = ServiceRouting(
    "billing", max_wait_seconds=120, overflow=Overflow(OverflowKind.SERVICE, "billing-backup")
)


@pytest.mark.parametrize(
    ("now", "agent_ready", "outcome"),
    [(119, False, None), (120, False, Outcome.OVERFLOW), (120, True, Outcome.CONNECT)],
)
def test_overflow_after_max_wait_only_when_nobody_can_take_the_call(now, agent_ready, outcome):
    status = AgentStatus.READY if agent_ready else AgentStatus.NOT_READY
    b = board((agent("1001", {"billing": 5}), ready("1001", status=status)), services=[OVERFLOWING],
              calls=[call(1)])  # fmt: skip
    decisions = b.round(at(now))
    assert [d.outcome for d in decisions] == ([outcome] if outcome else [])
    if outcome is Outcome.OVERFLOW:
        (decision,) = decisions
        assert decision.overflow == Overflow(OverflowKind.SERVICE, "billing-backup")
        assert decision.rule == OVERFLOW_RULE and decision.agent_id is None and decision.waited_seconds == 120


def test_overflowed_call_keeps_its_place_in_the_next_service():
    b = board((agent("1001", {"billing": 5}), ready("1001")), calls=[call(2, "billing-backup", enqueued=50)],
              services=[OVERFLOWING])  # fmt: skip
    moved = call(1).moved_to("billing-backup", at(120))
    b.put_call(moved)
    assert b.agent_freed("1001", at(130)).call == key(1)


# --- the round and the board ------------------------------------------------------------------


def test_a_round_gives_each_agent_at_most_one_call():
    calls = [call(n, enqueued=n) for n in range(1, 6)]
    b = board(*[(agent(i, {"billing": 5}), ready(i, idle_since=n)) for n, i in enumerate(["1001", "1002"])],
              calls=calls)  # fmt: skip
    decisions = b.round(at(60))
    assert [(d.call, d.agent_id) for d in decisions] == [(key(1), "1001"), (key(2), "1002")]


def test_decide_from_plain_values_matches_the_board():
    agents = [(agent(i, {"billing": n + 3}), ready(i, idle_since=n)) for n, i in enumerate(["1001", "1002"])]
    calls = [call(1, enqueued=5), call(2, enqueued=0, priority=100), call(3, enqueued=1)]
    decisions = decide(agents, calls, {"billing": ServiceRouting("billing")}, at(60))
    assert [(d.call, d.agent_id, d.trigger) for d in decisions] == [
        (key(2), "1002", Trigger.ROUND),
        (key(3), "1001", Trigger.ROUND),
    ]
    assert board(*agents, calls=calls).round(at(60)) == decisions


def test_the_board_follows_agents_and_calls_as_they_change():
    a = agent("1001", {"billing": 5})
    b = board((a, ready("1001")), calls=[call(1)])
    b.put_agent(a, ready("1001", status=AgentStatus.RESERVED))
    assert b.ready_agents == 0 and b.round(at(10)) == []
    assert b.agent_state("1001").status is AgentStatus.RESERVED
    b.put_agent(a, ready("1001"))
    assert b.remove_call(key(1)) == call(1)
    assert b.remove_call(key(1)) is None
    assert b.round(at(10)) == []
    b.remove_agent("1001")
    assert b.call_arrived(call(2), at(10)) is None


def test_changing_a_services_rules_applies_to_calls_already_waiting():
    b = board((agent("1001", {"billing": 3}), ready("1001")), calls=[call(1, needs=(("billing", 5),))])
    assert b.round(at(40)) == []
    b.set_service(ServiceRouting("billing", relaxations=(Relaxation(30, lower_levels_by=2),)))
    assert [d.agent_id for d in b.round(at(40))] == ["1001"]


def test_state_for_another_agent_is_refused():
    with pytest.raises(ValueError, match="state of agent 1002"):
        RoutingBoard().put_agent(agent("1001", {}), ready("1002"))


# --- the timer --------------------------------------------------------------------------------

TIMED = ServiceRouting(
    "billing",
    relaxations=(Relaxation(30, lower_levels_by=2),),
    max_wait_seconds=90,
    overflow=Overflow(OverflowKind.CALLBACK),
)


def test_the_timer_decides_for_calls_whose_routing_widened_and_says_when_to_run_next():
    b = board(
        (agent("1001", {"billing": 6}), ready("1001")),
        services=[TIMED],
        calls=[call(1, needs=(("billing", 8),), enqueued=0), call(2, needs=(("sales", 1),), enqueued=10)],
    )
    assert b.next_change_at(at(0)) == at(30)
    assert b.timer(at(0), at(29)) == []
    (decision,) = b.timer(at(29), at(30))
    assert (decision.call, decision.agent_id, decision.trigger) == (key(1), "1001", Trigger.TIMER)
    assert decision.relaxed.level == 1
    b.remove_call(key(1))
    assert b.next_change_at(at(30)) == at(40)  # call 2's only relaxation step
    assert b.timer(at(30), at(99)) == []  # relaxed at 40 s, still nobody for sales
    assert b.next_change_at(at(40)) == at(100)  # its max wait
    (overflowed,) = b.timer(at(99), at(100))
    assert (overflowed.outcome, overflowed.overflow) == (Outcome.OVERFLOW, Overflow(OverflowKind.CALLBACK))
    b.remove_call(key(2))
    assert b.next_change_at(at(0)) is None


def test_replacing_a_call_moves_its_moments_on_the_agenda():
    b = board(services=[TIMED], calls=[call(1, enqueued=0)])
    assert b.next_change_at(at(0)) == at(30)
    b.put_call(call(1, enqueued=0).moved_to("billing", at(50)))
    assert b.next_change_at(at(0)) == at(80)


# --- agents about to be free: queue callbacks dialled ahead ----------------------------------------

CALLBACK_LEAD = {"billing": 10.0, "sales": 0.0}  # seconds of dial-ahead, by service


def callback(n, **kwargs):
    return replace(call(n, **kwargs), key=CallKey("pbx1", f"callback-{n}"))


def lead(c: WaitingCall) -> float:
    """Only queue callbacks are dialled ahead, by their service's dial-ahead time."""
    return CALLBACK_LEAD.get(c.service, 0.0) if c.key.linkedid.startswith("callback-") else 0.0


def wrapping(agent_id, until, **kwargs):
    return ready(agent_id, status=AgentStatus.WRAP_UP, wrap_up_until=at(until), **kwargs)


def about_free(b, now):
    return b.agents_about_free(at(now), lead, max(CALLBACK_LEAD.values()))


@pytest.mark.parametrize(
    ("now", "reserved"),
    [(85, False), (89.9, False), (90, True), (99, True), (100, False), (101, False)],
)
def test_an_agent_is_reserved_for_a_callback_only_within_the_dial_ahead_time(now, reserved):
    b = board((agent("1001", {"billing": 5}), wrapping("1001", 100)), calls=[callback(1, enqueued=0)])
    decisions = about_free(b, now)
    assert [(d.agent_id, d.call) for d in decisions] == ([("1001", callback(1).key)] if reserved else [])


def test_the_reservation_ahead_says_why_in_the_decision_log():
    b = board((agent("1001", {"billing": 5}), wrapping("1001", 100)), calls=[callback(1, enqueued=30)])
    (d,) = about_free(b, 95)
    assert (d.trigger, d.outcome, d.service, d.waited_seconds) == (
        Trigger.AGENT_ABOUT_FREE, Outcome.CONNECT, "billing", 65.0,
    )  # fmt: skip
    assert d.rule.startswith("dial_ahead: agent 1001's wrap-up ends in 5.0 s, within the service's 10 s")
    assert [c.agent_id for c in d.candidates] == ["1001"] and d.calls_considered == 1


@pytest.mark.parametrize(
    ("the_agent", "calls", "expected"),
    [
        # The same rules as for a freed agent: skills and level...
        (agent("1001", {"billing": 2}), [callback(1, needs=(("billing", 3),))], None),
        # ... language ...
        (agent("1001", {"billing": 5}, ("en",)), [callback(1)], None),
        # ... the caller ahead in line is theirs when free, so nothing is dialled ahead ...
        (agent("1001", {"billing": 5}), [call(2, enqueued=0), callback(1, enqueued=5)], None),
        # ... unless the callback is ahead of the caller (its place is the customer's first wait) ...
        (agent("1001", {"billing": 5}), [call(2, enqueued=5), callback(1, enqueued=0)], 1),
        # ... priority first ...
        (agent("1001", {"billing": 5}), [callback(1, enqueued=0), callback(3, enqueued=20, priority=100)], 3),
        # ... fairness between services: sales (weight 3) comes first, and is not dialled ahead ...
        (
            agent("1001", {"billing": 5, "sales": 5}),
            [callback(1, enqueued=0), callback(4, service="sales", needs=(("sales", 1),), enqueued=50)],
            None,
        ),
        # ... and an agent who let this callback ring out is not reserved for it again.
        (agent("1001", {"billing": 5}), [callback(1, avoid=frozenset({"1001"}))], None),
        (agent("1001", {"billing": 5}, max_occupancy=0.1), [callback(1)], None),  # too busy today
    ],
)
def test_the_callback_reserved_ahead_is_the_call_the_agent_would_take_when_free(the_agent, calls, expected):
    services = [ServiceRouting("billing"), ServiceRouting("sales", weight=3.0)]
    state = wrapping("1001", 100, talk_seconds=60.0)  # logged in for 95 s: occupancy 0.63
    b = board((the_agent, state), services=services, calls=calls)
    decisions = about_free(b, 95)
    assert [d.call.linkedid for d in decisions] == ([f"callback-{expected}"] if expected else [])


def test_the_agent_free_first_takes_the_first_callback_and_the_next_the_second():
    b = board(
        (agent("1001", {"billing": 9}), wrapping("1001", 98)),
        (agent("1002", {"billing": 3}), wrapping("1002", 96)),
        (agent("1003", {"billing": 9}), ready("1003", status=AgentStatus.NOT_READY)),
        calls=[callback(1, enqueued=0), callback(2, enqueued=10), callback(3, enqueued=20)],
    )
    decisions = about_free(b, 95)
    assert [(d.agent_id, d.call.linkedid) for d in decisions] == [
        ("1002", "callback-1"),
        ("1001", "callback-2"),
    ]


def test_an_agent_already_reserved_ahead_or_ready_is_not_reserved_ahead():
    b = board(
        (
            agent("1001", {"billing": 9}),
            wrapping("1001", 98, reserved_for=key(9), reserved_service="billing"),
        ),
        (agent("1002", {"billing": 9}), ready("1002", status=AgentStatus.NOT_READY)),
        calls=[callback(1)],
    )
    assert about_free(b, 95) == []
    b.put_agent(agent("1001", {"billing": 9}), wrapping("1001", 98))
    assert [d.agent_id for d in about_free(b, 95)] == ["1001"]
    b.put_agent(agent("1001", {"billing": 9}), ready("1001", status=AgentStatus.NOT_READY))
    assert about_free(b, 95) == []
