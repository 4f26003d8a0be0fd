#!/usr/bin/env python3
"""Whisper threads against parallel decodes: what `[asr] cpu_threads` and `parallel_decodes` buy.

    .venv/bin/python benchmarks/bench_asr_parallel.py

Decodes the sample calls' turns (cut by our VAD, language detected as on a call) with each layout
(threads per decode x decodes at once), first one decode at a time, then two and three in parallel,
and prints turns per second and the mean time a decode takes. Many calls need throughput; one call
needs a short decode.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.asr import WhisperASR  # noqa: E402
from voiceagent.audio import load_audio  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.transcription import speech_segments  # noqa: E402

LAYOUTS = ((2, 1), (1, 1), (1, 2), (2, 2))  # (threads per decode, CTranslate2 workers)


def main() -> None:
    config = Config()
    turns = []
    for path in sorted((ROOT / "samples" / "audio").glob("*.wav")):
        turns += [s.audio for s in speech_segments(load_audio(path, 16000).samples, config.vad)]
    print(f"{len(turns)} turns, mean {np.mean([len(t) for t in turns]) / 16000:.1f} s")
    print(f"{'threads':>7} {'workers':>7} {'at once':>7} {'turns/s':>8} {'mean decode ms':>15}")
    for threads, workers in LAYOUTS:
        asr = WhisperASR(replace(config.asr, cpu_threads=threads, parallel_decodes=workers))
        asr.warm_up()
        for at_once in (1, 2, 3):
            took: list[float] = []

            def decode(audio: np.ndarray) -> None:
                t = time.perf_counter()
                asr.transcribe(audio)
                took.append(time.perf_counter() - t)

            start = time.perf_counter()
            with ThreadPoolExecutor(at_once) as pool:
                list(pool.map(decode, turns))
            wall = time.perf_counter() - start
            print(f"{threads:>7} {workers:>7} {at_once:>7} {len(turns) / wall:>8.2f} {np.mean(took) * 1000:>15.0f}",
                  flush=True)
        del asr


if __name__ == "__main__":
    main()
