"""What a waiting caller is told: position, expected wait, the dialplan's variables; and the
announcer sending them over a real ``ActionSink`` contract (a recording sink: this test checks
which actions are written, the e2e test hears them from Asterisk)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.model import CallKey, CallPhase, CallSnapshot, Direction
from cti.ports import ActionFailed
from routing.model import Agent, AgentState, AgentStatus, ServiceRouting, SkillNeed, WaitingCall
from routing.waiting import (
    VAR_EVERY,
    VAR_LANGUAGE,
    VAR_MINUTES,
    VAR_OVERFLOW_BYE,
    VAR_OVERFLOW_SOUND,
    VAR_POSITION,
    VAR_SOUND,
    Announcement,
    Announcing,
    HandleTimes,
    WaitingAnnouncer,
    expected_wait_seconds,
    line_positions,
    overflow_redirect_headers,
    overflow_variables,
    overflow_words,
    plan_announcements,
    said_language,
    setvar_headers,
    staffed_counts,
    staffed_for,
    validate_every,
    wait_minutes,
)

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def key(n: int) -> CallKey:
    return CallKey("pbx1", f"1700000000.{n}")


def call(
    n: int, service: str = "support", enqueued: float = 0, priority: int = 0, language: str | None = "zh"
):
    return WaitingCall(key(n), service, at(enqueued), (SkillNeed("mandarin"),), language, priority)


def agent(agent_id: str, status: AgentStatus, skills=None) -> tuple[Agent, AgentState]:
    return (
        Agent(agent_id, f"agent {agent_id}", skills if skills is not None else {"mandarin": 5}),
        AgentState(agent_id, status, T0),
    )


SUPPORT = ServiceRouting("support", needs=(SkillNeed("mandarin"),))


# --- position -----------------------------------------------------------------------------------


def test_positions_count_within_each_service_by_priority_then_time_waited() -> None:
    calls = [
        call(1, enqueued=0),
        call(2, enqueued=10),
        call(3, enqueued=20, priority=100),  # a VIP goes ahead of both
        call(4, service="billing", enqueued=5),
    ]
    assert line_positions(calls) == {key(3): 1, key(1): 2, key(2): 3, key(4): 1}


def test_a_callback_with_an_earlier_place_counts_ahead_of_later_callers() -> None:
    callback = WaitingCall(CallKey("pbx1", "callback-7"), "support", at(-30), (SkillNeed("mandarin"),))
    assert line_positions([call(1, enqueued=0), callback]) == {callback.key: 1, key(1): 2}


# --- expected wait ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "staffed", "handle_times", "expected"),
    [
        (1, 1, [120.0], 120.0),
        (3, 2, [100.0, 200.0], 225.0),  # 3 × 150 ÷ 2
        (2, 4, [], 90.0),  # no history: the default handle time (180 s)
        (5, 0, [60.0], None),  # nobody staffed: no figure
    ],
)
def test_expected_wait(position, staffed, handle_times, expected) -> None:
    assert expected_wait_seconds(position, staffed, handle_times) == expected


@pytest.mark.parametrize(
    ("seconds", "minutes"), [(None, None), (0.0, 1), (59.0, 1), (60.0, 1), (61.0, 2), (10**9, 999)]
)
def test_minutes_said_are_rounded_up_and_bounded(seconds, minutes) -> None:
    assert wait_minutes(seconds) == minutes


def test_staffed_agents_are_logged_in_not_on_a_break_and_hold_the_services_skills() -> None:
    agents = [
        agent("1001", AgentStatus.READY),
        agent("1002", AgentStatus.ON_CALL),
        agent("1003", AgentStatus.WRAP_UP),
        agent("1004", AgentStatus.RESERVED),
        agent("1005", AgentStatus.NOT_READY),
        agent("1006", AgentStatus.LOGGED_OUT),
        agent("1007", AgentStatus.READY, skills={"english": 9}),
    ]
    assert staffed_for(SUPPORT, agents) == 4
    anyone = ServiceRouting("anyone")
    two = ServiceRouting(
        "two", needs=(SkillNeed("mandarin"), SkillNeed("english"), SkillNeed("x", optional=True))
    )
    agents.append(agent("1008", AgentStatus.ON_CALL, skills={"mandarin": 2, "english": 3}))
    counts = staffed_counts([SUPPORT, anyone, two], agents)
    assert counts == {"support": 5, "anyone": 6, "two": 1}
    assert counts == {s.name: staffed_for(s, agents) for s in (SUPPORT, anyone, two)}


def test_handle_times_keep_the_most_recent_per_service() -> None:
    times = HandleTimes(kept=3)
    for seconds in (10.0, 20.0, 30.0, 40.0):
        times.record("support", seconds)
    times.record("support", float("nan"))  # refused: not a duration
    assert times.recent("support") == (20.0, 30.0, 40.0)
    assert times.recent("billing") == ()


def test_the_plan_tells_each_caller_their_place_and_wait_in_their_language() -> None:
    times = HandleTimes()
    times.record("support", 240.0)
    calls = [call(1, enqueued=0, language="zh"), call(2, enqueued=5, language="en"), call(3, "quiet")]
    plan = plan_announcements(
        calls,
        {"support": SUPPORT},
        [agent("1001", AgentStatus.ON_CALL), agent("1002", AgentStatus.ON_CALL)],
        times,
        Announcing(30, {"quiet": 0}),
    )
    assert plan[key(1)] == Announcement(1, 2, "zh", 30)  # 1 × 240 ÷ 2 = 120 s
    assert plan[key(2)] == Announcement(2, 4, "en", 30)  # 2 × 240 ÷ 2 = 240 s
    assert plan[key(3)].every == 0  # a service that does not announce


# --- what reaches Asterisk ----------------------------------------------------------------------


def test_variables_are_set_interval_last_and_say_nothing_unknown() -> None:
    variables = Announcement(3, None, "en", 20).variables()
    assert list(variables) == [VAR_POSITION, VAR_MINUTES, VAR_LANGUAGE, VAR_SOUND, VAR_EVERY]
    assert variables == {
        VAR_POSITION: "3", VAR_MINUTES: "", VAR_LANGUAGE: "en", VAR_SOUND: "", VAR_EVERY: "20"
    }  # fmt: skip
    assert Announcement(1, 2, "zh", 20).variables("/srv/cti/sounds/ivr/ivr-ab12")[VAR_SOUND] == (
        "/srv/cti/sounds/ivr/ivr-ab12"
    )


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Announcement(0, 1, "en", 20),
        lambda: Announcement(1000, 1, "en", 20),
        lambda: Announcement(1, 0, "en", 20),
        lambda: Announcement(1, 1, "fr", 20),
        lambda: Announcement(1, 1, "en", 5),  # too often: all talk, no music
        lambda: Announcement(1, 1, "en", 20).variables("/x/a b"),
        lambda: Announcement(1, 1, "en", 20).variables("x,Hangup()"),
        lambda: Announcing(20, {"support\r\nAction: Originate": 20}),
        lambda: validate_every(True),
        lambda: setvar_headers("PJSIP/trunk-0001", VAR_POSITION, "1\r\nAction: Hangup"),
        lambda: setvar_headers("PJSIP/trunk-0001\n", VAR_POSITION, "1"),
        lambda: overflow_redirect_headers("PJSIP/trunk-0001", "service"),
    ],
)
def test_unsafe_or_senseless_values_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize(
    ("language", "said"),
    [("zh", "zh"), ("zh-CN", "zh"), ("cmn", "zh"), ("en", "en"), (None, "en"), ("fr", "en")],
)
def test_languages_said(language, said) -> None:
    assert said_language(language) == said


def test_announcement_words_in_mandarin_and_english() -> None:
    assert Announcement(3, 4, "zh", 20).text() == "您前面还有2位客户。预计等待时间约4分钟。"
    assert Announcement(1, None, "en", 20).text() == "You are next in line."


class RecordingSink:
    """Records the actions written; ``fail`` names channels Asterisk refuses (a caller who left)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.fail: set[str] = set()

    async def send(self, action, headers=None):
        if headers and headers.get("Channel") in self.fail:
            raise ActionFailed(action, "Channel specified does not exist")
        self.sent.append((action, dict(headers or {})))
        return {"Response": "Success"}


class View:
    def __init__(self, calls, snapshots, agents) -> None:
        self.calls, self.snapshots, self.agents = calls, snapshots, agents

    def waiting_view(self):
        return self.calls, self.snapshots, {"support": SUPPORT}, self.agents


def snapshot(n: int) -> CallSnapshot:
    return CallSnapshot(
        key(n), CallPhase.WAITING, Direction.INBOUND, T0, "13800000001", "", "8000",
        f"PJSIP/trunk-{n:08x}", f"1700000000.{n}",
    )  # fmt: skip


async def test_the_announcer_sets_only_what_changed_and_retries_what_failed() -> None:
    sink = RecordingSink()
    calls = [call(1, language="en"), call(2, enqueued=5, language="en")]
    view = View(calls, {key(1): snapshot(1), key(2): snapshot(2)}, [agent("1001", AgentStatus.ON_CALL)])
    announcer = WaitingAnnouncer(view, sink, Announcing(20))
    sink.fail.add("PJSIP/trunk-00000002")
    assert await announcer.refresh() == 5  # call 1's five variables; call 2's refused
    assert all(action == "Setvar" for action, _ in sink.sent)
    assert {h["Variable"]: h["Value"] for _, h in sink.sent} == {
        VAR_POSITION: "1", VAR_MINUTES: "3", VAR_LANGUAGE: "en", VAR_SOUND: "", VAR_EVERY: "20"
    }  # fmt: skip
    sink.fail.clear()
    assert await announcer.refresh() == 5  # call 2 now; call 1 unchanged, not sent again
    view.calls = [calls[1]]  # call 1 was connected: call 2 moves up
    sink.sent.clear()
    assert await announcer.refresh() == 2
    assert [(h["Channel"], h["Variable"], h["Value"]) for _, h in sink.sent] == [
        ("PJSIP/trunk-00000002", VAR_POSITION, "1"),
        ("PJSIP/trunk-00000002", VAR_MINUTES, "3"),
    ]


async def test_a_service_without_announcements_gets_music_only() -> None:
    sink = RecordingSink()
    view = View([call(1)], {key(1): snapshot(1)}, [])
    # Another service announces, so the dialplan waits for word on every caller: say "music only".
    await WaitingAnnouncer(view, sink, Announcing(0, {"other": 30})).refresh()
    assert sink.sent == [("Setvar", {"Channel": "PJSIP/trunk-00000001", "Variable": VAR_EVERY, "Value": "0"})]


async def test_when_no_service_announces_nothing_is_sent_to_a_waiting_caller() -> None:
    sink = RecordingSink()
    view = View([call(1), call(2)], {key(1): snapshot(1), key(2): snapshot(2)}, [])
    assert not Announcing(0, {"sales": 0}).anywhere and Announcing(0, {"sales": 20}).anywhere
    assert await WaitingAnnouncer(view, sink, Announcing(0, {"sales": 0})).refresh() == 0
    assert sink.sent == []


async def test_a_mandarin_caller_gets_the_prompt_built_in_mandarin() -> None:
    sink = RecordingSink()
    built: list[Announcement] = []

    async def sound(announcement: Announcement) -> str:
        built.append(announcement)
        return "/srv/cti/sounds/ivr/ivr-0123456789abcdef"

    view = View([call(1, language="zh")], {key(1): snapshot(1)}, [agent("1001", AgentStatus.READY)])
    await WaitingAnnouncer(view, sink, Announcing(20), sound=sound).refresh()
    assert built == [Announcement(1, 3, "zh", 20)]
    sound_set = {
        "Channel": "PJSIP/trunk-00000001",
        "Variable": VAR_SOUND,
        "Value": "/srv/cti/sounds/ivr/ivr-0123456789abcdef",
    }
    assert ("Setvar", sound_set) in sink.sent


# --- overflow messages in the caller's language -------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "language", "said"),
    [
        ("voicemail", "zh", True),
        ("callback", "zh-CN", True),
        ("callback", "cmn", True),
        ("voicemail", "en", False),
        ("callback", None, False),
        ("voicemail", "fr", False),  # no prompt in French: Asterisk's English sounds
    ],
)
def test_overflow_messages_are_chosen_by_the_callers_language(kind, language, said) -> None:
    words = overflow_words(kind, language)
    assert (words is not None) is said
    if words is not None:
        first, bye = words
        assert "留言" in first if kind == "voicemail" else "回电" in first
        assert bool(bye) is (kind == "voicemail")


def test_overflow_variables_carry_plain_sounds_only() -> None:
    sounds = overflow_variables(
        "PJSIP/trunk-00000001", "/srv/cti/sounds/ivr/ivr-01", "/srv/cti/sounds/ivr/ivr-02"
    )
    assert sounds == [
        {
            "Channel": "PJSIP/trunk-00000001",
            "Variable": VAR_OVERFLOW_SOUND,
            "Value": "/srv/cti/sounds/ivr/ivr-01",
        },
        {
            "Channel": "PJSIP/trunk-00000001",
            "Variable": VAR_OVERFLOW_BYE,
            "Value": "/srv/cti/sounds/ivr/ivr-02",
        },
    ]
    assert overflow_variables("PJSIP/trunk-00000001", "/s/ivr-01", None)[1]["Value"] == ""
    for bad in ("/s/a&/s/b", "/s/a,b", "/s/a\nb", "/s/a:b"):
        with pytest.raises(ValueError):
            overflow_variables("PJSIP/trunk-00000001", bad, None)
