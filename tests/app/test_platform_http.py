"""The platform's own routes (health, details, metrics) against every role and no login.

The platform is built but not run: its HTTP app is driven in-process, with tokens signed by its own
secret, so no Asterisk is needed to check who may read what.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.compose import Platform
from cti.auth import Principal, Role, issue_token
from cti.settings import Settings


@pytest.fixture
async def platform(tmp_path: Path):
    platform = Platform(Settings(state_dir=tmp_path))
    try:
        yield platform
    finally:
        await platform.engine.dispose()


def bearer(platform: Platform, role: Role | None) -> dict[str, str]:
    if role is None:
        return {}
    token = issue_token(Principal(1, f"a-{role}", role), platform.token_secret, 600, datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/api/health", {None, Role.AGENT, Role.SUPERVISOR, Role.ADMIN}),
        ("/api/health/details", {Role.ADMIN}),
        ("/metrics", {Role.ADMIN}),
    ],
)
@pytest.mark.parametrize("role", [None, Role.AGENT, Role.SUPERVISOR, Role.ADMIN])
async def test_role_matrix(
    platform: Platform, path: str, allowed: set[Role | None], role: Role | None
) -> None:
    transport = httpx.ASGITransport(app=platform.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(path, headers=bearer(platform, role))
    if role in allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == (401 if role is None else 403)


async def test_health_tells_the_link_is_down_and_nothing_more(platform: Platform) -> None:
    transport = httpx.ASGITransport(app=platform.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = (await client.get("/api/health")).json()
    assert body == {"status": "degraded", "ami": "down", "pbx": "pbx1", "live_calls": 0}


async def test_metrics_are_prometheus_text(platform: Platform) -> None:
    transport = httpx.ASGITransport(app=platform.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics", headers=bearer(platform, Role.ADMIN))
    assert response.headers["content-type"].startswith("text/plain")
    assert "cti_ami_link_up 0.0" in response.text
    assert "cti_live_calls 0.0" in response.text
