"""The agent state machine and the waiting-call rules, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.model import CallClassification, CallKey, CallPhase, CallSnapshot, Direction
from routing.model import (
    ALLOWED,
    HISTORY_LIMIT,
    RESERVED_AHEAD,
    RING_NO_ANSWER,
    Agent,
    AgentState,
    AgentStatus,
    Answer,
    CancelReservation,
    ForceLogout,
    ForceNotReady,
    Hangup,
    InvalidTransition,
    Login,
    Logout,
    NotReady,
    Overflow,
    OverflowKind,
    PriorityRules,
    Ready,
    Relaxation,
    Relaxed,
    Reserve,
    ReserveAhead,
    ResetDay,
    RingNoAnswer,
    ServiceRouting,
    SkillNeed,
    StatusMark,
    WaitingCall,
    WrapUpDone,
    call_priority,
    merge_needs,
    transition,
    waiting_call_from,
)

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
CALL = CallKey("pbx1", "1700000000.1")
S = AgentStatus

# How to reach each status from a fresh, logged-out agent, one second per step.
PATHS = {
    S.LOGGED_OUT: [],
    S.NOT_READY: [Login()],
    S.READY: [Login(), Ready()],
    S.RESERVED: [Login(), Ready(), Reserve(CALL, "billing")],
    S.ON_CALL: [Login(), Ready(), Reserve(CALL, "billing"), Answer()],
    S.WRAP_UP: [Login(), Ready(), Reserve(CALL, "billing"), Answer(), Hangup(30)],
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def state_in(status: AgentStatus) -> AgentState:
    state = AgentState.logged_out("1001", T0)
    for n, event in enumerate(PATHS[status], start=1):
        state = transition(state, event, at(n))
    assert state.status is status
    return state


EVENTS = [
    Login(),
    Ready(),
    NotReady("lunch"),
    Reserve(CALL, "billing"),
    ReserveAhead(CALL, "billing"),
    Answer(),
    RingNoAnswer(),
    CancelReservation(),
    Hangup(30),
    WrapUpDone(),
    Logout(),
    ForceNotReady("coaching", "sup-9"),
    ForceLogout("sup-9"),
    ResetDay(),
]

ALLOWED_MOVES = [
    (S.LOGGED_OUT, Login(), S.NOT_READY),
    (S.NOT_READY, Ready(), S.READY),
    (S.READY, NotReady("lunch"), S.NOT_READY),
    (S.NOT_READY, NotReady("lunch"), S.NOT_READY),
    (S.WRAP_UP, NotReady("lunch"), S.NOT_READY),
    (S.READY, Reserve(CALL, "billing"), S.RESERVED),
    (S.RESERVED, Answer(), S.ON_CALL),
    (S.RESERVED, RingNoAnswer(), S.NOT_READY),
    (S.RESERVED, CancelReservation(), S.READY),
    (S.ON_CALL, Hangup(30), S.WRAP_UP),
    (S.ON_CALL, Hangup(0), S.READY),
    (S.WRAP_UP, WrapUpDone(), S.READY),
    (S.READY, Logout(), S.LOGGED_OUT),
    (S.NOT_READY, Logout(), S.LOGGED_OUT),
    (S.WRAP_UP, Logout(), S.LOGGED_OUT),
    (S.READY, ForceNotReady("coaching", "sup-9"), S.NOT_READY),
    (S.NOT_READY, ForceNotReady("coaching", "sup-9"), S.NOT_READY),
    (S.WRAP_UP, ForceNotReady("coaching", "sup-9"), S.NOT_READY),
    (S.READY, ForceLogout("sup-9"), S.LOGGED_OUT),
    (S.NOT_READY, ForceLogout("sup-9"), S.LOGGED_OUT),
    (S.RESERVED, ForceLogout("sup-9"), S.LOGGED_OUT),
    (S.WRAP_UP, ForceLogout("sup-9"), S.LOGGED_OUT),
    *[(status, ResetDay(), status) for status in AgentStatus],
]


@pytest.mark.parametrize(("start", "event", "end"), ALLOWED_MOVES)
def test_allowed_transition(start, event, end):
    before = state_in(start)
    after = transition(before, event, at(100))
    assert after.status is end
    if not isinstance(event, ResetDay):
        assert after.since == at(100)
        assert after.history[-1].status is end and after.history[-1].at == at(100)
        assert after.history[:-1] == before.history


# Moves within a status (its ``since`` and deadline kept): reserving ahead during wrap-up.
AHEAD = CallKey("pbx1", "cti-cb-0123456789abcdef")
WITHIN_STATUS_MOVES = [
    (S.WRAP_UP, ReserveAhead(AHEAD, "billing")),
    (S.WRAP_UP, CancelReservation("customer_not_reached")),  # only when reserved ahead (below)
]


def test_the_table_lists_every_allowed_move():
    listed = {(start, type(event)) for start, event, _ in ALLOWED_MOVES}
    listed |= {(start, type(event)) for start, event in WITHIN_STATUS_MOVES}
    assert listed == {(status, kind) for kind, starts in ALLOWED.items() for status in starts}


FORBIDDEN = [
    (status, event) for status in AgentStatus for event in EVENTS if status not in ALLOWED[type(event)]
]


@pytest.mark.parametrize(("start", "event"), FORBIDDEN)
def test_forbidden_transition_raises_and_changes_nothing(start, event):
    before = state_in(start)
    with pytest.raises(InvalidTransition) as raised:
        transition(before, event, at(100))
    assert raised.value.state is before
    assert f"agent 1001 is {start}" in str(raised.value)


@pytest.mark.parametrize(
    ("start", "event", "message"),
    [
        (S.ON_CALL, Logout(), "agent 1001 is on_call: logout is allowed only from not_ready, ready, wrap_up"),
        (S.READY, Answer(), "agent 1001 is ready: answer is allowed only from reserved"),
        (S.ON_CALL, ForceLogout("sup-9"), "force_logout is allowed only from not_ready, ready, reserved"),
    ],
)
def test_invalid_transition_says_what_is_allowed(start, event, message):
    with pytest.raises(InvalidTransition, match=message):
        transition(state_in(start), event, at(100))


# --- reserved ahead, during wrap-up (queue callbacks dialled when an agent is about to be free) ---


def reserved_ahead() -> AgentState:
    wrapping = state_in(S.WRAP_UP)  # wrap-up from 5 s to 35 s
    return transition(wrapping, ReserveAhead(AHEAD, "callbacks"), at(20))


def test_reserving_ahead_keeps_the_wrap_up_and_notes_the_call_and_why():
    wrapping = state_in(S.WRAP_UP)
    state = reserved_ahead()
    assert (state.status, state.since, state.wrap_up_until) == (S.WRAP_UP, wrapping.since, at(35))
    assert (state.reserved_for, state.reserved_service) == (AHEAD, "callbacks")
    assert state.history[-1] == StatusMark(S.WRAP_UP, at(20), RESERVED_AHEAD, AHEAD)
    assert not state.wrap_up_due(at(34)) and state.wrap_up_due(at(35))


def test_an_agent_reserved_ahead_goes_to_that_call_when_the_wrap_up_ends_not_to_ready():
    reserved = transition(reserved_ahead(), WrapUpDone(), at(35))
    assert (reserved.status, reserved.call, reserved.service) == (S.RESERVED, AHEAD, "callbacks")
    assert reserved.reason == RESERVED_AHEAD and reserved.idle_since == at(35)
    assert reserved.reserved_for is None and reserved.wrap_up_until is None
    talking = transition(reserved, Answer(), at(40))
    assert (talking.status, talking.call) == (S.ON_CALL, AHEAD)


def test_ending_the_wrap_up_early_for_the_customer_goes_to_the_call_at_once():
    reserved = transition(reserved_ahead(), WrapUpDone(), at(25))  # the customer answered at 25 s
    assert (reserved.status, reserved.call, reserved.since) == (S.RESERVED, AHEAD, at(25))


def test_a_customer_not_reached_releases_the_reservation_and_the_wrap_up_goes_on():
    released = transition(reserved_ahead(), CancelReservation("customer_not_reached"), at(28))
    assert (released.status, released.wrap_up_until, released.reserved_for) == (S.WRAP_UP, at(35), None)
    assert released.history[-1] == StatusMark(S.WRAP_UP, at(28), "customer_not_reached", AHEAD)
    assert transition(released, WrapUpDone(), at(35)).status is S.READY


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (NotReady("lunch"), S.NOT_READY),
        (ForceNotReady("coaching", "sup-9"), S.NOT_READY),
        (Logout(), S.LOGGED_OUT),
        (ForceLogout("sup-9"), S.LOGGED_OUT),
    ],
)
def test_leaving_the_wrap_up_any_other_way_drops_the_reservation(event, status):
    state = transition(reserved_ahead(), event, at(30))
    assert state.status is status and state.reserved_for is None and state.reserved_service is None


def test_a_new_day_keeps_the_reservation():
    assert transition(reserved_ahead(), ResetDay(), at(30)).reserved_for == AHEAD


@pytest.mark.parametrize(
    ("state", "event", "message"),
    [
        (reserved_ahead, ReserveAhead(CALL, "billing"), "agent 1001 is already reserved for"),
        (lambda: state_in(S.WRAP_UP), CancelReservation(), "agent 1001 is wrap_up and not reserved"),
        (lambda: state_in(S.READY), ReserveAhead(AHEAD, "billing"), "allowed only from wrap_up"),
    ],
)
def test_reserving_ahead_is_refused_outside_its_rules(state, event, message):
    before = state()
    with pytest.raises(InvalidTransition, match=message):
        transition(before, event, at(30))


def test_a_call_counts_talk_time_and_sets_the_wrap_up_deadline():
    on_call = state_in(S.ON_CALL)  # answered at T0+4s
    wrapping = transition(on_call, Hangup(45), at(124))
    assert wrapping.calls_handled == 1
    assert wrapping.talk_seconds == 120.0
    assert wrapping.wrap_up_until == at(169)
    assert wrapping.call == CALL and wrapping.service == "billing"
    assert not wrapping.wrap_up_due(at(168)) and wrapping.wrap_up_due(at(169))
    ready = transition(wrapping, WrapUpDone(), at(169))
    assert ready.idle_since == at(169) and ready.call is None and ready.wrap_up_until is None


def test_ring_no_answer_goes_not_ready_with_its_reason_and_keeps_the_call():
    state = transition(state_in(S.RESERVED), RingNoAnswer(), at(20))
    assert state.reason == RING_NO_ANSWER
    assert state.call == CALL
    assert state.idle_since is None


def test_an_abandoned_reservation_keeps_the_agents_place_in_the_idle_line():
    reserved = state_in(S.RESERVED)
    idle_since = reserved.idle_since
    again = transition(reserved, CancelReservation(), at(30))
    assert again.status is S.READY and again.idle_since == idle_since == at(2)


def test_a_supervisor_forcing_not_ready_is_recorded():
    state = transition(state_in(S.READY), ForceNotReady("coaching", "sup-9"), at(10))
    assert (state.reason, state.history[-1].by) == ("coaching", "sup-9")


def test_history_keeps_the_newest_changes():
    state = state_in(S.READY)
    for n in range(HISTORY_LIMIT + 10):
        state = transition(state, NotReady(f"break {n}"), at(10 + n))
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1].reason == f"break {HISTORY_LIMIT + 9}"


def test_occupancy_and_the_new_day():
    state = transition(state_in(S.ON_CALL), Hangup(0), at(304))  # logged in at 1 s, talked 300 s
    assert state.occupancy(at(601)) == pytest.approx(0.5)
    state = transition(transition(state, Logout(), at(601)), Login(), at(1000))
    assert state.logged_in_seconds == 600.0
    assert state.occupancy(at(1000)) == pytest.approx(0.5)
    fresh = transition(state, ResetDay(), at(2000))
    assert (fresh.calls_handled, fresh.talk_seconds, fresh.logged_in_seconds) == (0, 0.0, 0.0)
    assert fresh.logged_in_at == at(2000) and fresh.status is state.status


def test_times_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        transition(state_in(S.READY), NotReady("x"), datetime(2026, 11, 22, 9, 0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Agent("1001", "张伟", {"billing": 11}),
        lambda: Agent("1001", "张伟", {"billing": 0}),
        lambda: Agent("", "nobody"),
        lambda: Agent("1001", "张伟", max_occupancy=1.5),
        lambda: SkillNeed("billing", 0),
        lambda: ServiceRouting("billing", weight=0),
        lambda: ServiceRouting("billing", max_wait_seconds=60),
    ],
)
def test_invalid_values_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_agent_skills_cannot_be_changed_behind_its_back():
    skills = {"billing": 5}
    agent = Agent("1001", "张伟", skills)
    skills["billing"] = 9
    assert agent.skills["billing"] == 5
    with pytest.raises(TypeError):
        agent.skills["billing"] = 9  # type: ignore[index]


# --- waiting calls and services -----------------------------------------------------------------

SERVICE = ServiceRouting(
    "billing",
    relaxations=(
        Relaxation(60, lower_levels_by=1, any_language=True),
        Relaxation(30, lower_levels_by=2),
        Relaxation(90, drop_optional=True),
    ),
    max_wait_seconds=120,
    overflow=Overflow(OverflowKind.VOICEMAIL, "billing-mailbox"),
)


@pytest.mark.parametrize(
    ("waited", "expected"),
    [
        (0, Relaxed()),
        (29.9, Relaxed()),
        (30, Relaxed(1, 2, False, False)),
        (60, Relaxed(2, 3, False, True)),
        (95, Relaxed(3, 3, True, True)),
    ],
)
def test_relaxation_steps_add_up_in_time_order(waited, expected):
    call = WaitingCall(CALL, "billing", T0)
    assert SERVICE.relaxed_at(call, at(waited)) == expected


def test_relaxed_levels_never_go_below_one():
    assert Relaxed(1, 5).min_level(SkillNeed("billing", 4)) == 1
    assert Relaxed(1, 2).min_level(SkillNeed("billing", 8)) == 6


@pytest.mark.parametrize(
    ("now", "expected"),
    [(0, at(30)), (30, at(60)), (61, at(90)), (100, at(120)), (120, None)],
)
def test_next_change_is_the_next_step_or_the_overflow(now, expected):
    assert SERVICE.next_change_at(WaitingCall(CALL, "billing", T0), at(now)) == expected


def test_overflow_falls_due_at_max_wait_in_the_service():
    call = WaitingCall(CALL, "billing", T0)
    assert not SERVICE.overflow_due(call, at(119)) and SERVICE.overflow_due(call, at(120))
    moved = call.moved_to("billing", at(120))
    assert moved.enqueued_at == T0 and not SERVICE.overflow_due(moved, at(200))


def test_ring_no_answer_keeps_the_callers_place():
    call = WaitingCall(CALL, "billing", T0, priority=20)
    again = call.after_ring_no_answer("1001").after_ring_no_answer("1002")
    assert (again.enqueued_at, again.priority, again.attempts) == (T0, 20, 2)
    assert again.avoid == {"1001", "1002"}


@pytest.mark.parametrize(
    ("tier", "path", "expected"),
    [
        (None, (), 0),
        ("VIP", (), 100),
        ("gold", ("main", "cancel_contract"), 80),
        ("unknown-tier", ("cancel_contract",), 30),
    ],
)
def test_priority_from_tier_and_ivr_path(tier, path, expected):
    rules = PriorityRules(ivr_points={"cancel_contract": 30})
    assert call_priority(tier, path, rules) == expected


def test_merge_needs_keeps_the_strictest():
    merged = merge_needs(
        [SkillNeed("billing", 3), SkillNeed("mandarin", 2, optional=True)],
        [SkillNeed("billing", 5, optional=True), SkillNeed("mandarin", 1, optional=True)],
    )
    assert merged == (SkillNeed("billing", 5), SkillNeed("mandarin", 2, optional=True))


def test_waiting_call_from_a_classified_call():
    snapshot = CallSnapshot(
        key=CALL,
        phase=CallPhase.WAITING,
        direction=Direction.INBOUND,
        started_at=T0,
        ani="13800138000",
        caller_name="张伟",
        dnis="8001",
        anchor_channel="PJSIP/trunk-00000001",
        anchor_uniqueid="1700000000.1",
        classification=CallClassification(
            ani_e164="+8613800138000",
            customer_id=7,
            customer_name="张伟",
            customer_tier="vip",
            new_contact=False,
            customer_match="phone",
            service_id=1,
            service_name="billing",
            language="zh",
            required_skills=("refunds",),
        ),
    )
    service = ServiceRouting("billing", needs=(SkillNeed("billing", 4),))
    call = waiting_call_from(snapshot, service, at(12), ivr_path=("refund",))
    assert call.needs == (SkillNeed("billing", 4), SkillNeed("refunds", 1))
    assert (call.language, call.priority, call.enqueued_at, call.customer_tier) == ("zh", 100, at(12), "vip")
