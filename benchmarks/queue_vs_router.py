"""Agent freed → next waiting call ringing: the platform's routing against Asterisk's own ``Queue()``,
on the same sandbox PBX, with the same SIPp callers and the same SIPp agents' phones.

Each phase keeps the agents busy: ``--agents`` auto-answering phones (ring 200 ms, talk ``--talk-ms``,
then the phone hangs up), and one SIPp caller process holding ``--waiting`` more calls than there
are agents, so someone is always waiting. A *hand-off* is an agent's call ending (the AMI ``Hangup``
of the agent's channel, caused by the phone's BYE) followed by the next channel to that agent's
endpoint (AMI ``Newchannel`` of ``PJSIP/<agent>-…``: Asterisk creates it just before it sends the
INVITE), counted only when a caller had been waiting for at least ``--settled`` seconds (1 s: a
new call spends its first 0.5 s in ``Answer()``) at the moment the agent was freed. Both moments
are stamped on arrival by one AMI client of this script: a common clock for all the phases.

Phases, in this order:

* ``queue``: ``Queue()`` with Asterisk's defaults (strategy ringall, retry 5 s, wrapuptime 0,
  timeout 15 s, autofill yes), except ``ringinuse = no`` (an agent takes one call at a time);
* ``queue-tuned``: the same with ``retry = 1`` (the smallest whole number of seconds). Neither
  retry nor wrapuptime is what a waiting caller waits on: app_queue looks whether it is a caller's
  turn once a second (``RECHECK``, compiled in), and no setting shortens that;
* ``ours``: the platform (``cti serve``) routing the hold service, wrap-up 0, strategy longest idle.

Run as root from the repository root (its own sandbox instance, ``bench``, ports offset by 700):

    .venv/bin/python benchmarks/queue_vs_router.py --calls 200 --dump
    .venv/bin/python benchmarks/queue_vs_router.py --calls 200 --dump --exponential-talk
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.call_figures import Handoff, handoffs, percentile, redirect_split, summary  # noqa: E402

from benchmarks import bench_sandbox as bench  # noqa: E402
from sandbox.traffic import Caller, SippProcess, start_agent_phone, start_callers  # noqa: E402

CALLERS = tuple(Caller(f"caller {i}", f"1380013{i:04d}") for i in range(50))


async def run_phase(
    pbx: bench.BenchPbx, rec: bench.TimedRecorder, dnis: str, args: argparse.Namespace
) -> tuple[dict[str, Any], list[Handoff]]:
    phones: list[SippProcess] = []
    for agent in pbx.agents:
        phones.append(
            await start_agent_phone(
                port=agent.port,
                media_port=bench.sipp_ports(),
                talk_ms=args.talk_ms,
                exponential_talk=args.exponential_talk,
            )
        )
    mark = rec.mark()
    started = time.monotonic()
    try:
        callers = await start_callers(
            pbx_port=pbx.sip_port,
            dnis=dnis,
            callers=CALLERS,
            calls=args.calls,
            port=bench.sipp_ports(1),
            media_port=bench.sipp_ports(),
            rate=20,
            limit=len(pbx.agents) + args.waiting,
        )
        result = await callers.wait(args.timeout)
        await bench.wait_idle(rec, 60)
    finally:
        for phone in phones:
            await phone.stop()
    events = rec.events[mark:]
    found = handoffs(events, [a.id for a in pbx.agents], args.settled)
    row = {
        "dnis": dnis,
        "seconds": round(time.monotonic() - started, 1),
        "calls_ok": result.calls_ok,
        "calls_failed": result.calls_failed,
        **summary(found),
    }
    split = redirect_split(events, found, "cti-agents")
    if split:
        # Where our time goes: freed -> redirect executed (the platform and AMI) -> agent dialled.
        for part, values in (("platform", [a for a, _ in split]), ("dial", [b for _, b in split])):
            row[f"{part}_p50_ms"] = round(percentile(values, 0.5), 1)
            row[f"{part}_p99_ms"] = round(percentile(values, 0.99), 1)
    if args.dump:
        slow = sorted(found, key=lambda h: -h.ms)[:5]
        row["slowest"] = [
            {"agent": h.agent, "ms": round(h.ms, 1), "freed_at": round(h.freed_at, 3)} for h in slow
        ]
    return row, found


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--calls", type=int, default=100, help="calls per phase")
    parser.add_argument("--waiting", type=int, default=4, help="callers waiting beyond the agents")
    parser.add_argument("--talk-ms", type=int, default=1000)
    parser.add_argument(
        "--exponential-talk", action="store_true", help="talk times exponential of mean --talk-ms, not fixed"
    )
    parser.add_argument("--settled", type=float, default=1.0, help="seconds a caller must have waited")
    parser.add_argument("--phases", default="queue,queue-tuned,ours")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--dump", action="store_true", help="list the slowest hand-offs of each phase")
    parser.add_argument("--keep-up", action="store_true", help="leave the bench instance running")
    args = parser.parse_args()

    pbx = await bench.bench_pbx_up(args.agents)
    rec = await bench.TimedRecorder.connect(pbx.ami_port, pbx.capture_user, pbx.capture_secret)
    rows: dict[str, dict[str, Any]] = {}
    platform: bench.RoutingPlatform | None = None
    try:
        for phase in args.phases.split(","):
            if phase == "queue":
                rows[phase], _ = await run_phase(pbx, rec, bench.QUEUE_DNIS, args)
            elif phase == "queue-tuned":
                rows[phase], _ = await run_phase(pbx, rec, bench.TUNED_QUEUE_DNIS, args)
            elif phase == "ours":
                state_dir = Path(tempfile.mkdtemp(prefix="bench-platform-"))
                platform = await bench.start_platform(pbx, state_dir, wrap_up_seconds=0)
                await platform.ready([a.id for a in pbx.agents])
                rows[phase], _ = await run_phase(pbx, rec, bench.ROUTED_DNIS, args)
                rows[phase]["platform_ami"] = (await platform.health())["ami"]
                await platform.stop()
                platform = None
            else:
                raise SystemExit(f"unknown phase {phase!r}")
            print(phase, json.dumps(rows[phase]), file=sys.stderr, flush=True)
    finally:
        if platform is not None:
            await platform.stop()
        await rec.close()
        if not args.keep_up:
            await pbx.sandbox.down()
    report: dict[str, Any] = {
        "command": " ".join(["benchmarks/queue_vs_router.py", *sys.argv[1:]]),
        "agents": args.agents,
        "talk_ms": args.talk_ms,
        "talk": "exponential" if args.exponential_talk else "fixed",
        "phases": rows,
    }
    if "ours" in rows and rows["ours"]["handoffs"]:
        for peer in ("queue", "queue-tuned"):
            if peer in rows and rows[peer]["handoffs"]:
                report[f"ratio_p50_{peer}"] = round(rows[peer]["p50_ms"] / rows["ours"]["p50_ms"], 1)
                report[f"ratio_p99_{peer}"] = round(rows[peer]["p99_ms"] / rows["ours"]["p99_ms"], 1)
    print(json.dumps(report, indent=2))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
