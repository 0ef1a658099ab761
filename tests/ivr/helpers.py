"""A small valid flow to mutate in tests, and a driver that answers output steps with Done."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from ivr.flow import CallContext as CallContext
from ivr.flow import (
    Collect,
    Done,
    Hangup,
    Input,
    IvrState,
    Lookup,
    RecordVoicemail,
    Route,
    Step,
    advance,
    start,
)
from ivr.model import Flow, load_flow

# Monday 2 March 2026, 10:00 in Shanghai: the example hours are open.
OPEN_NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def prompts(*names: str, languages: Iterable[str] = ("zh", "en")) -> dict[str, dict[str, str]]:
    return {n: {lang: f"{n} in {lang}" for lang in languages} for n in names}


BASE: dict[str, Any] = {
    "dnis": "4008001234",
    "name": "测试热线",
    "default_language": "zh",
    "languages": ["zh", "en"],
    "start": "welcome",
    "prompts": prompts("welcome", "menu", "invalid", "no_input", "bye", "pin", "transfer"),
    "nodes": {
        "welcome": {"kind": "play", "prompts": ["welcome"], "next": "main_menu"},
        "main_menu": {
            "kind": "menu",
            "prompts": ["menu"],
            "options": {
                1: {"goto": "pin", "label": "balance"},
                2: {"goto": "agent", "skills": ["billing"], "priority": 15},
                0: "agent",
                "#": "goodbye",
            },
            "invalid_prompt": "invalid",
            "timeout_prompt": "no_input",
            "retries": 2,
            "after_retries": "agent",
        },
        "pin": {
            "kind": "collect",
            "name": "pin",
            "prompts": ["pin"],
            "min_digits": 6,
            "max_digits": 6,
            "masked": True,
            "invalid_prompt": "invalid",
            "next": "goodbye",
            "after_retries": "goodbye",
        },
        "agent": {"kind": "route", "skills": ["support"], "priority": 10, "tier_priority": {"vip": 20}},
        "goodbye": {"kind": "hangup", "prompts": ["bye"]},
    },
}


def flow_data(**changes: Any) -> dict[str, Any]:
    """A deep copy of BASE; ``nodes__x=...`` replaces node x (None deletes it), other keys replace."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key.startswith("nodes__"):
            node_id = key.removeprefix("nodes__")
            if value is None:
                del data["nodes"][node_id]
            else:
                data["nodes"][node_id] = value
        else:
            data[key] = value
    return data


def make_flow(**changes: Any) -> Flow:
    return load_flow(flow_data(**changes), "test.yaml")


def waits_for_caller(step: Step) -> bool:
    return isinstance(step, Collect | Lookup | RecordVoicemail)


def drive(
    flow: Flow, context: CallContext, answers: Iterable[Input], now: datetime = OPEN_NOW, limit: int = 1000
) -> tuple[IvrState, list[Step], list[IvrState]]:
    """Run a call: output steps get Done, each waiting step takes the next answer.

    Stops when the call is finished or the answers run out. Returns the last state, every step and
    every state seen (for leak checks).
    """
    it: Iterator[Input] = iter(answers)
    state, step = start(flow, context, now)
    steps, states = [step], [state]
    for _ in range(limit):
        if state.finished:
            break
        if waits_for_caller(step):
            answer = next(it, None)
            if answer is None:
                break
        else:
            answer = Done()
        state, step = advance(flow, state, answer, now)
        steps.append(step)
        states.append(state)
    else:
        raise AssertionError(f"the call did not end within {limit} steps")
    return state, steps, states


def final(steps: list[Step]) -> Step:
    assert isinstance(steps[-1], Route | Hangup)
    return steps[-1]
