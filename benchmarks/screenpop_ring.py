"""Screen-pop time against the agent's phone starting to ring, with ``--in-progress`` calls up.

On the sandbox PBX (its own instance: ``CTI_TEST_INSTANCE``/``CTI_TEST_PORT_OFFSET``, default h8 and
800), ``cti serve`` routes callers on the hold DNIS to ``--agents`` SIPp phones (ring 200 ms, talk
``--talk-ms``). Every agent's console is a real websocket client on this process; ``--calls`` callers
are placed with at most ``--in-progress`` up at once (most of them waiting on hold), so that many
calls are in progress while pops are measured.

Every caller is a known customer (created before the run), so each pop has a customer card. For each
routed call: the first pop's arrival at the agent's console, and the arrival of the first pop that
carries the whole card, against the AMI ``DialBegin`` of the agent's channel (Asterisk starts
ringing the phone: the INVITE goes out) and ``DialState`` RINGING (the phone answered 180 Ringing),
read by one AMI recorder on this same process and clock. Negative is better: the pop came first.

    .venv/bin/python benchmarks/screenpop_ring.py --agents 10 --calls 300 --in-progress 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CTI_TEST_INSTANCE", "h8")
os.environ.setdefault("CTI_TEST_PORT_OFFSET", "800")

import httpx  # noqa: E402
import websockets  # noqa: E402
from benchmarks.call_figures import percentile  # noqa: E402

from benchmarks import bench_sandbox as bench  # noqa: E402
from sandbox.traffic import Caller, start_agent_phone, start_callers  # noqa: E402

CALLERS = tuple(Caller(f"客户{i}", f"1390013{i:04d}") for i in range(100))


async def console(
    platform: bench.RoutingPlatform,
    agent: str,
    pops: dict[tuple[str, str], float],
    cards: dict[tuple[str, str], tuple[float, bool]],
) -> None:
    """One agent's console: records when each pop arrives, by (agent, linkedid), and when the whole
    customer card does (with whether it came in the call's first pop)."""
    base = platform.platform.base_url
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.post("/api/ws-ticket", headers={"Authorization": f"Bearer {platform.tokens[agent]}"})
        r.raise_for_status()
        url = base.replace("http://", "ws://") + r.json()["url"]
    async with websockets.connect(url, origin=base, max_queue=None) as ws:
        async for raw in ws:
            now = time.monotonic()
            message = json.loads(raw)
            if message["type"] == "screenpop":
                key = (agent, message["call"]["linkedid"])
                first = key not in pops
                pops.setdefault(key, now)
                customer = message.get("customer")
                if customer and not customer.get("partial"):
                    cards.setdefault(key, (now, first))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--in-progress", type=int, default=100)
    parser.add_argument("--talk-ms", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep-up", action="store_true")
    args = parser.parse_args()

    pbx = await bench.bench_pbx_up(args.agents)
    rec = await bench.TimedRecorder.connect(pbx.ami_port, pbx.capture_user, pbx.capture_secret)
    platform = await bench.start_platform(pbx, Path(tempfile.mkdtemp(prefix="bench-pop-")), wrap_up_seconds=0)
    for caller in CALLERS:
        record = {"name": caller.name, "tier": "gold", "phones": [{"number": caller.number}]}
        await platform.request("admin", "POST", "/api/customers", json=record)
    pops: dict[tuple[str, str], float] = {}
    cards: dict[tuple[str, str], tuple[float, bool]] = {}
    readers = [asyncio.create_task(console(platform, a.id, pops, cards)) for a in pbx.agents]
    phones = []
    try:
        for agent in pbx.agents:
            phones.append(
                await start_agent_phone(port=agent.port, media_port=bench.sipp_ports(), talk_ms=args.talk_ms)
            )
        await asyncio.sleep(1.0)  # consoles connected
        await platform.ready([a.id for a in pbx.agents])
        mark = rec.mark()
        callers = await start_callers(
            pbx_port=pbx.sip_port, dnis=bench.ROUTED_DNIS, callers=CALLERS, calls=args.calls,
            port=bench.sipp_ports(1), media_port=bench.sipp_ports(), rate=50, limit=args.in_progress,
        )  # fmt: skip
        result = await callers.wait(args.timeout)
        await bench.wait_idle(rec, 60)
        health = (await platform.health())["ami"]
    finally:
        for phone in phones:
            await phone.stop()
        for task in readers:
            task.cancel()
        await platform.stop()
        await rec.close()
        if not args.keep_up:
            await pbx.sandbox.down()

    agent_ids = {a.id for a in pbx.agents}
    dial_begin: dict[tuple[str, str], float] = {}
    ringing: dict[tuple[str, str], float] = {}
    in_progress_max = 0
    live: set[str] = set()
    for e in rec.events[mark:]:
        name = e.get("Event")
        if name == "Newchannel" and e.get("Channel").startswith("PJSIP/trunk"):
            live.add(e["Uniqueid"])
            in_progress_max = max(in_progress_max, len(live))
        elif name == "Hangup":
            live.discard(e.get("Uniqueid"))
        dest = e.get("DestChannel")
        agent = dest[len("PJSIP/") :].split("-")[0] if dest.startswith("PJSIP/") else ""
        if agent not in agent_ids:
            continue
        key = (agent, e.get("DestLinkedid") or e.get("Linkedid"))
        if name == "DialBegin":
            dial_begin.setdefault(key, e.at)
        elif name == "DialState" and e.get("DialStatus") == "RINGING":
            ringing.setdefault(key, e.at)
    to_dial = [(pops[k] - t) * 1000 for k, t in dial_begin.items() if k in pops]
    to_ring = [(pops[k] - t) * 1000 for k, t in ringing.items() if k in pops]
    card_to_dial = [(cards[k][0] - t) * 1000 for k, t in dial_begin.items() if k in cards]
    card_to_ring = [(cards[k][0] - t) * 1000 for k, t in ringing.items() if k in cards]

    def spread(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(percentile(values, 0.5), 1),
            "p99": round(percentile(values, 0.99), 1),
            "max": round(max(values, default=float("nan")), 1),
        }

    report: dict[str, Any] = {
        "command": " ".join(["benchmarks/screenpop_ring.py", *sys.argv[1:]]),
        "agents": args.agents,
        "calls": args.calls,
        "callers_ok": result.calls_ok,
        "callers_failed": result.calls_failed,
        "max_caller_channels_up": in_progress_max,
        "pops": len(pops),
        "matched_dial_begin": len(to_dial),
        "matched_ringing": len(to_ring),
        "pop_minus_dial_begin_ms": {
            "p50": round(percentile(to_dial, 0.5), 1),
            "p99": round(percentile(to_dial, 0.99), 1),
            "max": round(max(to_dial, default=float("nan")), 1),
        },
        "pop_minus_ringing_ms": {
            "p50": round(percentile(to_ring, 0.5), 1),
            "p99": round(percentile(to_ring, 0.99), 1),
            "max": round(max(to_ring, default=float("nan")), 1),
        },
        "cards": len(cards),
        "card_in_first_pop": sum(1 for _, first in cards.values() if first),
        "card_minus_dial_begin_ms": spread(card_to_dial),
        "card_minus_ringing_ms": spread(card_to_ring),
        "platform_ami": health,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
