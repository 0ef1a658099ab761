"""Call snapshots to and from plain JSON-ready dicts: for spool files and shared live state.

Pure. ``snapshot_from_dict(snapshot_to_dict(s)) == s`` for every snapshot; a dict that is not one we
wrote raises ``ValueError`` (never a half-built snapshot).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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

FORMAT = 1


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"a naive time in a snapshot: {value!r}")
    return parsed


def snapshot_to_dict(snap: CallSnapshot) -> dict[str, Any]:
    cls = snap.classification
    return {
        "format": FORMAT,
        "pbx": snap.key.pbx,
        "linkedid": snap.key.linkedid,
        "phase": snap.phase.value,
        "direction": snap.direction.value,
        "started_at": _time(snap.started_at),
        "ani": snap.ani,
        "caller_name": snap.caller_name,
        "dnis": snap.dnis,
        "anchor_channel": snap.anchor_channel,
        "anchor_uniqueid": snap.anchor_uniqueid,
        "answered_at": _time(snap.answered_at),
        "connected_at": _time(snap.connected_at),
        "ended_at": _time(snap.ended_at),
        "agent": snap.agent,
        "hangup_cause": snap.hangup_cause,
        "hangup_cause_txt": snap.hangup_cause_txt,
        "end_reason": None if snap.end_reason is None else snap.end_reason.value,
        "classification": None
        if cls is None
        else {
            "ani_e164": cls.ani_e164,
            "customer_id": cls.customer_id,
            "customer_name": cls.customer_name,
            "customer_tier": cls.customer_tier,
            "new_contact": cls.new_contact,
            "customer_match": cls.customer_match,
            "service_id": cls.service_id,
            "service_name": cls.service_name,
            "language": cls.language,
            "required_skills": list(cls.required_skills),
        },
        "channels": list(snap.channels),
        "history": [[m.phase.value, _time(m.at)] for m in snap.history],
        "ivr": None
        if snap.ivr is None
        else {
            "path": list(snap.ivr.path),
            "inputs": [list(i) for i in snap.ivr.inputs],
            "language": snap.ivr.language,
            "outcome": snap.ivr.outcome,
        },
        "routing": None
        if snap.routing is None
        else {
            "service": snap.routing.service,
            "skills": [[n.skill, n.min_level, n.optional] for n in snap.routing.skills],
            "language": snap.routing.language,
            "priority": snap.routing.priority,
            "reason": snap.routing.reason,
        },
    }


def snapshot_from_dict(data: dict[str, Any]) -> CallSnapshot:
    try:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown snapshot format {data.get('format')!r}")
        cls = data["classification"]
        started = _parse_time(data["started_at"])
        if started is None:
            raise ValueError("a snapshot without a start time")
        return CallSnapshot(
            key=CallKey(str(data["pbx"]), str(data["linkedid"])),
            phase=CallPhase(data["phase"]),
            direction=Direction(data["direction"]),
            started_at=started,
            ani=str(data["ani"]),
            caller_name=str(data["caller_name"]),
            dnis=str(data["dnis"]),
            anchor_channel=str(data["anchor_channel"]),
            anchor_uniqueid=str(data["anchor_uniqueid"]),
            answered_at=_parse_time(data["answered_at"]),
            connected_at=_parse_time(data["connected_at"]),
            ended_at=_parse_time(data["ended_at"]),
            agent=data["agent"],
            hangup_cause=data["hangup_cause"],
            hangup_cause_txt=data["hangup_cause_txt"],
            end_reason=None if data["end_reason"] is None else EndReason(data["end_reason"]),
            classification=None
            if cls is None
            else CallClassification(
                ani_e164=cls["ani_e164"],
                customer_id=cls["customer_id"],
                customer_name=cls["customer_name"],
                customer_tier=cls["customer_tier"],
                new_contact=bool(cls["new_contact"]),
                customer_match=str(cls["customer_match"]),
                service_id=cls["service_id"],
                service_name=cls["service_name"],
                language=cls["language"],
                required_skills=tuple(cls["required_skills"]),
            ),
            channels=tuple(data["channels"]),
            history=tuple(PhaseMark(CallPhase(p), at) for p, t in data["history"] if (at := _parse_time(t))),
            ivr=_ivr(data.get("ivr")),
            routing=_routing(data.get("routing")),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a call snapshot: {exc}") from exc


def _ivr(data: Any) -> IvrRecord | None:
    if data is None:
        return None
    return IvrRecord(
        path=tuple(str(p) for p in data["path"]),
        inputs=tuple((str(k), str(v)) for k, v in data["inputs"]),
        language=data["language"],
        outcome=str(data["outcome"]),
    )


def _routing(data: Any) -> RoutingRequest | None:
    if data is None:
        return None
    return RoutingRequest(
        service=data["service"],
        skills=tuple(SkillNeed(str(s), int(level), bool(opt)) for s, level, opt in data["skills"]),
        language=data["language"],
        priority=int(data["priority"]),
        reason=str(data["reason"]),
    )
