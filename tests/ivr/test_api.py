"""Recorded prompt uploads over HTTP: the router on a real FastAPI app, real ffmpeg conversion."""

from __future__ import annotations

import shutil
import wave
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydub.generators import Sine

from cti.auth import Principal, Role, issue_token
from cti.http import make_auth
from ivr.api import build_router
from ivr.prompts import SAMPLE_RATE

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="uploads are converted with ffmpeg")

SECRET = "test-secret-for-uploads-0123456789"
LIMIT = 200_000


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "recordings", tmp_path / "sounds"


@pytest.fixture
def app(folders: tuple[Path, Path]) -> FastAPI:
    app = FastAPI()
    app.include_router(build_router(make_auth(lambda: SECRET), lambda: folders, LIMIT))
    return app


def bearer(role: Role) -> dict[str, str]:
    token = issue_token(Principal(1, f"a-{role.value}", role), SECRET, 600, datetime.now(UTC))
    return {"Authorization": f"Bearer {token}"}


async def put(
    app: FastAPI, name: str, body: bytes, content_type: str, role: Role | None = Role.ADMIN
) -> httpx.Response:
    headers = {"Content-Type": content_type, **(bearer(role) if role else {})}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.put(f"/api/ivr/recordings/{name}", content=body, headers=headers)


def mp3(tmp_path: Path, seconds: float = 1.0) -> bytes:
    path = tmp_path / "upload.mp3"
    Sine(440).to_audio_segment(duration=int(seconds * 1000)).set_frame_rate(44100).export(path, format="mp3")
    return path.read_bytes()


async def test_an_admin_uploads_an_mp3_and_gets_an_8khz_mono_prompt(app, folders, tmp_path) -> None:
    response = await put(app, "welcome-zh", mp3(tmp_path), "audio/mpeg")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["file"] == "welcome-zh.wav" and body["sound"].startswith("rec-") and not body["replaced"]
    assert body["seconds"] == pytest.approx(1.0, abs=0.1)
    recordings, sounds = folders
    for path in (recordings / "welcome-zh.wav", sounds / f"{body['sound']}.wav"):
        with wave.open(str(path), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
    # Stored under its content hash: the same sound for the same upload, replaced in place.
    again = await put(app, "welcome-zh", mp3(tmp_path), "audio/mpeg")
    assert again.json()["sound"] == body["sound"] and again.json()["replaced"]


@pytest.mark.parametrize(("role", "status"), [(None, 401), (Role.AGENT, 403), (Role.SUPERVISOR, 403)])
async def test_only_admins_upload(app, folders, tmp_path, role, status) -> None:
    response = await put(app, "welcome", mp3(tmp_path), "audio/mpeg", role)
    assert response.status_code == status
    assert not folders[0].exists() or not any(folders[0].iterdir())


async def test_bad_uploads_get_a_clear_error_and_keep_the_old_recording(app, folders, tmp_path) -> None:
    assert (await put(app, "hold", mp3(tmp_path), "audio/mpeg")).status_code == 201
    kept = (folders[0] / "hold.wav").read_bytes()

    not_audio = await put(app, "hold", b"RIFF....WAVEfmt this is not audio" * 10, "audio/wav")
    assert not_audio.status_code == 422
    assert (
        "not audio that can be decoded" in not_audio.json()["detail"]
        and "'hold'" in not_audio.json()["detail"]
    )

    too_big = await put(app, "hold", b"\0" * (LIMIT + 1), "audio/wav")
    assert too_big.status_code == 413 and str(LIMIT) in too_big.json()["detail"]

    wrong_type = await put(app, "hold", mp3(tmp_path), "text/plain")
    assert wrong_type.status_code == 415

    bad_name = await put(app, "..hold", mp3(tmp_path), "audio/mpeg")
    assert bad_name.status_code == 422 and "letters, digits" in bad_name.json()["detail"]

    empty = await put(app, "hold", b"", "audio/wav")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]

    assert (folders[0] / "hold.wav").read_bytes() == kept
    assert sorted(p.name for p in folders[0].iterdir()) == ["hold.wav"]  # no temporary files left
