"""Call recordings: the cost per 20 ms frame on the event loop (resample + copy, and the spill hand-off
it sometimes makes), finish() time, and the file's size per minute, for a phone leg (8 kHz in, 8 kHz
recorded), a browser leg (48 kHz in, 16 kHz recorded) and a 16 kHz engine reply.

    .venv/bin/python benchmarks/bench_recordings.py [--minutes 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from telephony.audio import AudioFrame
from voiceagent.ops.recordings import CallRecorder


def run(in_rate: int, rec_rate: int, minutes: float, directory: Path) -> dict:
    rng = np.random.default_rng(0)
    frame_len = in_rate // 50
    n = int(minutes * 60 * 50)
    t = np.arange(frame_len) / in_rate
    recorder = CallRecorder(f"bench-{in_rate}-{rec_rate}", rec_rate, directory)
    per_frame = []
    for i in range(n):
        # speech-like: a tone with a syllable rhythm plus noise, the two sides taking turns every 5 s
        voice = (0.3 * np.sin(2 * np.pi * 220 * (t + i / 50)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * i / 50))
                 + 0.03 * rng.standard_normal(frame_len)).astype(np.float32)
        silence = np.zeros(frame_len, np.float32)
        caller_turn = (i // 250) % 2 == 0
        started = time.perf_counter()
        recorder.caller(AudioFrame(voice if caller_turn else silence, in_rate, i / 50))
        recorder.agent(AudioFrame(silence if caller_turn else voice, in_rate, i / 50))
        per_frame.append(time.perf_counter() - started)
    started = time.perf_counter()
    path = recorder.finish()
    finish_s = time.perf_counter() - started
    us = np.array(per_frame) * 1e6 / 2  # per side
    return {"in": in_rate, "rec": rec_rate, "format": path.suffix, "frame_us_p50": np.percentile(us, 50),
            "frame_us_p99": np.percentile(us, 99), "frame_us_max": us.max(), "finish_s": finish_s,
            "kB_per_min": os.path.getsize(path) / 1000 / minutes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for in_rate, rec_rate in ((8000, 8000), (48000, 16000), (16000, 16000)):
            r = run(in_rate, rec_rate, args.minutes, Path(tmp))
            print(f"{r['in']:>5} Hz in -> {r['rec']:>5} Hz {r['format']}: "
                  f"per frame and side p50 {r['frame_us_p50']:.0f} us, "
                  f"p99 {r['frame_us_p99']:.0f} us, max {r['frame_us_max']:.0f} us; finish {r['finish_s']:.2f} s "
                  f"for {args.minutes:g} min; {r['kB_per_min']:.0f} kB/min")


if __name__ == "__main__":
    main()
