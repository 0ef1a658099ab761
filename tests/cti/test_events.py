"""Translation of AMI frames into typed events, table-driven."""

from __future__ import annotations

import pytest

from cti.events import (
    BridgeEntered,
    ChannelListed,
    DialEnded,
    HungUp,
    NewChannel,
    UserEventRaised,
    decode_event,
    translate,
)


def frame(**headers: str) -> bytes:
    return "\r\n".join(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()).encode()


CHANNEL = {
    "Channel": "PJSIP/trunk-00000001",
    "ChannelState": "4",
    "CallerIDNum": "13800138000",
    "CallerIDName": "张伟",
    "Context": "from-trunk",
    "Exten": "8001",
    "Uniqueid": "1.1",
    "Linkedid": "1.1",
}


def ev(name: str, **extra: str) -> bytes:
    headers = {"Event": name, "Privilege": "call,all", **CHANNEL, **extra}
    return "\r\n".join(f"{k}: {v}" for k, v in headers.items()).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            ev("Newchannel"),
            NewChannel("PJSIP/trunk-00000001", "1.1", "1.1", 4, "13800138000", "张伟", "from-trunk", "8001"),
        ),
        (
            ev("Hangup", Cause="16", **{"Cause-txt": "Normal Clearing"}),
            HungUp(
                "PJSIP/trunk-00000001",
                "1.1",
                "1.1",
                4,
                "13800138000",
                "张伟",
                "from-trunk",
                "8001",
                16,
                "Normal Clearing",
            ),
        ),
        (
            ev("Hangup", Cause="junk"),
            HungUp(
                "PJSIP/trunk-00000001", "1.1", "1.1", 4, "13800138000", "张伟", "from-trunk", "8001", 0, ""
            ),
        ),
        (
            ev(
                "DialEnd",
                DestChannel="PJSIP/1001-2",
                DestUniqueid="1.2",
                DestLinkedid="1.1",
                DialStatus="CANCEL",
            ),
            DialEnded(
                "PJSIP/trunk-00000001",
                "1.1",
                "1.1",
                4,
                "13800138000",
                "张伟",
                "from-trunk",
                "8001",
                "PJSIP/1001-2",
                "1.2",
                "1.1",
                "CANCEL",
            ),
        ),
        (
            ev("BridgeEnter", BridgeUniqueid="b-1", SwapUniqueid="1.3"),
            BridgeEntered(
                "PJSIP/trunk-00000001",
                "1.1",
                "1.1",
                4,
                "13800138000",
                "张伟",
                "from-trunk",
                "8001",
                "b-1",
                "1.3",
            ),
        ),
        (
            ev("CoreShowChannel", BridgeId="b-1", Application="Wait", Duration="01:02:03"),
            ChannelListed(
                "PJSIP/trunk-00000001",
                "1.1",
                "1.1",
                4,
                "13800138000",
                "张伟",
                "from-trunk",
                "8001",
                "b-1",
                "Wait",
                3723,
            ),
        ),
    ],
)
def test_frames_become_typed_events(raw: bytes, expected: object) -> None:
    assert decode_event(raw) == expected


def test_user_event_keeps_only_its_own_fields_in_order() -> None:
    event = decode_event(ev("UserEvent", UserEvent="CallArrived", DNIS="8001", Direction="inbound"))
    assert isinstance(event, UserEventRaised)
    assert event.name == "CallArrived"
    assert event.fields == (("DNIS", "8001"), ("Direction", "inbound"))
    assert event.get("DNIS") == "8001" and event.get("missing", "x") == "x"


@pytest.mark.parametrize(
    ("on_the_wire", "name"),
    [
        ("O\\'Brien\\?", "O'Brien?"),
        ('Say \\"hi\\"', 'Say "hi"'),
        ("back\\\\slash", "back\\slash"),
        ("trailing\\", "trailing\\"),
        ("<unknown>", ""),
        ("李\\'娜", "李'娜"),
    ],
)
def test_caller_names_are_unescaped(on_the_wire: str, name: str) -> None:
    event = decode_event(ev("Newchannel", CallerIDName=on_the_wire))
    assert isinstance(event, NewChannel)
    assert event.caller_name == name


@pytest.mark.parametrize(
    "raw",
    [b"Event: VarSet\r\nVariable: x", b"Response: Success\r\nActionID: 1", b"", b"Event: ", b"garbage"],
)
def test_unused_or_non_events_are_skipped(raw: bytes) -> None:
    assert decode_event(raw) is None


def test_translate_reads_parsed_list_items() -> None:
    item = translate({"Event": "CoreShowChannel", **CHANNEL, "Duration": "bad"})
    assert isinstance(item, ChannelListed) and item.duration_seconds == 0
    assert translate({"Event": "Nope"}) is None
