#!/usr/bin/env python3
"""Per-stage latency of whole calls on the sample recordings, model load time, peak memory.

    .venv/bin/python benchmarks/bench_call.py              # real-time pace (as a live call)
    .venv/bin/python benchmarks/bench_call.py --fast       # skip waiting between turns
    .venv/bin/python benchmarks/bench_call.py --repeat 3   # more turns for steadier figures

Runs the same session code as `voiceagent call`, in one process with the models loaded once,
and prints medians (and p95 of voice-to-voice) over every agent turn. Figures go to stdout and
to benchmarks/results/bench_call.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.audio import load_audio  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.legs import FileLeg  # noqa: E402
from voiceagent.runtime import Runtime  # noqa: E402
from voiceagent.session import CallSession, SessionOptions  # noqa: E402

STAGES = ("endpoint", "asr", "llm_first_token", "tts_first_audio", "voice_to_voice")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--config")
    args = ap.parse_args()

    config = Config.load(args.config)
    t0 = time.perf_counter()
    runtime = Runtime.load(config)
    load_s = time.perf_counter() - t0
    samples = sorted((ROOT / "samples" / "audio").glob("*.wav"))
    rows: dict[str, list[float]] = {s: [] for s in STAGES}
    by_lang: dict[str, list[float]] = {}
    calls = 0
    for _ in range(args.repeat):
        for path in samples:
            audio = load_audio(path, 16000)
            leg = FileLeg(audio.samples, 16000, realtime=not args.fast)
            session = CallSession(runtime, leg, SessionOptions(greeting=False))
            record = asyncio.run(session.run())
            calls += 1
            for turn in record.turns:
                if turn.role != "agent":
                    continue
                for stage in STAGES:
                    rows[stage].append(turn.latency_ms[stage])
                by_lang.setdefault(record.language, []).append(turn.latency_ms["voice_to_voice"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "mode": "fast" if args.fast else "realtime",
        "calls": calls,
        "agent_turns": len(rows["voice_to_voice"]),
        "median_ms": {s: round(statistics.median(v), 1) for s, v in rows.items()},
        "p95_ms": {s: round(pct(v, 0.95), 1) for s, v in rows.items()},
        "voice_to_voice_median_by_language_ms": {k: round(statistics.median(v), 1) for k, v in by_lang.items()},
        "model_load_s": {"total": round(load_s, 2), **runtime.load_times_s},
        "peak_rss_mb": round(peak_mb, 1),
    }
    print(f"{result['calls']} calls, {result['agent_turns']} agent turns ({result['mode']})")
    print(f"{'stage':<18}{'median ms':>12}{'p95 ms':>10}")
    for s in STAGES:
        print(f"{s:<18}{result['median_ms'][s]:>12}{result['p95_ms'][s]:>10}")
    print("voice_to_voice median by language:", result["voice_to_voice_median_by_language_ms"])
    print("model load (s):", result["model_load_s"])
    print("peak RSS (MB):", result["peak_rss_mb"])
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_call.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
