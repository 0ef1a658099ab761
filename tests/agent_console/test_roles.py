"""The console's routes in the real platform app (in process, its database migrated, no Asterisk):
the role matrix of every new route, the cookie session with its anti-forgery token, and the
customer record the console writes (disposition, notes, linking an unknown caller)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.compose import Platform
from crm import db as crm_db
from crm import service as crm_service
from crm.model import CallLog
from crm.voicemail import Voicemail
from cti.auth import CSRF_HEADER, SESSION_COOKIE, Principal, Role, csrf_token, issue_token
from cti.settings import Settings

ROLES = [None, Role.AGENT, Role.SUPERVISOR, Role.ADMIN]
NAMES = {Role.AGENT: "1001", Role.SUPERVISOR: "boss", Role.ADMIN: "root"}


@pytest.fixture
async def platform(tmp_path: Path):
    platform = Platform(Settings(state_dir=tmp_path, default_region="CN"))
    await crm_db.migrate_async(platform.database_url)
    now = datetime.now(UTC)
    async with platform.sessionmaker() as session, session.begin():
        session.add(
            CallLog(pbx="pbx1", linkedid="1700000000.1", direction="inbound", ani_raw="13800138000",
                    ani_e164="+8613800138000", caller_name="刘洋", dnis="8001", started_at=now,
                    phase="talking", agent="1001", created_at=now, updated_at=now)
        )  # fmt: skip
    try:
        yield platform
    finally:
        await platform.engine.dispose()


def token(platform: Platform, role: Role, username: str | None = None) -> str:
    principal = Principal(1, username or NAMES[role], role)
    return issue_token(principal, platform.token_secret, 600, datetime.now(UTC))


async def call(
    platform: Platform,
    method: str,
    path: str,
    role: Role | None,
    json: Any = None,
    username: str | None = None,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=platform.http)
    sent = dict(headers or {})
    if role is not None:
        sent["Authorization"] = f"Bearer {token(platform, role, username)}"
    async with httpx.AsyncClient(transport=transport, base_url="http://test", cookies=cookies) as client:
        return await client.request(method, path, json=json, headers=sent)


DISPOSITION = {"disposition": "resolved", "notes": "已处理"}


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed", "answer"),
    [
        ("POST", "/api/ws-ticket", None, {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 200),
        ("POST", "/api/supervisor/agents/1001/spy", {"mode": "listen", "phone": "1002"},
         {Role.SUPERVISOR, Role.ADMIN}, 409),  # no call in progress
        ("POST", "/api/console/calls/pbx1/1700000000.1/disposition", DISPOSITION,
         {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 200),
        ("POST", "/api/console/calls/pbx1/1700000000.1/customer", {"customer_id": 999},
         {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 404),  # no such customer
        ("GET", "/api/console/stats/today", None, {Role.SUPERVISOR, Role.ADMIN}, 200),
        ("GET", "/api/console/voicemails/99/audio", None, {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 404),
        ("POST", "/console/logout", None, {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 204),
        ("GET", "/api/dialer/campaigns/none/live", None, {Role.SUPERVISOR, Role.ADMIN}, 404),  # no campaign
        # Campaign calls at the agent's desk (dialer.agent_api): a call that is not a campaign call,
        # preview for the signed-in agent only, campaigns that do not exist.
        ("GET", "/api/dialer/calls/pbx1/1700000000.1/lead", None,
         {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 404),
        ("POST", "/api/dialer/calls/pbx1/1700000000.1/disposition", {"disposition": "sale"},
         {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 404),
        ("GET", "/api/dialer/preview/1001/campaigns", None, {Role.AGENT}, 200),
        ("POST", "/api/dialer/preview/1001/next", {"campaign_id": "nope"}, {Role.AGENT}, 404),
        ("POST", "/api/dialer/preview/1001/dial", {"lead_id": 1}, {Role.AGENT}, 409),  # holds no lead
        ("POST", "/api/dialer/preview/1001/skip", {"lead_id": 1}, {Role.AGENT}, 409),
        ("GET", "/api/dialer/campaigns/nope/dispositions", None,
         {Role.AGENT, Role.SUPERVISOR, Role.ADMIN}, 404),
        ("PUT", "/api/dialer/campaigns/nope/dispositions",
         {"codes": [{"code": "dnc", "label": "勿扰", "action": "do_not_call"}]}, {Role.ADMIN}, 404),
        ("POST", "/api/dialer/campaigns/nope/start", None, {Role.SUPERVISOR, Role.ADMIN}, 404),
        ("POST", "/api/dialer/campaigns/nope/stop", None, {Role.SUPERVISOR, Role.ADMIN}, 404),
        ("GET", "/api/dialer/campaigns/nope/panel", None, {Role.SUPERVISOR, Role.ADMIN}, 404),
    ],
)  # fmt: skip
@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix_of_the_console_routes(
    platform: Platform, method: str, path: str, body: Any, allowed: set[Role], answer: int, role: Role | None
) -> None:
    response = await call(platform, method, path, role, json=body)
    if role is None:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    elif role in allowed:
        assert response.status_code == answer, response.text
    else:
        assert response.status_code == 403, response.text


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix_of_the_pages(platform: Platform, role: Role | None) -> None:
    cookies = {SESSION_COOKIE: token(platform, role)} if role else None
    console = await call(platform, "GET", "/console", None, cookies=cookies)
    supervisor = await call(platform, "GET", "/supervisor", None, cookies=cookies)
    if role is None:
        assert console.status_code == supervisor.status_code == 303
        assert console.headers["location"] == "/console/login"
        return
    assert console.status_code == 200 and "Content-Security-Policy" in console.headers
    assert supervisor.status_code == (403 if role is Role.AGENT else 200)
    login = await call(platform, "GET", "/console/login", None)
    assert login.status_code == 200


async def test_sign_in_sets_an_http_only_cookie_and_pages_carry_its_anti_forgery_token(
    platform: Platform,
) -> None:
    await crm_service.add_user(platform.sessionmaker, "1001", "agent-password-1", Role.AGENT)
    wrong = await call(platform, "POST", "/console/session", None, json={"username": "1001", "password": "x"})
    assert wrong.status_code == 401
    form = await call(
        platform, "POST", "/console/session", None, headers={"Content-Type": "text/plain"},
    )
    assert form.status_code in (415, 422)
    ok = await call(
        platform, "POST", "/console/session", None, json={"username": "1001", "password": "agent-password-1"}
    )
    assert ok.status_code == 200 and ok.json()["next"] == "/console"
    set_cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    session = ok.cookies[SESSION_COOKIE]
    page = await call(platform, "GET", "/console", None, cookies={SESSION_COOKIE: session})
    csrf = csrf_token(session, platform.token_secret)
    assert f'content="{csrf}"' in page.text
    # The cookie alone is not enough for the API: a foreign page cannot know the token.
    bare = await call(platform, "POST", "/api/ws-ticket", None, cookies={SESSION_COOKIE: session})
    assert bare.status_code == 403
    forged = await call(platform, "POST", "/api/ws-ticket", None, cookies={SESSION_COOKIE: session},
                        headers={CSRF_HEADER: "0" * 64})  # fmt: skip
    assert forged.status_code == 403
    good = await call(platform, "POST", "/api/ws-ticket", None, cookies={SESSION_COOKIE: session},
                      headers={CSRF_HEADER: csrf})  # fmt: skip
    assert good.status_code == 200 and good.json()["url"].startswith("/ws?ticket=")


async def test_an_agent_writes_only_to_their_own_calls_and_notes_reach_the_customers_history(
    platform: Platform,
) -> None:
    path = "/api/console/calls/pbx1/1700000000.1"
    other = await call(platform, "POST", f"{path}/disposition", Role.AGENT, json=DISPOSITION, username="1002")
    assert other.status_code == 403
    bad = await call(platform, "POST", f"{path}/disposition", Role.AGENT, json={"disposition": "Bad Code!"})
    assert bad.status_code == 422
    missing = await call(
        platform, "POST", "/api/console/calls/pbx1/9.9/disposition", Role.AGENT, json=DISPOSITION
    )
    assert missing.status_code == 404
    created = await call(
        platform, "POST", f"{path}/customer", Role.AGENT, json={"new": {"name": "刘洋", "tier": "gold"}}
    )
    assert created.status_code == 200, created.text
    customer_id = created.json()["customer_id"]
    saved = await call(platform, "POST", f"{path}/disposition", Role.AGENT,
                       json={"disposition": "follow_up", "notes": "<b>下周</b>回电"})  # fmt: skip
    assert saved.status_code == 200
    record = await call(platform, "GET", f"/api/customers/{customer_id}", Role.AGENT)
    body = record.json()
    assert body["name"] == "刘洋" and body["phones"][0]["e164"] == "+8613800138000"
    (interaction,) = body["interactions"]
    assert interaction["disposition"] == "follow_up" and interaction["notes"] == "<b>下周</b>回电"
    both = await call(
        platform, "POST", f"{path}/customer", Role.AGENT, json={"customer_id": 1, "new": {"name": "x"}}
    )
    assert both.status_code == 422


async def test_voicemail_sound_is_served_only_from_the_voicemail_folder(platform: Platform) -> None:
    folder = platform.settings.ivr_dirs()[2]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m1.mp3").write_bytes(b"ID3 not really an mp3")
    customer = await crm_service.create_customer(
        platform.sessionmaker, crm_service.NewCustomer(name="王芳"), default_region="CN"
    )
    now = datetime.now(UTC)
    async with platform.sessionmaker() as session, session.begin():
        for path in (folder / "m1.mp3", folder / ".." / ".." / "secrets" / "token.secret"):
            session.add(Voicemail(call_key="pbx1/1.1", customer_id=customer.id, file_path=str(path),
                                  compressed_path=None, duration_seconds=3.0, created_at=now))  # fmt: skip
    inside = await call(platform, "GET", "/api/console/voicemails/1/audio", Role.AGENT)
    assert inside.status_code == 200 and inside.content == b"ID3 not really an mp3"
    assert inside.headers["content-type"] == "audio/mpeg"
    outside = await call(platform, "GET", "/api/console/voicemails/2/audio", Role.AGENT)
    assert outside.status_code == 404


async def test_the_campaign_partials_and_their_scripts_are_served_with_the_pages(platform: Platform) -> None:
    agent_page = await call(
        platform, "GET", "/console", None, cookies={SESSION_COOKIE: token(platform, Role.AGENT)}
    )
    assert 'id="campaign-lead"' in agent_page.text and 'id="preview-panel"' in agent_page.text
    assert '<script src="/console/static/campaign.js" defer>' in agent_page.text
    boss = await call(
        platform, "GET", "/supervisor", None, cookies={SESSION_COOKIE: token(platform, Role.SUPERVISOR)}
    )
    assert 'id="campaigns-panel"' in boss.text and "campaign_panel.js" in boss.text
    for name in ("campaign.js", "campaign_panel.js"):
        script = await call(platform, "GET", f"/console/static/{name}", None)
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        # Network text goes into the page as text, never as markup.
        assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
