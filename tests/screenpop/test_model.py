"""The pure rules of the console's websocket: tickets, rate limits, origins, CRM pop URLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.auth import Principal, Role
from screenpop.model import RateLimit, TicketBook, agents_by_state, call_finished, crm_url, origin_allowed

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
AGENT = Principal(7, "1001", Role.AGENT)


def test_a_ticket_is_good_once_and_only_before_it_expires() -> None:
    book = TicketBook(ttl=timedelta(seconds=30))
    ticket, expires = book.issue(AGENT, NOW)
    assert expires == NOW + timedelta(seconds=30)
    assert book.redeem(ticket, NOW + timedelta(seconds=29)) == AGENT
    assert book.redeem(ticket, NOW + timedelta(seconds=29)) is None
    late, _ = book.issue(AGENT, NOW)
    assert book.redeem(late, NOW + timedelta(seconds=30)) is None
    assert book.redeem("made-up", NOW) is None


def test_outstanding_tickets_are_bounded() -> None:
    book = TicketBook(capacity=3)
    tickets = [book.issue(AGENT, NOW)[0] for _ in range(5)]
    assert len(book) == 3
    assert book.redeem(tickets[0], NOW) is None and book.redeem(tickets[4], NOW) == AGENT


def test_the_rate_limit_allows_a_burst_then_the_rate() -> None:
    limit = RateLimit(rate=2.0, burst=3.0)
    assert [limit.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.allow(0.5) is True and limit.allow(0.5) is False


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://console.example", "10.0.0.1:8080", True),  # configured
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),
        ("http://evil.example", "127.0.0.1:8080", False),
        ("null", "127.0.0.1:8080", False),
        (None, "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080/path", "127.0.0.1:8080", False),
    ],
)
def test_origins(origin: str | None, host: str, allowed: bool) -> None:
    assert origin_allowed(origin, host, ["https://console.example"]) is allowed


def test_crm_urls_are_rendered_sandboxed_and_only_as_http() -> None:
    call = {"ani_e164": "+8613800138000", "customer_id": 5, "caller_name": "张 伟"}
    assert crm_url("https://crm.example/c?phone={{ ani_e164 | urlencode }}", call) == (
        "https://crm.example/c?phone=%2B8613800138000"
    )
    assert crm_url("javascript:alert({{ customer_id }})", call) is None
    assert crm_url("https://x/{{ ''.__class__.__mro__ }}", call) is None  # the sandbox refuses
    assert crm_url("https://x/{{ caller_name }}\r\nSet-Cookie: a", call) is None
    assert crm_url("https://x/{% if %}", call) is None


@pytest.mark.parametrize(
    ("agents", "overall", "per_service"),
    [
        ([], {}, {}),
        (
            [
                {"status": "ready", "services": ["sales", "support"]},
                {"status": "on_call", "services": ["support"]},
                {"status": "ready", "services": []},
                {"status": "not_ready", "services": ["sales"]},
            ],
            {"ready": 2, "on_call": 1, "not_ready": 1},
            {"sales": {"ready": 1, "not_ready": 1}, "support": {"ready": 1, "on_call": 1}},
        ),
        ([{"status": "logged_out"}], {"logged_out": 1}, {}),  # no services known: counted overall only
    ],
)
def test_agents_are_counted_by_state_overall_and_in_each_service_they_take(
    agents: list[dict[str, object]], overall: dict[str, int], per_service: dict[str, dict[str, int]]
) -> None:
    assert agents_by_state(agents) == (overall, per_service)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("before", "after", "finished"),
    [
        (None, ("ready", None), None),
        (("on_call", "p/1"), ("wrap_up", "p/1"), None),  # still working on it
        (("wrap_up", "p/1"), ("ready", None), "p/1"),
        (("on_call", "p/1"), ("ready", "p/1"), "p/1"),  # no wrap-up: ready keeps the call's key
        (("wrap_up", "p/1"), ("not_ready", None), "p/1"),
        (("reserved", "p/2"), ("ready", None), None),  # rang, never answered: nothing was handled
        (("ready", None), ("reserved", "p/2"), None),
    ],
)
def test_an_agent_finishes_a_call_when_they_leave_it_after_talking(
    before: tuple[str, str | None] | None, after: tuple[str, str | None], finished: str | None
) -> None:
    view = lambda s: None if s is None else {"status": s[0], "call": s[1]}  # noqa: E731
    assert call_finished(view(before), view(after)) == finished  # type: ignore[arg-type]
