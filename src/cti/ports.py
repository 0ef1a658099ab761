"""Ports: the small interfaces through which capabilities reach the outside world.

Capabilities depend on these protocols, never on the AMI client or a database directly; the
composition root (``app``) passes the real implementations in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from cti.model import CallClassification


class ActionOutcomeUnknown(Exception):
    """A non-idempotent action was written but the link dropped before Asterisk answered.

    It is never re-sent automatically: the caller reconciles it (for an Originate, through the
    ``ChannelId`` it pre-assigned) once the link is back and the resync has run.
    """


class ActionFailed(Exception):
    """Asterisk answered ``Response: Error``; ``message`` is Asterisk's own text."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action} failed: {message}")
        self.action = action
        self.message = message


class LinkDown(Exception):
    """The AMI link is not up, so the action was not written at all (safe to try again later)."""


class ActionSink(Protocol):
    """Where capabilities send actions to Asterisk.

    Contract: ``send`` validates every key and value (a CR, LF or NUL raises ``ValueError`` before
    anything is written), writes the action once, and returns Asterisk's response headers. It raises
    ``LinkDown`` if nothing was written, ``ActionOutcomeUnknown`` if the link dropped after writing a
    non-idempotent action, ``ActionFailed`` on ``Response: Error``, ``TimeoutError`` after the deadline.
    """

    async def send(self, action: str, headers: Mapping[str, str] | None = None) -> Mapping[str, str]: ...


class CallClassifier(Protocol):
    """ANI/DNIS lookup: who is calling and which service they dialled.

    Contract: never raises for an unknown number or DNIS (those are answers, not errors); raises only
    when the lookup itself could not run (database down), in which case the call proceeds unclassified.
    """

    async def classify(self, ani: str, dnis: str) -> CallClassification: ...
