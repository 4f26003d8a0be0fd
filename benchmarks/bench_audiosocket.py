#!/usr/bin/env python3
"""Voice to voice over Asterisk's AudioSocket, measured where Asterisk sits.

    .venv/bin/python benchmarks/bench_audiosocket.py                  # latency and capacity
    .venv/bin/python benchmarks/bench_audiosocket.py --latency --repeat 2
    .venv/bin/python benchmarks/bench_audiosocket.py --capacity --max-calls 6

The agent serves AudioSocket (and AMI control) in this process: AsteriskService, the offline models,
the greeting off since the sample callers start talking at once. Asterisk is the in-repo stand-in
(tests/peers/asterisk.py): per call it connects as AudioSocket() does, sends the sample caller as
20 ms slin frames on its own clock and notes when each frame of the agent's audio arrives (Asterisk
plays a frame as it arrives). For every caller turn:

    voice_to_voice = arrival of the agent's first voiced frame after the turn
                     - the end of the caller's speech in what was sent

1. latency: the sample calls one at a time: p50/p95 over the turns.
2. capacity: N callers at once (N = 1, 2, 3, 4, 6...), each playing samples in turn until about
   --capacity-calls calls are done for the step; a step passes with p95 <= 1500 ms. Reports the
   largest N that passes.

Figures go to stdout and benchmarks/results/bench_audiosocket.json.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sip import (CAPACITY_STEPS, RATE, bench_main, capacity, caller_file, latency,  # noqa: E402
                                  record_stored, voice_to_voice)
from tests.peers.asterisk import FakeAsterisk  # noqa: E402
from voiceagent.audio import load_audio  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.pbx import AsteriskService  # noqa: E402
from voiceagent.runtime import Runtime  # noqa: E402

SAMPLES = ROOT / "samples" / "audio"


def heard_timeline(channel, length: int) -> np.ndarray:
    """The agent's frames laid where they arrived on the call's clock (the same clock the caller's
    frames were sent on)."""
    track = np.zeros(length, np.float32)
    for t, kind, payload in channel.received:
        if kind != 0x10:
            continue
        samples = np.frombuffer(payload, "<i2").astype(np.float32) / 32768.0
        start = int(round(t * RATE))
        if start >= length:
            break
        track[start:start + len(samples)] = samples[: length - start]
    return track


async def one_call(ast: FakeAsterisk, service: AsteriskService, name: str, path: Path, ends: list[float],
                   caller_id: str) -> list[float]:
    audio = load_audio(path, RATE).samples
    before = len(service.records)
    channel = await ast.incoming_call(caller_id, "4000", audio, listen_s=0.0)
    await asyncio.wait_for(channel.ended.wait(), len(audio) / RATE + 60)
    await record_stored(service.records, before)
    return voice_to_voice(audio, heard_timeline(channel, len(audio)), ends)


async def run(args) -> dict:
    config = Config.load(args.config) if args.config else Config()
    config.call.greeting = False
    config.asterisk.max_calls = max(config.asterisk.max_calls, *(CAPACITY_STEPS if args.capacity else (1,)))
    runtime = Runtime.load(config)
    runtime.prewarm_speech(background=False)
    ast = FakeAsterisk()
    await ast.start()
    config.asterisk.ami_host, config.asterisk.ami_port = "127.0.0.1", ast.ami_port
    config.asterisk.ami_username, config.asterisk.ami_secret = "voiceagent", "s3cret"
    service = AsteriskService(config, runtime, port=0)
    await service.start()
    ast.audiosocket_addr = ("127.0.0.1", service.port)
    await service.ami.wait_ready(5)
    work = Path(tempfile.mkdtemp(prefix="bench-audiosocket-"))
    names = sorted(p.name for p in SAMPLES.glob(args.samples))
    files = {n: caller_file(n, config, work) for n in names}
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": "2-core CPU",
                     "method": "in-repo Asterisk (AudioSocket + AMI): frame send and arrival times"}
    try:
        if args.latency:
            async def one(name: str) -> list[float]:
                return await one_call(ast, service, name, *files[name], "13800138000")

            results["latency"] = await latency(one, names, args, lambda: service.records, "over AudioSocket",
                                               "at Asterisk")
        if args.capacity:
            async def call(name: str, line: int) -> list[float]:
                return await one_call(ast, service, name, *files[name], f"1380013{line:04d}")

            results["capacity"] = await capacity(call, names, args, lambda: service.records, "AudioSocket", runtime)
    finally:
        await service.stop()
        await ast.close()
    return results


def main() -> int:
    return bench_main(run, __doc__, "bench_audiosocket.json")


if __name__ == "__main__":
    sys.exit(main())
