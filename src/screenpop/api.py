"""HTTP and websocket routes of the screen-pop: tickets, ``/ws``, and supervisors' listen/whisper/barge.

``POST /api/ws-ticket`` (any signed-in user) gives a ticket valid once within 30 s. ``/ws?ticket=…``
then checks, in this order, the ``Origin`` (a configured origin or the platform's own, else the
handshake is refused with 403), and the ticket (unknown, used or expired: closed with 1008). A console
may send ``{"type": "ping"}`` or ``{"type": "resync"}``; a message over ``MAX_CLIENT_MESSAGE`` bytes is
closed with 1009, more than the rate limit with 1008, anything else gets an ``error`` message.
A console dropped for not reading is closed with 1013 (try again later) and reconnects.
"""


import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, WebSocket, WebSocketDisconnect, status
from pydantic import BaseModel, Field

from cti.auth import Principal, Role
from cti.http import AuthDeps
from screenpop import model
from screenpop.hub import Console, Hub
from screenpop.service import ScreenpopService, SpyError

log = logging.getLogger("cti.screenpop.ws")

MAX_CLIENT_MESSAGE = 4096


class TicketOut(BaseModel):
    ticket: str
    expires_at: datetime
    url: str = Field(description="the websocket path to open with this ticket")


class SpyIn(BaseModel):
    mode: Literal["listen", "whisper", "barge"]
    phone: str = Field(pattern=r"^[0-9]{1,32}$", description="the supervisor's own phone (PJSIP endpoint)")


class SpyOut(BaseModel):
    mode: str
    agent_id: str
    channel: str
    phone: str
    channel_id: str


AgentId = Annotated[str, Path(pattern=r"^[0-9]{1,32}$")]


def build_router(
    *,
    hub: Hub,
    service: ScreenpopService,
    tickets: model.TicketBook,
    auth: AuthDeps,
    allowed_origins: Callable[[], list[str]],
) -> APIRouter:
    router = APIRouter(tags=["console"])
    AnyUser = Annotated[Principal, Depends(auth.require(Role.AGENT))]
    Supervisor = Annotated[Principal, Depends(auth.require(Role.SUPERVISOR))]

    @router.post("/api/ws-ticket", response_model=TicketOut)
    async def ws_ticket(user: AnyUser) -> TicketOut:
        """A single-use ticket for opening ``/ws`` within 30 seconds, as the signed-in user."""
        ticket, expires = tickets.issue(user, auth.clock())
        return TicketOut(ticket=ticket, expires_at=expires, url=f"/ws?ticket={ticket}")

    @router.post("/api/supervisor/agents/{agent_id}/spy", response_model=SpyOut)
    async def spy(agent_id: AgentId, body: SpyIn, _user: Supervisor) -> SpyOut:
        """Listen to, whisper to or barge into the agent's current call: the supervisor's phone rings
        and, answered, joins the call by ChanSpy. 409 when the agent has no call in progress."""
        try:
            return SpyOut(**await service.spy(agent_id, body.mode, body.phone))
        except SpyError as exc:
            raise HTTPException(exc.status, detail=exc.message) from exc

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not model.origin_allowed(origin, websocket.headers.get("host"), allowed_origins()):
            log.warning("websocket refused: origin %r", origin)
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="origin not allowed")
            return
        ticket = websocket.query_params.get("ticket", "")
        principal = tickets.redeem(ticket, auth.clock()) if ticket else None
        if principal is None:
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="invalid or expired ticket")
            return
        await websocket.accept()
        console = hub.connect(principal)
        try:
            await _serve(websocket, console, service, hub)
        finally:
            hub.disconnect(console)

    return router


async def _serve(websocket: WebSocket, console: Console, service: ScreenpopService, hub: Hub) -> None:
    hello = {
        "type": model.HELLO,
        "user": console.principal.username,
        "role": console.principal.role.value,
        "agent_id": console.agent_id,
    }
    console.offer(model.encode(hello))
    console.offer(model.encode(service.current_state(console)))
    sender = asyncio.create_task(_send_loop(websocket, console))
    receiver = asyncio.create_task(_receive_loop(websocket, console, service))
    gone = asyncio.create_task(console.gone.wait())
    tasks = {sender, receiver, gone}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # A send blocked on a peer that stopped reading may take until the connection is lost to
        # notice its cancellation: never wait on it for long.
        await asyncio.wait(tasks, timeout=1.0)
    code, reason = status.WS_1000_NORMAL_CLOSURE, ""
    if console.dropped:
        code, reason = status.WS_1013_TRY_AGAIN_LATER, "console too slow: reconnect for the full state"
    elif receiver in done and not receiver.cancelled() and receiver.exception() is None:
        code, reason = receiver.result()
    # The same for the closing handshake: the close goes out when the peer reads again, or the
    # server's close timeout ends the connection.
    closing = asyncio.create_task(_close(websocket, code, reason))
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)
    await asyncio.wait({closing}, timeout=2.0)


#: Closing handshakes still waiting on a peer (held so they are not garbage-collected mid-way).
_closing: set[asyncio.Task[None]] = set()


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=reason)


async def _send_loop(websocket: WebSocket, console: Console) -> None:
    while True:
        text = await console.queue.get()
        # No deadline here: a peer that stops reading blocks this send, its queue fills, and the
        # hub drops it (``Console.offer``); nobody else waits meanwhile.
        await websocket.send_text(text)


async def _receive_loop(websocket: WebSocket, console: Console, service: ScreenpopService) -> tuple[int, str]:
    limit = model.RateLimit()
    while True:
        try:
            frame = await websocket.receive()
        except WebSocketDisconnect:
            return status.WS_1000_NORMAL_CLOSURE, ""
        if frame.get("type") == "websocket.disconnect":
            return status.WS_1000_NORMAL_CLOSURE, ""
        raw: Any = frame.get("text")
        if raw is None:
            raw = frame.get("bytes") or b""
        if len(raw.encode("utf-8") if isinstance(raw, str) else raw) > MAX_CLIENT_MESSAGE:
            return status.WS_1009_MESSAGE_TOO_BIG, "message too big"
        if not limit.allow(time.monotonic()):
            return status.WS_1008_POLICY_VIOLATION, "too many messages"
        try:
            message = json.loads(raw)
            kind = message.get("type") if isinstance(message, dict) else None
        except ValueError:
            kind = None
        if kind == "ping":
            console.offer(model.encode({"type": model.PONG}))
        elif kind == "resync":
            console.offer(model.encode(service.current_state(console)))
        else:
            error = f"expected a type among {sorted(model.CLIENT_TYPES)}"
            console.offer(model.encode({"type": model.ERROR, "error": error}))
