"""AMI framing and parsing, table-driven, on bytes as Asterisk writes them."""

from __future__ import annotations

import random

import pytest

from cti.framing import AmiFramer, ParseStats, frame_action_id, frame_event_name, parse_frame

BANNER = b"Asterisk Call Manager/9.0.0\r\n"

FRAMES = [
    b"Response: Success\r\nActionID: ami-0-1\r\nMessage: Authentication accepted",
    b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted",
    "Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/trunk-00000001\r\nChannelState: 0\r\n"
    "CallerIDNum: 13800138000\r\nCallerIDName: 张伟\r\nAccountCode: \r\nContext: from-trunk\r\n"
    "Exten: 8001\r\nUniqueid: 1700000000.1\r\nLinkedid: 1700000000.1".encode(),
    "Event: VarSet\r\nChannel: PJSIP/trunk-00000001\r\nVariable: CALLERNAME\r\nValue: 王芳：客服部".encode(),
    "Event: Hangup\r\nChannel: PJSIP/1001-00000002\r\nChanVariable: QUEUE=销售\r\n"
    "ChanVariable: AGENT=1001\r\nCause: 16\r\nCause-txt: Normal Clearing".encode(),
    b"Response: Follows\r\nPrivilege: Command\r\nline one\nline two\n\n--END COMMAND--",
]
# Stray CRLFs between frames (seen from some Asterisk versions) must change nothing.
STREAM = (
    BANNER
    + FRAMES[0]
    + b"\r\n\r\n"
    + b"\r\n\r\n".join(FRAMES[1:3])
    + b"\r\n\r\n\r\n"
    + (b"\r\n\r\n".join(FRAMES[3:]) + b"\r\n\r\n\r\n\r\n")
)


def framer(max_frame_bytes: int = 256 * 1024, max_headers: int = 512) -> AmiFramer:
    return AmiFramer(max_frame_bytes=max_frame_bytes, max_headers=max_headers)


def feed_all(f: AmiFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(f.feed(chunk))
    return out


def test_whole_stream_gives_the_frames_and_the_banner() -> None:
    f = framer()
    assert f.feed(STREAM) == FRAMES
    assert f.banner == "Asterisk Call Manager/9.0.0"
    assert f.frames == len(FRAMES)
    assert f.buffered == 0


def test_every_split_offset_gives_identical_frames_and_parses() -> None:
    expected = [parse_frame(x) for x in FRAMES]
    for cut in range(len(STREAM) + 1):
        f = framer()
        frames = feed_all(f, [STREAM[:cut], STREAM[cut:]])
        assert frames == FRAMES, f"cut at {cut}"
        assert [parse_frame(x) for x in frames] == expected
        assert f.banner == "Asterisk Call Manager/9.0.0"


def test_random_chunkings_and_byte_by_byte_give_identical_frames() -> None:
    rng = random.Random(20261122)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 40)))
        chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
        assert feed_all(framer(), chunks) == FRAMES
    assert feed_all(framer(), [STREAM[i : i + 1] for i in range(len(STREAM))]) == FRAMES


def test_chinese_text_split_inside_a_character_survives() -> None:
    data = BANNER + FRAMES[2] + b"\r\n\r\n"
    inside = data.index("张".encode()) + 1  # between the bytes of one character
    f = framer()
    assert f.feed(data[:inside]) == []
    (frame,) = f.feed(data[inside:])
    assert parse_frame(frame)["CallerIDName"] == "张伟"


@pytest.mark.parametrize(
    ("chunks", "banner", "frames"),
    [
        ([b"Asterisk Call Manager/11.0.0\r\n"], "Asterisk Call Manager/11.0.0", []),
        (
            [b"Aster", b"isk Call Man", b"ager/2.10.4\r", b"\nEvent: A\r\n\r\n"],
            "Asterisk Call Manager/2.10.4",
            [b"Event: A"],
        ),
        ([b"Response: Success\r\nActionID: 1\r\n\r\n"], None, [b"Response: Success\r\nActionID: 1"]),
        (
            [b"Asterisk Call Manager/9.0.0\n", b"Event: B\r\n\r\n"],
            "Asterisk Call Manager/9.0.0",
            [b"Event: B"],
        ),
    ],
    ids=["banner-alone", "banner-cut", "no-banner", "banner-bare-lf"],
)
def test_banner(chunks: list[bytes], banner: str | None, frames: list[bytes]) -> None:
    f = framer()
    assert feed_all(f, chunks) == frames
    assert f.banner == banner
    assert not f.awaiting_banner


def test_reset_forgets_the_partial_frame_and_the_banner_but_keeps_counters() -> None:
    f = framer()
    f.feed(BANNER + b"Event: A\r\n\r\nEvent: part")
    f.reset()
    assert f.buffered == 0
    assert f.banner is None
    assert f.awaiting_banner
    assert f.feed(b"Asterisk Call Manager/9.1.0\r\nEvent: B\r\n\r\n") == [b"Event: B"]
    assert f.banner == "Asterisk Call Manager/9.1.0"
    assert f.frames == 2


def test_empty_frames_are_ignored() -> None:
    f = framer()
    assert f.feed(BANNER + b"\r\n\r\n\r\n\r\n\r\n") == []
    assert f.feed(b"\r\n\r\nEvent: A\r\n\r\n") == [b"Event: A"]
    assert f.frames == 1


def test_bare_lf_is_data_not_a_terminator() -> None:
    f = framer()
    assert f.feed(b"Event: A\nB: c\n\nEvent: D\r\n\r\n") == [b"Event: A\nB: c\n\nEvent: D"]


def test_unterminated_flood_stays_bounded_and_the_next_frame_survives() -> None:
    cap = 1024
    f = framer(max_frame_bytes=cap)
    assert f.feed(BANNER + b"Event: Huge\r\nData: ") == []
    chunk = b"x" * 4096
    for _ in range(10 * 1024 * 1024 // len(chunk)):
        assert f.feed(chunk) == []
        assert f.buffered <= cap + 3
    assert f.oversized == 1
    assert f.feed(b"tail\r\n\r\nEvent: After\r\n\r\n") == [b"Event: After"]
    assert f.oversized == 1
    assert f.frames == 1


def test_oversized_frame_within_one_read_is_dropped_between_good_ones() -> None:
    f = framer(max_frame_bytes=1024)
    big = b"Event: Big\r\nData: " + b"y" * 2000
    assert f.feed(b"Event: A\r\n\r\n" + big + b"\r\n\r\nEvent: B\r\n\r\n") == [b"Event: A", b"Event: B"]
    assert f.oversized == 1


def test_a_frame_of_exactly_the_cap_is_kept_however_it_is_cut() -> None:
    cap = 1024
    exact = b"Event: Edge\r\nData: " + b"z" * (cap - 19)
    assert len(exact) == cap
    data = exact + b"\r\n\r\nEvent: Next\r\n\r\n"
    for cut in range(cap - 8, len(data) + 1):
        f = framer(max_frame_bytes=cap)
        assert feed_all(f, [data[:cut], data[cut:]]) == [exact, b"Event: Next"], cut
        assert f.oversized == 0
    f = framer(max_frame_bytes=cap)
    assert feed_all(f, [exact + b"!", b"\r\n\r\nEvent: Next\r\n\r\n"]) == [b"Event: Next"]
    assert f.oversized == 1


def test_terminator_split_across_reads_while_discarding() -> None:
    f = framer(max_frame_bytes=1024)
    f.feed(b"Event: Huge\r\nData: " + b"x" * 5000 + b"\r\n")
    assert f.feed(b"\r") == []
    assert f.feed(b"\nEvent: Ok\r\n\r\n") == [b"Event: Ok"]
    assert f.oversized == 1


def test_too_many_headers_are_dropped_and_counted() -> None:
    f = framer(max_headers=8)
    ok = b"\r\n".join(b"K%d: v" % i for i in range(8))
    too_many = b"\r\n".join(b"K%d: v" % i for i in range(9))
    tiny_lines = b"\r\n".join(b"a" for _ in range(9))  # the shortest frame with 9 lines
    stream = ok + b"\r\n\r\n" + too_many + b"\r\n\r\n" + tiny_lines + b"\r\n\r\nEvent: Z\r\n\r\n"
    assert f.feed(stream) == [ok, b"Event: Z"]
    assert f.too_many_headers == 2


def test_constructor_rejects_nonsense_caps() -> None:
    with pytest.raises(ValueError):
        AmiFramer(max_frame_bytes=2, max_headers=8)
    with pytest.raises(ValueError):
        AmiFramer(max_frame_bytes=1024, max_headers=0)


# ---------------------------------------------------------------------------------------- parse_frame


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        (b"Event: A\r\nAccountCode: \r\nB: 1", {"Event": "A", "AccountCode": "", "B": "1"}),
        (b"Event: A\r\nAccountCode:", {"Event": "A", "AccountCode": ""}),
        (b"Event: A\r\nKey:value", {"Event": "A", "Key": "value"}),
        (b"Event: A\r\nKey:  two", {"Event": "A", "Key": " two"}),
        (b"Event: A\r\nAppData: Dial: PJSIP/1001,30", {"Event": "A", "AppData": "Dial: PJSIP/1001,30"}),
        (b"Event: A\r\nKey:a: b", {"Event": "A", "Key": "a: b"}),  # first colon, not first ": "
        (
            "Event: Hangup\r\nChanVariable: Q=销售\r\nChanVariable: AGENT=1001\r\nChanVariable: X=".encode(),
            {"Event": "Hangup", "ChanVariable": "Q=销售\nAGENT=1001\nX="},
        ),
        (
            b"Response: Success\r\nOutput: line 1\r\nOutput: \r\nOutput: line 3",
            {"Response": "Success", "Output": "line 1\n\nline 3"},
        ),
        (b"Response: Follows\r\nline one\nline two", {"Response": "Follows"}),
        (b"Event: A\r\nValue: a\nb", {"Event": "A", "Value": "a\nb"}),
    ],
)
def test_parse_frame(raw: bytes, fields: dict[str, str]) -> None:
    assert parse_frame(raw) == fields


def test_malformed_lines_are_skipped_and_counted() -> None:
    stats = ParseStats()
    assert parse_frame(b"Event: A\r\nno colon here\r\nB: 2\r\n\r\n", stats) == {"Event": "A", "B": "2"}
    assert stats.malformed_lines == 1  # the empty line (stray CRLF) is not malformed


def test_invalid_utf8_is_replaced_never_dropped_and_counted() -> None:
    stats = ParseStats()
    fields = parse_frame(b"Event: A\r\nCallerIDName: \xe5\xbc\r\nB: \xff", stats)
    assert fields == {"Event": "A", "CallerIDName": "\ufffd", "B": "\ufffd"}
    assert stats.invalid_utf8_frames == 1
    parse_frame("Event: A\r\nName: 张伟".encode(), stats)
    assert stats.invalid_utf8_frames == 1


# --------------------------------------------------------------------------------- fast-path helpers


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"Event: Newchannel\r\nChannel: x", b"Newchannel"),
        (b"Event: FullyBooted", b"FullyBooted"),
        (b"Response: Success\r\nEvent: Nope", None),
        (b"event: lowercase", None),
    ],
)
def test_frame_event_name(raw: bytes, name: bytes | None) -> None:
    assert frame_event_name(raw) == name


@pytest.mark.parametrize(
    ("raw", "action_id"),
    [
        (b"Response: Success\r\nActionID: ami-1-7\r\nPing: Pong", b"ami-1-7"),
        (b"ActionID: first\r\nResponse: Success", b"first"),
        (b"Event: CoreShowChannel\r\nActionID: ami-1-9", b"ami-1-9"),
        (b"Event: Hangup\r\nChanVariable: ActionID: fake\r\nCause: 16", None),
        (b"Event: Hangup\r\nCause: 16", None),
    ],
)
def test_frame_action_id(raw: bytes, action_id: bytes | None) -> None:
    assert frame_action_id(raw) == action_id
