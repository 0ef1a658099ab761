"""FastAPI dependencies that authenticate requests by bearer token and enforce roles.

Every capability's router uses the same :class:`AuthDeps`, built once by the composition root::

    auth = make_auth(lambda: secret)
    @router.get("/api/things")
    async def things(user: Annotated[Principal, Depends(auth.require(Role.AGENT))]) -> ...

FastAPI reads these annotations at route definition: in a module with ``from __future__ import
annotations``, name the dependency through a module-level alias, not a local variable.

A browser console may instead present its session token in the ``cti_session`` cookie, and then must
send the matching anti-forgery token in ``X-CSRF-Token`` on every request (double submit bound to
the session by HMAC): a request from another site carries the cookie but cannot know the token.

Missing, malformed, forged or expired tokens give 401 with ``WWW-Authenticate: Bearer`` (RFC 6750);
a valid token whose role is too low gives 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cti.auth import CSRF_HEADER, SESSION_COOKIE, InvalidToken, Principal, Role, csrf_valid, verify_token

SecretProvider = Callable[[], str]
Clock = Callable[[], datetime]

# auto_error=False: the 401 and its WWW-Authenticate header are ours, the scheme still shows in OpenAPI.
_bearer = HTTPBearer(auto_error=False, description="an access token from POST /api/auth/login")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _unauthorized(detail: str, error: str | None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class AuthDeps:
    """Request authentication against one token secret (read through ``secret_provider`` each time,
    so a rotated secret takes effect without rebuilding routers)."""

    secret_provider: SecretProvider
    clock: Clock = field(default=_utcnow)

    def authenticate(self, token: str) -> Principal:
        """The principal for a raw token (for websockets, which carry no Authorization header).

        Raises ``InvalidToken``.
        """
        return verify_token(token, self.secret_provider(), self.clock())

    def session_token(self, request: Request) -> str:
        """The token of a cookie session whose anti-forgery header matches; 401 otherwise."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise _unauthorized("not authenticated", None)
        if not csrf_valid(token, request.headers.get(CSRF_HEADER), self.secret_provider()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="missing or wrong anti-forgery token")
        return token

    def require(self, role: Role) -> Callable[..., Awaitable[Principal]]:
        """A dependency giving the caller's principal if their role includes ``role``."""

        async def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> Principal:
            if credentials is not None and credentials.scheme.lower() == "bearer" and credentials.credentials:
                token = credentials.credentials
            else:
                token = self.session_token(request)
            try:
                principal = self.authenticate(token)
            except InvalidToken as exc:
                raise _unauthorized("invalid or expired token", "invalid_token") from exc
            if not principal.role.includes(role):
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"requires the {role.value} role")
            return principal

        dependency.__name__ = f"require_{role.value}"
        return dependency


def make_auth(secret_provider: SecretProvider, *, clock: Clock | None = None) -> AuthDeps:
    """The dependencies for routers; ``clock`` defaults to the system's UTC clock."""
    return AuthDeps(secret_provider, clock or _utcnow)
