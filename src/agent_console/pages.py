"""The agent console and the supervisor's page: server-rendered jinja2 (autoescaped) with a little JS.

Sign-in sets the ``cti_session`` cookie (HttpOnly, SameSite=Strict) to an access token; each page
carries that session's anti-forgery token in a ``<meta>`` element, and the page's script sends it in
``X-CSRF-Token`` with every call to ``/api`` (``cti.http`` accepts the cookie only with it). Sign-in
itself accepts JSON only, which a foreign page cannot send without the browser asking us first.

Routes: ``GET /console/login``; ``POST /console/session`` (sign in); ``POST /console/logout``
(cookie + anti-forgery token); ``GET /console`` (any signed-in user; agents see their own console);
``GET /supervisor`` (supervisors and admins); ``GET /console/static/{name}``. Pages without a valid
session redirect to the sign-in page; a supervisor page for an agent answers 403.
"""


from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from cti.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    InvalidToken,
    Principal,
    Role,
    csrf_token,
    issue_token,
    token_expiry,
)
from cti.http import AuthDeps

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_FILES = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "campaign.js": "text/javascript",
    "campaign_panel.js": "text/javascript",
}
#: The pages load only their own script and style, and talk only to their own origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Authenticator = Callable[[str, str], Awaitable[Principal | None]]


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SignedIn(BaseModel):
    role: Role
    next: str
    expires_at: datetime


def templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_router(
    *,
    auth: AuthDeps,
    authenticate: Authenticator,
    secret_provider: Callable[[], str],
    token_ttl_seconds: int,
    dispositions: list[str],
    secure_cookie: bool = False,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = templates()

    def page(name: str, **context: object) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), headers=SECURITY_HEADERS)

    def session(request: Request) -> tuple[Principal, str] | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            return auth.authenticate(token), token
        except InvalidToken:
            return None

    @router.get("/console/login")
    async def login_page() -> HTMLResponse:
        return page("login.html", title="Sign in")

    @router.post("/console/session", response_model=SignedIn)
    async def sign_in(request: Request, body: SignIn, response: Response) -> SignedIn:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail="send JSON")
        principal = await authenticate(body.username, body.password)
        if principal is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid username or password")
        now = auth.clock()
        token = issue_token(principal, secret_provider(), token_ttl_seconds, now)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=token_ttl_seconds,
            httponly=True,
            samesite="strict",
            secure=secure_cookie,
            path="/",
        )
        target = "/supervisor" if principal.role.includes(Role.SUPERVISOR) else "/console"
        return SignedIn(role=principal.role, next=target, expires_at=token_expiry(now, token_ttl_seconds))

    LoggedIn = Annotated[Principal, Depends(auth.require(Role.AGENT))]

    @router.post("/console/logout", status_code=status.HTTP_204_NO_CONTENT)
    async def sign_out(_user: LoggedIn, response: Response) -> None:
        """End the browser session (the cookie); needs the anti-forgery token like any cookie call."""
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")

    @router.get("/console", response_model=None)
    async def agent_page(request: Request) -> Response:
        found = session(request)
        if found is None:
            return RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
        user, token = found
        agent_id = user.username if user.username.isdigit() else ""
        return page(
            "agent.html",
            title="Agent console",
            user=user,
            agent_id=agent_id,
            csrf=csrf_token(token, secret_provider()),
            csrf_header=CSRF_HEADER,
            dispositions=dispositions,
        )

    @router.get("/supervisor", response_model=None)
    async def supervisor_page(request: Request) -> Response:
        found = session(request)
        if found is None:
            return RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
        user, token = found
        if not user.role.includes(Role.SUPERVISOR):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="requires the supervisor role")
        return page(
            "supervisor.html",
            title="Supervisor",
            user=user,
            csrf=csrf_token(token, secret_provider()),
            csrf_header=CSRF_HEADER,
        )

    @router.get("/console/static/{name}")
    async def static(name: str) -> FileResponse:
        media = STATIC_FILES.get(name)
        if media is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND)
        return FileResponse(STATIC / name, media_type=media, headers={"X-Content-Type-Options": "nosniff"})

    return router
