"""An ended campaign call's outcome, table-driven, from the call as the core saw it."""

from __future__ import annotations

import pytest

from cti.model import CallPhase, EndReason
from dialer.model import Outcome
from dialer.outcomes import outcome_of
from tests.crm.helpers import snapshot


@pytest.mark.parametrize(
    ("answered", "connected", "cause", "reason", "machine", "outcome"),
    [
        (3.0, 4.0, 16, None, False, Outcome.CONNECTED),
        (3.0, None, 16, None, False, Outcome.ABANDONED),  # a person, no agent: safe-harbor message
        (3.0, None, 16, None, True, Outcome.MACHINE),
        (None, None, 17, None, False, Outcome.BUSY),
        (None, None, 21, None, False, Outcome.BUSY),
        # As the call book reports a call whose hangup it saw: the cause decides.
        (None, None, 17, EndReason.HANGUP, False, Outcome.BUSY),
        (3.0, None, 127, EndReason.HANGUP, True, Outcome.MACHINE),
        (3.0, None, 16, EndReason.HANGUP, False, Outcome.ABANDONED),
        (None, None, 19, None, False, Outcome.NO_ANSWER),
        (None, None, None, None, False, Outcome.NO_ANSWER),
        (None, None, 1, None, False, Outcome.DISCONNECTED),
        (None, None, 34, None, False, Outcome.FAILED),
        (3.0, None, None, EndReason.LINK_LOST, False, Outcome.UNKNOWN),  # a person may have answered
        (None, None, None, EndReason.PBX_RESTARTED, False, Outcome.UNKNOWN),
        (3.0, 4.0, None, EndReason.LINK_LOST, False, Outcome.CONNECTED),
    ],
)
def test_outcome_of_an_ended_call(
    answered: float | None,
    connected: float | None,
    cause: int | None,
    reason: EndReason | None,
    machine: bool,
    outcome: Outcome,
) -> None:
    call = snapshot(
        "dial-1", phase=CallPhase.ENDED, answered=answered, connected=connected, ended=30.0,
        hangup_cause=cause, end_reason=reason,
    )  # fmt: skip
    assert outcome_of(call, machine=machine) is outcome


def test_a_live_call_has_no_outcome_yet() -> None:
    with pytest.raises(ValueError, match="not ended"):
        outcome_of(snapshot("dial-1", phase=CallPhase.TALKING, answered=3.0))
