"""Builders for the CRM tests: call snapshots as the call book would publish them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cti.model import CallChange, CallClassification, CallKey, CallPhase, CallSnapshot, ChangeKind, Direction

T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def snapshot(
    linkedid: str,
    *,
    pbx: str = "pbx1",
    phase: CallPhase = CallPhase.ARRIVING,
    ani: str = "+8613800138000",
    caller_name: str = "张伟",
    dnis: str = "8001",
    started: datetime = T0,
    answered: float | None = None,
    connected: float | None = None,
    ended: float | None = None,
    agent: str | None = None,
    classification: CallClassification | None = None,
    **changes: Any,
) -> CallSnapshot:
    """A call snapshot; times are seconds after ``started``."""

    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else started + timedelta(seconds=seconds)

    snap = CallSnapshot(
        key=CallKey(pbx, linkedid),
        phase=phase,
        direction=Direction.INBOUND,
        started_at=started,
        ani=ani,
        caller_name=caller_name,
        dnis=dnis,
        anchor_channel=f"PJSIP/trunk-{linkedid}",
        anchor_uniqueid=linkedid,
        answered_at=at(answered),
        connected_at=at(connected),
        ended_at=at(ended),
        agent=agent,
        classification=classification,
    )
    return replace(snap, **changes) if changes else snap


def change(snap: CallSnapshot, kind: ChangeKind = ChangeKind.UPDATED) -> CallChange:
    return CallChange(kind, snap)
