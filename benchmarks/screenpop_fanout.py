"""Screen-pop fan-out: pops per second through the real platform app with one console stalled.

The platform app (SQLite, no Asterisk) is served by uvicorn on loopback; ``--consoles`` real websocket
clients read as agents 2001, 2002, ...; one more console completes its handshake and never reads
again. ``--pops`` ``AgentOffered`` messages are handed to routing's offer hook (as routing does),
round-robin over the reading agents and, one for one, to the stalled agent. The figures are pops
delivered to reading consoles per second of wall time and per CPU-second, with everything (server,
hub, clients) on this one process, so on one core.

    .venv/bin/python benchmarks/screenpop_fanout.py --consoles 20 --pops 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
import websockets  # noqa: E402

from app.compose import Platform  # noqa: E402
from crm import db as crm_db  # noqa: E402
from cti.auth import Principal, Role, issue_token  # noqa: E402
from cti.model import (  # noqa: E402
    AgentOffered,
    CallClassification,
    CallKey,
    CallPhase,
    CallSnapshot,
    Direction,
    IvrRecord,
)
from cti.settings import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offer(agent: str, n: int) -> AgentOffered:
    now = datetime.now(UTC)
    call = CallSnapshot(
        key=CallKey("pbx1", f"1700000000.{n}"), phase=CallPhase.WAITING, direction=Direction.INBOUND,
        started_at=now, ani="13800138000", caller_name="张伟", dnis="8001",
        anchor_channel=f"PJSIP/trunk-{n:08x}", anchor_uniqueid=f"1700000000.{n}",
        classification=CallClassification("+8613800138000", None, None, None, True, "none:unknown_number",
                                          1, "support", "zh-CN"),
        ivr=IvrRecord(path=("choose_language", "main_menu", "to_agent"), inputs=(("main_menu.choice", "0"),)),
    )  # fmt: skip
    return AgentOffered(call, agent, "support", "best_skill", 4.2, ((agent, 8, 30.0),), 1, False, now)


async def ticket(base: str, secret: str, username: str) -> str:
    token = issue_token(Principal(1, username, Role.AGENT), secret, 600, datetime.now(UTC))
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.post("/api/ws-ticket", headers={"Authorization": f"Bearer {token}"})
        return str(r.json()["ticket"])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--consoles", type=int, default=20)
    parser.add_argument("--pops", type=int, default=20_000)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    platform = Platform(Settings(state_dir=Path(tempfile.mkdtemp()), http={"port": port}))
    await crm_db.migrate_async(platform.database_url)
    server = uvicorn.Server(uvicorn.Config(platform.http, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))  # fmt: skip
    web = asyncio.create_task(server.serve())
    consoles = asyncio.create_task(platform.consoles.run())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)

    # The stalled console: a real handshake, then it never reads.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(
        (f"GET /ws?ticket={await ticket(base, platform.token_secret, '2999')} HTTP/1.1\r\n"
         f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         f"Origin: {base}\r\n\r\n").encode()
    )  # fmt: skip
    agents = [str(2001 + i) for i in range(args.consoles)]
    clients = []
    for agent in agents:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws?ticket={await ticket(base, platform.token_secret, agent)}",
            origin=base, max_queue=None,
        )  # fmt: skip
        clients.append(ws)
    per_agent = args.pops // len(agents)
    expected = per_agent * len(agents)

    async def read(ws: websockets.ClientConnection) -> int:
        got = 0
        while got < per_agent:
            if json.loads(await ws.recv())["type"] == "screenpop":
                got += 1
        return got

    for ws in clients:  # hello and state
        await ws.recv()
        await ws.recv()
    readers = [asyncio.create_task(read(ws)) for ws in clients]
    started = time.perf_counter()
    cpu = time.process_time()
    n = 0
    for i in range(per_agent):
        for agent in agents:
            platform.routing.on_offer(offer(agent, n))
            platform.routing.on_offer(offer("2999", n))
            n += 1
        if i % 10 == 0:
            await asyncio.sleep(0)  # let the loop breathe as a live bus would
    delivered = sum(await asyncio.gather(*readers))
    wall = time.perf_counter() - started
    cpu_used = time.process_time() - cpu
    hub = platform.consoles.hub
    print(json.dumps({
        "consoles_reading": len(agents), "pops_delivered": delivered, "expected": expected,
        "stalled_pops_offered": n, "stalled_console_dropped": hub.stats.dropped_consoles == 1,
        "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu_used, 3),
        "pops_per_second": round(delivered / wall), "pops_per_cpu_second": round(delivered / cpu_used),
    }, indent=2))  # fmt: skip
    for ws in clients:
        await ws.close()
    stalled.close()
    server.should_exit = True
    consoles.cancel()
    await asyncio.wait({web}, timeout=5)
    await platform.engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
