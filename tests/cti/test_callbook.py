"""The call book, table-driven: each case is a script of typed events and the calls it must leave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.callbook import CallBook, endpoint_of, outbound_party
from cti.events import (
    BridgeEntered,
    BridgeLeft,
    CallerIdChanged,
    ChannelListed,
    ChannelRenamed,
    ChannelStateChanged,
    DialBegan,
    DialEnded,
    HoldEnded,
    HoldStarted,
    HungUp,
    NewChannel,
    UserEventRaised,
)
from cti.model import CallClassification, CallKey, CallPhase, ChangeKind, Direction, EndReason

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
CALLER = dict(
    channel="PJSIP/trunk-00000001",
    uniqueid="100.1",
    linkedid="100.1",
    caller_num="13800138000",
    caller_name="张伟",
    context="from-trunk",
    exten="8001",
)
AGENT = dict(
    channel="PJSIP/1001-00000002",
    uniqueid="100.2",
    linkedid="100.1",
    caller_num="8001",
    caller_name="",
    context="from-agents",
    exten="s",
)


def ch(cls, who, state=6, **extra):
    return cls(**{**who, "state": state}, **extra)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(book: CallBook, script):
    changes = []
    for seconds, event in script:
        changes += book.apply(event, at(seconds))
    return changes


ARRIVE = [
    (0, ch(NewChannel, CALLER, state=4)),
    (
        0.1,
        ch(
            UserEventRaised,
            CALLER,
            state=4,
            name="CallArrived",
            fields=(("DNIS", "8001"), ("Direction", "inbound")),
        ),
    ),
]
ANSWER = [(0.2, ch(ChannelStateChanged, CALLER, state=6))]
WAIT = [(0.3, ch(UserEventRaised, CALLER, name="CallPhase", fields=(("Phase", "waiting"),)))]
RING = [
    (5, ch(NewChannel, AGENT, state=0)),
    (
        5.01,
        ch(DialBegan, CALLER, dest_channel=AGENT["channel"], dest_uniqueid="100.2", dest_linkedid="100.1"),
    ),
]
CONNECT = [
    (
        7,
        ch(
            DialEnded,
            CALLER,
            dest_channel=AGENT["channel"],
            dest_uniqueid="100.2",
            dest_linkedid="100.1",
            dial_status="ANSWER",
        ),
    ),
    (7.01, ch(BridgeEntered, AGENT, bridge_id="b1", swap_uniqueid="")),
    (7.02, ch(BridgeEntered, CALLER, bridge_id="b1", swap_uniqueid="")),
]
CALLER_HANGS_UP = [
    (20, ch(BridgeLeft, CALLER, bridge_id="b1")),
    (20.01, ch(BridgeLeft, AGENT, bridge_id="b1")),
    (20.02, ch(HungUp, AGENT, cause=16, cause_txt="Normal Clearing")),
    (20.03, ch(HungUp, CALLER, cause=16, cause_txt="Normal Clearing")),
]


@pytest.mark.parametrize(
    ("script", "phase", "fields"),
    [
        (
            ARRIVE,
            CallPhase.ARRIVING,
            {
                "dnis": "8001",
                "ani": "13800138000",
                "caller_name": "张伟",
                "direction": Direction.INBOUND,
                "answered_at": None,
            },
        ),
        (ARRIVE + ANSWER + WAIT, CallPhase.WAITING, {"answered_at": at(0.2)}),
        (ARRIVE + ANSWER + WAIT + RING, CallPhase.RINGING_AGENT, {"agent": "1001", "connected_at": None}),
        (
            ARRIVE + ANSWER + WAIT + RING + CONNECT,
            CallPhase.TALKING,
            {"agent": "1001", "connected_at": at(7.02)},
        ),
        (ARRIVE + ANSWER + WAIT + RING + CONNECT + [(9, ch(HoldStarted, CALLER))], CallPhase.HELD, {}),
        (
            ARRIVE
            + ANSWER
            + WAIT
            + RING
            + CONNECT
            + [(9, ch(HoldStarted, CALLER)), (10, ch(HoldEnded, CALLER))],
            CallPhase.TALKING,
            {},
        ),
        # The agent's phone rings out: back to waiting, no agent kept.
        (
            ARRIVE
            + ANSWER
            + WAIT
            + RING
            + [
                (
                    25,
                    ch(
                        DialEnded,
                        CALLER,
                        dest_channel=AGENT["channel"],
                        dest_uniqueid="100.2",
                        dest_linkedid="100.1",
                        dial_status="NOANSWER",
                    ),
                ),
                (25.1, ch(HungUp, AGENT, cause=19, cause_txt="No answer")),
            ],
            CallPhase.WAITING,
            {"agent": None},
        ),
        # The agent hangs up first: still talking until the dialplan says where the caller went.
        (
            ARRIVE
            + ANSWER
            + WAIT
            + RING
            + CONNECT
            + [
                (15, ch(BridgeLeft, AGENT, bridge_id="b1")),
                (15.1, ch(HungUp, AGENT, cause=16, cause_txt="")),
            ],
            CallPhase.TALKING,
            {"agent": "1001", "channels": ("PJSIP/trunk-00000001",)},
        ),
        (
            ARRIVE
            + ANSWER
            + WAIT
            + RING
            + CONNECT
            + [
                (15, ch(BridgeLeft, AGENT, bridge_id="b1")),
                (15.1, ch(HungUp, AGENT, cause=16, cause_txt="")),
                (15.2, WAIT[0][1]),
            ],
            CallPhase.WAITING,
            {"agent": "1001", "connected_at": at(7.02)},
        ),
        (
            ARRIVE + [(1, ch(CallerIdChanged, {**CALLER, "caller_name": "Zhang Wei"}))],
            CallPhase.ARRIVING,
            {"caller_name": "Zhang Wei"},
        ),
    ],
)
def test_live_phases(script, phase, fields):
    book = CallBook("pbx1")
    run(book, script)
    (call,) = book.calls()
    assert call.key == CallKey("pbx1", "100.1")
    assert call.phase is phase
    for name, value in fields.items():
        assert getattr(call, name) == value, name


def test_a_full_call_closes_once_with_times_and_cause():
    book = CallBook("pbx1")
    changes = run(book, ARRIVE + ANSWER + WAIT + RING + CONNECT + CALLER_HANGS_UP)
    assert [c.kind for c in changes].count(ChangeKind.STARTED) == 1
    assert [c.kind for c in changes].count(ChangeKind.CLOSED) == 1
    final = changes[-1]
    assert final.kind is ChangeKind.CLOSED
    call = final.call
    assert call.phase is CallPhase.ENDED
    assert (call.started_at, call.answered_at, call.connected_at, call.ended_at) == (
        at(0),
        at(0.2),
        at(7.02),
        at(20.03),
    )
    assert call.wait_seconds == pytest.approx(7.02)
    assert call.talk_seconds == pytest.approx(13.01)
    assert (call.hangup_cause, call.hangup_cause_txt, call.end_reason) == (
        16,
        "Normal Clearing",
        EndReason.HANGUP,
    )
    assert [m.phase for m in call.history] == [
        CallPhase.ARRIVING,
        CallPhase.WAITING,
        CallPhase.RINGING_AGENT,
        CallPhase.TALKING,
        CallPhase.ENDED,
    ]
    assert len(book) == 0 and book.channel_count() == 0


def test_caller_hangs_up_while_ringing():
    book = CallBook("pbx1")
    changes = run(
        book,
        ARRIVE
        + ANSWER
        + RING
        + [
            (8, ch(HungUp, CALLER, cause=16, cause_txt="Normal Clearing")),
            (
                8.01,
                ch(
                    DialEnded,
                    CALLER,
                    dest_channel=AGENT["channel"],
                    dest_uniqueid="100.2",
                    dest_linkedid="100.1",
                    dial_status="CANCEL",
                ),
            ),
            (8.02, ch(HungUp, AGENT, cause=16, cause_txt="")),
        ],
    )
    closed = [c for c in changes if c.kind is ChangeKind.CLOSED]
    assert len(closed) == 1
    assert closed[0].call.connected_at is None
    assert closed[0].call.talk_seconds == 0.0
    assert closed[0].call.wait_seconds == pytest.approx(8)
    assert len(book) == 0 and book.channel_count() == 0


def test_wrap_up_holds_the_call_until_its_time_or_close():
    book = CallBook("pbx1", wrap_up_seconds=30)
    changes = run(book, ARRIVE + ANSWER + RING + CONNECT + CALLER_HANGS_UP)
    assert changes[-1].kind is ChangeKind.ENDED
    assert changes[-1].call.phase is CallPhase.WRAP_UP
    assert book.tick(at(40)) == []
    (closed,) = book.tick(at(50.03))
    assert closed.kind is ChangeKind.CLOSED and closed.call.ended_at == at(20.03)

    book = CallBook("pbx1", wrap_up_seconds=30)
    run(book, ARRIVE + ANSWER + RING + CONNECT + CALLER_HANGS_UP)
    (closed,) = book.close(CallKey("pbx1", "100.1"), at(25))
    assert closed.call.phase is CallPhase.ENDED and len(book) == 0


def test_replayed_and_unknown_events_change_nothing():
    book = CallBook("pbx1")
    run(book, ARRIVE + ANSWER + RING + CONNECT)
    before = book.calls()
    assert run(book, ARRIVE + ANSWER + RING + CONNECT) == []
    assert book.calls() == before
    stranger = dict(CALLER, uniqueid="999.9", linkedid="999.9")
    assert (
        run(
            book,
            [
                (30, ch(HungUp, stranger, cause=16, cause_txt="")),
                (30, ch(BridgeLeft, stranger, bridge_id="zz")),
                (30, ch(HoldStarted, stranger)),
            ],
        )
        == []
    )


def test_local_channel_optimisation_keeps_the_call_and_finds_the_agent():
    book = CallBook("pbx1")
    l1 = dict(
        channel="Local/1001@agents-00000001;1",
        uniqueid="100.3",
        linkedid="100.1",
        caller_num="",
        caller_name="",
        context="agents",
        exten="1001",
    )
    l2 = dict(l1, channel="Local/1001@agents-00000001;2", uniqueid="100.4")
    agent = dict(AGENT, uniqueid="100.5", channel="PJSIP/1002-00000005")
    run(
        book,
        ARRIVE
        + ANSWER
        + [
            (1, ch(NewChannel, l1, state=0)),
            (1, ch(NewChannel, l2, state=0)),
            (
                1,
                ch(
                    DialBegan,
                    CALLER,
                    dest_channel=l1["channel"],
                    dest_uniqueid="100.3",
                    dest_linkedid="100.1",
                ),
            ),
            (1.1, ch(NewChannel, agent, state=0)),
            (
                1.1,
                ch(
                    DialBegan, l2, dest_channel=agent["channel"], dest_uniqueid="100.5", dest_linkedid="100.1"
                ),
            ),
            (3, ch(BridgeEntered, l1, bridge_id="b1", swap_uniqueid="")),
            (3, ch(BridgeEntered, CALLER, bridge_id="b1", swap_uniqueid="")),
            (3, ch(BridgeEntered, l2, bridge_id="b2", swap_uniqueid="")),
            (3, ch(BridgeEntered, agent, bridge_id="b2", swap_uniqueid="")),
            # Optimisation: the agent's channel replaces Local;1 in the caller's bridge, the pair leaves.
            (3.5, ch(BridgeEntered, agent, bridge_id="b1", swap_uniqueid="100.3")),
            (3.5, ch(BridgeLeft, l1, bridge_id="b1")),
            (3.5, ch(BridgeLeft, l2, bridge_id="b2")),
            (3.6, ch(HungUp, l1, cause=16, cause_txt="")),
            (3.6, ch(HungUp, l2, cause=16, cause_txt="")),
        ],
    )
    (call,) = book.calls()
    assert call.phase is CallPhase.TALKING
    assert call.agent == "1002"
    assert call.connected_at == at(3.5)
    assert call.channels == ("PJSIP/trunk-00000001", "PJSIP/1002-00000005")


def test_attended_transfer_moves_the_target_agent_into_the_customers_call():
    book = CallBook("pbx1")
    run(book, ARRIVE + ANSWER + RING + CONNECT)
    consult = dict(
        AGENT,
        channel="PJSIP/1001-00000007",
        uniqueid="200.1",
        linkedid="200.1",
        context="from-agents",
        exten="1003",
    )
    target = dict(AGENT, channel="PJSIP/1003-00000008", uniqueid="200.2", linkedid="200.1")
    run(
        book,
        [
            (10, ch(HoldStarted, CALLER)),
            (11, ch(NewChannel, consult, state=4)),
            (11, ch(NewChannel, target, state=0)),
            (12, ch(BridgeEntered, consult, bridge_id="b2", swap_uniqueid="")),
            (12, ch(BridgeEntered, target, bridge_id="b2", swap_uniqueid="")),
            # Transfer completes: the target takes the first agent's place beside the customer.
            (15, ch(BridgeEntered, target, bridge_id="b1", swap_uniqueid="100.2")),
            (15, ch(BridgeLeft, AGENT, bridge_id="b1")),
            (15, ch(HungUp, AGENT, cause=16, cause_txt="")),
            (15, ch(HungUp, consult, cause=16, cause_txt="")),
            (15.5, ch(HoldEnded, CALLER)),
        ],
    )
    call = book.get(CallKey("pbx1", "100.1"))
    assert call is not None
    assert call.agent == "1003"
    assert call.phase is CallPhase.TALKING
    assert call.connected_at == at(7.02)
    assert book.get(CallKey("pbx1", "200.1")) is None  # the consultation call ended with its anchor


def test_a_transfer_to_an_outside_number_keeps_the_last_agent():
    book = CallBook("pbx1", outside_endpoints=("outside",))
    run(book, ARRIVE + ANSWER + RING + CONNECT)
    outside = dict(AGENT, channel="PJSIP/outside-00000009", uniqueid="100.9", context="from-agents")
    run(
        book,
        [
            # The caller is redirected out of the agent's bridge and dials the outside line.
            (10, ch(BridgeLeft, CALLER, bridge_id="b1")),
            (10, ch(BridgeLeft, AGENT, bridge_id="b1")),
            (10, ch(HungUp, AGENT, cause=16, cause_txt="")),
            (10.1, ch(NewChannel, outside, state=0)),
            (12, ch(BridgeEntered, outside, bridge_id="b3", swap_uniqueid="")),
            (12, ch(BridgeEntered, CALLER, bridge_id="b3", swap_uniqueid="")),
        ],
    )
    call = book.get(CallKey("pbx1", "100.1"))
    assert call is not None
    assert call.agent == "1001" and call.phase is CallPhase.TALKING
    assert call.channels == ("PJSIP/trunk-00000001", "PJSIP/outside-00000009")
    # Without the setting, the outside line would be taken for an agent.
    plain = CallBook("pbx1")
    run(plain, ARRIVE + ANSWER + RING + CONNECT)
    run(plain, [(10.1, ch(NewChannel, outside, state=0))])
    run(plain, [(12, ch(BridgeEntered, outside, bridge_id="b1", swap_uniqueid="100.2"))])
    assert plain.calls()[0].agent == "outside"


def test_rename_and_classification_update_the_live_call():
    book = CallBook("pbx1")
    run(book, ARRIVE)
    key = CallKey("pbx1", "100.1")
    cls = CallClassification(
        ani_e164="+8613800138000",
        customer_id=7,
        customer_name="张伟",
        customer_tier="vip",
        new_contact=False,
        customer_match="unique",
        service_id=1,
        service_name="support",
        language="zh-CN",
        required_skills=("mandarin",),
    )
    (change,) = book.classify(key, cls, at(0.2))
    assert change.call.classification == cls
    assert book.classify(CallKey("pbx1", "nope"), cls, at(0.2)) == []
    (renamed,) = book.apply(
        ChannelRenamed(uniqueid="100.1", channel=CALLER["channel"], new_name="PJSIP/x-1"), at(1)
    )
    assert renamed.call.channels == ("PJSIP/x-1",)


def _listed(who, *, state=6, bridge="", app="Wait", age=12):
    return ChannelListed(**{**who, "state": state}, bridge_id=bridge, application=app, duration_seconds=age)


def test_resync_closes_unseen_calls_with_the_reason_and_adopts_unknown_ones():
    book = CallBook("pbx1")
    run(book, ARRIVE + ANSWER + RING + CONNECT)
    other = dict(CALLER, channel="PJSIP/trunk-00000009", uniqueid="300.1", linkedid="300.1", exten="8002")
    other_agent = dict(AGENT, channel="PJSIP/1004-0000000a", uniqueid="300.2", linkedid="300.1")
    changes, resynced = book.resync(
        [
            _listed(other, bridge="b9", app="AppDial", age=30),
            _listed(other_agent, bridge="b9", app="AppDial"),
        ],
        at(60),
        EndReason.PBX_RESTARTED,
    )
    by_key = {c.call.key.linkedid: c for c in changes}
    gone = by_key["100.1"]
    assert gone.kind is ChangeKind.CLOSED
    assert gone.call.end_reason is EndReason.PBX_RESTARTED and gone.call.ended_at == at(60)
    adopted = by_key["300.1"]
    assert adopted.kind is ChangeKind.STARTED
    assert adopted.call.started_at == at(30) and adopted.call.answered_at == at(30)
    assert adopted.call.phase is CallPhase.TALKING and adopted.call.agent == "1004"
    assert resynced.live == frozenset({CallKey("pbx1", "300.1")})
    assert resynced.reason is EndReason.PBX_RESTARTED
    # A second identical resync is a no-op.
    again, _ = book.resync(
        [_listed(other, bridge="b9"), _listed(other_agent, bridge="b9")], at(61), EndReason.LINK_LOST
    )
    assert again == []


def test_expected_channel_joins_its_call_before_it_exists():
    book = CallBook("pbx1")
    run(book, ARRIVE + ANSWER + WAIT)
    key = CallKey("pbx1", "100.1")
    agent = dict(AGENT, uniqueid="cti-orig-1", linkedid="cti-orig-1")
    book.expect_channel("cti-orig-1", key)
    run(
        book,
        [
            (3, ch(NewChannel, agent, state=0)),
            (4, ch(BridgeEntered, agent, bridge_id="b5", swap_uniqueid="")),
            (4, ch(BridgeEntered, CALLER, bridge_id="b5", swap_uniqueid="")),
        ],
    )
    (call,) = book.calls()
    assert call.phase is CallPhase.TALKING and call.agent == "1001"


@pytest.mark.parametrize(
    ("channel", "endpoint"),
    [
        ("PJSIP/1001-0000000a", "1001"),
        ("PJSIP/trunk-00000001", "trunk"),
        ("Local/1001@agents-00000001;1", "1001@agents"),
        ("SIP/x", "x"),
    ],
)
def test_endpoint_of(channel, endpoint):
    assert endpoint_of(channel) == endpoint


def test_calls_on_another_pbx_are_not_ours():
    book = CallBook("pbx1")
    run(book, ARRIVE)
    assert book.get(CallKey("pbx2", "100.1")) is None
    assert book.close(CallKey("pbx2", "100.1"), at(1)) == []


def test_what_the_ivr_learned_stays_with_the_call():
    from cti.model import IvrRecord, RoutingRequest, SkillNeed

    book = CallBook("pbx1")
    run(book, ARRIVE + ANSWER)
    key = CallKey("pbx1", "100.1")
    ivr = IvrRecord(
        path=("welcome", "main_menu", "balance"),
        inputs=(("main_menu", "2"), ("pin", "****")),
        language="zh-CN",
        outcome="route",
    )
    request = RoutingRequest(
        service="support", skills=(SkillNeed("mandarin", 5),), language="zh-CN", priority=2
    )
    (change,) = book.record_ivr(key, ivr, at(9), routing=request)
    assert change.call.ivr == ivr and change.call.routing == request
    assert book.record_ivr(CallKey("pbx1", "nope"), ivr, at(9)) == []
    closed = run(book, [(20, ch(HungUp, CALLER, cause=16, cause_txt=""))])[-1]
    assert closed.call.ivr == ivr


def test_an_originate_ringing_its_own_party_is_not_an_agent_ringing():
    """A campaign call (or a queue callback) is an Originate: Asterisk's DialBegin for its first
    leg has no calling channel and the call's own anchor as destination. The customer's phone
    ringing is not an agent's: the call stays arriving, waits in line after the dialplan says so,
    and rings an agent only when one is dialled."""
    book = CallBook("pbx1", outside_endpoints=("outside",))
    lead = dict(
        channel="PJSIP/outside-00000003", uniqueid="dial-1", linkedid="dial-1", caller_num="+862161234567",
        caller_name="", context="from-agents", exten="s",
    )  # fmt: skip
    none = dict(channel="", uniqueid="", linkedid="", caller_num="", caller_name="", context="", exten="")
    run(
        book,
        [
            (0, ch(NewChannel, lead, state=0)),
            (
                0,
                DialBegan(
                    **none,
                    state=0,
                    dest_channel=lead["channel"],
                    dest_uniqueid="dial-1",
                    dest_linkedid="dial-1",
                ),
            ),
        ],
    )
    call = book.get(CallKey("pbx1", "dial-1"))
    assert call is not None and call.phase is CallPhase.ARRIVING and call.agent is None
    run(
        book,
        [
            (3, ch(ChannelStateChanged, lead, state=6)),
            (
                3,
                DialEnded(
                    **none,
                    state=0,
                    dest_channel=lead["channel"],
                    dest_uniqueid="dial-1",
                    dest_linkedid="dial-1",
                    dial_status="ANSWER",
                ),
            ),
            (5, ch(UserEventRaised, lead, name="CallPhase", fields=(("Phase", "waiting"),))),
        ],
    )
    call = book.get(CallKey("pbx1", "dial-1"))
    assert call is not None and call.phase is CallPhase.WAITING and call.agent is None
    assert call.answered_at == at(3)


@pytest.mark.parametrize(
    ("dial_string", "party"),
    [
        ("8613800138000@outside", "+8613800138000"),
        ("+8613800138000@outside", "+8613800138000"),
        ("12125550131@trunk-2", "+12125550131"),
        ("1001", None),  # an agent's or a supervisor's phone
        ("outside", None),
        ("12345@outside", None),  # too short for a number
        ("8613800138000@outside\r\nAction: Hangup", None),
        ("", None),
    ],
)
def test_outbound_party_reads_the_number_an_originate_dialled(dial_string: str, party: str | None) -> None:
    assert outbound_party(dial_string) == party


def dial(none: dict[str, str], channel: str, uniqueid: str, dial_string: str) -> DialBegan:
    """The DialBegin of an Originate's first leg: no calling channel."""
    return DialBegan(
        **none, state=0, dest_channel=channel, dest_uniqueid=uniqueid, dest_linkedid=uniqueid,
        dial_string=dial_string,
    )  # fmt: skip


def test_an_originate_dialling_a_customer_is_an_outbound_call_with_their_number_as_ani():
    """The customer sees the campaign's number, which is the new channel's caller id; the call's ANI
    becomes the number dialled, so the call log and the lookup find the customer. A supervisor's
    spy call (dialled by endpoint name) stays internal."""
    book = CallBook("pbx1", outside_endpoints=("outside",))
    none = dict(channel="", uniqueid="", linkedid="", caller_num="", caller_name="", context="", exten="")
    lead = dict(
        channel="PJSIP/outside-00000007", uniqueid="dial-7", linkedid="dial-7", caller_num="+862161234567",
        caller_name="Campaign", context="from-agents", exten="s",
    )  # fmt: skip
    spy = dict(
        channel="PJSIP/9001-00000008", uniqueid="spy-8", linkedid="spy-8", caller_num="",
        caller_name="", context="from-agents", exten="s",
    )  # fmt: skip
    changes = run(
        book,
        [
            (0, ch(NewChannel, lead, state=0)),
            (0, dial(none, lead["channel"], "dial-7", "8613800138000@outside")),
            (0, ch(NewChannel, spy, state=0)),
            (0, dial(none, spy["channel"], "spy-8", "9001")),
        ],
    )
    call = book.get(CallKey("pbx1", "dial-7"))
    assert call is not None
    assert (call.direction, call.ani, call.caller_name) == (Direction.OUTBOUND, "+8613800138000", "")
    assert call.phase is CallPhase.ARRIVING and call.agent is None
    assert any(c.call.key.linkedid == "dial-7" and c.call.direction is Direction.OUTBOUND for c in changes)
    spied = book.get(CallKey("pbx1", "spy-8"))
    assert spied is not None and spied.direction is Direction.INTERNAL and spied.ani == ""
