"""HTTP for the IVR's recorded prompts: an admin uploads a WAV or MP3 and gets a prompt flows can name.

``PUT /api/ivr/recordings/{name}`` with the audio as the request body (``Content-Type: audio/wav``
or ``audio/mpeg``). The upload is read with a size limit before anything is decoded, converted with
pydub to 8 kHz mono 16-bit WAV and stored under its content hash, exactly as ``cti prompts import``
does. Answers: 201 with the recording (``file`` is what a flow names: ``{file: <file>}``); 401/403
for anyone but an admin; 413 for an upload over the limit; 415 for another content type; 422 for a
bad name or anything that is not decodable audio (the message says which).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

from cti.auth import Principal, Role
from cti.http import AuthDeps
from ivr.prompts import PromptError, check_recording_name, import_recording_async

#: The content types an upload may declare (browsers and curl name WAV in several ways).
AUDIO_TYPES = frozenset(
    {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/mpeg", "audio/mp3"}
)


class RecordingOut(BaseModel):
    name: str = Field(examples=["welcome-zh"])
    file: str = Field(description="what a flow names: {file: <file>}", examples=["welcome-zh.wav"])
    sound: str = Field(
        description="the converted sound Asterisk plays", examples=["rec-3f2a9c0d1e4b5a6978877665"]
    )
    seconds: float
    replaced: bool = Field(description="an earlier recording of this name was replaced")


def build_router(auth: AuthDeps, folders: Callable[[], tuple[Path, Path]], max_bytes: int) -> APIRouter:
    """The router; ``folders()`` gives ``(recordings_dir, sounds_dir)``, ``max_bytes`` the upload limit."""
    router = APIRouter(tags=["ivr"])
    admin = Depends(auth.require(Role.ADMIN))  # a default, not Annotated: annotations here are strings

    @router.put(
        "/api/ivr/recordings/{name}",
        response_model=RecordingOut,
        status_code=status.HTTP_201_CREATED,
        responses={413: {"description": "too large"}, 415: {"description": "not WAV or MP3"}},
    )
    async def upload_recording(name: str, request: Request, _user: Principal = admin) -> RecordingOut:
        """Upload a recorded prompt (admins). The body is the WAV or MP3 file itself."""
        try:
            check_recording_name(name)
        except PromptError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in AUDIO_TYPES:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                f"send the recording as audio/wav or audio/mpeg, not {content_type[:60] or 'nothing'!r}",
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"a recording may have at most {max_bytes} bytes"
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:  # a client that lies about its length is cut off here
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"a recording may have at most {max_bytes} bytes",
                )
        recordings, sounds = folders()
        try:
            imported = await import_recording_async(
                bytes(body), name, recordings, sounds, max_bytes=max_bytes
            )
        except PromptError as exc:
            message = str(exc).replace(f"{name}.upload", f"recording {name!r}")
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message) from exc
        return RecordingOut(
            name=imported.name,
            file=imported.file,
            sound=imported.sound,
            seconds=imported.seconds,
            replaced=imported.replaced,
        )

    return router
