"""The ``queue`` service mode: Asterisk's own Queue(), kept as the benchmark peer of the platform's
routing. Rendered and parsed like every other file; no Asterisk needed."""

from __future__ import annotations

import pytest

from dialplans.render import Service, render_pbx_config
from tests.dialplans.test_render import params, parse


def queue_params(*services: Service):  # type: ignore[no-untyped-def]
    return params(services=(Service("8000", "hold"), *services))


def test_a_queue_service_waits_in_asterisks_queue_with_every_agent_as_member() -> None:
    files = render_pbx_config(queue_params(Service("8005", "queue")))
    plan = files["extensions.conf"]
    assert "exten => 8005,1,UserEvent(CallArrived,DNIS: ${EXTEN},Direction: inbound,Mode: queue)" in plan
    assert " same => n,Queue(cti-q8005)\n same => n,Hangup()" in plan
    sections = dict(parse(files["queues.conf"]))
    assert sections["cti-q8005"] == [
        ("ringinuse", "no"),
        ("member", "PJSIP/1001"),
        ("member", "PJSIP/1002"),
    ]
    # Nothing else is set: Asterisk's defaults (retry, timeout, strategy, wrapuptime) apply.
    assert set(sections) == {"general", "cti-q8005"}


def test_queue_settings_tune_one_queue_only() -> None:
    files = render_pbx_config(
        queue_params(Service("8005", "queue"), Service("8006", "queue", queue_settings=(("retry", "1"),)))
    )
    sections = dict(parse(files["queues.conf"]))
    assert ("retry", "1") in sections["cti-q8006"]
    assert all(name != "retry" for name, _ in sections["cti-q8005"])


@pytest.mark.parametrize(
    ("service", "message"),
    [
        (Service("8005", "queue", queue_settings=(("retry", "1\nmember => PJSIP/9"),)), "CR, LF or NUL"),
        (Service("8005", "queue", queue_settings=(("retry", "1;x"),)), "letters, digits"),
        (Service("8005", "queue", queue_settings=(("Retry]", "1"),)), "option name"),
        (Service("8005", "queue", queue_settings=(("member", "PJSIP/1001"),)), "agents' phones"),
        (Service("8005", "hold", queue_settings=(("retry", "1"),)), "no queue settings"),
    ],
)
def test_unsafe_queue_settings_are_refused(service: Service, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_pbx_config(queue_params(service))


def test_a_queue_needs_agents() -> None:
    with pytest.raises(ValueError, match="no agents"):
        render_pbx_config(params(agents=(), services=(Service("8005", "queue"),)))
