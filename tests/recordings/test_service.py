"""The recordings service without Asterisk: pause and resume answered only on Asterisk's word, the
filing of each call's recording, and the purge.

Asterisk is stood in for by an action sink that records what it is asked and, when the test says
so, answers with the event Asterisk would publish (the real exchange is in
tests/e2e/test_recording.py); a PBX that never confirms cannot be made on cue with a real Asterisk.
The audio files are real WAVs, measured and compressed by pydub and ffmpeg.
"""

from __future__ import annotations

import asyncio
import math
import struct
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cti.bus import Bus
from cti.events import MixMonitorMuted, MixMonitorStarted, MixMonitorStopped, decode_event
from cti.model import (
    CallChange,
    CallClassification,
    CallKey,
    CallPhase,
    CallSnapshot,
    ChangeKind,
    Direction,
    RecordingChanged,
    RecordingState,
)
from cti.ports import ActionFailed, LinkDown
from cti.service import recording_changed
from recordings.policy import RECORD_ALL, RECORD_NONE, RecordingPolicy
from recordings.service import (
    FiledRecording,
    NoCall,
    NotConfirmed,
    NotRecording,
    PbxUnavailable,
    RecordingPorts,
    RecordingService,
    StoredFiles,
    purge_expired,
)

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
CHANNEL = "PJSIP/trunk-00000001"


def snap(
    linkedid: str = "1732280000.10",
    *,
    phase: CallPhase = CallPhase.TALKING,
    agent: str | None = "1001",
    connected: bool = True,
    ended: bool = False,
    customer_id: int | None = 7,
) -> CallSnapshot:
    return CallSnapshot(
        key=CallKey("pbx1", linkedid),
        phase=phase,
        direction=Direction.INBOUND,
        started_at=T0,
        ani="13800138000",
        caller_name="张伟",
        dnis="8000",
        anchor_channel=CHANNEL,
        anchor_uniqueid=linkedid,
        connected_at=T0 + timedelta(seconds=5) if connected else None,
        ended_at=T0 + timedelta(seconds=60) if ended else None,
        agent=agent,
        classification=CallClassification(
            "+8613800138000", customer_id, "张伟", "standard", False, "only", None, None, None
        ),
    )


@dataclass
class Pbx:
    """Records actions; answers MixMonitorMute with Asterisk's event when ``confirms``."""

    bus: Bus
    confirms: bool = True
    fail: Exception | None = None
    sent: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def send(self, action: str, headers: Mapping[str, str] | None = None) -> Mapping[str, str]:
        self.sent.append((action, dict(headers or {})))
        if self.fail is not None:
            raise self.fail
        if self.confirms and action == "MixMonitorMute":
            assert headers is not None
            muted = headers["State"] == "1"
            event = MixMonitorMuted(
                headers["Channel"], "u1", "1732280000.10", 6, "", "", "cti-agents", "1001", "both", muted
            )
            self.bus.publish(recording_changed("pbx1", event, T0))
        return {"Response": "Success"}


@dataclass
class Store:
    filed: list[FiledRecording] = field(default_factory=list)
    stored: list[StoredFiles] = field(default_factory=list)
    expired_before: list[datetime] = field(default_factory=list)

    async def store(self, item: FiledRecording) -> None:
        self.filed.append(item)

    async def expired(self, before: datetime) -> list[StoredFiles]:
        self.expired_before.append(before)
        return list(self.stored)

    async def delete(self, ids: list[int]) -> int:
        before = len(self.stored)
        self.stored = [s for s in self.stored if s.id not in ids]
        return before - len(self.stored)

    def ports(self) -> RecordingPorts:
        return RecordingPorts(self.store, self.expired, self.delete)


def tone_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate)))
        w.writeframes(b"".join(struct.pack("<h", s) for s in samples))


@pytest.fixture
async def running(tmp_path: Path):
    bus = Bus()
    pbx = Pbx(bus)
    store = Store()
    policy: dict[str, RecordingPolicy] = {"8000": RECORD_ALL}
    service = RecordingService(
        bus=bus,
        actions=pbx,
        ports=store.ports(),
        pbx="pbx1",
        monitor_dir=tmp_path,
        policy_for=lambda dnis: policy.get(dnis, RECORD_NONE),
        confirm_seconds=0.3,
        stop_wait_seconds=0.3,
    )
    task = asyncio.create_task(service.run())
    try:
        yield service, bus, pbx, store, tmp_path
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def started(bus: Bus, linkedid: str = "1732280000.10") -> None:
    bus.publish(RecordingChanged(CallKey("pbx1", linkedid), CHANNEL, RecordingState.ACTIVE, T0))


async def test_pause_and_resume_answer_with_the_state_asterisk_confirmed(running) -> None:
    service, bus, pbx, _, _ = running
    bus.publish(CallChange(ChangeKind.UPDATED, snap()))
    started(bus)
    await settle()
    assert await service.set_paused("1001", True) is RecordingState.PAUSED
    assert service.state_of("1001") is RecordingState.PAUSED
    assert await service.set_paused("1001", False) is RecordingState.ACTIVE
    assert pbx.sent == [
        ("MixMonitorMute", {"Channel": CHANNEL, "Direction": "both", "State": "1"}),
        ("MixMonitorMute", {"Channel": CHANNEL, "Direction": "both", "State": "0"}),
    ]


async def test_without_asterisks_event_the_pause_is_not_confirmed_and_the_state_stays_active(running) -> None:
    service, bus, pbx, _, _ = running
    pbx.confirms = False
    bus.publish(CallChange(ChangeKind.UPDATED, snap()))
    started(bus)
    await settle()
    with pytest.raises(NotConfirmed, match="did not confirm"):
        await service.set_paused("1001", True)
    assert service.state_of("1001") is RecordingState.ACTIVE
    assert not service._waiters  # nothing left waiting


async def test_a_mute_of_one_direction_is_not_a_pause() -> None:
    half = MixMonitorMuted(CHANNEL, "u1", "1.2", 6, "", "", "c", "s", "read", True)
    both = MixMonitorMuted(CHANNEL, "u1", "1.2", 6, "", "", "c", "s", "both", True)
    assert recording_changed("pbx1", half, T0).state is RecordingState.ACTIVE
    assert recording_changed("pbx1", both, T0).state is RecordingState.PAUSED
    stop = MixMonitorStopped(CHANNEL, "u1", "1.2", 6, "", "", "c", "s")
    assert recording_changed("pbx1", stop, T0).state is RecordingState.STOPPED


def test_asterisks_mixmonitor_events_are_typed() -> None:
    frame = (
        b"Event: MixMonitorMute\r\nPrivilege: call,all\r\nChannel: PJSIP/trunk-00000001\r\n"
        b"ChannelState: 6\r\nUniqueid: 1732280000.10\r\nLinkedid: 1732280000.10\r\n"
        b"Direction: both\r\nState: 1\r\n\r\n"
    )
    event = decode_event(frame)
    assert isinstance(event, MixMonitorMuted) and event.muted and event.direction == "both"
    assert event.channel == CHANNEL and event.linkedid == "1732280000.10"
    started_frame = b"Event: MixMonitorStart\r\nChannel: X\r\nUniqueid: 1.1\r\nLinkedid: 1.1\r\n\r\n"
    assert isinstance(decode_event(started_frame), MixMonitorStarted)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (None, NoCall),  # no call at all
        (snap(phase=CallPhase.RINGING_AGENT), NoCall),  # not yet talking
        (snap(agent="1002"), NoCall),  # someone else's call
    ],
)
async def test_no_call_in_a_state_that_allows_it(running, call: CallSnapshot | None, error: type) -> None:
    service, bus, pbx, _, _ = running
    if call is not None:
        bus.publish(CallChange(ChangeKind.UPDATED, call))
        started(bus)
    await settle()
    with pytest.raises(error):
        await service.set_paused("1001", True)
    assert pbx.sent == []


async def test_a_call_not_recorded_by_policy_cannot_be_paused(running) -> None:
    service, bus, pbx, _, _ = running
    bus.publish(CallChange(ChangeKind.UPDATED, CallSnapshot(**{**_fields(snap()), "dnis": "8009"})))
    await settle()
    with pytest.raises(NotRecording):
        await service.set_paused("1001", True)
    assert pbx.sent == []


async def test_a_recording_started_before_the_platform_is_paused_on_the_callers_channel(running) -> None:
    """No MixMonitorStart seen (the platform started mid-call): the policy says the dialplan records
    the caller's channel, so the platform asks Asterisk, whose event alone confirms."""
    service, bus, pbx, _, _ = running
    bus.publish(CallChange(ChangeKind.UPDATED, snap()))
    await settle()
    assert await service.set_paused("1001", True) is RecordingState.PAUSED
    assert pbx.sent == [("MixMonitorMute", {"Channel": CHANNEL, "Direction": "both", "State": "1"})]


async def test_when_asterisk_has_no_recording_on_the_channel_the_call_is_not_recorded(running) -> None:
    service, bus, pbx, _, _ = running
    pbx.fail = ActionFailed("MixMonitorMute", "Cannot set mute flag")
    bus.publish(CallChange(ChangeKind.UPDATED, snap()))
    await settle()
    with pytest.raises(NotRecording):
        await service.set_paused("1001", True)


@pytest.mark.parametrize("failure", [ActionFailed("MixMonitorMute", "No such channel"), LinkDown()])
async def test_a_pause_asterisk_could_not_take_is_unavailable(running, failure: Exception) -> None:
    service, bus, pbx, _, _ = running
    pbx.fail = failure
    bus.publish(CallChange(ChangeKind.UPDATED, snap()))
    started(bus)
    await settle()
    with pytest.raises(PbxUnavailable):
        await service.set_paused("1001", True)
    assert service.state_of("1001") is RecordingState.ACTIVE


async def test_an_ended_call_is_filed_once_measured_and_compressed(running) -> None:
    service, bus, _, store, folder = running
    tone_wav(folder / "1732280000.10.wav", 2.5)
    bus.publish(CallChange(ChangeKind.UPDATED, snap()))
    started(bus)
    await settle()
    bus.publish(RecordingChanged(CallKey("pbx1", "1732280000.10"), CHANNEL, RecordingState.STOPPED, T0))
    bus.publish(CallChange(ChangeKind.ENDED, snap(ended=True, phase=CallPhase.ENDED)))
    await settle()
    await service.drain()
    bus.publish(CallChange(ChangeKind.CLOSED, snap(ended=True, phase=CallPhase.ENDED)))  # later news
    await settle()
    await service.drain()
    (filed,) = store.filed
    assert filed.status == "ok" and filed.duration_seconds == pytest.approx(2.5, abs=0.05)
    assert filed.customer_id == 7 and filed.agent == "1001" and filed.started_at == T0 + timedelta(seconds=5)
    assert filed.file_path == str(folder / "1732280000.10.wav")
    assert filed.compressed_path == str(folder / "1732280000.10.mp3")
    assert (folder / "1732280000.10.mp3").stat().st_size > 1000


@pytest.mark.parametrize(("content", "status"), [(None, "missing"), (b"", "empty"), (b"RIFF junk", "empty")])
async def test_a_missing_or_empty_file_is_filed_as_such(running, content: bytes | None, status: str) -> None:
    service, bus, _, store, folder = running
    if content is not None:
        (folder / "1732280000.10.wav").write_bytes(content)
    # The policy records every call to 8000: a connected call without a recording is news.
    bus.publish(CallChange(ChangeKind.ENDED, snap(ended=True, phase=CallPhase.ENDED)))
    await settle()
    await service.drain()
    (filed,) = store.filed
    assert filed.status == status and filed.duration_seconds == 0 and filed.compressed_path is None
    assert (filed.file_path is None) is (status == "missing")


async def test_calls_never_connected_or_not_recorded_by_policy_file_nothing(running) -> None:
    service, bus, _, store, folder = running
    (folder / "1732280000.12.wav").write_bytes(b"")
    bus.publish(CallChange(ChangeKind.UPDATED, snap("1732280000.12", connected=False)))
    started(bus, "1732280000.12")  # recording started while waiting; never bridged
    other = snap("1732280000.14", ended=True, phase=CallPhase.ENDED)
    bus.publish(CallChange(ChangeKind.ENDED, CallSnapshot(**{**_fields(other), "dnis": "8009"})))
    await settle()
    bus.publish(CallChange(ChangeKind.ENDED, snap("1732280000.12", connected=False, ended=True)))
    await settle()
    await service.drain()
    assert store.filed == []
    assert not (folder / "1732280000.12.wav").exists()  # the empty file of a call never connected


def _fields(call: CallSnapshot) -> dict[str, object]:
    return {name: getattr(call, name) for name in CallSnapshot.__dataclass_fields__}


async def test_the_purge_deletes_files_in_the_monitor_folder_then_rows(tmp_path: Path) -> None:
    store = Store()
    inside, copy = tmp_path / "1.1.wav", tmp_path / "1.1.mp3"
    inside.write_bytes(b"x")
    copy.write_bytes(b"y")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-outside.wav"
    elsewhere.write_bytes(b"keep")
    store.stored = [
        StoredFiles(1, str(inside), str(copy)),
        StoredFiles(2, str(elsewhere), None),  # a path outside the folder is never deleted
        StoredFiles(3, str(tmp_path / "gone.wav"), None),  # already gone: no error
    ]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    result = await purge_expired(store.ports(), tmp_path, 30, now)
    assert (result.rows, result.files) == (3, 2)
    assert not inside.exists() and not copy.exists() and elsewhere.exists()
    assert store.expired_before[0] == now - timedelta(days=30)
