"""Replay of real AMI byte streams captured from the sandbox Asterisk (tests/data/ami).

However the bytes are cut into reads (at every offset, inside multibyte UTF-8 characters too), the
framer yields the same frames and the translator the same typed events, in the same order; and the
call book built from a whole capture ends with every call closed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cti.callbook import CallBook
from cti.events import NewChannel, decode_event
from cti.framing import AmiFramer
from cti.model import ChangeKind

DATA = Path(__file__).resolve().parent.parent / "data" / "ami"
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def frames_of(parts: list[bytes]) -> list[bytes]:
    framer = AmiFramer(max_frame_bytes=256 * 1024, max_headers=512)
    out: list[bytes] = []
    for part in parts:
        out += framer.feed(part)
    return out


@pytest.fixture(scope="module", params=["small.platform.bin", "small.bin"])
def capture(request: pytest.FixtureRequest) -> bytes:
    return (DATA / request.param).read_bytes()


def test_every_two_way_split_gives_the_same_frames(capture: bytes) -> None:
    whole = frames_of([capture])
    assert len(whole) > 50
    # Every offset of the platform's own stream; for the larger one, every offset in its first 8 KiB and
    # every offset that falls inside a multibyte UTF-8 character anywhere.
    if len(capture) < 40_000:
        offsets = range(1, len(capture))
    else:
        inside = [i for i in range(1, len(capture)) if 0x80 <= capture[i] < 0xC0]
        offsets = sorted({*range(1, 8192), *inside})
    for cut in offsets:
        assert frames_of([capture[:cut], capture[cut:]]) == whole, cut


def test_any_chunking_gives_the_same_events_in_the_same_order(capture: bytes) -> None:
    expected = [decode_event(f) for f in frames_of([capture])]
    assert any(isinstance(e, NewChannel) and e.caller_name and not e.caller_name.isascii() for e in expected)
    rng = random.Random(20261122)
    for size in (1, 2, 3, 7, 64, 1000, 4096):
        parts = [capture[i : i + size] for i in range(0, len(capture), size)]
        assert [decode_event(f) for f in frames_of(parts)] == expected, size
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(capture)), 40))
        parts = [capture[a:b] for a, b in zip([0, *cuts], [*cuts, len(capture)], strict=True)]
        assert [decode_event(f) for f in frames_of(parts)] == expected


@pytest.mark.parametrize("name", ["small.platform.bin", "small.bin", "load100.platform.bin", "load100.bin"])
def test_a_whole_capture_leaves_no_call_open(name: str) -> None:
    book = CallBook("pbx1")
    changes = []
    for frame in frames_of([(DATA / name).read_bytes()]):
        event = decode_event(frame)
        if event is not None:
            changes += book.apply(event, NOW)
    started = [c for c in changes if c.kind is ChangeKind.STARTED]
    closed = [c for c in changes if c.kind is ChangeKind.CLOSED]
    assert len(started) == len(closed) > 0
    assert {c.call.key for c in started} == {c.call.key for c in closed}
    assert len(book) == 0 and book.channel_count() == 0
    # Direct calls reached an agent; every call has its DNIS and caller number.
    assert any(c.call.agent for c in closed)
    assert all(c.call.dnis and c.call.ani for c in closed)
