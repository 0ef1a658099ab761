"""Every menu branch of the shipped example flows (``ivr/flows``), walked through the pure engine.

The end-to-end tests walk the test flows on the real sandbox; the example flows depend on the hour
(their opening hours are real), so their branches are checked here at a fixed, open instant."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ivr.files import example_flows
from ivr.flow import (
    CallContext,
    Digits,
    Input,
    KnownCustomer,
    LookupResult,
    Outcome,
    Recorded,
    Route,
    Timeout,
)
from ivr.model import LanguageChoice, Menu

from .helpers import OPEN_NOW, drive

SUPPORT, SALES = "4008001234", "18005550100"
# Tuesday 3 March 2026, 10:00 in New York: the sales line is open.
SALES_OPEN = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
ANON = CallContext("+8613700001234", SUPPORT)
KNOWN = CallContext("+8613800138000", SUPPORT, KnownCustomer(7, "张伟", "gold", "zh-CN"))
FOUND = LookupResult(True, amount=Decimal("10.00"), currency="CNY", reference="A1024", status="shipped")

# (flow, caller, answers, now) → the path the call takes, for every option of every menu.
WALKS: dict[str, tuple[str, CallContext, list[Input], datetime, tuple[str, ...]]] = {
    "language 1 (中文)": (SUPPORT, ANON, [Digits("1"), Digits("0")], OPEN_NOW,
                        ("choose_language", "greeting", "hours", "main_menu", "to_agent")),
    "language 2 (English)": (SUPPORT, ANON, [Digits("2"), Digits("0")], OPEN_NOW,
                             ("choose_language", "greeting", "hours", "main_menu", "to_agent")),
    "support 1 balance": (SUPPORT, KNOWN, [Digits("1"), Digits("123456#"), FOUND, Digits("#")], OPEN_NOW,
                          ("choose_language", "greeting", "hours", "main_menu", "balance_pin", "balance",
                           "anything_else", "goodbye")),
    "support 2 last order, then 9 main menu": (
        SUPPORT, KNOWN, [Digits("2"), FOUND, Digits("9"), Digits("0")], OPEN_NOW,
        ("choose_language", "greeting", "hours", "main_menu", "last_order", "anything_else", "main_menu",
         "to_agent")),
    "support 3 technical support": (SUPPORT, KNOWN, [Digits("3")], OPEN_NOW,
                                    ("choose_language", "greeting", "hours", "main_menu", "to_agent")),
    "support 4 callback": (SUPPORT, KNOWN, [Digits("4"), Digits("1")], OPEN_NOW,
                           ("choose_language", "greeting", "hours", "main_menu", "callback",
                            "callback_booked")),
    "support anything else 0": (SUPPORT, KNOWN, [Digits("2"), FOUND, Digits("0")], OPEN_NOW,
                                ("choose_language", "greeting", "hours", "main_menu", "last_order",
                                 "anything_else", "to_agent")),
    "sales 1 purchase": (SALES, CallContext("+12015550123", SALES), [Digits("1")], SALES_OPEN,
                         ("hours", "greeting", "main_menu", "to_sales")),
    "sales 2 order status": (SALES, CallContext("+12015550123", SALES, KnownCustomer(3, "Alice", None, "en")),
                             [Digits("2"), FOUND], SALES_OPEN,
                             ("hours", "greeting", "main_menu", "order_status", "to_sales")),
    "sales 3 message": (SALES, CallContext("+12015550123", SALES), [Digits("3"), Recorded("vm/1", 9.0)],
                        SALES_OPEN, ("hours", "greeting", "main_menu", "message", "goodbye")),
    "sales 0 other": (SALES, CallContext("+12015550123", SALES), [Digits("0")], SALES_OPEN,
                      ("hours", "greeting", "main_menu", "to_sales")),
}  # fmt: skip


@pytest.mark.parametrize("walk", sorted(WALKS))
def test_every_menu_branch_of_the_example_flows(walk: str) -> None:
    dnis, context, answers, now, path = WALKS[walk]
    state, _, _ = drive(example_flows()[dnis], context, answers, now=now)
    assert state.finished and state.path == path


def test_the_walks_cover_every_option_of_every_menu() -> None:
    flows = example_flows()
    taken: set[tuple[str, str, str]] = set()
    for dnis, context, answers, now, _ in WALKS.values():
        state, _, _ = drive(flows[dnis], context, answers, now=now)
        taken |= {(dnis, i.node, str(i.value)) for i in state.inputs if i.name in ("choice", "language")}
    offered: set[tuple[str, str, str]] = set()
    for dnis, flow in flows.items():
        for node in flow.nodes.values():
            if isinstance(node, Menu):
                offered |= {(dnis, node.id, option.key) for option in node.options}
            elif isinstance(node, LanguageChoice):
                offered |= {(dnis, node.id, option.language) for option in node.options}
    assert offered <= taken, offered - taken


def test_a_silent_caller_of_each_example_flow_reaches_a_person() -> None:
    for dnis, now in ((SUPPORT, OPEN_NOW), (SALES, SALES_OPEN)):
        state, steps, _ = drive(example_flows()[dnis], CallContext(None, dnis), [Timeout()] * 10, now=now)
        assert state.outcome is Outcome.ROUTED and isinstance(steps[-1], Route)
