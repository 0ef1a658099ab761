"""HTTP routes of call recordings: pause and resume an agent's call recording, list and download.

* ``POST /api/agents/{agent_id}/call/recording/pause`` and ``.../resume`` — the agent themself, a
  supervisor or an admin. 200 ``{"recording": "paused"}`` / ``{"recording": "active"}`` only after
  Asterisk's ``MixMonitorMute`` event confirmed it; 504 when it did not in time (the console then
  shows "NOT paused": fail closed); 409 when the agent has no call, or their call is not recorded;
  503 when Asterisk could not be asked.
* ``GET /api/agents/{agent_id}/call/recording`` — the same people: the state Asterisk last
  confirmed, ``{"recording": "active"|"paused"}``; 409 when the agent has no recorded call.
* ``GET /api/recordings?call=<pbx>/<linkedid>`` or ``?customer_id=`` — any signed-in user (agents,
  supervisors, admins): the recordings' metadata, newest first.
* ``GET /api/recordings/{id}/audio`` — any signed-in user: the playback copy (``?original=true``:
  the PBX's WAV). The file's path is the one the platform stored, and it must lie in the monitor
  folder; nothing in the request names a file.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from cti.auth import Principal, Role
from cti.http import AuthDeps
from recordings.policy import check_linkedid
from recordings.service import NoCall, NotConfirmed, NotRecording, PbxUnavailable, RecordingService

AgentId = Annotated[str, Path(pattern=r"^[0-9]{1,32}$", examples=["1001"])]
CallParam = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9_-]{1,32}/[A-Za-z0-9_.-]{1,64}$",
        description="the call's key, <pbx>/<linkedid>, as the call log shows it",
        examples=["pbx1/1732280000.42"],
    ),
]
_MEDIA = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".wav": "audio/wav"}


@dataclass(frozen=True, slots=True)
class RecordingView:
    """A stored recording as the routes show it (the composition root maps the record to this)."""

    id: int
    pbx: str
    linkedid: str
    customer_id: int | None
    agent: str | None
    status: str
    duration_seconds: float
    started_at: datetime
    created_at: datetime
    call_log_id: int | None
    file_path: str | None
    compressed_path: str | None


@dataclass(frozen=True, slots=True)
class RecordingQueries:
    """Reading the stored recordings: ``list(pbx, linkedid, customer_id, limit)`` and ``get(id)``."""

    list: Callable[[str | None, str | None, int | None, int], Awaitable[list[RecordingView]]]
    get: Callable[[int], Awaitable[RecordingView | None]]


class RecordingControlOut(BaseModel):
    recording: Literal["active", "paused"] = Field(description="the state Asterisk confirmed")


class RecordingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    call: str = Field(description="the call's key, <pbx>/<linkedid>")
    call_log_id: int | None
    customer_id: int | None
    agent: str | None
    status: str = Field(description="ok, empty (the PBX wrote no sound) or missing (no file)")
    duration_seconds: float
    started_at: datetime
    created_at: datetime
    audio: str | None = Field(description="where to download the playback copy, if there is one")


def recording_out(view: RecordingView) -> RecordingOut:
    playable = view.compressed_path or view.file_path
    return RecordingOut(
        id=view.id,
        call=f"{view.pbx}/{view.linkedid}",
        call_log_id=view.call_log_id,
        customer_id=view.customer_id,
        agent=view.agent,
        status=view.status,
        duration_seconds=view.duration_seconds,
        started_at=view.started_at,
        created_at=view.created_at,
        audio=f"/api/recordings/{view.id}/audio" if playable else None,
    )


def _servable(stored: str, monitor_dir: FsPath) -> FsPath | None:
    """The stored file if it exists directly in the monitor folder (a stat, no reading)."""
    path = FsPath(stored).resolve()
    return path if path.parent == monitor_dir.resolve() and path.is_file() else None


def _allowed(user: Principal, agent_id: str) -> None:
    if user.username != agent_id and not user.role.includes(Role.SUPERVISOR):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="only the agent themself or a supervisor may do this"
        )


def build_router(
    service: RecordingService, queries: RecordingQueries, auth: AuthDeps, monitor_dir: FsPath
) -> APIRouter:
    router = APIRouter(tags=["recordings"])
    AnyUser = Annotated[Principal, Depends(auth.require(Role.AGENT))]

    async def control(agent_id: str, user: Principal, paused: bool) -> RecordingControlOut:
        _allowed(user, agent_id)
        try:
            state = await service.set_paused(agent_id, paused)
        except (NoCall, NotRecording) as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
        except NotConfirmed as exc:
            raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail=str(exc)) from exc
        except PbxUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
        return RecordingControlOut(recording="paused" if state.value == "paused" else "active")

    @router.get("/api/agents/{agent_id}/call/recording", response_model=RecordingControlOut)
    async def recording_state(agent_id: AgentId, user: AnyUser) -> RecordingControlOut:
        """The recording state of the agent's call as Asterisk last confirmed it (a console's view
        on opening; changes come as RecordingChanged). 409 when there is no recorded call."""
        _allowed(user, agent_id)
        try:
            state = service.state_of(agent_id)
        except (NoCall, NotRecording) as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
        return RecordingControlOut(recording="paused" if state.value == "paused" else "active")

    @router.post("/api/agents/{agent_id}/call/recording/pause", response_model=RecordingControlOut)
    async def pause(agent_id: AgentId, user: AnyUser) -> RecordingControlOut:
        """Pause the recording of the agent's call (for card capture); answers once Asterisk confirmed."""
        return await control(agent_id, user, True)

    @router.post("/api/agents/{agent_id}/call/recording/resume", response_model=RecordingControlOut)
    async def resume(agent_id: AgentId, user: AnyUser) -> RecordingControlOut:
        """Resume the recording of the agent's call; answers once Asterisk confirmed."""
        return await control(agent_id, user, False)

    @router.get("/api/recordings", response_model=list[RecordingOut])
    async def list_recordings(
        _user: AnyUser,
        call: CallParam = None,
        customer_id: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[RecordingOut]:
        """Recordings, newest first: of one call (``call``), of one customer, or all."""
        pbx = linkedid = None
        if call is not None:
            pbx, _, linkedid = call.partition("/")
            try:
                check_linkedid(linkedid)
            except ValueError as exc:
                detail = [{"loc": ["query", "call"], "msg": str(exc), "type": "value_error"}]
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from exc
        return [recording_out(v) for v in await queries.list(pbx, linkedid, customer_id, limit)]

    @router.get("/api/recordings/{recording_id}", response_model=RecordingOut)
    async def get_recording(recording_id: Annotated[int, Path(ge=1)], _user: AnyUser) -> RecordingOut:
        view = await queries.get(recording_id)
        if view is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no recording {recording_id}")
        return recording_out(view)

    @router.get("/api/recordings/{recording_id}/audio", response_class=FileResponse)
    async def audio(
        recording_id: Annotated[int, Path(ge=1)], _user: AnyUser, original: bool = False
    ) -> FileResponse:
        """The recording's sound: the playback copy, or with ``original`` the PBX's WAV."""
        view = await queries.get(recording_id)
        if view is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no recording {recording_id}")
        stored = view.file_path if original else (view.compressed_path or view.file_path)
        if not stored:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"recording {recording_id} has no sound")
        path = _servable(stored, monitor_dir)
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"recording {recording_id}'s file is gone")
        return FileResponse(
            path,
            media_type=_MEDIA.get(path.suffix, "application/octet-stream"),
            filename=f"recording-{view.id}{path.suffix}",
        )

    return router
