"""The IVR engine, driven without Asterisk: every node kind, silence, floods, secrets. Pure."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from cti.model import CallClassification
from ivr.files import example_flows
from ivr.flow import (
    MAX_INPUT_KEYS,
    Awaiting,
    CallContext,
    CallerHungUp,
    Collect,
    Digits,
    Done,
    Hangup,
    Input,
    KnownCustomer,
    Lookup,
    LookupResult,
    Masked,
    Outcome,
    Play,
    PromptRef,
    Recorded,
    RecordVoicemail,
    RequestCallback,
    Route,
    SayAlpha,
    SayDigits,
    SayMoney,
    SayNumber,
    Secret,
    Speak,
    Step,
    Timeout,
    UnexpectedInput,
    advance,
    start,
)
from ivr.model import Flow

from .helpers import BASE, OPEN_NOW, drive, final, make_flow, prompts

ANON = CallContext(ani="+8613800138000", dnis="4008001234")
ZHANG = KnownCustomer(7, "张伟", tier="vip", language="zh-CN")
VIP = CallContext(ani="+8613800138000", dnis="4008001234", customer=ZHANG)
PIN = "481516"


def plays(steps: list[Step]) -> list[PromptRef]:
    return [ref for s in steps if isinstance(s, Play | Collect | Hangup) for ref in s.prompts]


# --- play, menu, route, hangup ---------------------------------------------------------------------


def test_play_then_menu_waits_for_one_key() -> None:
    flow = make_flow()
    state, step = start(flow, ANON, OPEN_NOW)
    assert step == Play((PromptRef("welcome", "zh"),))
    assert state.awaiting is Awaiting.OUTPUT and state.path == ("welcome",)
    state, step = advance(flow, state, Done(), OPEN_NOW)
    assert step == Collect((PromptRef("menu", "zh"),), max_digits=1, timeout_seconds=5)
    assert state.path == ("welcome", "main_menu") and state.awaiting is Awaiting.DIGITS


MENU_CHOICES = [
    # keys, final step, recorded choice
    ("0", Route(("support",), "zh", 10), "0"),
    ("2", Route(("support", "billing"), "zh", 25), "2"),  # the choice adds a skill and priority
    ("#", Hangup((PromptRef("bye", "zh"),)), "#"),
    ("2#", Route(("support", "billing"), "zh", 25), "2"),  # only the first key of a menu counts
]


@pytest.mark.parametrize(("keys", "expected", "choice"), MENU_CHOICES)
def test_menu_choice(keys: str, expected: Step, choice: str) -> None:
    state, steps, _ = drive(make_flow(), ANON, [Digits(keys)])
    assert final(steps) == expected
    assert [(i.node, i.name, i.value) for i in state.inputs] == [("main_menu", "choice", choice)]
    assert state.finished and state.outcome in (Outcome.ROUTED, Outcome.HUNG_UP)


def test_caller_who_never_presses_anything_reaches_after_retries_in_bounded_steps() -> None:
    flow = make_flow()
    state, steps, _ = drive(flow, ANON, [Timeout()] * 100)
    assert final(steps) == Route(("support",), "zh", 10)  # after_retries: an agent
    collects = [s for s in steps if isinstance(s, Collect)]
    assert len(collects) == 3  # the first attempt and two retries
    assert plays(steps).count(PromptRef("no_input", "zh")) == 2
    assert len(steps) < 12
    assert state.path == ("welcome", "main_menu", "agent")  # re-asking does not lengthen the path
    assert state.inputs[-1].value == "no input"


def test_invalid_keys_play_the_invalid_prompt_and_count_as_attempts() -> None:
    state, steps, _ = drive(make_flow(), ANON, [Digits("7"), Timeout(), Digits("*")])
    assert final(steps) == Route(("support",), "zh", 10)
    said = plays(steps)
    assert said.count(PromptRef("invalid", "zh")) == 1 and said.count(PromptRef("no_input", "zh")) == 1
    assert state.inputs[-1].value == "invalid input"


def test_a_menu_looping_back_on_a_key_press_is_bounded_per_call() -> None:
    menu = {**BASE["nodes"]["main_menu"], "options": {**BASE["nodes"]["main_menu"]["options"], 9: "welcome"}}
    flow = make_flow(nodes__main_menu=menu)
    state, steps, _ = drive(flow, ANON, [Digits("9")] * 1000)
    assert isinstance(final(steps), Hangup) and state.outcome is Outcome.TOO_MANY_STEPS
    assert len(state.path) <= 100


def test_digit_flood_on_a_menu_uses_one_key_and_never_loops() -> None:
    _, steps, _ = drive(make_flow(), ANON, [Digits("2" * 5000)])
    assert final(steps) == Route(("support", "billing"), "zh", 25)
    assert len(steps) == 3


def test_digit_flood_on_a_collect_is_cut_to_max_digits() -> None:
    flood = "1234567890" * 50
    state, steps, _ = drive(make_flow(), ANON, [Digits("1"), Digits(flood)])
    assert isinstance(final(steps), Hangup) and state.outcome is Outcome.HUNG_UP
    assert state.inputs[-1].value == Masked(6)
    assert state.secrets == {} and len(steps) < 8  # the call ended: secrets are gone


def test_a_flood_of_junk_keys_counts_as_one_invalid_attempt() -> None:
    _, steps, _ = drive(make_flow(), ANON, [Digits("x" * 100_000 + "2"), Timeout(), Timeout()])
    # The first MAX_INPUT_KEYS characters are looked at: no key in them, so an invalid answer.
    assert MAX_INPUT_KEYS < 100_000
    assert final(steps) == Route(("support",), "zh", 10)


# --- collect and PIN masking -----------------------------------------------------------------------


def _pin_flow() -> Flow:
    return make_flow(
        prompts={**BASE["prompts"], **prompts("balance_is", "not_found")},
        nodes__pin={**BASE["nodes"]["pin"], "next": "balance"},
        nodes__balance={
            "kind": "lookup",
            "query": "balance",
            "pin": "pin",
            "found_prompt": "balance_is",
            "not_found_prompt": "not_found",
            "next": "goodbye",
            "unknown_customer": "agent",
        },
    )


def test_pin_digits_appear_nowhere_but_in_the_one_lookup() -> None:
    flow = _pin_flow()
    state, step = start(flow, VIP, OPEN_NOW)
    seen: list[object] = [state, step]
    for answer in (Done(), Digits("1"), Digits(PIN + "#")):
        state, step = advance(flow, state, answer, OPEN_NOW)
        seen += [state, step]
    assert isinstance(step, Lookup)
    assert step.customer_id == 7 and step.pin is not None and step.pin.matches(PIN)
    assert step.pin.reveal() == PIN  # the adapter's record check is the one reader
    state, step = advance(
        flow, state, LookupResult(True, amount=Decimal("1288.50"), currency="CNY"), OPEN_NOW
    )
    seen += [state, step]
    while not state.finished:
        state, step = advance(flow, state, Done(), OPEN_NOW)
        seen += [state, step]

    for thing in seen:
        assert PIN not in repr(thing) and PIN not in str(thing)
        if dataclasses.is_dataclass(thing):
            assert PIN not in repr(dataclasses.asdict(thing))  # type: ignore[arg-type]
    assert PIN not in repr(state.path) and PIN not in repr(state.inputs) and PIN not in str(state.summary())
    assert next(i for i in state.inputs if i.name == "pin").value == Masked(6)
    assert {"node": "pin", "name": "pin", "value": "****"} in state.summary()["inputs"]  # type: ignore[operator]


def test_secrets_are_never_pickled_and_leave_the_state_after_use() -> None:
    flow = _pin_flow()
    state, _, _ = drive(flow, VIP, [Digits("1"), Digits(PIN)])
    assert state.awaiting is Awaiting.LOOKUP and state.secrets == {}  # handed out with the lookup
    secret = Secret(PIN)
    with pytest.raises(TypeError, match="never serialised"):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret
    assert repr(Digits(PIN)) == "Digits(<6 keys>)"


def test_pin_of_the_wrong_length_is_asked_again_then_given_up() -> None:
    state, steps, _ = drive(_pin_flow(), VIP, [Digits("1"), Digits("12#"), Timeout(), Digits("1234567")])
    # 1234567 is cut to 6 digits: the third attempt is valid.
    assert isinstance(steps[-1], Lookup)
    state, steps, _ = drive(_pin_flow(), VIP, [Digits("1"), Digits("12#"), Timeout(), Digits("#")])
    assert final(steps) == Hangup((PromptRef("bye", "zh"),))
    assert state.inputs[-1].name == "retries_exhausted"


def test_a_pin_lookup_for_an_unknown_caller_goes_to_unknown_customer() -> None:
    state, steps, _ = drive(_pin_flow(), ANON, [Digits("1"), Digits(PIN)])
    assert not any(isinstance(s, Lookup) for s in steps)
    assert final(steps) == Route(("support",), "zh", 10)
    assert PromptRef("not_found", "zh") in plays(steps)
    assert state.lookups[0].found is False


# --- lookups ---------------------------------------------------------------------------------------


def _lookup_flow(query: str) -> Flow:
    return make_flow(
        start="lookup",
        prompts={**BASE["prompts"], **prompts("intro", "nothing", "shipped", "after")},
        nodes__welcome=None,
        nodes__main_menu=None,
        nodes__pin=None,
        nodes__lookup={
            "kind": "lookup",
            "query": query,
            "found_prompt": "intro",
            "not_found_prompt": "nothing",
            "after_prompt": "after",
            "status_prompts": {"shipped": "shipped"},
            "next": "goodbye",
            "not_found": "agent",
            "unknown_customer": "agent",
        },
    )


LOOKUPS: list[tuple[str, LookupResult, list[Any]]] = [
    (
        "balance",
        LookupResult(True, amount=Decimal("1288.50"), currency="CNY"),
        [
            Play((PromptRef("intro", "zh"),)),
            SayMoney(Decimal("1288.50"), "CNY", "zh"),
            Play((PromptRef("after", "zh"),)),
        ],
    ),
    (
        "last_order",
        LookupResult(True, reference="A1024", status="shipped"),
        [
            Play((PromptRef("intro", "zh"),)),
            SayAlpha("A1024", "zh"),
            Play((PromptRef("shipped", "zh"),)),
            Play((PromptRef("after", "zh"),)),
        ],
    ),
    (
        "open_ticket",
        LookupResult(True, count=2, reference="88123", status="unheard-of"),
        [
            Play((PromptRef("intro", "zh"),)),
            SayNumber(2, "zh"),
            SayDigits("88123", "zh"),
            Play((PromptRef("after", "zh"),)),
        ],
    ),
]


@pytest.mark.parametrize(("query", "result", "said"), LOOKUPS, ids=[q for q, _, _ in LOOKUPS])
def test_lookup_found_is_said_back(query: str, result: LookupResult, said: list[Step]) -> None:
    flow = _lookup_flow(query)
    state, step = start(flow, VIP, OPEN_NOW)
    assert step == Lookup(query, 7)  # type: ignore[arg-type]
    state, steps, _ = drive_from(flow, state, result)
    assert steps[:-1] == said
    assert final(steps) == Hangup((PromptRef("bye", "zh"),))
    assert state.lookups[0].found and state.lookups[0].query == query


def drive_from(flow: Flow, state: Any, first: Any) -> tuple[Any, list[Step], None]:
    state, step = advance(flow, state, first, OPEN_NOW)
    steps = [step]
    while not state.finished:
        state, step = advance(flow, state, Done(), OPEN_NOW)
        steps.append(step)
    return state, steps, None


def test_lookup_not_found_goes_to_not_found() -> None:
    flow = _lookup_flow("balance")
    state, _ = start(flow, VIP, OPEN_NOW)
    state, steps, _ = drive_from(flow, state, LookupResult(False))
    assert steps == [Play((PromptRef("nothing", "zh"),)), Route(("support",), "zh", 30)]
    assert state.path == ("lookup", "agent")


def test_lookup_for_an_unknown_caller_never_asks_the_record() -> None:
    _, steps, _ = drive(_lookup_flow("balance"), ANON, [])
    assert not any(isinstance(s, Lookup) for s in steps)
    assert final(steps) == Route(("support",), "zh", 10)


def test_answering_a_lookup_with_keys_is_an_adapter_bug() -> None:
    flow = _lookup_flow("balance")
    state, _ = start(flow, VIP, OPEN_NOW)
    with pytest.raises(UnexpectedInput, match="node 'lookup' is waiting for lookup"):
        advance(flow, state, Digits("1"), OPEN_NOW)


# --- business hours ----------------------------------------------------------------------------------


def _hours_flow(zone: str) -> Flow:
    return make_flow(
        start="hours",
        prompts={**BASE["prompts"], **prompts("closed", "holiday")},
        nodes__hours={
            "kind": "hours",
            "time_zone": zone,
            "weekly": {d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": ["2026-10-01"],
            "open": "welcome",
            "closed": "closed",
            "holiday": "holiday",
        },
        nodes__closed={"kind": "voicemail", "prompts": ["closed"], "max_seconds": 60, "next": "goodbye"},
        nodes__holiday={"kind": "hangup", "prompts": ["holiday"]},
    )


HOURS = [
    # zone, now (UTC), where the call goes
    ("Asia/Shanghai", datetime(2026, 3, 2, 1, 30, tzinfo=UTC), "welcome"),  # Mon 09:30 in Shanghai
    ("UTC", datetime(2026, 3, 2, 1, 30, tzinfo=UTC), "closed"),  # Mon 01:30 in UTC
    ("Asia/Shanghai", datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "closed"),  # Mon 18:00 in Shanghai: closed
    ("Asia/Shanghai", datetime(2026, 3, 2, 9, 59, tzinfo=UTC), "welcome"),  # Mon 17:59
    ("UTC", datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "welcome"),
    ("Asia/Shanghai", datetime(2026, 3, 6, 17, 0, tzinfo=UTC), "closed"),  # Sat 01:00 in Shanghai
    ("UTC", datetime(2026, 3, 6, 17, 0, tzinfo=UTC), "welcome"),  # still Fri 17:00 in UTC
    ("Asia/Shanghai", datetime(2026, 9, 30, 17, 0, tzinfo=UTC), "holiday"),  # already 1 October there
    ("UTC", datetime(2026, 9, 30, 17, 0, tzinfo=UTC), "welcome"),  # still Wed 30 September, 17:00
    ("America/New_York", datetime(2026, 10, 1, 13, 0, tzinfo=UTC), "holiday"),  # 09:00 on 1 October
]


@pytest.mark.parametrize(("zone", "now", "goes_to"), HOURS)
def test_business_hours_in_the_service_time_zone(zone: str, now: datetime, goes_to: str) -> None:
    state, _ = start(_hours_flow(zone), ANON, now)
    assert state.path == ("hours", goes_to)


def test_after_hours_voicemail_is_recorded_with_the_call() -> None:
    flow = _hours_flow("Asia/Shanghai")
    now = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    state, step = start(flow, VIP, now)
    assert step == Play((PromptRef("closed", "zh"),))
    state, step = advance(flow, state, Done(), now)
    assert step == RecordVoicemail(max_seconds=60, beep=True)
    state, step = advance(flow, state, Recorded("vm/1700000000.42", 17.5), now)
    assert step == Hangup((PromptRef("bye", "zh"),)) and state.finished
    assert state.voicemail is not None and state.voicemail.seconds == 17.5
    assert state.summary()["voicemail"] == {"recording": "vm/1700000000.42", "seconds": 17.5}


# --- language choice and greeting ------------------------------------------------------------------


def _language_flow(skip_if_known: bool = False) -> Flow:
    return make_flow(
        start="lang",
        prompts={
            **BASE["prompts"],
            "choose_zh": {"zh": "普通话请按1"},
            "choose_en": {"en": "For English press 2"},
            **prompts("lang_invalid"),
        },
        nodes__lang={
            "kind": "language",
            "options": {
                1: {"language": "zh", "prompt": "choose_zh"},
                2: {"language": "en", "prompt": "choose_en"},
            },
            "invalid_prompt": "lang_invalid",
            "skip_if_known": skip_if_known,
            "next": "welcome",
        },
    )


def test_language_choice_switches_the_prompt_language() -> None:
    flow = _language_flow()
    state, step = start(flow, ANON, OPEN_NOW)
    assert step == Collect((PromptRef("choose_zh", "zh"), PromptRef("choose_en", "en")), 1, 5)
    state, step = advance(flow, state, Digits("2"), OPEN_NOW)
    assert step == Play((PromptRef("welcome", "en"),)) and state.language == "en"
    state, steps, _ = drive(flow, ANON, [Digits("2"), Digits("0")])
    assert final(steps) == Route(("support",), "en", 10)  # routing gets the chosen language
    assert all(ref.language == "en" for ref in plays(steps)[2:])


def test_language_choice_silence_keeps_the_default_and_goes_on() -> None:
    state, steps, _ = drive(_language_flow(), ANON, [Timeout(), Timeout(), Digits("0")])
    # The invalid prompt is said in every offered language: the caller has not chosen one.
    assert Play((PromptRef("lang_invalid", "zh"), PromptRef("lang_invalid", "en"))) in steps
    assert state.language == "zh" and final(steps) == Route(("support",), "zh", 10)


def test_known_customer_language_skips_the_question() -> None:
    english = CallContext("+12015550123", "4008001234", KnownCustomer(9, "John Smith", "gold", "en-US"))
    state, step = start(_language_flow(skip_if_known=True), english, OPEN_NOW)
    assert step == Play((PromptRef("welcome", "en"),))
    assert state.inputs[0].value == "en (customer record)"
    state, step = start(_language_flow(skip_if_known=True), ANON, OPEN_NOW)
    assert isinstance(step, Collect)  # nobody to read a language from: ask


def _greeting_flow(say_name: str) -> Flow:
    return make_flow(
        start="hello",
        prompts={**BASE["prompts"], **prompts("hi_known", "hi_vip", "hi_stranger")},
        nodes__hello={
            "kind": "greeting",
            "known_prompt": "hi_known",
            "unknown_prompt": "hi_stranger",
            "tier_prompts": {"vip": "hi_vip"},
            "say_name": say_name,
            "next": "welcome",
        },
    )


GREETINGS = [
    ("before", VIP, [Speak("张伟", "zh"), Play((PromptRef("hi_vip", "zh"),))]),
    ("after", VIP, [Play((PromptRef("hi_vip", "zh"),)), Speak("张伟", "zh")]),
    ("never", VIP, [Play((PromptRef("hi_vip", "zh"),))]),
    (
        "after",
        CallContext("+8613900139000", "4008001234", KnownCustomer(8, "李娜", "standard", None)),
        [Play((PromptRef("hi_known", "zh"),)), Speak("李娜", "zh")],
    ),
    ("after", ANON, [Play((PromptRef("hi_stranger", "zh"),))]),
]


@pytest.mark.parametrize(("say_name", "context", "expected"), GREETINGS)
def test_greeting_is_personal_for_a_known_customer(
    say_name: str, context: CallContext, expected: list[Step]
) -> None:
    flow = _greeting_flow(say_name)
    state, step = start(flow, context, OPEN_NOW)
    steps = [step]
    while len(steps) < len(expected) + 1:
        state, step = advance(flow, state, Done(), OPEN_NOW)
        steps.append(step)
    assert steps[: len(expected)] == expected
    assert steps[len(expected)] == Play((PromptRef("welcome", "zh"),))


# --- routing priority ------------------------------------------------------------------------------

PRIORITIES = [
    # customer tier, menu key, priority
    (None, "0", 10),
    ("vip", "0", 30),  # the tier raises it
    (None, "2", 25),  # the menu choice raises it
    ("vip", "2", 45),  # both
    ("standard", "2", 25),
]


@pytest.mark.parametrize(("tier", "key", "priority"), PRIORITIES)
def test_priority_is_derived_from_the_path(tier: str | None, key: str, priority: int) -> None:
    customer = None if tier is None else KnownCustomer(1, "王芳", tier, "zh")
    _, steps, _ = drive(make_flow(), CallContext("+8613800138000", "4008001234", customer), [Digits(key)])
    route = final(steps)
    assert isinstance(route, Route) and route.priority == priority


def test_priority_is_capped() -> None:
    flow = make_flow(nodes__agent={"kind": "route", "priority": 95, "tier_priority": {"vip": 50}})
    _, steps, _ = drive(flow, VIP, [Digits("2")])
    assert final(steps) == Route(("billing",), "zh", 100)


# --- callback --------------------------------------------------------------------------------------


def _callback_flow() -> Flow:
    return make_flow(
        prompts={**BASE["prompts"], **prompts("cb_intro", "cb_confirm", "cb_enter", "booked")},
        nodes__main_menu={**BASE["nodes"]["main_menu"], "options": {4: "callback", 0: "agent", 1: "pin"}},
        nodes__callback={
            "kind": "callback",
            "intro_prompt": "cb_intro",
            "confirm_prompt": "cb_confirm",
            "enter_prompt": "cb_enter",
            "invalid_prompt": "invalid",
            "skills": ["support"],
            "priority": 5,
            "next": "booked",
            "after_retries": "agent",
        },
        nodes__booked={"kind": "hangup", "prompts": ["booked"]},
        nodes__goodbye={"kind": "hangup", "prompts": ["bye"]},
    )


def test_callback_confirms_the_callers_number_and_keeps_the_place() -> None:
    state, steps, _ = drive(_callback_flow(), VIP, [Digits("4"), Digits("1")])
    assert SayDigits("8613800138000", "zh") in steps
    request = next(s for s in steps if isinstance(s, RequestCallback))
    assert request == RequestCallback("+8613800138000", ("support",), "zh", 5, keep_place=True)
    assert final(steps) == Hangup((PromptRef("booked", "zh"),))
    assert state.callback_number == "+8613800138000"


def test_callback_to_another_number() -> None:
    _, steps, _ = drive(
        _callback_flow(), ANON, [Digits("4"), Digits("2"), Digits("110#"), Digits("13912345678#")]
    )
    # 110 is a short code: refused, asked again.
    request = next(s for s in steps if isinstance(s, RequestCallback))
    assert request.number == "13912345678"
    assert Play((PromptRef("invalid", "zh"),)) in steps


def test_withheld_number_goes_straight_to_typing_one() -> None:
    withheld = CallContext(None, "4008001234")
    state, steps, _ = drive(_callback_flow(), withheld, [Digits("4"), Timeout(), Timeout(), Timeout()])
    assert not any(isinstance(s, SayDigits) for s in steps)
    assert [s.max_digits for s in steps if isinstance(s, Collect)][1:] == [15, 15, 15]
    assert final(steps) == Route(("support",), "zh", 10)  # after the last retry
    assert state.path == ("welcome", "main_menu", "callback", "agent")  # asking again is not a new visit


# --- the call ends -----------------------------------------------------------------------------------


def test_caller_hangs_up_mid_menu() -> None:
    flow = make_flow()
    state, _, _ = drive(flow, ANON, [])
    state, step = advance(flow, state, CallerHungUp(), OPEN_NOW)
    assert state.finished and state.outcome is Outcome.CALLER_HUNG_UP and step == Hangup()
    assert advance(flow, state, Digits("1"), OPEN_NOW) == (state, step)  # finished stays finished


def test_context_from_the_core_classification() -> None:
    found = CallClassification(
        ani_e164="+8613800138000",
        customer_id=7,
        customer_name="张伟",
        customer_tier="vip",
        new_contact=False,
        customer_match="unique",
        service_id=1,
        service_name="support",
        language="zh-CN",
    )
    assert CallContext.from_classification("13800138000", "4008001234", found) == VIP
    assert CallContext.from_classification("anonymous", "4008001234", None).customer is None


def test_example_support_flow_end_to_end_for_a_vip() -> None:
    flow = example_flows()["4008001234"]
    answers: list[Input] = [
        Digits("1"),
        Digits(PIN + "#"),
        LookupResult(True, amount=Decimal("88.00"), currency="CNY"),
        Digits("#"),
    ]
    state, steps, _ = drive(flow, VIP, answers)
    assert state.path == (
        "choose_language",
        "greeting",
        "hours",
        "main_menu",
        "balance_pin",
        "balance",
        "anything_else",
        "goodbye",
    )
    assert Speak("张伟", "zh") in steps and SayMoney(Decimal("88.00"), "CNY", "zh") in steps
    assert state.outcome is Outcome.HUNG_UP and PIN not in repr(state)


def test_example_support_flow_on_a_holiday_takes_a_message() -> None:
    flow = example_flows()["4008001234"]
    now = datetime(2026, 10, 2, 3, 0, tzinfo=UTC)
    state, _, _ = drive(flow, ANON, [Timeout(), Timeout(), Recorded("vm/1", 12.0)], now=now)
    assert "holiday_closed" in state.path and state.voicemail is not None


def test_example_sales_flow_routes_a_purchase_with_priority() -> None:
    flow = example_flows()["18005550100"]
    now = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # Tuesday 10:00 in New York
    john = CallContext("+12015550123", "18005550100", KnownCustomer(9, "John Smith", "vip", "en"))
    _, steps, _ = drive(flow, john, [Digits("1")], now=now)
    assert final(steps) == Route(("sales", "sales_new"), "en", 40)
