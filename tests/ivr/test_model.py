"""Flow validation: every problem is an error that names the file and the node. Table-driven, pure."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from ivr.files import example_flows, load_flow_file, load_flow_text, load_flows
from ivr.model import (
    BusinessHours,
    CollectDigits,
    FlowError,
    HandToRouting,
    Menu,
    MenuOption,
    RecordedPrompt,
    TextPrompt,
    load_flow,
)

from .helpers import BASE, flow_data, make_flow, prompts


def test_base_flow_loads_with_its_nodes_typed() -> None:
    flow = make_flow()
    assert flow.dnis == "4008001234" and flow.languages == ("zh", "en") and flow.start == "welcome"
    menu = flow.node("main_menu")
    assert isinstance(menu, Menu)
    # YAML's unquoted keys arrive as numbers; they are phone keys, so text.
    assert menu.option("2") == MenuOption("2", "agent", skills=("billing",), priority=15)
    assert menu.option("#") == MenuOption("#", "goodbye")
    pin = flow.node("pin")
    assert isinstance(pin, CollectDigits) and pin.masked and pin.terminator == "#"
    assert isinstance(flow.node("agent"), HandToRouting)
    assert flow.prompts["welcome"].in_language("en") == TextPrompt("welcome in en")


MENU = BASE["nodes"]["main_menu"]


def _menu(**changes: Any) -> dict[str, Any]:
    return {**MENU, **changes}


BAD_FLOWS: list[tuple[str, dict[str, Any], str]] = [
    (
        "missing target",
        flow_data(nodes__main_menu=_menu(options={**MENU["options"], 3: "nowhere"})),
        "test.yaml: node 'main_menu': option '3' goes to 'nowhere', which does not exist",
    ),
    (
        "missing next",
        flow_data(nodes__welcome={"kind": "play", "prompts": ["welcome"], "next": "mian_menu"}),
        "test.yaml: node 'welcome': 'next' goes to 'mian_menu', which does not exist",
    ),
    (
        "unknown kind",
        flow_data(nodes__goodbye={"kind": "dance", "prompts": ["bye"]}),
        "test.yaml: node 'goodbye': unknown kind 'dance' (kinds: play, menu, collect, hours, language, "
        "greeting, lookup, route, voicemail, callback, hangup)",
    ),
    (
        "unknown field",
        flow_data(nodes__main_menu=_menu(optoins={})),
        "test.yaml: node 'main_menu': unknown field 'optoins'",
    ),
    (
        "silent cycle of plays",
        flow_data(
            nodes__welcome={"kind": "play", "prompts": ["welcome"], "next": "again"},
            nodes__again={"kind": "play", "prompts": ["welcome"], "next": "welcome"},
        ),
        "test.yaml: node 'again': a caller who presses nothing would loop forever: again → welcome → again",
    ),
    (
        "silent cycle through a menu's last retry",
        flow_data(nodes__main_menu=_menu(after_retries="welcome")),
        "a caller who presses nothing would loop forever: main_menu → welcome → main_menu",
    ),
    (
        "prompt missing in one language",
        flow_data(
            prompts={
                **prompts("menu", "invalid", "no_input", "bye", "pin", "transfer"),
                "welcome": {"zh": "欢迎"},
            }
        ),
        "test.yaml: node 'welcome': 'prompts' plays prompt 'welcome', which has no text or recording "
        "for language 'en'",
    ),
    (
        "prompt not in the table",
        flow_data(nodes__goodbye={"kind": "hangup", "prompts": ["farewell"]}),
        "test.yaml: node 'goodbye': 'prompts' plays prompt 'farewell', which is not in 'prompts'",
    ),
    (
        "bad time zone",
        flow_data(
            start="hours",
            nodes__hours={
                "kind": "hours",
                "time_zone": "Asia/Shangai",
                "weekly": {"mon": ["09:00-18:00"]},
                "open": "welcome",
                "closed": "goodbye",
            },
        ),
        "test.yaml: node 'hours': time zone 'Asia/Shangai' is not an IANA time zone name",
    ),
    (
        "hours across midnight",
        flow_data(
            start="hours",
            nodes__hours={
                "kind": "hours",
                "time_zone": "UTC",
                "weekly": {"fri": ["18:00-02:00"]},
                "open": "welcome",
                "closed": "goodbye",
            },
        ),
        "test.yaml: node 'hours': hours on 'fri': '18:00-02:00' ends before it starts",
    ),
    (
        "bad weekday",
        flow_data(
            start="hours",
            nodes__hours={
                "kind": "hours",
                "time_zone": "UTC",
                "weekly": {"monday": ["09:00-18:00"]},
                "open": "welcome",
                "closed": "goodbye",
            },
        ),
        "test.yaml: node 'hours': 'weekly' has 'monday'",
    ),
    (
        "menu key of two digits",
        flow_data(nodes__main_menu=_menu(options={**MENU["options"], 12: "agent"})),
        "test.yaml: node 'main_menu': option 12 is not one phone key (0-9, * or #)",
    ),
    (
        "max digits below min digits",
        flow_data(nodes__pin={**BASE["nodes"]["pin"], "min_digits": 6, "max_digits": 4}),
        "test.yaml: node 'pin': 'max_digits' (4) is less than 'min_digits' (6)",
    ),
    (
        "digit terminator",
        flow_data(nodes__pin={**BASE["nodes"]["pin"], "terminator": 5}),
        "test.yaml: node 'pin': terminator '5' must be '#' or '*'",
    ),
    (
        "too many digits",
        flow_data(nodes__pin={**BASE["nodes"]["pin"], "max_digits": 500}),
        "test.yaml: node 'pin': 'max_digits' must be between 1 and 32, not 500",
    ),
    (
        "retries not a number",
        flow_data(nodes__main_menu=_menu(retries="three")),
        "test.yaml: node 'main_menu': 'retries' must be a whole number, not 'three'",
    ),
    (
        "unreachable node",
        flow_data(nodes__orphan={"kind": "hangup", "prompts": ["bye"]}),
        "test.yaml: node 'orphan': not reachable from the start node 'welcome'",
    ),
    (
        "start missing",
        flow_data(start="begin"),
        "test.yaml: start node 'begin' does not exist",
    ),
    (
        "dnis as a number",
        flow_data(dnis=4008001234),
        "test.yaml: 'dnis' must be the dialled number as quoted digits, not 4008001234",
    ),
    (
        "default language not offered",
        flow_data(default_language="fr"),
        "test.yaml: 'default_language' 'fr' is not one of 'languages'",
    ),
    (
        "prompt in a language the flow does not speak",
        flow_data(prompts={**BASE["prompts"], "bye": {"zh": "再见", "en": "Bye", "fr": "Au revoir"}}),
        "test.yaml: prompt 'bye': language 'fr' is not one of the flow's languages",
    ),
    (
        "recording outside its folder",
        flow_data(prompts={**BASE["prompts"], "bye": {"zh": {"file": "../../etc/passwd"}, "en": "Bye"}}),
        "test.yaml: prompt 'bye': recording '../../etc/passwd' must be a path inside the recordings folder",
    ),
    (
        "lookup pin that is not masked",
        flow_data(
            nodes__pin={**BASE["nodes"]["pin"], "masked": False, "next": "balance"},
            nodes__balance={
                "kind": "lookup",
                "query": "balance",
                "pin": "pin",
                "found_prompt": "welcome",
                "next": "goodbye",
            },
        ),
        "test.yaml: node 'balance': 'pin' 'pin' is not the name of a masked collect node",
    ),
    (
        "lookup of an unknown query",
        flow_data(
            nodes__pin={**BASE["nodes"]["pin"], "next": "balance"},
            nodes__balance={
                "kind": "lookup",
                "query": "credit_score",
                "found_prompt": "welcome",
                "next": "goodbye",
            },
        ),
        "test.yaml: node 'balance': query 'credit_score' is not one of balance, last_order, open_ticket",
    ),
    (
        "route to a language the flow does not speak",
        flow_data(nodes__agent={"kind": "route", "language": "fr"}),
        "test.yaml: node 'agent': 'language' 'fr' is not one of the flow's languages",
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in BAD_FLOWS], ids=[n for n, _, _ in BAD_FLOWS]
)
def test_bad_flows_are_rejected_naming_the_file_and_node(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(FlowError) as caught:
        load_flow(data, "test.yaml")
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_the_example_error_message_is_exact() -> None:
    data = flow_data(nodes__main_menu=_menu(options={**MENU["options"], 3: "nowhere"}))
    with pytest.raises(FlowError) as caught:
        load_flow(data, "support.yaml")
    assert (
        str(caught.value)
        == "support.yaml: node 'main_menu': option '3' goes to 'nowhere', which does not exist"
    )


def test_every_problem_is_reported_at_once() -> None:
    data = flow_data(
        nodes__welcome={"kind": "play", "prompts": ["welcome"], "next": "nope"},
        nodes__goodbye={"kind": "hangup", "prompts": ["farewell"]},
    )
    with pytest.raises(FlowError) as caught:
        load_flow(data, "test.yaml")
    assert len(caught.value.problems) >= 2
    assert str(caught.value).count("test.yaml: node ") == len(caught.value.problems)


def test_a_cycle_that_needs_a_key_press_is_fine() -> None:
    # main_menu → 9 → back to the menu: the caller drives every turn.
    menu = _menu(options={**MENU["options"], 9: "welcome"})
    flow = make_flow(nodes__main_menu=menu)
    assert isinstance(flow.node("main_menu"), Menu)


def test_language_choice_announcements_need_only_their_own_language() -> None:
    data = flow_data(
        start="lang",
        prompts={
            **BASE["prompts"],
            "choose_zh": {"zh": "普通话请按1"},
            "choose_en": {"en": "For English press 2"},
        },
        nodes__lang={
            "kind": "language",
            "options": {
                1: {"language": "zh", "prompt": "choose_zh"},
                2: {"language": "en", "prompt": "choose_en"},
            },
            "next": "welcome",
        },
    )
    assert load_flow(data, "test.yaml").start == "lang"


def test_hours_node_reads_weekly_ranges_and_holidays() -> None:
    flow = make_flow(
        start="hours",
        nodes__hours={
            "kind": "hours",
            "time_zone": "Asia/Shanghai",
            "weekly": {"mon": ["09:00-12:00", "13:00-18:00"], "sat": "10:00-24:00"},
            "holidays": [date(2026, 10, 1), "2026-10-02"],
            "open": "welcome",
            "closed": "goodbye",
        },
    )
    hours = flow.node("hours")
    assert isinstance(hours, BusinessHours)
    assert [len(day) for day in hours.weekly] == [2, 0, 0, 0, 0, 1, 0]
    assert hours.weekly[5][0].end == 24 * 60
    assert hours.holidays == {date(2026, 10, 1), date(2026, 10, 2)}
    with pytest.raises(ValueError, match="aware datetime"):
        hours.status(datetime(2026, 3, 2, 10, 0))
    assert hours.status(datetime(2026, 3, 2, 2, 0, tzinfo=UTC)) == "open"


def test_recorded_prompts_are_kept_as_files() -> None:
    flow = make_flow(prompts={**BASE["prompts"], "bye": {"zh": {"file": "bye-zh.wav"}, "en": "Goodbye"}})
    assert flow.prompts["bye"].in_language("zh") == RecordedPrompt("bye-zh.wav")


def test_flow_files_name_the_file_in_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("dnis: '1'\nnodes: [", encoding="utf-8")
    with pytest.raises(FlowError, match=r"^broken\.yaml: not valid YAML"):
        load_flow_file(tmp_path / "broken.yaml")
    with pytest.raises(FlowError, match=r"^inline: a flow file must hold a mapping"):
        load_flow_text("- just a list", "inline")
    with pytest.raises(FlowError, match=r"^missing\.yaml: cannot be read"):
        load_flow_file(tmp_path / "missing.yaml")


def test_two_files_for_one_dnis_are_an_error(tmp_path: Path) -> None:
    import yaml

    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(flow_data(), allow_unicode=True), encoding="utf-8")
    with pytest.raises(FlowError, match=r"b\.yaml: dnis '4008001234' is already served by a\.yaml"):
        load_flows(tmp_path)


def test_example_flows_load_and_validate() -> None:
    flows = example_flows()
    assert set(flows) == {"4008001234", "18005550100"}
    support, sales = flows["4008001234"], flows["18005550100"]
    assert support.source == "support-zh.yaml" and support.default_language == "zh"
    assert support.languages == ("zh", "en")
    assert sales.source == "sales-en.yaml" and sales.languages == ("en",)
    kinds = {type(n).__name__ for n in support.nodes.values()}
    assert {
        "LanguageChoice",
        "Greeting",
        "BusinessHours",
        "Menu",
        "CollectDigits",
        "Lookup",
        "HandToRouting",
        "Voicemail",
        "CallbackRequest",
        "Hangup",
    } <= kinds
