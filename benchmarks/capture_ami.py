"""Record real AMI byte streams from the sandbox PBX under a SIPp call load, for replay tests and the
AMI ingest benchmark.

Two AMI sessions record at once: the capture user (reads every event class) and the platform's own
user (least privilege, with its event filters): ``<name>.bin`` and ``<name>.platform.bin``, the exact
bytes each received from the banner on. ``<name>.json`` gives the event and byte counts by class (the
first class of the Privilege header), by event name and per call.

The load is a mix of "hold" calls (the caller hears music on hold and hangs up after --hold-ms) and
"direct" calls (Asterisk rings an auto-answering SIPp agent phone, which talks --talk-ms then hangs
up), callers' names taken in turn from a list with Chinese names.

Run as root from the repository root, against a running instance, or with --up to start (and then
stop) the tests' ``test`` instance (SIP 15060, AMI 15038, agent phone 15071):

    .venv/bin/python benchmarks/capture_ami.py --up --name small --calls 5 --concurrency 5
    .venv/bin/python benchmarks/capture_ami.py --up --name load100 --calls 100 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.sandbox import AmiRecorder, parse_messages, render_for, sandbox_test_settings  # noqa: E402
from tests.support.sipp import Caller, start_agent_phone, start_callers  # noqa: E402

CALLERS = (
    Caller("张伟", "13800138001"),
    Caller("Alice Smith", "15551230001"),
    Caller("王芳", "13900139002"),
    Caller("李娜", "13700137003"),
    Caller("Bob Jones", "15551230002"),
    Caller("刘洋", "13600136004"),
    Caller("陈静", "13500135005"),
    Caller("María José", "34600600006"),
    Caller("欧阳娜娜", "13300133007"),
    Caller("Chen Wei", "8613200132008"),
)


def figures(raw: bytes) -> dict[str, Any]:
    """Counts and bytes by event class, by event name, and per call."""
    by_class: dict[str, Counter[str]] = defaultdict(Counter)
    by_event: dict[str, Counter[str]] = defaultdict(Counter)
    other = Counter[str]()
    calls: set[str] = set()
    chunks = raw.split(b"\r\n\r\n")
    for chunk in chunks:
        if not chunk.strip():
            continue
        size = len(chunk) + 4
        (message,) = parse_messages(chunk) or [{}]
        name = message.get("Event")
        if name is None:
            other["messages"] += 1
            other["bytes"] += size
            continue
        cls = message.get("Privilege", "none").split(",")[0]
        by_class[cls]["events"] += 1
        by_class[cls]["bytes"] += size
        by_event[name]["events"] += 1
        by_event[name]["bytes"] += size
        if name == "Newchannel" and message.get("Channel", "").startswith("PJSIP/trunk-"):
            calls.add(message["Linkedid"])
    events = sum(c["events"] for c in by_class.values())
    event_bytes = sum(c["bytes"] for c in by_class.values())
    n = max(1, len(calls))

    def table(counts: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
        rows = sorted(counts.items(), key=lambda kv: (-kv[1]["bytes"], kv[0]))
        return {k: {"events": v["events"], "bytes": v["bytes"]} for k, v in rows}

    return {
        "bytes": len(raw),
        "events": events,
        "event_bytes": event_bytes,
        "other_messages": dict(other),
        "calls": len(calls),
        "events_per_call": round(events / n, 1),
        "bytes_per_call": round(event_bytes / n),
        "by_class": table(by_class),
        "by_event": table(by_event),
    }


def write_stream(path: Path, raw: bytes, gzip_over: int) -> Path:
    if len(raw) > gzip_over:
        target = path.with_name(path.name + ".gz")
        # mtime=0: the same bytes give the same file.
        with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as out:
            out.write(raw)
        path.unlink(missing_ok=True)
        return target
    path.write_bytes(raw)
    return path


async def wait_calls_done(rec: AmiRecorder, timeout: float) -> None:
    """Until every channel that appeared has hung up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = rec.events()
        created = {m["Uniqueid"] for m in events if m["Event"] == "Newchannel"}
        gone = {m["Uniqueid"] for m in events if m["Event"] == "Hangup"}
        if created and created <= gone:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"channels still up after {timeout:.0f} s")


def read_secret(value: str | None, path: str) -> str:
    return value or Path(path).read_text().strip()


async def capture(args: argparse.Namespace) -> dict[str, Any]:
    capture_secret = await asyncio.to_thread(read_secret, args.capture_secret, args.capture_secret_file)
    platform_secret = await asyncio.to_thread(read_secret, args.platform_secret, args.platform_secret_file)
    n_direct = round(args.calls * args.direct_share)
    n_hold = args.calls - n_direct
    cap = await AmiRecorder.connect(args.ami_host, args.ami_port, args.capture_user, capture_secret)
    plat = await AmiRecorder.connect(args.ami_host, args.ami_port, args.platform_user, platform_secret)
    phone = await start_agent_phone(
        port=args.agent_port, media_port=args.media_base + 900, talk_ms=args.talk_ms
    )
    started = time.monotonic()
    try:
        runs = []
        per = max(1, args.concurrency // (2 if n_hold and n_direct else 1))
        if n_hold:
            runs.append(
                await start_callers(
                    pbx_port=args.sip_port,
                    dnis=args.hold_dnis,
                    callers=CALLERS,
                    calls=n_hold,
                    port=args.caller_port,
                    media_port=args.media_base,
                    hangup_after_ms=args.hold_ms,
                    rate=args.rate,
                    limit=per,
                )
            )
        if n_direct:
            runs.append(
                await start_callers(
                    pbx_port=args.sip_port,
                    dnis=args.direct_dnis,
                    callers=CALLERS[::-1],
                    calls=n_direct,
                    port=args.caller_port + 1,
                    media_port=args.media_base + 400,
                    rate=args.rate,
                    limit=per,
                )
            )
        results = [await r.wait(args.timeout) for r in runs]
        await wait_calls_done(cap, 30)
        await asyncio.sleep(1.0)  # the last events after the final hangups (device states, bridges)
    finally:
        phone_result = await phone.stop()
        raw = await cap.close()
        raw_platform = await plat.close()
    elapsed = time.monotonic() - started
    for r in results:
        if not r.ok:
            print(
                f"warning: a SIPp run reported failed calls: {r.calls_failed}\n{r.errors[-2000:]}",
                file=sys.stderr,
            )

    report: dict[str, Any] = {
        "name": args.name,
        "command": " ".join(["benchmarks/capture_ami.py", *sys.argv[1:]]),
        "banner": raw.split(b"\r\n", 1)[0].decode(),
        "load": {
            "calls": args.calls,
            "hold_calls": n_hold,
            "direct_calls": n_direct,
            "concurrency": args.concurrency,
            "rate_per_s": args.rate,
            "hold_ms": args.hold_ms,
            "talk_ms": args.talk_ms,
            "seconds": round(elapsed, 1),
            "sipp_successful": sum(r.calls_ok or 0 for r in results),
            "sipp_failed": sum(r.calls_failed or 0 for r in results),
            "agent_phone_calls": phone_result.calls_ok,
        },
        "capture_user": figures(raw),
        "platform_user": figures(raw_platform),
    }
    await asyncio.to_thread(save, Path(args.out_dir), args.name, raw, raw_platform, report, args.gzip_over)
    return report


def save(
    out_dir: Path, name: str, raw: bytes, raw_platform: bytes, report: dict[str, Any], gzip_over: int
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    report["files"] = {
        "capture": write_stream(out_dir / f"{name}.bin", raw, gzip_over).name,
        "platform": write_stream(out_dir / f"{name}.platform.bin", raw_platform, gzip_over).name,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="output base name in --out-dir")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument(
        "--concurrency", type=int, default=5, help="calls at once (split between hold and direct)"
    )
    parser.add_argument("--rate", type=float, default=5.0, help="new calls per second, per caller process")
    parser.add_argument("--direct-share", type=float, default=0.4, help="share of calls that ring the agent")
    parser.add_argument("--hold-ms", type=int, default=3000)
    parser.add_argument("--talk-ms", type=int, default=2000)
    parser.add_argument(
        "--up", action="store_true", help="start the tests' `test` instance (and stop it after)"
    )
    parser.add_argument("--ami-host", default="127.0.0.1")
    parser.add_argument("--ami-port", type=int, default=15038)
    parser.add_argument("--sip-port", type=int, default=15060)
    parser.add_argument("--agent-port", type=int, default=15071, help="the phone of the direct DNIS's agent")
    parser.add_argument("--hold-dnis", default="8000")
    parser.add_argument("--direct-dnis", default="8001")
    parser.add_argument("--capture-user", default="cti-capture")
    parser.add_argument("--capture-secret")
    parser.add_argument(
        "--capture-secret-file", default="/var/cache/cti-sandbox/instances/test/ami-capture.secret"
    )
    parser.add_argument("--platform-user", default="cti")
    parser.add_argument("--platform-secret")
    parser.add_argument("--platform-secret-file", default="/var/cache/cti-sandbox/instances/test/ami.secret")
    parser.add_argument("--caller-port", type=int, default=15261, help="SIP ports of the caller SIPps (2)")
    parser.add_argument("--media-base", type=int, default=17000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out-dir", default=str(ROOT / "tests" / "data" / "ami"))
    parser.add_argument("--gzip-over", type=int, default=8_000_000, help="gzip a stream bigger than this")
    args = parser.parse_args()

    sandbox = None
    if args.up:
        from sandbox import Sandbox

        sandbox = Sandbox(sandbox_test_settings())
        await sandbox.up(
            render_for(sandbox), progress=lambda line: print(f"[sandbox] {line}", file=sys.stderr)
        )
        args.capture_secret_file = str(sandbox.secret_path("capture"))
        args.platform_secret_file = str(sandbox.secret_path("ami"))
    try:
        report = await capture(args)
    finally:
        if sandbox is not None:
            await sandbox.down()
    for who in ("capture_user", "platform_user"):
        f = report[who]
        print(
            f"{who}: {f['bytes']} bytes, {f['events']} events, {f['calls']} calls, "
            f"{f['events_per_call']} events/call, {f['bytes_per_call']} bytes/call"
        )
        for cls, row in f["by_class"].items():
            print(f"  {cls:10} {row['events']:7} events {row['bytes']:10} bytes")
    print(json.dumps(report["load"]))


if __name__ == "__main__":
    asyncio.run(main())
