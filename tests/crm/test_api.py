"""The CRM's HTTP API through the ASGI app, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from crm import api, service
from crm.db import SessionMaker
from crm.handlers import CallLogWriter, subscribe
from crm.model import User
from cti.auth import Principal, Role, issue_token, verify_token
from cti.bus import Bus
from cti.http import make_auth
from cti.settings import Settings

from .helpers import T0, change, snapshot

SECRET = "test-secret-" + "x" * 40
PASSWORDS = {"agent": "agent-pass-1", "supervisor": "super-pass-1", "admin": "admin-pass-1"}


@dataclass
class Api:
    client: httpx.AsyncClient
    sessionmaker: SessionMaker
    clock: list[datetime]
    tokens: dict[str, str] = field(default_factory=dict)

    def as_(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        token = self.tokens.get(who, who)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def password_hashes() -> dict[str, str]:
    """Real argon2id hashes, made once: hashing is deliberately slow."""
    hasher = PasswordHasher()
    return {role: hasher.hash(password) for role, password in PASSWORDS.items()}


@pytest.fixture
async def app_api(sessionmaker: SessionMaker, password_hashes: dict[str, str]) -> AsyncIterator[Api]:
    clock = [datetime.now(UTC)]
    auth = make_auth(lambda: SECRET, clock=lambda: clock[0])
    settings = Settings(default_region="CN", database_url="sqlite+aiosqlite:///unused")
    app = FastAPI()
    app.include_router(api.build_router(sessionmaker, auth, lambda: SECRET, settings))
    tokens: dict[str, str] = {}
    async with sessionmaker() as session, session.begin():
        for role in Role:
            user = User(
                username=role.value,
                display_name=role.value,
                password_hash=password_hashes[role.value],
                role=role.value,
                active=True,
                created_at=clock[0],
            )
            session.add(user)
            await session.flush()
            tokens[role.value] = issue_token(Principal(user.id, role.value, role), SECRET, 3600, clock[0])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as client:
        yield Api(client, sessionmaker, clock, tokens)


async def test_login(app_api: Api) -> None:
    response = await app_api.client.post(
        "/api/auth/login", json={"username": "supervisor", "password": "super-pass-1"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["role"] == "supervisor"
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(hours=7) < expires - app_api.clock[0] <= timedelta(hours=8)
    principal = verify_token(body["access_token"], SECRET, app_api.clock[0])
    assert (principal.username, principal.role) == ("supervisor", Role.SUPERVISOR)

    me = await app_api.client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json() == {"user_id": principal.user_id, "username": "supervisor", "role": "supervisor"}

    wrong = await app_api.client.post("/api/auth/login", json={"username": "supervisor", "password": "nope"})
    unknown = await app_api.client.post("/api/auth/login", json={"username": "nobody", "password": "nope"})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json() == {"detail": "invalid username or password"}
    missing = await app_api.client.post("/api/auth/login", json={"username": "agent"})
    assert missing.status_code == 422


ROUTES = [
    # method, path, body, minimum role, success status
    ("GET", "/api/customers", None, "agent", 200),
    ("POST", "/api/customers", {"name": "新客户", "phones": [{"number": "13912345678"}]}, "supervisor", 201),
    ("GET", "/api/customers/{customer}", None, "agent", 200),
    (
        "POST",
        "/api/customers/{customer}/phones",
        {"number": "+12015550123", "label": "us"},
        "supervisor",
        201,
    ),
    ("GET", "/api/calls", None, "agent", 200),
    ("GET", "/api/services", None, "agent", 200),
    ("POST", "/api/services", {"dnis": "8009", "name": "vip line"}, "admin", 201),
    ("PATCH", "/api/services/{service}", {"name": "renamed"}, "admin", 200),
    ("GET", "/api/auth/me", None, "agent", 200),
]
RANK = {"agent": 1, "supervisor": 2, "admin": 3}


@pytest.mark.parametrize(("method", "path", "body", "minimum", "success"), ROUTES)
async def test_role_matrix(
    app_api: Api, method: str, path: str, body: dict[str, object] | None, minimum: str, success: int
) -> None:
    customer = await service.create_customer(
        app_api.sessionmaker,
        service.NewCustomer("张伟", phones=[service.NewPhone("13800138000")]),
        default_region="CN",
    )
    support = await service.create_service(app_api.sessionmaker, service.NewService("8001", "support"))
    url = path.format(customer=customer.id, service=support.id)
    expired = issue_token(
        Principal(1, "admin", Role.ADMIN), SECRET, 60, app_api.clock[0] - timedelta(hours=1)
    )
    forged = issue_token(
        Principal(1, "admin", Role.ADMIN), "another-secret-" + "y" * 40, 60, app_api.clock[0]
    )
    for who, expected_unauthenticated in [
        (None, "Bearer"),
        ("garbage", None),
        (expired, None),
        (forged, None),
    ]:
        response = await app_api.client.request(method, url, json=body, headers=app_api.as_(who))
        assert response.status_code == 401, (who, response.text)
        challenge = response.headers["www-authenticate"]
        assert challenge == (expected_unauthenticated or 'Bearer error="invalid_token"')
    # Lowest role first; a create repeated by a higher role may meet its own duplicate (409).
    created = False
    for role in ("agent", "supervisor", "admin"):
        response = await app_api.client.request(method, url, json=body, headers=app_api.as_(role))
        if RANK[role] < RANK[minimum]:
            assert response.status_code == 403, (role, response.text)
            assert response.json() == {"detail": f"requires the {minimum} role"}
        elif method == "POST" and created:
            assert response.status_code in (success, 409), (role, response.text)
        else:
            assert response.status_code == success, (role, response.text)
            created = True


async def _publish_calls(sm: SessionMaker, calls: list[tuple[str, str, datetime]]) -> None:
    """Call logs written the real way: snapshots on the bus, through the writer."""
    bus = Bus()
    sub = subscribe(bus)
    writer = CallLogWriter(sm, sub, default_region="CN")
    classifier = service.Classifier(sm, "CN")
    for linkedid, ani, started in calls:
        classification = await classifier.classify(ani, "8001")
        snap = snapshot(linkedid, ani=ani, started=started, ended=30, classification=classification)
        bus.publish(change(snap))
    bus.unsubscribe(sub)
    await writer.run()


async def test_customer_create_and_get_with_interactions(app_api: Api) -> None:
    body = {
        "name": "张伟",
        "tier": "vip",
        "value": "250000.00",
        "language": "zh-CN",
        "notes": "<b>VIP</b> '; DROP TABLE customers;--",
        "phones": [{"number": "138 0013 8000", "label": "手机"}, {"number": "+1 (201) 555-0123"}],
    }
    created = await app_api.client.post("/api/customers", json=body, headers=app_api.as_("supervisor"))
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/json")
    assert "张伟".encode() in created.content
    customer = created.json()
    assert customer["name"] == "张伟"
    assert customer["notes"] == body["notes"]
    assert [(p["e164"], p["label"]) for p in customer["phones"]] == [
        ("+8613800138000", "手机"),
        ("+12015550123", ""),
    ]

    await _publish_calls(
        app_api.sessionmaker,
        [
            ("older", "+8613800138000", T0),
            ("newer", "013800138000", T0 + timedelta(hours=2)),
            ("middle", "+12015550123", T0 + timedelta(hours=1)),
            ("stranger", "+8613700009999", T0 + timedelta(hours=3)),
        ],
    )
    got = await app_api.client.get(f"/api/customers/{customer['id']}", headers=app_api.as_("agent"))
    assert got.status_code == 200
    detail = got.json()
    assert detail["name"] == "张伟"
    assert detail["value"] in ("250000.00", 250000.0)
    assert [c["linkedid"] for c in detail["interactions"]] == ["newer", "middle", "older"]
    newest = detail["interactions"][0]
    assert (newest["ani_raw"], newest["ani_e164"], newest["customer_match"]) == (
        "013800138000",
        "+8613800138000",
        "unique",
    )
    assert newest["caller_name"] == "张伟"
    assert datetime.fromisoformat(newest["started_at"]) == T0 + timedelta(hours=2)

    missing = await app_api.client.get("/api/customers/424242", headers=app_api.as_("agent"))
    assert missing.status_code == 404

    found = await app_api.client.get("/api/customers", params={"q": "张"}, headers=app_api.as_("agent"))
    assert [c["id"] for c in found.json()] == [customer["id"]]
    by_number = await app_api.client.get(
        "/api/customers", params={"q": "13800138000"}, headers=app_api.as_("agent")
    )
    assert [c["id"] for c in by_number.json()] == [customer["id"]]


@pytest.mark.parametrize(
    ("phones", "loc", "needle"),
    [
        ([{"number": "12"}], ["body", "phones", 0, "number"], "'12'"),
        ([{"number": "13800138000"}, {"number": "<script>"}], ["body", "phones", 1, "number"], "'<script>'"),
        ([{"number": "13800138000"}, {"number": "+8613800138000"}], ["body", "phones", 1, "number"], "twice"),
    ],
)
async def test_invalid_phone_is_a_422_naming_the_number(
    app_api: Api, phones: list[dict[str, str]], loc: list[object], needle: str
) -> None:
    response = await app_api.client.post(
        "/api/customers", json={"name": "王芳", "phones": phones}, headers=app_api.as_("admin")
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == loc
    assert needle in error["msg"]
    listed = await app_api.client.get("/api/customers", headers=app_api.as_("agent"))
    assert listed.json() == []


async def test_call_filters(app_api: Api) -> None:
    zhang = await service.create_customer(
        app_api.sessionmaker,
        service.NewCustomer("张伟", phones=[service.NewPhone("13800138000")]),
        default_region="CN",
    )
    await _publish_calls(
        app_api.sessionmaker,
        [
            ("a", "+8613800138000", T0),
            ("b", "008613800138000", T0 + timedelta(hours=1)),
            ("c", "anonymous", T0 + timedelta(hours=2)),
            ("d", "+8613912345678", T0 + timedelta(hours=3)),
        ],
    )

    async def ids(**params: object) -> list[str]:
        response = await app_api.client.get("/api/calls", params=params, headers=app_api.as_("agent"))
        assert response.status_code == 200, response.text
        return [c["linkedid"] for c in response.json()]

    assert await ids() == ["d", "c", "b", "a"]
    assert await ids(customer_id=zhang.id) == ["b", "a"]
    assert await ids(ani="13800138000") == ["b", "a"]
    assert await ids(ani="anonymous") == ["c"]
    assert await ids(since=(T0 + timedelta(minutes=90)).isoformat()) == ["d", "c"]
    assert await ids(since="2026-11-22T17:30:00+08:00") == ["d", "c"]  # 09:30 UTC
    assert await ids(limit=1) == ["d"]
    for bad in ({"limit": 0}, {"limit": 1001}, {"since": "2026-11-22T08:00:00"}, {"since": "yesterday"}):
        response = await app_api.client.get("/api/calls", params=bad, headers=app_api.as_("agent"))
        assert response.status_code == 422, bad


async def test_services_api(app_api: Api) -> None:
    body = {
        "dnis": "8001",
        "name": "support",
        "language": "zh-CN",
        "required_skills": ["support", "mandarin"],
        "business_hours": {"mon": [["09:00", "18:00"]]},
        "time_zone": "Asia/Shanghai",
    }
    created = await app_api.client.post("/api/services", json=body, headers=app_api.as_("admin"))
    assert created.status_code == 201, created.text
    assert created.json()["business_hours"] == {"mon": [["09:00", "18:00"]]}
    again = await app_api.client.post("/api/services", json=body, headers=app_api.as_("admin"))
    assert again.status_code == 409
    bad_tz = await app_api.client.post(
        "/api/services", json={**body, "dnis": "8003", "time_zone": "Mars/Base"}, headers=app_api.as_("admin")
    )
    assert bad_tz.status_code == 422
    assert bad_tz.json()["detail"][0]["loc"] == ["body", "time_zone"]
    patched = await app_api.client.patch(
        f"/api/services/{created.json()['id']}", json={"language": None}, headers=app_api.as_("admin")
    )
    assert (patched.json()["language"], patched.json()["name"]) == (None, "support")
    listed = await app_api.client.get("/api/services", headers=app_api.as_("agent"))
    assert [s["dnis"] for s in listed.json()] == ["8001"]


async def test_openapi_describes_the_routes(app_api: Api) -> None:
    schema = (await app_api.client.get("/openapi.json")).json()
    for path in (
        "/api/auth/login",
        "/api/customers",
        "/api/customers/{customer_id}",
        "/api/calls",
        "/api/services",
    ):
        assert path in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    detail = schema["components"]["schemas"]["CustomerDetailOut"]
    assert "interactions" in detail["properties"]


async def test_utf8_json_is_not_escaped(app_api: Api) -> None:
    await service.create_customer(
        app_api.sessionmaker,
        service.NewCustomer("欧阳娜娜", phones=[service.NewPhone("13800138000")]),
        default_region="CN",
    )
    response = await app_api.client.get("/api/customers", headers=app_api.as_("agent"))
    assert "欧阳娜娜".encode() in response.content
    assert json.loads(response.content)[0]["name"] == "欧阳娜娜"
