"""Erlang B and Erlang C: the queueing model a contact centre plans its staffing with (M/M/N: Poisson
arrivals, exponential handle times, N agents, callers who wait as long as it takes).

Pure functions, no I/O. ``traffic`` is the offered load in Erlangs (calls per second × mean handle
time in seconds); ``agents`` a whole number of agents. Computed through Erlang B's recursion, which
stays exact where the textbook's factorials overflow.
"""

from __future__ import annotations

import math


def _check(traffic: float, agents: int) -> None:
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a whole number of at least 1: {agents!r}")
    if not math.isfinite(traffic) or traffic < 0:
        raise ValueError(f"traffic must be a finite number of Erlangs >= 0: {traffic!r}")


def erlang_b(traffic: float, agents: int) -> float:
    """The probability that a call finds all ``agents`` busy when blocked calls are lost (Erlang B)."""
    _check(traffic, agents)
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return b


def erlang_c(traffic: float, agents: int) -> float:
    """The probability that a call has to wait (Erlang C); 1.0 when the load is at or above the
    staffing (``traffic >= agents``: the line grows without bound)."""
    _check(traffic, agents)
    if traffic >= agents:
        return 1.0
    b = erlang_b(traffic, agents)
    return agents * b / (agents - traffic * (1 - b))


def service_level(traffic: float, agents: int, handle_seconds: float, within_seconds: float) -> float:
    """The share of calls answered within ``within_seconds`` (an agent seized by then), by Erlang C:
    ``1 - C * exp(-(N - A) * T / h)``; 0.0 when the load is at or above the staffing."""
    if not handle_seconds > 0 or not math.isfinite(handle_seconds):
        raise ValueError(f"handle_seconds must be > 0: {handle_seconds!r}")
    if not within_seconds >= 0 or not math.isfinite(within_seconds):
        raise ValueError(f"within_seconds must be >= 0: {within_seconds!r}")
    if traffic >= agents:
        _check(traffic, agents)
        return 0.0
    waits = erlang_c(traffic, agents)
    return 1 - waits * math.exp(-(agents - traffic) * within_seconds / handle_seconds)


def average_wait(traffic: float, agents: int, handle_seconds: float) -> float:
    """The mean wait of all calls (ASA), in seconds: ``C * h / (N - A)``; ``inf`` at or above the
    staffing."""
    if not handle_seconds > 0 or not math.isfinite(handle_seconds):
        raise ValueError(f"handle_seconds must be > 0: {handle_seconds!r}")
    if traffic >= agents:
        _check(traffic, agents)
        return math.inf
    return erlang_c(traffic, agents) * handle_seconds / (agents - traffic)
