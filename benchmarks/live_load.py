"""Live load: a SIPp ramp on the sandbox PBX, bare and with the platform attached.

Capacity here is **calls per Asterisk CPU-second**: the CPU time (user + system, from ``/proc``, the
Asterisk process and its children) Asterisk spends per call at a given call rate. On a 2-core
machine shared with other work, the highest call rate without failures mostly measures the
neighbours; Asterisk's own CPU per call is what the platform can add to (AMI events serialised for
one more client, the actions it sends). The ratio reported is bare CPU per call over attached CPU
per call at each step (1.0: the platform costs Asterisk nothing). A third mode, ``listener``, is an
AMI client that logs in as the platform's user and only reads: Asterisk builds no manager events
at all while no AMI client is logged in, so this is the floor any AMI-attached platform pays,
apart from what the platform itself asks of Asterisk. Every step also reports SIPp's
failed calls, and the attached runs the platform's AMI counters: reconnects, ping timeouts, queue
overflows (the target is zero disconnects).

The calls: callers dial the hold service (the platform classifies them, writes their call logs and
puts them in line; no agent is ready, so nobody is connected), hear music on hold for
``--hold-ms``, and hang up. Steps of ``--rates`` new calls per second, ``--seconds`` each;
``--rounds`` alternate bare and attached so drift and neighbours hit both alike.

Run as root from the repository root (its own sandbox instance, ``bench``, ports offset by 700):

    .venv/bin/python benchmarks/live_load.py --rates 5,10,20,40 --rounds 2 --modes bare,listener,attached
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_sandbox as bench  # noqa: E402
from sandbox.traffic import Caller, start_callers  # noqa: E402

CALLERS = tuple(
    Caller(name, f"1370013{i:04d}") for i, name in enumerate(("张伟", "Alice Smith", "王芳", "李娜"))
)
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of ``root_pid`` and every live descendant (Asterisk runs inside a
    namespace wrapper, so the PBX is a child of the pid the sandbox reports)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total = 0.0
    for pid in cpu:
        p = pid
        while p > 1:
            if p == root_pid:
                total += cpu[pid]
                break
            p = parents.get(p, 0)
    return total


async def step(pbx: bench.BenchPbx, pid: int, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    calls = max(1, round(rate * args.seconds))
    before = await asyncio.to_thread(tree_cpu_seconds, pid)
    started = time.monotonic()
    run = await start_callers(
        pbx_port=pbx.sip_port,
        dnis=bench.ROUTED_DNIS,
        callers=CALLERS,
        calls=calls,
        port=bench.sipp_ports(1),
        media_port=bench.sipp_ports(),
        hangup_after_ms=args.hold_ms,
        rate=rate,
        limit=int(rate * args.hold_ms / 1000 * 3) + 10,
    )
    result = await run.wait(args.seconds * 4 + 60)
    # Asterisk's share of the calls' ends (hangups, the last events) comes just after SIPp's.
    await asyncio.sleep(1.0)
    cpu = await asyncio.to_thread(tree_cpu_seconds, pid) - before
    return {
        "rate": rate,
        "calls": calls,
        "ok": result.calls_ok,
        "failed": result.calls_failed,
        "seconds": round(time.monotonic() - started, 1),
        "asterisk_cpu_s": round(cpu, 2),
        "cpu_ms_per_call": round(cpu / calls * 1000, 2),
    }


async def idle_cpu(pid: int, seconds: float) -> float:
    """Asterisk's CPU milliseconds per second with no call up: what being attached costs at rest."""
    before = await asyncio.to_thread(tree_cpu_seconds, pid)
    await asyncio.sleep(seconds)
    return round((await asyncio.to_thread(tree_cpu_seconds, pid) - before) / seconds * 1000, 2)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="5,10,20,40", help="new calls per second, one step each")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of arrivals per step")
    parser.add_argument("--hold-ms", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the modes")
    parser.add_argument("--modes", default="bare,listener,attached", help="bare, listener, attached")
    parser.add_argument(
        "--idle-seconds", type=float, default=0, help="first measure Asterisk at rest this long, per mode"
    )
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep-up", action="store_true", help="leave the bench instance running")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    pbx = await bench.bench_pbx_up(2)
    status = pbx.sandbox.status(probe=False)
    assert status.pid is not None
    runs: list[dict[str, Any]] = []
    platform: bench.RoutingPlatform | None = None
    try:
        for n in range(args.rounds):
            for mode in args.modes.split(","):
                listener = None
                if mode == "attached":
                    platform = await bench.start_platform(
                        pbx, Path(tempfile.mkdtemp(prefix="bench-platform-"))
                    )
                elif mode == "listener":
                    secret = (await asyncio.to_thread(pbx.secret_file.read_text)).strip()
                    listener = await bench.TimedRecorder.connect(pbx.ami_port, pbx.ami_user, secret)
                elif mode != "bare":
                    raise SystemExit(f"unknown mode {mode!r}")
                idle = await idle_cpu(status.pid, args.idle_seconds) if args.idle_seconds > 0 else None
                steps = [await step(pbx, status.pid, rate, args) for rate in rates]
                run: dict[str, Any] = {"round": n + 1, "mode": mode, "steps": steps}
                if idle is not None:
                    run["idle_cpu_ms_per_s"] = idle
                if listener is not None:
                    run["listener_events"] = len(listener.events)
                    await listener.close()
                if platform is not None:
                    counters = (await platform.health())["ami"]["counters"]
                    run["ami"] = {
                        k: counters[k]
                        for k in (
                            "reconnects",
                            "ping_timeouts",
                            "queue_overflows",
                            "events_dropped",
                            "frames",
                            "actions_sent",
                            "events_skipped",
                        )
                    }
                    platform_cpu = await asyncio.to_thread(tree_cpu_seconds, platform.platform.proc.pid)  # type: ignore[union-attr]
                    run["platform_cpu_s"] = round(platform_cpu, 2)
                    await platform.stop()
                    platform = None
                runs.append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
    finally:
        if platform is not None:
            await platform.stop()
        if not args.keep_up:
            await pbx.sandbox.down()

    modes = args.modes.split(",")
    by_rate = []
    for i, rate in enumerate(rates):
        row: dict[str, Any] = {"rate": rate}
        for mode in modes:
            row[f"{mode}_cpu_ms_per_call"] = statistics.median(
                r["steps"][i]["cpu_ms_per_call"] for r in runs if r["mode"] == mode
            )
            row[f"failed_{mode}"] = sum(r["steps"][i]["failed"] or 0 for r in runs if r["mode"] == mode)
            idles = [r["idle_cpu_ms_per_s"] for r in runs if r["mode"] == mode and "idle_cpu_ms_per_s" in r]
            if i == 0 and idles:
                row[f"{mode}_idle_cpu_ms_per_s"] = statistics.median(idles)
        for mode in modes:
            if mode != "bare" and "bare" in modes:
                ratio = row["bare_cpu_ms_per_call"] / row[f"{mode}_cpu_ms_per_call"]
                row[f"capacity_ratio_{mode}"] = round(ratio, 3)
        by_rate.append(row)
    report = {
        "command": " ".join(["benchmarks/live_load.py", *sys.argv[1:]]),
        "by_rate": by_rate,
        "ami_reconnects": sum(r["ami"]["reconnects"] for r in runs if "ami" in r),
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
