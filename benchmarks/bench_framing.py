"""Micro-benchmark of AMI framing and parsing: frames per second on one core.

Feeds an AMI byte stream to ``cti.framing`` in 4 KiB reads, as the client receives it, and reports:

* ``frame``: cutting frames only;
* ``frame+name``: plus the ``Event:`` name of each (the call model's skip test);
* ``frame+parse``: plus a full header dict for every frame (the worst case);
* ``panoramisk``: panoramisk 1.4's parse-and-dispatch of the same bytes (``AMIProtocol.data_received``
  into a ``Manager`` with one catch-all handler), for the ratio. The full ingest benchmark, with typed
  events and the call model, lives beside this one.

Usage: ``python benchmarks/bench_framing.py [capture.bin] [--events N] [--repeat R]``. Without a
capture, a synthetic stream shaped like a busy call center (Chinese caller names included) is used.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

from cti.framing import AmiFramer, frame_event_name, parse_frame

CHUNK = 4096
NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "John Smith", "Zhang Wei"]


def synthetic_stream(events: int, seed: int = 7) -> bytes:
    """Events in the proportions a PBX produces them: many VarSet/Newexten, fewer call-state ones."""
    rng = random.Random(seed)
    out = [b"Asterisk Call Manager/9.0.0\r\n"]
    for n in range(events):
        uid = f"1700000000.{n // 12}"
        chan = f"PJSIP/trunk-{n // 12:08x}"
        name = rng.choice(NAMES)
        common = (
            f"Privilege: call,all\r\nChannel: {chan}\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n"
            f"CallerIDNum: 138{n % 100000000:08d}\r\nCallerIDName: {name}\r\nConnectedLineNum: 8001\r\n"
            f"ConnectedLineName: 客服\r\nLanguage: zh\r\nAccountCode: \r\nContext: from-trunk\r\n"
            f"Exten: 8001\r\n"
            f"Priority: 3\r\nUniqueid: {uid}\r\nLinkedid: {uid}\r\n"
        )
        kind = rng.random()
        if kind < 0.35:
            qos = "ssrc=1;themssrc=2;lp=0;rxjitter=0.000"
            body = f"Event: VarSet\r\n{common}Variable: RTPAUDIOQOS\r\nValue: {qos}\r\n"
        elif kind < 0.6:
            body = f"Event: Newexten\r\n{common}Extension: 8001\r\nApplication: Queue\r\nAppData: sales,t\r\n"
        elif kind < 0.7:
            body = f"Event: Newchannel\r\n{common}"
        elif kind < 0.8:
            body = f"Event: Newstate\r\n{common}"
        elif kind < 0.9:
            body = (
                f"Event: BridgeEnter\r\n{common}BridgeUniqueid: b-{n}\r\nBridgeType: basic\r\n"
                "BridgeTechnology: simple_bridge\r\nBridgeCreator: <unknown>\r\nBridgeName: <unknown>\r\n"
                "BridgeNumChannels: 2\r\nBridgeVideoSourceMode: none\r\n"
            )
        else:
            body = f"Event: Hangup\r\n{common}Cause: 16\r\nCause-txt: Normal Clearing\r\n"
        out.append(body.encode("utf-8") + b"\r\n")
    return b"".join(out)


def chunks_of(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def run_frame(chunks: list[bytes]) -> int:
    framer = AmiFramer(256 * 1024, 512)
    count = 0
    for chunk in chunks:
        count += len(framer.feed(chunk))
    return count


def run_name(chunks: list[bytes]) -> int:
    framer = AmiFramer(256 * 1024, 512)
    count = 0
    for chunk in chunks:
        for frame in framer.feed(chunk):
            if frame_event_name(frame) is not None:
                count += 1
    return count


def run_parse(chunks: list[bytes]) -> int:
    framer = AmiFramer(256 * 1024, 512)
    count = 0
    for chunk in chunks:
        for frame in framer.feed(chunk):
            parse_frame(frame)
            count += 1
    return count


def run_panoramisk(chunks: list[bytes]) -> int:
    import asyncio

    from panoramisk.ami_protocol import AMIProtocol
    from panoramisk.manager import Manager

    loop = asyncio.new_event_loop()
    try:
        counted = [0]

        def handler(manager: object, message: object) -> None:
            counted[0] += 1

        manager = Manager(loop=loop)
        manager.register_event("*", handler)
        protocol = AMIProtocol()
        protocol.connection_made(None)
        protocol.factory = manager
        protocol.log.disabled = True
        for chunk in chunks:
            protocol.data_received(chunk)
        return counted[0]
    finally:
        loop.close()


def measure(fn: Callable[[list[bytes]], int], chunks: list[bytes], repeat: int) -> tuple[int, float]:
    best = float("inf")
    frames = 0
    for _ in range(repeat):
        started = time.perf_counter()
        frames = fn(chunks)
        best = min(best, time.perf_counter() - started)
    return frames, frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", nargs="?", type=Path, help="a recorded AMI byte stream")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-panoramisk", action="store_true")
    args = parser.parse_args()
    stream = args.capture.read_bytes() if args.capture else synthetic_stream(args.events)
    chunks = chunks_of(stream)
    print(f"{len(stream) / 1e6:.1f} MB in {len(chunks)} reads of {CHUNK} bytes")
    results = {}
    runs: list[tuple[str, Callable[[list[bytes]], int]]] = [
        ("frame", run_frame),
        ("frame+name", run_name),
        ("frame+parse", run_parse),
    ]
    if not args.no_panoramisk:
        runs.append(("panoramisk", run_panoramisk))
    for label, fn in runs:
        frames, rate = measure(fn, chunks, args.repeat)
        results[label] = rate
        print(f"{label:12s} {frames:8d} frames  {rate:12,.0f} frames/s")
    if "panoramisk" in results:
        base = results["panoramisk"]
        print(
            "ratios to panoramisk: "
            + ", ".join(f"{k} {v / base:.1f}x" for k, v in results.items() if k != "panoramisk")
        )


if __name__ == "__main__":
    main()
