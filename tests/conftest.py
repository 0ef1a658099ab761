"""Fixtures shared by every test package: a real PostgreSQL server and the sandbox Asterisk (each
started once per session, only when a test asks for it)."""

from tests.support.postgres import postgres_server, postgres_url  # noqa: F401
from tests.support.redis import redis_server  # noqa: F401
from tests.support.sandbox import sandbox_pbx  # noqa: F401
