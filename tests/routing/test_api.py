"""Routing's HTTP routes in the real platform app (in process, its database migrated, no Asterisk):
who may do what, agents' states over HTTP, and configuration stored in the customer record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.compose import Platform
from crm import db as crm_db
from crm import service as crm_service
from cti.auth import Principal, Role, issue_token
from cti.settings import Settings

AGENT_BODY = {"name": "李娜", "skills": {"mandarin": 8}, "languages": ["zh-CN"], "team": "华东"}


@pytest.fixture
async def platform(tmp_path: Path):
    platform = Platform(Settings(state_dir=tmp_path))
    await crm_db.migrate_async(platform.database_url)
    await crm_service.create_service(platform.sessionmaker, crm_service.NewService("8000", "support"))
    try:
        yield platform
    finally:
        await platform.engine.dispose()


def bearer(platform: Platform, role: Role | None, username: str | None = None) -> dict[str, str]:
    if role is None:
        return {}
    principal = Principal(1, username or f"a-{role}", role)
    token = issue_token(principal, platform.token_secret, 600, datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


async def call(
    platform: Platform,
    method: str,
    path: str,
    role: Role | None,
    json: Any = None,
    username: str | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=platform.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, json=json, headers=bearer(platform, role, username))


ROLES = [None, Role.AGENT, Role.SUPERVISOR, Role.ADMIN]
SUPERVISORS = {Role.SUPERVISOR, Role.ADMIN}


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [
        ("GET", "/api/routing/agents", None, SUPERVISORS),
        ("GET", "/api/routing/agents/1001", None, SUPERVISORS),  # someone else's agent
        ("PUT", "/api/routing/agents/1001", AGENT_BODY, {Role.ADMIN}),
        ("PUT", "/api/routing/agents/1001/skills/english", {"level": 5}, {Role.ADMIN}),
        ("DELETE", "/api/routing/agents/1001/skills/mandarin", None, {Role.ADMIN}),
        ("POST", "/api/routing/agents/1001/login", None, set()),  # only the agent themselves
        ("POST", "/api/routing/agents/1001/ready", None, set()),
        ("POST", "/api/routing/agents/1001/wrap-up-done", None, set()),
        ("POST", "/api/routing/agents/1001/not-ready", {"reason": "break"}, SUPERVISORS),
        ("POST", "/api/routing/agents/1001/logout", None, SUPERVISORS),
        ("GET", "/api/routing/services", None, SUPERVISORS),
        ("PUT", "/api/routing/services/1", {"needs": [{"skill": "mandarin", "min_level": 5}]}, {Role.ADMIN}),
        ("GET", "/api/routing/queues", None, SUPERVISORS),
        ("GET", "/api/routing/decisions", None, SUPERVISORS),
    ],
)
@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix(
    platform: Platform, method: str, path: str, body: Any, allowed: set[Role], role: Role | None
) -> None:
    assert (
        await call(platform, "PUT", "/api/routing/agents/1001", Role.ADMIN, AGENT_BODY)
    ).status_code == 200
    response = await call(platform, method, path, role, body)
    if role in allowed:
        # Allowed: the answer is about the agent's state (409 when it does not allow the change).
        assert response.status_code in (200, 409), response.text
    else:
        assert response.status_code == (401 if role is None else 403), response.text


async def test_an_agent_runs_their_own_day_over_http(platform: Platform) -> None:
    assert (
        await call(platform, "PUT", "/api/routing/agents/1001", Role.ADMIN, AGENT_BODY)
    ).status_code == 200
    me = {"role": Role.AGENT, "username": "1001"}
    response = await call(platform, "GET", "/api/routing/agents/1001", **me)
    assert response.status_code == 200
    assert response.json()["state"]["status"] == "logged_out"
    assert response.json()["skills"] == {"mandarin": 8}
    response = await call(platform, "POST", "/api/routing/agents/1001/ready", **me)
    assert response.status_code == 409
    assert "ready is allowed only from not_ready" in response.json()["detail"]
    for action, status in (("login", "not_ready"), ("ready", "ready")):
        response = await call(platform, "POST", f"/api/routing/agents/1001/{action}", **me)
        assert response.status_code == 200 and response.json()["status"] == status
    response = await call(
        platform, "POST", "/api/routing/agents/1001/not-ready", json={"reason": "lunch"}, **me
    )
    assert response.json()["reason"] == "lunch"
    # Another agent may not touch 1001; a supervisor may force them out, and is named for it.
    other = await call(platform, "POST", "/api/routing/agents/1001/logout", Role.AGENT, username="1002")
    assert other.status_code == 403
    forced = await call(platform, "POST", "/api/routing/agents/1001/logout", Role.SUPERVISOR, username="boss")
    assert forced.status_code == 200
    assert forced.json()["history"][-1]["by"] == "boss"
    agents = (await call(platform, "GET", "/api/routing/agents", Role.SUPERVISOR)).json()
    assert [(a["id"], a["state"]["status"]) for a in agents] == [("1001", "logged_out")]


async def test_configuration_is_stored_in_the_customer_record(platform: Platform) -> None:
    await call(platform, "PUT", "/api/routing/agents/1001", Role.ADMIN, AGENT_BODY)
    response = await call(
        platform, "PUT", "/api/routing/agents/1001/skills/english", Role.ADMIN, {"level": 6}
    )
    assert response.json()["skills"] == {"english": 6, "mandarin": 8}
    body = {
        "strategy": "longest_idle",
        "needs": [{"skill": "mandarin", "min_level": 5}],
        "relaxations": [{"after_seconds": 30, "lower_levels_by": 2}],
        "max_wait_seconds": 120,
        "overflow": {"kind": "voicemail", "target": "support"},
        "wrap_up_seconds": 15,
    }
    response = await call(platform, "PUT", "/api/routing/services/1", Role.ADMIN, body)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "support" and response.json()["dnis"] == "8000"
    assert (await call(platform, "PUT", "/api/routing/services/99", Role.ADMIN, body)).status_code == 404
    # A fresh directory over the same database reads back the same configuration.
    profiles = await platform.routing.directory.agents()
    assert [(p.agent.id, dict(p.agent.skills), sorted(p.agent.languages)) for p in profiles] == [
        ("1001", {"english": 6, "mandarin": 8}, ["zh-CN"])
    ]
    (config,) = await platform.routing.directory.services()
    assert config.routing.strategy == "longest_idle" and config.routing.wrap_up_seconds == 15
    assert config.routing.relaxations[0].lower_levels_by == 2
    assert config.routing.overflow is not None and config.routing.overflow.target == "support"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/routing/agents/10a1", AGENT_BODY),
        ("/api/routing/agents/1001", {**AGENT_BODY, "skills": {"mandarin": 11}}),
        ("/api/routing/agents/1001", {**AGENT_BODY, "languages": ["zh CN"]}),
        ("/api/routing/agents/1001", {**AGENT_BODY, "team": "a\r\nb"}),
        ("/api/routing/agents/1001/skills/bad%0Askill", {"level": 3}),
    ],
)
async def test_bad_configuration_is_refused(platform: Platform, path: str, body: Any) -> None:
    response = await call(platform, "PUT", path, Role.ADMIN, body)
    assert response.status_code in (404, 422), response.text
    assert await platform.routing.directory.agents() == []
