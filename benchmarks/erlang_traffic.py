"""Time-compressed Poisson traffic on the real sandbox PBX: the service level the platform's routing
achieves against Erlang C's prediction for the same load and staffing.

The reference is a contact centre's busy hour: 48 Erlangs (960 calls an hour at 180 s handle time)
on 53 agents, answer within 20 s. A 2-core machine cannot carry 53 SIPp phones and 48 simultaneous
conversations beside everything else, so the run scales it down: ``--agents`` phones (6) at the
same occupancy (``--load`` 4.8 Erlangs: the reference divided by 10) and time compressed so a
handle time of 180 s becomes about ``--talk-ms`` + 200 ms of ringing (4 s: a factor of about 45),
the answer target compressed by the same factor (``--within`` 0.44 s). Erlang C is evaluated for the
run itself: its staffing, its offered load, its measured mean handle time and its target. (Fewer
agents at the same occupancy queue more, so the scaled centre's predicted service level is lower
than the reference's; the comparison is always like for like.)

* Callers arrive as a Poisson process (seeded: ``--seed``), one SIPp caller process per call, each
  waiting as long as it takes (Erlang C's callers never give up).
* Agents' phones ring 200 ms, then talk for an exponential time of mean ``--talk-ms`` (SIPp's own
  generator), then hang up; wrap-up is 0.
* A call's wait is from its joining the line (the dialplan's ``CallPhase`` ``waiting`` user event;
  for Asterisk's queue ``QueueCallerJoin``) to the agent's phone being dialled for it
  (``DialBegin``), both stamped on arrival by one AMI client; its handle time from that
  ``DialBegin`` to the agent's channel hanging up. Everything the platform does in between
  (classifying the call, routing, the redirect) counts as waiting. Answering the call before it
  joins the line (Asterisk's ``Answer()`` waits up to 500 ms for the caller's first audio, which
  SIPp's callers never send) is the same for every router and is not waiting for an agent.
* Calls arriving in the first ``--warmup`` seconds (an empty centre flatters the service level) are
  left out of the figures.

Run as root from the repository root (its own sandbox instance, ``bench``, ports offset by 700):

    .venv/bin/python benchmarks/erlang_traffic.py --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.call_figures import call_figures, percentile  # noqa: E402
from benchmarks.erlang import average_wait, erlang_c, service_level  # noqa: E402

from benchmarks import bench_sandbox as bench  # noqa: E402
from sandbox.traffic import Caller, SippProcess, start_agent_phone, start_callers  # noqa: E402


async def run_seed(
    pbx: bench.BenchPbx, rec: bench.TimedRecorder, dnis: str, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    rng = random.Random(seed)
    handle_s = (args.talk_ms + 200) / 1000
    rate = args.load / handle_s  # calls per second
    phones: list[SippProcess] = []
    for n, agent in enumerate(pbx.agents):
        # SIPp draws exponential pauses from GSL, which reads its seed here (if it is built to).
        os.environ["GSL_RNG_SEED"] = str(seed * 1000 + n)
        phones.append(
            await start_agent_phone(
                port=agent.port, media_port=bench.sipp_ports(), talk_ms=args.talk_ms, exponential_talk=True
            )
        )
    mark = rec.mark()
    started = time.monotonic()
    callers: list[SippProcess] = []
    try:
        at = 0.0
        for i in range(args.calls):
            at += rng.expovariate(rate)
            delay = started + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            callers.append(
                await start_callers(
                    pbx_port=pbx.sip_port,
                    dnis=dnis,
                    callers=[Caller(f"caller {i}", f"1390000{i:04d}")],
                    calls=1,
                    port=bench.sipp_ports(1),
                    media_port=bench.sipp_ports(),
                )
            )
        arrivals_s = time.monotonic() - started
        results = await asyncio.gather(*(c.wait(args.timeout) for c in callers))
        await bench.wait_idle(rec, 60)
    finally:
        for c in callers:
            if not c.done:
                await c.stop()
        for phone in phones:
            await phone.stop()
    waits, handles, counted = call_figures(
        rec.events[mark:], [a.id for a in pbx.agents], started + args.warmup
    )
    handle = sum(handles) / len(handles)
    offered = rate * handle
    realized_rate = args.calls / arrivals_s
    achieved = sum(1 for w in waits if w <= args.within) / counted if counted else float("nan")
    predicted = service_level(offered, len(pbx.agents), handle, args.within)
    predicted_realized = service_level(realized_rate * handle, len(pbx.agents), handle, args.within)
    return {
        "seed": seed,
        "calls": args.calls,
        "counted": counted,
        "connected": len(waits),
        "failed": sum(r.calls_failed or 0 for r in results),
        "rate_per_s": round(rate, 3),
        "realized_rate_per_s": round(realized_rate, 3),
        "handle_s": round(handle, 3),
        "offered_erlangs": round(offered, 2),
        "p_wait_predicted": round(erlang_c(offered, len(pbx.agents)), 3),
        "p_wait_achieved": round(sum(1 for w in waits if w > 0.05) / counted, 3) if counted else None,
        "asa_predicted_s": round(average_wait(offered, len(pbx.agents), handle), 3),
        "asa_achieved_s": round(sum(waits) / len(waits), 3) if waits else None,
        "wait_p50_ms": round(percentile(waits, 0.5) * 1000, 1),
        "wait_p99_ms": round(percentile(waits, 0.99) * 1000, 1),
        "sl_achieved": round(achieved, 4),
        "sl_predicted": round(predicted, 4),
        "sl_predicted_realized_rate": round(predicted_realized, 4),
        "ratio": round(achieved / predicted, 3),
        "seconds": round(time.monotonic() - started, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=7)
    parser.add_argument("--load", type=float, default=4.8, help="offered load in Erlangs")
    parser.add_argument("--talk-ms", type=int, default=3800, help="mean talk time (exponential)")
    parser.add_argument("--within", type=float, default=0.44, help="the answer target, seconds")
    parser.add_argument("--calls", type=int, default=240, help="calls per seed")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of arrivals left out")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--target", choices=("ours", "queue"), default="ours", help="who routes")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep-up", action="store_true", help="leave the bench instance running")
    args = parser.parse_args()

    pbx = await bench.bench_pbx_up(args.agents)
    rec = await bench.TimedRecorder.connect(pbx.ami_port, pbx.capture_user, pbx.capture_secret)
    rows = []
    platform: bench.RoutingPlatform | None = None
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            dnis = bench.QUEUE_DNIS
            if args.target == "ours":
                dnis = bench.ROUTED_DNIS
                state_dir = Path(tempfile.mkdtemp(prefix="bench-platform-"))
                platform = await bench.start_platform(pbx, state_dir, wrap_up_seconds=0)
                await platform.ready([a.id for a in pbx.agents])
            row = await run_seed(pbx, rec, dnis, seed, args)
            if platform is not None:
                row["platform_reconnects"] = (await platform.health())["ami"]["counters"]["reconnects"]
                await platform.stop()
                platform = None
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        if platform is not None:
            await platform.stop()
        await rec.close()
        if not args.keep_up:
            await pbx.sandbox.down()
    report = {
        "command": " ".join(["benchmarks/erlang_traffic.py", *sys.argv[1:]]),
        "target": args.target,
        "agents": args.agents,
        "load_erlangs": args.load,
        "within_s": args.within,
        "runs": rows,
        "ratio_min": min(r["ratio"] for r in rows),
        "ratio_mean": round(sum(r["ratio"] for r in rows) / len(rows), 3),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
