"""The operator side's own costs, in process (no models):

- `/metrics` scrape time with 1 000 calls stored and counted (their turns in the histograms);
- `/api/ops/dashboard` and `/api/ops/calls` (search) with those calls stored;
- the console's cost per watched call on the server: the hub's work per call event with 0, 1 and
  10 consoles subscribed (CPU per event; a call makes ~2 events a second while people talk), and
  what a listener's mixed audio costs per 20 ms.

    .venv/bin/python benchmarks/bench_ops.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _record(i: int, rng: random.Random):
    from voiceagent.record import AgentTurn, CallerTurn, CallRecord

    record = CallRecord(f"bench{i:05d}", rng.choice(["zh", "en"]), customer_id=f"C{1000 + i % 300}")
    t = 0.5
    for n in range(rng.randint(2, 6)):
        anger = rng.random() * (0.9 if n > 2 else 0.4)
        record.turns.append(CallerTurn(text="我的订单什么时候到", start_s=t, end_s=t + 2, intent="order.status",
                                       confidence=0.9, slots={}, emotion="angry" if anger > 0.6 else "neutral",
                                       language="zh", dialect="mandarin", anger=anger))
        t += 2.6
        record.turns.append(AgentTurn(text="您的订单已发货。", start_s=t, end_s=t + 2, latency_ms={
            "endpoint": 500, "asr": 80, "llm_first_token": 40, "tts_first_audio": 120,
            "voice_to_voice": rng.gauss(700, 150)}))
        t += 3
    record.duration_s = t
    record.outcome.resolved = rng.random() < 0.7
    record.outcome.handoff = not record.outcome.resolved and rng.random() < 0.5
    record.channel = {"kind": rng.choice(["sip", "webrtc", "audiosocket"])}
    return record


def timed(fn, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ops-"))
    os.environ["VOICEAGENT_VAR"] = str(work)
    from fastapi.testclient import TestClient

    from voiceagent.config import Config
    from voiceagent.events import AgentTurnDone, CallerTurnNoted
    from voiceagent.server import create_app

    config = Config()
    config.store.db = str(work / "calls.db")
    app = create_app(config, runtime=object())
    rng = random.Random(7)
    with TestClient(app) as client:
        token = app.state.auth.create_token("bench", "admin")
        auth = {"Authorization": f"Bearer {token}"}
        t0 = time.perf_counter()
        for i in range(args.calls):
            record = _record(i, rng)
            app.state.store.save(record)
            app.state.history.note_call(record.call_id, record)
            channel = record.channel["kind"]
            app.state.metrics.call_started(channel)
            for turn in record.turns:
                event = AgentTurnDone(0.0, turn) if turn.role == "agent" else CallerTurnNoted(0.0, turn)
                app.state.metrics.on_event(channel, event)
            app.state.metrics.call_ended(channel, record)
        print(f"stored and counted {args.calls} calls in {time.perf_counter() - t0:.1f} s")
        body = client.get("/metrics", headers=auth).text
        p50, p95 = timed(lambda: client.get("/metrics", headers=auth), 50)
        print(f"GET /metrics ({len(body) / 1024:.1f} kB): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        p50, p95 = timed(lambda: client.get("/api/ops/dashboard?hours=24", headers=auth), 30)
        print(f"GET /api/ops/dashboard (24 h, {args.calls} calls): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        p50, p95 = timed(lambda: client.get("/api/ops/calls?intent=order.status&limit=50", headers=auth), 30)
        print(f"GET /api/ops/calls search: p50 {p50:.1f} ms, p95 {p95:.1f} ms")

    # the console's cost per watched call: the hub's work per event, by consoles watching
    from voiceagent.ops.live import OperatorHub
    from voiceagent.ops.supervision import MixTrack
    from voiceagent.testing.fakes import CallerScript, FakeASR
    from telephony.audio import AudioFrame
    import numpy as np

    async def per_event(watchers: int) -> float:
        hub = OperatorHub(Config())
        leg = CallerScript(FakeASR("en")).silence(1.0).file_leg()
        live = hub.begin("w1", "sip", leg, None, "zh")
        queues = [hub.subscribe("w1") for _ in range(watchers)] + [hub.subscribe() for _ in range(watchers)]
        observe = hub.observer(live)
        turn = _record(1, random.Random(1)).turns[0]
        n = 2000
        t0 = time.process_time()
        for i in range(n):
            observe(CallerTurnNoted(0.0, turn))
            if i % 50 == 0:
                for q in queues:
                    while not q.empty():
                        q.get_nowait()
        return (time.process_time() - t0) / n * 1e6

    for watchers in (0, 1, 10):
        print(f"hub, a caller turn's event with {watchers} console(s) on the call: {asyncio.run(per_event(watchers)):.0f} us CPU")
    track = MixTrack()
    frame = AudioFrame(np.zeros(160, np.float32), 8000, 0.0)

    def mix_one():
        track.push("caller", frame)
        track.push("agent", frame)
        return track._take("caller") + track._take("agent")  # what recv() mixes every 20 ms

    p50, _ = timed(mix_one, 2000)
    print(f"listen-in: one 20 ms frame of both sides resampled and mixed: {p50 * 1000:.0f} us "
          f"({p50 / 20 * 100:.2f} % of a core per listener, before Opus encoding)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
