"""Erlang B and C against published table values and the cases a hand can check."""

from __future__ import annotations

import math

import pytest
from benchmarks.erlang import average_wait, erlang_b, erlang_c, service_level

# The worked example found in contact-centre planning texts: 100 calls in 30 minutes, 180 s average
# handle time, so 10 Erlangs; target answer within 20 s. Published: the chance of waiting and the
# service level for 11 to 14 agents.
PUBLISHED_C = [(11, 0.6821, 0.3896), (12, 0.4494, 0.6402), (13, 0.2853, 0.7956), (14, 0.1741, 0.8884)]


@pytest.mark.parametrize(("agents", "waits", "level"), PUBLISHED_C)
def test_erlang_c_matches_the_published_worked_example(agents: int, waits: float, level: float) -> None:
    assert erlang_c(10.0, agents) == pytest.approx(waits, abs=5e-5)
    assert service_level(10.0, agents, 180.0, 20.0) == pytest.approx(level, abs=5e-4)


@pytest.mark.parametrize(
    ("traffic", "agents", "blocked"),
    # Erlang B tables (grade of service for N trunks): 5 E on 10 trunks 0.0184; 10 E on 10 0.2146;
    # 1 E on 1 trunk 0.5; 20 E on 30 trunks 0.0085.
    [(5.0, 10, 0.0184), (10.0, 10, 0.2146), (1.0, 1, 0.5), (20.0, 30, 0.0085)],
)
def test_erlang_b_matches_tables(traffic: float, agents: int, blocked: float) -> None:
    assert erlang_b(traffic, agents) == pytest.approx(blocked, abs=5e-5)


def test_one_agent_is_the_single_server_queue() -> None:
    # M/M/1: the chance of waiting is the utilisation, the mean wait rho/(1-rho) handle times.
    assert erlang_c(0.5, 1) == pytest.approx(0.5)
    assert average_wait(0.5, 1, 60.0) == pytest.approx(60.0)
    assert service_level(0.5, 1, 60.0, 0.0) == pytest.approx(0.5)


def test_three_agents_at_two_erlangs_by_hand() -> None:
    # C(3, 2) = (8/6 * 3) / (1 + 2 + 2 + 8/6 * 3) = 4 / 9.
    assert erlang_c(2.0, 3) == pytest.approx(4 / 9)


def test_more_agents_never_serve_worse_and_overload_serves_nobody_in_time() -> None:
    levels = [service_level(48.0, n, 180.0, 20.0) for n in range(49, 70)]
    assert levels == sorted(levels)
    assert service_level(48.0, 48, 180.0, 20.0) == 0.0
    assert erlang_c(48.0, 40) == 1.0
    assert math.isinf(average_wait(5.0, 5, 10.0))
    assert service_level(0.0, 3, 10.0, 0.0) == 1.0


def test_large_centres_do_not_overflow() -> None:
    # The textbook's A^N / N! overflows a float long before 1,000 agents; the recursion does not.
    assert 0.0 < erlang_c(950.0, 1000) < 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: erlang_c(5.0, 0), "agents"),
        (lambda: erlang_c(5.0, 2.5), "agents"),  # type: ignore[arg-type]
        (lambda: erlang_b(-1.0, 3), "traffic"),
        (lambda: erlang_c(math.nan, 3), "traffic"),
        (lambda: service_level(2.0, 3, 0.0, 20.0), "handle_seconds"),
        (lambda: service_level(2.0, 3, 10.0, -1.0), "within_seconds"),
        (lambda: average_wait(2.0, 3, math.inf), "handle_seconds"),
    ],
)
def test_bad_input_is_a_clear_error(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
