"""AMI ingest: our framing → typed events → call book, against panoramisk 1.4's parse-and-dispatch.

Both sides get the same bytes (a capture recorded from the sandbox Asterisk under SIPp load, with an
AMI user that reads every event class), fed in the same chunk sizes, in the same process, alternating
rounds so that machine drift hits both equally. The figure is events per second of the capture
(every event in it, used or skipped), and the ratio ours / panoramisk per round.

    .venv/bin/python benchmarks/ingest.py [CAPTURE] [--rounds 7] [--chunk 4096]

Panoramisk's side is what its ``AMIProtocol.data_received`` does for every TCP read: decode, split,
build a ``Message`` per frame, match responses, and dispatch events to a registered ``*`` callback
(here one that counts). Ours is what ``cti.ami`` and ``cti.service`` do per read: ``AmiFramer.feed``,
``decode_event`` (typed events; unused event names skipped before decoding), ``CallBook.apply``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from cti.callbook import CallBook
from cti.events import decode_event
from cti.framing import AmiFramer

DEFAULT_CAPTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "ami" / "load100.bin"


def load(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def run_ours(parts: list[bytes]) -> tuple[float, int]:
    framer = AmiFramer(max_frame_bytes=256 * 1024, max_headers=512)
    book = CallBook("pbx1")
    now = datetime(2026, 11, 22, tzinfo=UTC)
    applied = 0
    start = time.perf_counter()
    for part in parts:
        for frame in framer.feed(part):
            event = decode_event(frame)
            if event is not None:
                book.apply(event, now)
                applied += 1
    return time.perf_counter() - start, applied


class PanoramiskPeer:
    """panoramisk's protocol and Manager, wired as its own ``connect`` wires them, minus the socket."""

    def __init__(self) -> None:
        from panoramisk.manager import Manager

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.manager = Manager(loop=self.loop)
        self.seen = 0

        def on_event(manager: object, message: object) -> None:
            self.seen += 1

        self.manager.register_event("*", on_event)

    def run(self, parts: list[bytes]) -> tuple[float, int]:
        from panoramisk.ami_protocol import AMIProtocol

        class _Transport:
            def write(self, data: bytes) -> None:
                pass

            def close(self) -> None:
                pass

        self.seen = 0
        protocol = AMIProtocol()
        protocol.connection_made(_Transport())
        protocol.factory = self.manager
        start = time.perf_counter()
        for part in parts:
            protocol.data_received(part)
        return time.perf_counter() - start, self.seen

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per simulated TCP read")
    args = parser.parse_args()

    data = load(args.capture)
    events = data.count(b"\r\n\r\nEvent: ") + data.startswith(b"Event: ") + data.count(b"/1.0\r\nEvent: ")
    parts = chunks(data, args.chunk)
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    applied = dispatched = 0
    peer = PanoramiskPeer()
    for _ in range(args.rounds):
        t_theirs, dispatched = peer.run(parts)
        t_ours, applied = run_ours(parts)
        ours.append(events / t_ours)
        theirs.append(events / t_theirs)
        ratios.append(t_theirs / t_ours)
    peer.close()
    print(f"capture: {args.capture.name}, {len(data):,} bytes, {events:,} events, {args.chunk}-byte reads")
    print(
        f"panoramisk 1.4 parse+dispatch: median {statistics.median(theirs):,.0f} events/s "
        f"(min {min(theirs):,.0f}, max {max(theirs):,.0f}); dispatched {dispatched:,}"
    )
    print(
        f"ours framing+typed events+call book: median {statistics.median(ours):,.0f} events/s "
        f"(min {min(ours):,.0f}, max {max(ours):,.0f}); applied {applied:,} typed events"
    )
    print(
        f"ratio ours/panoramisk: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x) over {args.rounds} rounds"
    )


if __name__ == "__main__":
    main()
