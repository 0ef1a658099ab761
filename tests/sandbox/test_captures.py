"""The committed AMI captures (tests/data/ami) are what their JSON says, and what replay tests expect."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.support.sandbox import parse_messages

DATA = Path(__file__).resolve().parent.parent / "data" / "ami"
REPORTS = sorted(DATA.glob("*.json"))


def _read(name: str) -> bytes:
    raw = (DATA / name).read_bytes()
    return gzip.decompress(raw) if name.endswith(".gz") else raw


def test_captures_exist() -> None:
    assert {p.stem for p in REPORTS} >= {"small", "load100"}
    assert (DATA / "small.bin").stat().st_size < 200_000


@pytest.mark.parametrize("report_path", REPORTS, ids=lambda p: p.stem)
def test_capture_matches_its_report(report_path: Path) -> None:
    report = json.loads(report_path.read_text(encoding="utf-8"))
    for who, file_key in (("capture_user", "capture"), ("platform_user", "platform")):
        raw = _read(report["files"][file_key])
        assert raw.startswith(b"Asterisk Call Manager/")
        raw.decode("utf-8")  # the whole stream is valid UTF-8
        figures = report[who]
        assert len(raw) == figures["bytes"]
        events = [m for m in parse_messages(raw) if "Event" in m]
        assert len(events) == figures["events"]
        by_class = Counter(m["Privilege"].split(",")[0] for m in events)
        assert dict(by_class) == {cls: row["events"] for cls, row in figures["by_class"].items()}
        callers = {
            m["Linkedid"]
            for m in events
            if m["Event"] == "Newchannel" and m["Channel"].startswith("PJSIP/trunk-")
        }
        assert len(callers) == figures["calls"] == report["load"]["calls"]


@pytest.mark.parametrize("report_path", REPORTS, ids=lambda p: p.stem)
def test_platform_stream_is_the_least_privilege_view(report_path: Path) -> None:
    report = json.loads(report_path.read_text(encoding="utf-8"))
    events = [m for m in parse_messages(_read(report["files"]["platform"])) if "Event" in m]
    classes = {m["Privilege"].split(",")[0] for m in events}
    assert classes <= {"system", "call", "agent", "user", "dtmf"}
    names = {m["Event"] for m in events}
    assert names.isdisjoint({"VarSet", "Newexten", "RTCPSent", "RTCPReceived", "TestEvent", "DTMFBegin"})
    chinese = {m["CallerIDName"] for m in events if m["Event"] == "Newchannel"} & {
        "张伟",
        "王芳",
        "欧阳娜娜",
        "李娜",
    }
    assert chinese, "the capture should carry Chinese caller names"
