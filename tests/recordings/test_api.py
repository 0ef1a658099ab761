"""Recordings' HTTP routes in the real platform app (in process, its database migrated, no
Asterisk): who may do what, and downloads that only ever serve files from the monitor folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.compose import Platform
from crm import db as crm_db
from crm import recordings as crm_recordings
from cti.auth import Principal, Role, issue_token
from cti.settings import Settings

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture
async def platform(tmp_path: Path):
    monitor = tmp_path / "monitor"
    monitor.mkdir()
    platform = Platform(Settings(state_dir=tmp_path, recordings={"monitor_dir": monitor}))
    await crm_db.migrate_async(platform.database_url)
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
    platform: Platform, method: str, path: str, role: Role | None, username: str | None = None, **kw: Any
) -> httpx.Response:
    transport = httpx.ASGITransport(app=platform.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, headers=bearer(platform, role, username), **kw)


async def stored(platform: Platform, linkedid: str, wav: Path | None, mp3: Path | None) -> int:
    record, _ = await crm_recordings.store_recording(
        platform.sessionmaker, pbx="pbx1", linkedid=linkedid, customer_id=None, agent="1001",
        status="ok", file_path=str(wav) if wav else None, compressed_path=str(mp3) if mp3 else None,
        duration_seconds=3.0, started_at=NOW, now=NOW,
    )  # fmt: skip
    return record.id


ROLES = [None, Role.AGENT, Role.SUPERVISOR, Role.ADMIN]


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize(
    ("role", "username", "expected"),
    [
        (None, None, 401),
        (Role.AGENT, "1002", 403),  # another agent
        (Role.AGENT, "1001", 409),  # the agent themself: allowed, but they have no call
        (Role.SUPERVISOR, None, 409),
        (Role.ADMIN, None, 409),
    ],
)
async def test_pause_and_resume_role_matrix(
    platform: Platform, action: str, role: Role | None, username: str | None, expected: int
) -> None:
    response = await call(platform, "POST", f"/api/agents/1001/call/recording/{action}", role, username)
    assert response.status_code == expected, response.text


@pytest.mark.parametrize(
    ("role", "username", "expected"),
    [(None, None, 401), (Role.AGENT, "1002", 403), (Role.AGENT, "1001", 409), (Role.SUPERVISOR, None, 409)],
)
async def test_the_recording_state_role_matrix(
    platform: Platform, role: Role | None, username: str | None, expected: int
) -> None:
    response = await call(platform, "GET", "/api/agents/1001/call/recording", role, username)
    assert response.status_code == expected, response.text


async def test_a_bad_agent_id_is_unprocessable(platform: Platform) -> None:
    response = await call(platform, "POST", "/api/agents/10x1/call/recording/pause", Role.ADMIN)
    assert response.status_code == 422


@pytest.mark.parametrize("role", ROLES)
async def test_listing_and_downloading_need_a_signed_in_user(platform: Platform, role: Role | None) -> None:
    monitor = platform.settings.monitor_dir()
    (monitor / "1732280000.1.wav").write_bytes(b"RIFF....WAVE")
    (monitor / "1732280000.1.mp3").write_bytes(b"ID3 mp3")
    rid = await stored(platform, "1732280000.1", monitor / "1732280000.1.wav", monitor / "1732280000.1.mp3")
    expected = 401 if role is None else 200
    listed = await call(platform, "GET", "/api/recordings", role, params={"call": "pbx1/1732280000.1"})
    assert listed.status_code == expected
    one = await call(platform, "GET", f"/api/recordings/{rid}", role)
    assert one.status_code == expected
    audio = await call(platform, "GET", f"/api/recordings/{rid}/audio", role)
    assert audio.status_code == expected
    if role is not None:
        assert [r["id"] for r in listed.json()] == [rid] and one.json()[
            "audio"
        ] == f"/api/recordings/{rid}/audio"
        assert audio.content == b"ID3 mp3" and audio.headers["content-type"] == "audio/mpeg"
        original = await call(platform, "GET", f"/api/recordings/{rid}/audio", role, params={"original": "1"})
        assert original.content == b"RIFF....WAVE"


async def test_a_stored_path_outside_the_monitor_folder_is_never_served(
    platform: Platform, tmp_path: Path
) -> None:
    secret = tmp_path / "platform.secret"
    secret.write_text("do not serve")
    rid = await stored(platform, "1732280000.2", secret, None)
    response = await call(platform, "GET", f"/api/recordings/{rid}/audio", Role.ADMIN)
    assert response.status_code == 404 and "do not serve" not in response.text


async def test_unknown_and_gone_recordings_are_not_found(platform: Platform) -> None:
    assert (await call(platform, "GET", "/api/recordings/999", Role.AGENT)).status_code == 404
    gone = await stored(platform, "1732280000.3", platform.settings.monitor_dir() / "1732280000.3.wav", None)
    assert (await call(platform, "GET", f"/api/recordings/{gone}/audio", Role.AGENT)).status_code == 404


@pytest.mark.parametrize("bad", ["pbx1/../../etc/passwd", "pbx1", "pbx1/1732280000.1\n", "a/b/c"])
async def test_a_bad_call_key_is_unprocessable(platform: Platform, bad: str) -> None:
    response = await call(platform, "GET", "/api/recordings", Role.AGENT, params={"call": bad})
    assert response.status_code == 422
