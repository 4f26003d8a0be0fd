"""How fast the console's events cross between workers (voiceagent/ops/cluster_bus.py) on a real Postgres
server started in a temporary directory: N caller turns published by worker A's hub, the time until a
console on worker B has them all, and the delay of single messages when the bus is idle.

    .venv/bin/python benchmarks/bench_cluster_bus.py [--turns 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.peers.postgres import PostgresServer  # noqa: E402
from voiceagent import db  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.events import CallerTurnNoted  # noqa: E402
from voiceagent.legs import FileLeg  # noqa: E402
from voiceagent.ops.cluster_bus import ClusterBus  # noqa: E402
from voiceagent.ops.live import OperatorHub  # noqa: E402
from voiceagent.record import CallerTurn  # noqa: E402


async def hub(url: str, worker: str) -> OperatorHub:
    cfg = Config()
    cfg.cluster.worker = worker
    h = OperatorHub(cfg)
    bus = ClusterBus(db.resolve(url)[1], worker, h.on_remote, on_connected=h.bus_connected)
    await bus.start()
    h.attach_bus(bus)
    await asyncio.wait_for(bus.connected.wait(), 10)
    return h


def turn(i: int) -> CallerTurnNoted:
    text = f"turn {i}: where is my parcel, it was due on Monday and nobody called me back"
    return CallerTurnNoted(1.0, CallerTurn(text, 0.0, 1.0, "logistics.track", 0.9, {}, "neutral", "en", None))


async def main(url: str, turns: int) -> None:
    a, b = await hub(url, "wa"), await hub(url, "wb")
    live = a.begin("bench", "sip", FileLeg(np.zeros(1600, np.float32), 16000, realtime=False), None, "en")
    while "bench" not in b.remote:
        await asyncio.sleep(0.01)
    feed = b.subscribe("bench")
    await feed.get()  # the snapshot
    observe = a.observer(live)

    # idle: one turn at a time, its delay from publish to B's console
    delays = []
    for i in range(50):
        t0 = time.perf_counter()
        observe(turn(i))
        while True:
            message = await feed.get()
            if message and message.get("type") == "caller":
                break
        delays.append((time.perf_counter() - t0) * 1000)
    # throughput: turns published as fast as the sender takes them (as from many calls at once), counted
    # where B's bus hands them to its hub (a console's feed would drop a reader this far behind: it reconnects)
    b.unsubscribe(feed, "bench")
    before, sent_before = b.bus.received, a.bus.sent
    t0 = time.perf_counter()
    for i in range(turns):
        observe(turn(i))
        if i % 50 == 49:  # (the benchmark waits for the sender; a live hub drops beyond SEND_QUEUE instead)
            while a.bus._queue.qsize() > 500:
                await asyncio.sleep(0.001)
    expected = a.bus.sent - sent_before + a.bus._queue.qsize()
    deadline = time.monotonic() + 120
    while b.bus.received - before < expected or a.bus._queue.qsize():
        assert time.monotonic() < deadline, (b.bus.received - before, expected)
        expected = max(expected, a.bus.sent - sent_before)
        await asyncio.sleep(0.005)
    burst_s = time.perf_counter() - t0
    messages = b.bus.received - before
    print(f"idle delay A->B console: median {statistics.median(delays):.2f} ms, "
          f"max {max(delays):.2f} ms (50 turns)")
    print(f"throughput: {turns} turns = {messages} messages in {burst_s:.2f} s = {messages / burst_s:.0f} messages/s "
          f"(sent {a.bus.sent}, dropped {a.bus.dropped}, received by B {b.bus.received})")
    await a.bus.stop()
    await b.bus.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args()
    with PostgresServer() as pg:
        asyncio.run(main(pg.create_database(), args.turns))
