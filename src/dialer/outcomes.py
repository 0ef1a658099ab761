"""What a campaign call's end means for its attempt: the outcome, from the call as the core saw it.

Pure. ``outcome_of(call, machine=...)`` reads an ended ``CallSnapshot`` of a call we originated:

- bridged to an agent: ``connected``;
- the platform lost sight of the call (link lost, PBX restarted, events dropped) before it was
  connected: ``unknown`` (a person may have answered: never retried blindly);
- answered by a machine (AMD said so): ``machine``;
- answered by a person and never bridged to an agent: ``abandoned`` (the safe-harbor message was
  played; counted against the cap even when the person hung up first: the safe side);
- never answered: by the ISDN cause Asterisk reports: busy (17, 21), no answer (16, 18, 19, or no
  cause), the number does not exist (1, 3, 22, 28: ``disconnected``, never dialled again), and
  anything else a network failure (``failed``).
"""

from __future__ import annotations

from cti.model import CallSnapshot, EndReason
from dialer.model import Outcome

BUSY_CAUSES = frozenset({17, 21})  # user busy, call rejected
NO_ANSWER_CAUSES = frozenset({0, 16, 18, 19})  # ring timeout and normal clearing before answer
DISCONNECTED_CAUSES = frozenset({1, 3, 22, 28})  # unallocated, no route, number changed, invalid format


def outcome_of(call: CallSnapshot, *, machine: bool = False) -> Outcome:
    """The outcome of an ended campaign call (see the module docstring)."""
    if call.ended_at is None:
        raise ValueError("the call has not ended")
    if call.connected_at is not None:
        return Outcome.CONNECTED
    if call.end_reason is not None and call.end_reason is not EndReason.HANGUP:
        return Outcome.UNKNOWN
    if call.answered_at is not None:
        return Outcome.MACHINE if machine else Outcome.ABANDONED
    cause = call.hangup_cause
    if cause is None or cause in NO_ANSWER_CAUSES:
        return Outcome.NO_ANSWER
    if cause in BUSY_CAUSES:
        return Outcome.BUSY
    if cause in DISCONNECTED_CAUSES:
        return Outcome.DISCONNECTED
    return Outcome.FAILED
