"""Who may do what: roles, the authenticated principal, and signed access tokens.

Tokens are JWTs signed with HS256 by one platform secret. Verification takes ``now`` explicitly (no
clock inside), so expiry is testable without sleeping. Password hashing lives with the user table in
``crm``; this module only knows identities that were already authenticated.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt

from cti.settings import AuthSettings

ALGORITHM = "HS256"
ISSUER = "cti-platform"
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
# Tolerated clock difference between platform nodes sharing one secret.
LEEWAY_SECONDS = 30


class Role(enum.StrEnum):
    """A user's role. Each role includes the rights of those below it: admin ⊇ supervisor ⊇ agent."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def includes(self, other: Role) -> bool:
        """True if this role may do everything ``other`` may."""
        return self.rank >= other.rank


_RANKS = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user as the platform sees them on each request."""

    user_id: int
    username: str
    role: Role


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired, or names no known role.

    The message says which, for logs; never show it as proof to an unauthenticated client beyond
    "invalid or expired token".
    """


def _key(secret: str) -> bytes:
    key = secret.encode("utf-8")
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def issue_token(principal: Principal, secret: str, ttl_seconds: int, now: datetime) -> str:
    """A signed token for ``principal`` valid from ``now`` for ``ttl_seconds``."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    issued = int(_aware(now).timestamp())
    claims = {
        "iss": ISSUER,
        "sub": str(principal.user_id),
        "name": principal.username,
        "role": principal.role.value,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM)


def token_expiry(issued_at: datetime, ttl_seconds: int) -> datetime:
    """When a token issued at ``issued_at`` expires (whole seconds, as in the token)."""
    return datetime.fromtimestamp(int(_aware(issued_at).timestamp()) + ttl_seconds, tz=UTC)


def verify_token(token: str, secret: str, now: datetime) -> Principal:
    """The principal a token names, or ``InvalidToken``.

    Only HS256 is accepted (never ``none`` or an algorithm chosen by the token). Time claims are
    checked against ``now`` with ``LEEWAY_SECONDS`` of tolerance.
    """
    key = _key(secret)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            # Time claims are checked below against the caller's ``now``, not the machine clock.
            options={
                "require": ["exp", "iat", "sub", "role", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid token: {exc}") from exc
    stamp = _aware(now).timestamp()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int) or not isinstance(nbf, int):
        raise InvalidToken("invalid token: malformed time claims")
    if stamp >= exp + LEEWAY_SECONDS:
        raise InvalidToken("token expired")
    if stamp < nbf - LEEWAY_SECONDS:
        raise InvalidToken("token not valid yet")
    try:
        role = Role(claims["role"])
        user_id = int(claims["sub"])
    except (ValueError, TypeError) as exc:
        raise InvalidToken(f"invalid token: {exc}") from exc
    username = claims.get("name")
    if not isinstance(username, str):
        raise InvalidToken("invalid token: no user name")
    return Principal(user_id=user_id, username=username, role=role)


#: The cookie that carries a console's session token (HttpOnly); requests authenticated by it must
#: also carry ``CSRF_HEADER`` with ``csrf_token(session token)`` (the page gets it, a foreign site cannot).
SESSION_COOKIE = "cti_session"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token(session_token: str, secret: str) -> str:
    """The anti-forgery token bound to one session token (HMAC-SHA256 under the token secret)."""
    digest = hmac.new(_key(secret), b"csrf:" + session_token.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()


def csrf_valid(session_token: str, candidate: str | None, secret: str) -> bool:
    """True if ``candidate`` is the anti-forgery token of ``session_token`` (constant-time compare)."""
    if not candidate:
        return False
    return hmac.compare_digest(csrf_token(session_token, secret), candidate)


def load_or_create_secret(path: Path) -> str:
    """The token secret kept in ``path``, created (random, owner-only file) on first use.

    The file appears atomically with its whole content (hard link of a finished temporary file), so
    two processes starting together agree on one secret and never read a half-written one.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_text(encoding="utf-8").strip()
    _key(secret)
    return secret


def resolve_token_secret(auth: AuthSettings, state_dir: Path) -> str:
    """The configured token secret, else the one kept in ``token_secret_file`` (default in ``state_dir``)."""
    if auth.token_secret is not None:
        secret = auth.token_secret.get_secret_value()
        _key(secret)
        return secret
    return load_or_create_secret(auth.token_secret_file or state_dir / "secrets" / "token.secret")
