"""Encoding AMI actions: nothing invalid is ever written, nothing is silently changed."""

from __future__ import annotations

import pytest

from cti.actions import IDEMPOTENT, NON_IDEMPOTENT, encode_action, safe_to_retry
from cti.framing import AmiFramer, parse_frame

SECRETISH = "hunter2-do-not-print"


def roundtrip(data: bytes) -> dict[str, str]:
    (frame,) = AmiFramer(max_frame_bytes=64 * 1024, max_headers=64).feed(data)
    return parse_frame(frame)


def test_encodes_action_and_action_id_first_then_headers_in_order() -> None:
    data = encode_action("Originate", {"Channel": "PJSIP/1001", "Async": "true"}, "ami-1-7")
    assert data == b"Action: Originate\r\nActionID: ami-1-7\r\nChannel: PJSIP/1001\r\nAsync: true\r\n\r\n"


def test_no_headers() -> None:
    assert encode_action("Ping", (), "ami-0-1") == b"Action: Ping\r\nActionID: ami-0-1\r\n\r\n"


def test_repeated_headers_keep_their_order() -> None:
    data = encode_action(
        "Originate",
        [("Channel", "PJSIP/1001"), ("Variable", "CUSTOMER_ID=42"), ("Variable", "CALL_REF=abc-1")],
        "ami-1-8",
    )
    assert roundtrip(data)["Variable"] == "CUSTOMER_ID=42\nCALL_REF=abc-1"


def test_chinese_value_round_trips() -> None:
    data = encode_action("UserEvent", {"UserEvent": "Screenpop", "CallerName": "张伟（VIP）"}, "ami-1-9")
    assert "张伟（VIP）".encode() in data
    assert roundtrip(data)["CallerName"] == "张伟（VIP）"


@pytest.mark.parametrize("bad", ["\r", "\n", "\x00", "x\r\nAction: Hangup", "\r\n\r\nAction: Originate"])
def test_cr_lf_nul_in_a_value_raise_naming_the_key_never_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match="'Secret'") as info:
        encode_action("Login", {"Username": "cti", "Secret": SECRETISH + bad}, "ami-0-1")
    assert SECRETISH not in str(info.value)
    assert SECRETISH not in repr(info.value)


@pytest.mark.parametrize(
    "key", ["Chan\rnel", "Chan\nnel", "Chan\x00nel", "", "1Channel", "Chan nel", "Chan:x", "通道"]
)
def test_invalid_header_names_raise(key: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        encode_action("Originate", {key: "x"}, "ami-1-1")


@pytest.mark.parametrize(
    "action", ["", "Originate\r\nAction: Hangup", "Ping\n", "1Ping", "Ping Pong", "Ping\x00"]
)
def test_invalid_action_names_raise(action: str) -> None:
    with pytest.raises(ValueError, match="action name"):
        encode_action(action, (), "ami-1-1")


@pytest.mark.parametrize("key", ["ActionID", "actionid", "ACTIONID", "Action", "action"])
def test_caller_cannot_set_action_or_action_id(key: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode_action("Ping", {key: "mine"}, "ami-1-1")


@pytest.mark.parametrize("key", ["Variable", "variable", "VARIABLE"])
def test_comma_in_a_variable_value_raises(key: str) -> None:
    with pytest.raises(ValueError, match="comma"):
        encode_action("Originate", [("Channel", "PJSIP/1001"), (key, "A=1,B=2")], "ami-1-1")


def test_comma_elsewhere_is_data() -> None:
    data = encode_action("Originate", {"Application": "Dial", "Data": "PJSIP/1001,30"}, "ami-1-1")
    assert roundtrip(data)["Data"] == "PJSIP/1001,30"


def test_non_string_value_raises_type_error() -> None:
    with pytest.raises(TypeError, match="'Timeout'"):
        encode_action("Originate", {"Timeout": 30000}, "ami-1-1")  # type: ignore[dict-item]


def test_action_id_is_validated_too() -> None:
    with pytest.raises(ValueError, match="ActionID"):
        encode_action("Ping", (), "x\r\nAction: Hangup")
    with pytest.raises(ValueError, match="ActionID"):
        encode_action("Ping", (), "")


def test_nothing_is_stripped_when_valid() -> None:
    data = encode_action("Setvar", {"Variable": "NOTE", "Value": "  spaced  \t tab"}, "ami-1-1")
    assert roundtrip(data)["Value"] == "  spaced  \t tab"


def test_idempotency_classification() -> None:
    must_not_repeat = {
        "Originate",
        "Redirect",
        "BlindTransfer",
        "Atxfer",
        "Hangup",
        "MixMonitor",
        "StopMixMonitor",
        "MixMonitorMute",
        "PauseMonitor",
        "UnpauseMonitor",
        "QueueAdd",
        "QueueRemove",
        "QueuePause",
        "QueuePenalty",
        "Setvar",
        "UserEvent",
        "PlayDTMF",
        "Bridge",
        "Park",
    }
    assert must_not_repeat <= NON_IDEMPOTENT
    assert not NON_IDEMPOTENT & IDEMPOTENT
    assert not {a.lower() for a in NON_IDEMPOTENT} & {a.lower() for a in IDEMPOTENT}
    for action in must_not_repeat:
        assert not safe_to_retry(action)
        assert not safe_to_retry(action.lower())
    for action in ("Ping", "ping", "CoreShowChannels", "Status", "QueueStatus", "Getvar"):
        assert safe_to_retry(action)
    assert not safe_to_retry("SomeFutureAction")  # unknown: treated as not repeatable
