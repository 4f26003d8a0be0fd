#!/usr/bin/env python3
"""Voice to voice over real SIP phone calls, measured from the caller's own phone.

    .venv/bin/python benchmarks/bench_sip.py                 # latency (every sample once) and capacity
    .venv/bin/python benchmarks/bench_sip.py --latency --repeat 2
    .venv/bin/python benchmarks/bench_sip.py --capacity --max-calls 6

The agent answers SIP in this process (PhoneService, the offline models, the greeting off since the
sample callers start talking at once); each caller is a real baresip phone in its own process,
playing a sample recording (8 kHz, PCMU) and recording what it hears. For every caller turn:

    voice_to_voice = first sample of the agent's reply on the phone's recording
                     - the end of the caller's speech in what the phone sent

The two recordings (baresip's `-enc` and `-dec` dumps) both run until the call closes, so they are
aligned on their ends. A turn counts when the agent was silent when the caller stopped and answered
within 6 s. The engine's own figure for the same replies (call.json) is printed beside it.

1. latency: the sample calls one at a time: p50/p95 over the turns (target: at least 20 turns).
2. capacity: N phones calling at once (N = 1, 2, 3, 4, 6...), each playing samples in turn until
   about --capacity-calls calls are done for the step (at least two per phone); a step passes with
   p95 voice_to_voice <= 1500 ms. Reports the largest N that passes. The phones are baresip
   processes on the same 2 cores as the agent: they take their share of the CPU.

Figures go to stdout and benchmarks/results/bench_sip.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.baresip import Baresip  # noqa: E402
from voiceagent.audio import load_audio, resample, write_wav  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.phone import PhoneService  # noqa: E402
from voiceagent.runtime import Runtime  # noqa: E402
from voiceagent.transcription import speech_segments  # noqa: E402

SAMPLES = ROOT / "samples" / "audio"
RATE = 8000
FRAME = RATE // 50
VOICED_RMS = 0.01  # a 20 ms frame above this on the phone's recording is the agent speaking
MAX_WAIT_S = 6.0
TAIL_S = 14.0  # silence after a sample's last turn: time for the last answer before the phone hangs up
CAPACITY_P95_MS = 1500.0
CAPACITY_STEPS = (1, 2, 3, 4, 6, 8)
# the phones' threads, apart from the default executor where the agent decodes and synthesises
PHONES = ThreadPoolExecutor(max_workers=max(CAPACITY_STEPS), thread_name_prefix="phone")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 1)


def caller_file(name: str, config: Config, out_dir: Path) -> tuple[Path, list[float]]:
    """The sample at 8 kHz with a short lead-in and a tail, and the ends of its turns' speech (s)."""
    audio = load_audio(SAMPLES / name, RATE).samples
    padded = np.concatenate([np.zeros(RATE // 2, np.float32), audio, np.zeros(int(TAIL_S * RATE), np.float32)])
    path = out_dir / name
    write_wav(path, padded, RATE)
    turns = speech_segments(resample(padded, RATE, 16000), config.vad)
    return path, [t.speech_end_s for t in turns]


def voice_to_voice(sent: np.ndarray, heard: np.ndarray, turn_ends_s: list[float]) -> list[float]:
    """Per caller turn, ms from the end of its speech to the agent's first voiced frame after it."""
    offset = len(sent) - len(heard)  # both dumps end when the call closes: align them on their ends
    n = len(heard) // FRAME
    rms = np.sqrt(np.mean(heard[: n * FRAME].reshape(n, FRAME) ** 2, axis=1))
    voiced = rms > VOICED_RMS
    out = []
    for end_s in turn_ends_s:
        frame = int((end_s * RATE - offset) // FRAME)
        if frame <= 0 or frame >= n or voiced[max(0, frame - 2): frame + 1].any():
            continue  # the agent was still talking when the caller stopped: not a clean turn
        later = np.flatnonzero(voiced[frame: frame + int(MAX_WAIT_S * 50)])
        if later.size:
            out.append(round(later[0] * 20.0, 1))
    return out


def phone_call(name: str, path: Path, ends: list[float], work: Path, port: int) -> dict:
    """One baresip phone's whole call, in a phone thread: starting a phone, waiting on its control
    socket and reading its recordings block, and must never hold up the agent's event loop."""
    user = f"c{secrets.token_hex(4)}"
    # a directory per phone: baresip names its recordings by the second, and the harness takes the
    # newest pair in the directory, which, shared, was another phone's call half the time
    with Baresip(user, audio_source=str(path), workdir=work / user) as caller:
        caller.dial(f"sip:agent@127.0.0.1:{port}")
        caller.wait_for("CALL_ESTABLISHED", 15)
        caller.wait_for("CALL_CLOSED", 180)
        sent, heard = caller.sent_audio(), caller.heard_audio()
    return {"sample": name, "v2v_ms": voice_to_voice(sent, heard, ends)}


async def one_call(phone: PhoneService, name: str, path: Path, ends: list[float], work: Path) -> dict:
    before = len(phone.records)
    call = await asyncio.get_running_loop().run_in_executor(PHONES, phone_call, name, path, ends, work, phone.port)
    await record_stored(phone.records, before)
    return call


async def record_stored(records: list, before: int) -> None:
    """The agent stores a call's record a moment after the caller hangs up: wait (up to 10 s) until
    `records` holds more than `before`."""
    for _ in range(100):
        if len(records) > before:
            return
        await asyncio.sleep(0.1)


async def latency(call, names: list[str], args, records, how: str, where: str) -> dict:
    """The sample calls one at a time, --repeat times over (`call(name)` returns its turns' voice to
    voice); p50/p95 beside the engine's own figure for the same replies. `records()`: the agent's
    finished calls."""
    print(f"== latency: {len(names)} sample calls x {args.repeat}, one at a time, {how}")
    v2v: list[float] = []
    first = len(records())
    for _ in range(args.repeat):
        for name in names:
            turns = await call(name)
            print(f"  {name:28s} v2v ms: {', '.join(str(int(x)) for x in turns) or '-'}", flush=True)
            v2v += turns
    engine = engine_v2v(records()[first:])
    lat = {"turns": len(v2v), "p50_ms": pct(v2v, 0.5), "p95_ms": pct(v2v, 0.95), "max_ms": max(v2v) if v2v else None,
           "engine_p50_ms": pct(engine, 0.5), "engine_p95_ms": pct(engine, 0.95)}
    print(f"voice_to_voice {where}: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms over {lat['turns']} turns"
          f" (the engine's own figure: p50 {lat['engine_p50_ms']}, p95 {lat['engine_p95_ms']})")
    return lat


def engine_v2v(records) -> list[float]:
    return [t.latency_ms["voice_to_voice"] for r in records for t in r.turns
            if t.role == "agent" and t.kind == "reply" and (t.latency_ms or {}).get("voice_to_voice")]  # 0: never heard


STAGES = ("endpoint", "asr", "llm_first_token", "tts_first_audio", "voice_to_voice")
LAGS: list[float] = []


def engine_stages(records) -> dict:
    turns = [t for r in records for t in r.turns if t.role == "agent" and t.kind == "reply" and t.latency_ms]
    return {s: pct([t.latency_ms.get(s) or 0.0 for t in turns], 0.95) for s in STAGES}


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # peers' processes, once waited for
    return ru.ru_utime + ru.ru_stime


async def _loop_lag(period_s: float = 0.01) -> None:
    """How late the event loop wakes a 10 ms sleeper (ms): the agent's media and turn-taking run on it."""
    LAGS.clear()
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period_s)
        LAGS.append((time.perf_counter() - t - period_s) * 1000)


def fresh_caches(runtime: Runtime) -> None:
    """The hot-reply and speech caches as a server has them just after start-up (the knowledge
    base's answers pre-synthesised, nothing else): a step must not be helped by the replies that
    the steps before it cached for the same few sample callers."""
    if runtime.dialog is not None and runtime.dialog.cache is not None:
        runtime.dialog.cache.clear()
    if runtime.tts is not None and getattr(runtime.tts, "cache", None) is not None:
        runtime.tts.cache.clear()
    runtime.prewarm_speech(background=False)


async def capacity(call, names: list[str], args, records, what: str, runtime: Runtime) -> dict:
    """N callers at once for N = 1, 2, 3...: each plays samples in turn (`call(name, line)` returns
    its turns' voice to voice) until about --capacity-calls calls are done for the step; stops at
    the first step whose p95 is over CAPACITY_P95_MS. `records()`: the agent's finished calls.
    Every step starts from the caches of a freshly started server (`fresh_caches`)."""
    steps = []
    for n in [s for s in CAPACITY_STEPS if s <= args.max_calls]:
        await asyncio.to_thread(fresh_caches, runtime)
        per_line = max(2, -(-args.capacity_calls // n))  # every step hears about the same number of calls
        rotation = [names[(i * per_line + k) % len(names)] for i in range(n) for k in range(per_line)]

        async def line(i: int) -> list[float]:
            out: list[float] = []
            await asyncio.sleep(i * 0.7)  # staggered, as calls arrive
            for name in rotation[i * per_line:(i + 1) * per_line]:
                out += await call(name, i)
            return out

        first = len(records())
        started, cpu0, phones0 = time.monotonic(), time.process_time(), _children_cpu_s()
        lag = asyncio.ensure_future(_loop_lag())
        v2v = [x for xs in await asyncio.gather(*(line(i) for i in range(n))) for x in xs]
        lag.cancel()
        wall = time.monotonic() - started
        step = {"calls": n, "turns": len(v2v), "p50_ms": pct(v2v, 0.5), "p95_ms": pct(v2v, 0.95),
                "engine_p95_ms": pct(engine_v2v(records()[first:]), 0.95),
                "seconds": round(wall, 1), "calls_played": n * per_line,
                # where the time goes: the agent's process (phone threads included), the phones'
                # processes (finished ones), the engine's stages, the event loop's lateness
                "agent_cpu_cores": round((time.process_time() - cpu0) / wall, 2),
                "peer_cpu_cores": round((_children_cpu_s() - phones0) / wall, 2),
                "engine_stage_p95_ms": engine_stages(records()[first:]),
                "loop_lag_ms": {"p99": pct(LAGS, 0.99), "max": max(LAGS, default=None)}}
        step["pass"] = bool(step["p95_ms"] is not None and step["p95_ms"] <= CAPACITY_P95_MS)
        steps.append(step)
        print(f"  {n} calls at once: {step['turns']} turns, p50 {step['p50_ms']} ms, p95 {step['p95_ms']} ms "
              f"(engine p95 {step['engine_p95_ms']}): {'pass' if step['pass'] else 'FAIL'}", flush=True)
        print(f"    agent CPU {step['agent_cpu_cores']} cores, peers {step['peer_cpu_cores']}; engine stage p95 "
              f"{step['engine_stage_p95_ms']}; loop lag p99/max {step['loop_lag_ms']}", flush=True)
        if not step["pass"]:
            break
    passing = [s["calls"] for s in steps if s["pass"]]
    result = {"steps": steps, "max_calls_passing": max(passing) if passing else 0}
    print(f"simultaneous {what} calls holding p95 voice_to_voice <= {CAPACITY_P95_MS:.0f} ms: "
          f"{result['max_calls_passing']}")
    return result


async def run(args) -> dict:
    config = Config.load(args.config) if args.config else Config()
    config.call.greeting = False
    config.sip.max_calls = max(config.sip.max_calls, *(CAPACITY_STEPS if args.capacity else (1,)))
    config.sip.rtp_port_min, config.sip.rtp_port_max = 36000, 37999
    runtime = Runtime.load(config)
    runtime.prewarm_speech(background=False)
    phone = PhoneService(config, runtime, host="127.0.0.1", port=0)
    await phone.start()
    work = Path(tempfile.mkdtemp(prefix="bench-sip-"))
    names = sorted(p.name for p in SAMPLES.glob(args.samples))
    files = {n: caller_file(n, config, work) for n in names}
    results: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": "2-core CPU",
                     "method": "baresip recordings, enc/dec aligned on their ends"}
    try:
        async def call(name: str, line: int = 0) -> list[float]:
            return (await one_call(phone, name, *files[name], work))["v2v_ms"]

        if args.latency:
            results["latency"] = await latency(call, names, args, lambda: phone.records, "real baresip phone",
                                               "at the phone")
        if args.capacity:
            results["capacity"] = await capacity(call, names, args, lambda: phone.records, "SIP", runtime)
    finally:
        await phone.stop()
    return results


def bench_main(run, doc: str, result_name: str) -> int:
    """The command line the phone benchmarks share: parse, run `run(args)`, write the figures to
    benchmarks/results/<result_name>."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--latency", action="store_true", help="part 1 (both parts run when none is named)")
    ap.add_argument("--capacity", action="store_true", help="part 2")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--max-calls", type=int, default=6)
    ap.add_argument("--capacity-calls", type=int, default=8, help="calls per capacity step (spread over the lines)")
    ap.add_argument("--samples", default="*.wav", help="which sample callers (a glob in samples/audio)")
    ap.add_argument("--config")
    args = ap.parse_args()
    if not (args.latency or args.capacity):
        args.latency = args.capacity = True
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(run(args))
    out = ROOT / "benchmarks" / "results" / result_name
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 0


def main() -> int:
    return bench_main(run, __doc__, "bench_sip.json")


if __name__ == "__main__":
    sys.exit(main())
