"""Roles, tokens and the HTTP auth dependencies.

No ``from __future__ import annotations`` here: FastAPI must see the route annotations, which name a
dependency built inside a fixture, as objects rather than strings.
"""

import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from cti.auth import (
    LEEWAY_SECONDS,
    InvalidToken,
    Principal,
    Role,
    issue_token,
    load_or_create_secret,
    resolve_token_secret,
    token_expiry,
    verify_token,
)
from cti.http import make_auth
from cti.settings import AuthSettings

SECRET = "s" * 48
NOW = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
ALICE = Principal(user_id=7, username="王芳", role=Role.SUPERVISOR)


@pytest.mark.parametrize(
    ("role", "other", "includes"),
    [
        (Role.ADMIN, Role.SUPERVISOR, True),
        (Role.ADMIN, Role.AGENT, True),
        (Role.ADMIN, Role.ADMIN, True),
        (Role.SUPERVISOR, Role.AGENT, True),
        (Role.SUPERVISOR, Role.ADMIN, False),
        (Role.AGENT, Role.SUPERVISOR, False),
        (Role.AGENT, Role.AGENT, True),
    ],
)
def test_role_order(role: Role, other: Role, includes: bool) -> None:
    assert role.includes(other) is includes


def test_token_round_trip() -> None:
    token = issue_token(ALICE, SECRET, 3600, NOW)
    assert verify_token(token, SECRET, NOW + timedelta(minutes=59)) == ALICE
    assert token_expiry(NOW, 3600) == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    ("make", "at", "message"),
    [
        (
            lambda: issue_token(ALICE, SECRET, 60, NOW),
            NOW + timedelta(seconds=60 + LEEWAY_SECONDS),
            "expired",
        ),
        (
            lambda: issue_token(ALICE, SECRET, 60, NOW),
            NOW - timedelta(seconds=LEEWAY_SECONDS + 1),
            "not valid yet",
        ),
        (lambda: issue_token(ALICE, "o" * 48, 60, NOW), NOW, "Signature"),
        (lambda: "not.a.token", NOW, "invalid token"),
        (lambda: "", NOW, "invalid token"),
        (
            lambda: jwt.encode(
                {"sub": "1", "role": "agent", "name": "x", "iss": "cti-platform"}, SECRET, "HS256"
            ),
            NOW,
            "exp",
        ),
        (
            lambda: jwt.encode(
                {"sub": "1", "role": "owner", "name": "x", "iss": "cti-platform", "iat": 0, "exp": 2**40},
                SECRET,
                "HS256",
            ),
            NOW,
            "owner",
        ),
        (
            lambda: jwt.encode(
                {"sub": "1", "role": "admin", "name": "x", "iss": "someone-else", "iat": 0, "exp": 2**40},
                SECRET,
                "HS256",
            ),
            NOW,
            "issuer",
        ),
        (
            # An unsigned token claiming admin must never pass.
            lambda: jwt.encode(
                {"sub": "1", "role": "admin", "name": "x", "iss": "cti-platform", "iat": 0, "exp": 2**40},
                None,
                "none",
            ),
            NOW,
            "alg value is not allowed",
        ),
    ],
)
def test_invalid_tokens(make: Callable[[], str], at: datetime, message: str) -> None:
    with pytest.raises(InvalidToken, match=message):
        verify_token(make(), SECRET, at)


def test_weak_secrets_and_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue_token(ALICE, "short", 60, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_token(ALICE, SECRET, 60, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        issue_token(ALICE, SECRET, 0, NOW)


def test_load_or_create_secret(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "token.secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["token.secret"]


def test_resolve_token_secret(tmp_path: Path) -> None:
    configured = AuthSettings(token_secret=SecretStr(SECRET))
    assert resolve_token_secret(configured, tmp_path) == SECRET
    generated = resolve_token_secret(AuthSettings(), tmp_path)
    assert (tmp_path / "secrets" / "token.secret").read_text().strip() == generated
    with pytest.raises(ValueError, match="at least 32 bytes"):
        resolve_token_secret(AuthSettings(token_secret=SecretStr("weak")), tmp_path)


@pytest.fixture
def client() -> httpx.AsyncClient:
    auth = make_auth(lambda: SECRET, clock=lambda: NOW)
    app = FastAPI()

    @app.get("/agent")
    async def agent(user: Annotated[Principal, Depends(auth.require(Role.AGENT))]) -> dict[str, str]:
        return {"user": user.username, "role": user.role.value}

    @app.get("/admin")
    async def admin(user: Annotated[Principal, Depends(auth.require(Role.ADMIN))]) -> dict[str, str]:
        return {"user": user.username}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _bearer(principal: Principal, issued: datetime = NOW, ttl: int = 60) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(principal, SECRET, ttl, issued)}"}


async def test_http_dependencies(client: httpx.AsyncClient) -> None:
    async with client:
        ok = await client.get("/agent", headers=_bearer(ALICE))
        assert ok.status_code == 200
        assert ok.json() == {"user": "王芳", "role": "supervisor"}

        missing = await client.get("/agent")
        assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
        basic = await client.get("/agent", headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert (basic.status_code, basic.headers["www-authenticate"]) == (401, "Bearer")
        for headers in (
            {"Authorization": "Bearer garbage"},
            _bearer(ALICE, issued=NOW - timedelta(hours=1)),
        ):
            response = await client.get("/agent", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'

        too_low = await client.get("/admin", headers=_bearer(ALICE))
        assert too_low.status_code == 403
        assert too_low.json() == {"detail": "requires the admin role"}
        admin = await client.get("/admin", headers=_bearer(Principal(1, "root", Role.ADMIN)))
        assert admin.status_code == 200


def test_authenticate_for_websockets() -> None:
    auth = make_auth(lambda: SECRET, clock=lambda: NOW)
    assert auth.authenticate(issue_token(ALICE, SECRET, 60, NOW)) == ALICE
    with pytest.raises(InvalidToken):
        auth.authenticate("nope")
