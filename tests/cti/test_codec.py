"""Call snapshots survive a round trip through the JSON-ready dicts of ``cti.codec``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cti.codec import snapshot_from_dict, snapshot_to_dict
from cti.model import (
    CallClassification,
    CallKey,
    CallPhase,
    CallSnapshot,
    Direction,
    EndReason,
    IvrRecord,
    PhaseMark,
    RoutingRequest,
    SkillNeed,
)

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
BARE = CallSnapshot(
    key=CallKey("pbx1", "1.1"),
    phase=CallPhase.ARRIVING,
    direction=Direction.INBOUND,
    started_at=T0,
    ani="+8613800138000",
    caller_name="张伟",
    dnis="8001",
    anchor_channel="PJSIP/trunk-1",
    anchor_uniqueid="1.1",
)
FULL = CallSnapshot(
    key=CallKey("pbx1", "1.2"),
    phase=CallPhase.ENDED,
    direction=Direction.INBOUND,
    started_at=T0,
    ani="abc",
    caller_name="<script>'; DROP",
    dnis="8002",
    anchor_channel="PJSIP/trunk-2",
    anchor_uniqueid="1.2",
    answered_at=T0 + timedelta(seconds=1),
    connected_at=T0 + timedelta(seconds=5),
    ended_at=T0 + timedelta(seconds=65),
    agent="1001",
    hangup_cause=16,
    hangup_cause_txt="Normal Clearing",
    end_reason=EndReason.HANGUP,
    classification=CallClassification(
        ani_e164=None,
        customer_id=3,
        customer_name="李娜",
        customer_tier="gold",
        new_contact=False,
        customer_match="unique",
        service_id=2,
        service_name="sales",
        language="zh-CN",
        required_skills=("mandarin",),
    ),
    channels=("PJSIP/trunk-2", "PJSIP/1001-3"),
    history=(PhaseMark(CallPhase.ARRIVING, T0), PhaseMark(CallPhase.ENDED, T0 + timedelta(seconds=65))),
    ivr=IvrRecord(
        path=("welcome", "menu"), inputs=(("menu", "2"), ("pin", "****")), language="zh-CN", outcome="route"
    ),
    routing=RoutingRequest(
        service="support",
        skills=(SkillNeed("mandarin", 5), SkillNeed("billing", 3, True)),
        language="zh-CN",
        priority=2,
        reason="vip",
    ),
)


@pytest.mark.parametrize("snap", [BARE, FULL], ids=["bare", "full"])
def test_round_trip_through_json(snap: CallSnapshot) -> None:
    text = json.dumps(snapshot_to_dict(snap), ensure_ascii=False)
    assert snapshot_from_dict(json.loads(text)) == snap


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"format": 99},
        {**snapshot_to_dict(BARE), "phase": "dancing"},
        {**snapshot_to_dict(BARE), "started_at": "2026-11-22T09:00:00"},
        {k: v for k, v in snapshot_to_dict(BARE).items() if k != "ani"},
    ],
)
def test_anything_else_is_a_clear_error(broken: dict) -> None:
    with pytest.raises(ValueError):
        snapshot_from_dict(broken)
