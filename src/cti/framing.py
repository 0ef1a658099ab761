"""AMI framing and header parsing, sans-IO.

Asterisk's manager interface is a stream of frames: header lines ``Key: Value`` separated by CRLF, a
frame ended by an empty line (``\\r\\n\\r\\n``), preceded once per connection by the banner line
``Asterisk Call Manager/X.Y.Z\\r\\n``. This module cuts that stream into frames and parses them, with no
I/O, so the AMI client, recorded-stream replays and benchmarks share exactly the same code.

Contracts:

* Frames are cut on bytes and decoded only when complete, so a multibyte UTF-8 character split across
  two TCP reads is never damaged.
* Memory is bounded: a frame longer than ``max_frame_bytes`` is discarded (and everything up to its
  terminator), counted, and never buffered beyond the cap (plus the three bytes that may begin a
  terminator, so that a frame of exactly ``max_frame_bytes`` is kept however the stream is cut).
* Work is linear in the bytes fed: each byte is searched for a terminator once (plus three bytes of
  overlap per feed), never re-scanned while a long frame accumulates.
* Only CRLF CRLF ends a frame. Asterisk always writes CRLF; a bare LF is data, not a separator, because
  Asterisk's own ``Command`` output (``Response: Follows`` before Asterisk 14) carries blank lines made
  of bare LFs inside one frame. Stray CRLFs between frames are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINATOR = b"\r\n\r\n"
BANNER_PREFIX = b"Asterisk Call Manager/"

_EVENT_PREFIX = b"Event: "
_ACTION_ID_MARK = b"\r\nActionID: "
_ACTION_ID_FIRST = b"ActionID: "


class AmiFramer:
    """Cuts an AMI byte stream into frames.

    ``feed(data)`` returns the complete frames found so far, each without its terminator and without
    leading stray CRLFs; empty frames are never returned. Counters (cumulative, also across
    ``reset()``): ``frames``, ``oversized`` (frames discarded for exceeding ``max_frame_bytes``),
    ``too_many_headers`` (frames discarded for having more than ``max_headers`` lines).
    """

    __slots__ = (
        "_buf",
        "_discarding",
        "_expect_banner",
        "banner",
        "frames",
        "max_frame_bytes",
        "max_headers",
        "oversized",
        "too_many_headers",
    )

    def __init__(self, max_frame_bytes: int, max_headers: int) -> None:
        if max_frame_bytes < len(TERMINATOR) or max_headers < 1:
            raise ValueError("max_frame_bytes must be at least 4 and max_headers at least 1")
        self.max_frame_bytes = max_frame_bytes
        self.max_headers = max_headers
        self._buf = bytearray()
        self._discarding = False
        self._expect_banner = True
        self.banner: str | None = None
        self.frames = 0
        self.oversized = 0
        self.too_many_headers = 0

    def reset(self) -> None:
        """Forget buffered bytes and the banner, for a new connection; the counters are kept."""
        self._buf.clear()
        self._discarding = False
        self._expect_banner = True
        self.banner = None

    @property
    def awaiting_banner(self) -> bool:
        """True until the banner line has been read (or the stream turned out not to start with one)."""
        return self._expect_banner

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame: at most ``max_frame_bytes + 3`` between feeds."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the stream; return the frames they complete, in order."""
        buf = self._buf
        # Where the search for a terminator resumes: the old bytes were already searched, except
        # the last three, which may begin a terminator completed by ``data``.
        start = len(buf) - 3 if len(buf) > 3 else 0
        buf += data
        if self._expect_banner:
            if not self._take_banner():
                return []
            start = 0
        if self._discarding:
            pos = buf.find(TERMINATOR, start)
            if pos < 0:
                # Keep only what could begin a terminator, so the discard costs no memory.
                del buf[:-3]
                return []
            del buf[: pos + 4]
            self._discarding = False
            start = 0
        pos = buf.find(TERMINATOR, start)
        if pos < 0:
            if len(buf) > self.max_frame_bytes + 3:
                self._start_discard()
            return []
        chunk = bytes(buf)
        buf.clear()
        # The first frame ends at ``pos``; the rest has not been searched yet, so splitting it
        # searches every byte once.
        parts = chunk[pos + 4 :].split(TERMINATOR)
        tail = parts.pop()
        parts.insert(0, chunk[:pos])
        frames = self._accept(parts)
        if tail:
            buf += tail
            if len(buf) > self.max_frame_bytes + 3:
                self._start_discard()
        return frames

    def _accept(self, parts: list[bytes]) -> list[bytes]:
        max_bytes = self.max_frame_bytes
        # A frame of n lines has at least 3n - 2 bytes (each line one byte or more, CRLF between),
        # so only frames this long can have too many lines and need counting.
        count_from = 3 * self.max_headers + 1
        frames: list[bytes] = []
        for part in parts:
            if part[:2] == b"\r\n":
                part = part.lstrip(b"\r\n")
            if not part:
                continue
            size = len(part)
            if size > max_bytes:
                self.oversized += 1
                continue
            if size >= count_from and part.count(b"\r\n") >= self.max_headers:
                self.too_many_headers += 1
                continue
            frames.append(part)
        self.frames += len(frames)
        return frames

    def _start_discard(self) -> None:
        self.oversized += 1
        self._discarding = True
        del self._buf[:-3]

    def _take_banner(self) -> bool:
        """Consume the banner line if the stream starts with one; False while more bytes are needed."""
        buf = self._buf
        if not buf.startswith(BANNER_PREFIX[: len(buf)]):
            self._expect_banner = False  # not an Asterisk banner: frame from the first byte
            return True
        if len(buf) < len(BANNER_PREFIX):
            return False
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > self.max_frame_bytes:
                self._expect_banner = False
                self._start_discard()
            return False
        self.banner = bytes(buf[:end]).rstrip(b"\r").decode("utf-8", "replace")
        del buf[: end + 1]
        self._expect_banner = False
        return True


@dataclass(slots=True)
class ParseStats:
    """What ``parse_frame`` had to tolerate: lines without a colon, frames that were not valid UTF-8."""

    malformed_lines: int = 0
    invalid_utf8_frames: int = 0


def parse_frame(frame: bytes, stats: ParseStats | None = None) -> dict[str, str]:
    """The headers of one frame as a dict.

    UTF-8 is decoded with replacement (a bad byte never loses the frame). Each line is split at its
    first colon and one leading space is stripped from the value (``AccountCode: `` gives ``""``).
    Lines without a colon are skipped and counted in ``stats``. Repeated keys (``ChanVariable``,
    ``Output``) are joined with ``\\n`` in the order received. Keys are kept as Asterisk spelled them.
    """
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError:
        text = frame.decode("utf-8", "replace")
        if stats is not None:
            stats.invalid_utf8_frames += 1
    lines = text.split("\r\n")
    # Fast path for what Asterisk writes (``Key: Value``, each key once): one C-level pass per step.
    # It is taken only when provably equal to the general rule: every line split in two, no key
    # repeated, no colon in a key (which would mean the first colon was not followed by a space).
    try:
        fields = dict([line.split(": ", 1) for line in lines])
    except ValueError:
        return _parse_lines(lines, stats)
    if len(fields) != len(lines) or ":" in "".join(fields):
        return _parse_lines(lines, stats)
    return fields


def _parse_lines(lines: list[str], stats: ParseStats | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        key, colon, value = line.partition(":")
        if not colon:
            if line and stats is not None:
                stats.malformed_lines += 1
            continue
        if value[:1] == " ":
            value = value[1:]
        if key in fields:
            fields[key] = f"{fields[key]}\n{value}"
        else:
            fields[key] = value
    return fields


def frame_event_name(frame: bytes) -> bytes | None:
    """The raw value of a leading ``Event: `` line, or None if the frame does not start with one.

    No decoding, so a consumer can skip the events it does not use for the cost of a slice.
    """
    if not frame.startswith(_EVENT_PREFIX):
        return None
    end = frame.find(b"\r\n", 7)
    return frame[7:] if end < 0 else frame[7:end]


def frame_action_id(frame: bytes) -> bytes | None:
    """The raw value of the frame's ``ActionID`` line, or None; no decoding.

    Only a line that starts with ``ActionID: `` counts (values cannot contain CRLF, so the text
    ``ActionID: `` inside another header's value is never mistaken for it).
    """
    if frame.startswith(_ACTION_ID_FIRST):
        start = len(_ACTION_ID_FIRST)
    else:
        pos = frame.find(_ACTION_ID_MARK)
        if pos < 0:
            return None
        start = pos + len(_ACTION_ID_MARK)
    end = frame.find(b"\r\n", start)
    return frame[start:] if end < 0 else frame[start:end]
