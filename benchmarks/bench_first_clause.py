#!/usr/bin/env python3
"""The English reply's first audio: how long piper takes to make the first piece that plays, with
the reply cut as the call cuts it (tts.sentences.synthesize_clauses) and, for comparison, with the
first sentence made whole (how a sentence without commas was made before the first-clause rule).
Also piper's time against the piece's length, and the ONNX session's thread count.

    .venv/bin/python benchmarks/bench_first_clause.py [--threads 1 2] [--repeat 3] [--show]

No cache in front of the voice: every piece is synthesised (a hot sentence replayed from the
speech cache costs nothing and is not what this measures). Prints p50/p95 in milliseconds, wall
clock and CPU (the CPU figure is what a busy machine cannot inflate).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.config import Config  # noqa: E402
from voiceagent.tts.piper import PiperVoiceBackend  # noqa: E402
from voiceagent.tts.sentences import split_sentences, synthesize_clauses  # noqa: E402

# English replies as the dialog says them (templates filled with demo-shop facts), short to long
REPLIES = [
    "Sure, cushioned running shoes. What's the reason for the return?",
    "So I'll exchange cushioned running shoes for size 39. Shall I go ahead?",
    "Okay, I've cancelled that request. Is there anything else I can help with?",
    "Your complaint is already logged as CP2611200001; someone will follow it up.",
    "Your order 53538694 hasn't been delivered yet; you can return it once it arrives.",
    "So I'll return classic carry-on suitcase, reason: changed your mind. Shall I go ahead?",
    "Before I share that order's details, could you tell me the last four digits of the phone number on the account?",
    "I'm very sorry about this. I've logged complaint CP2611200001 and sent you a 50 yuan coupon for orders over 199 yuan.",
    "The basic lightweight down jacket comes in beige, black, pink, sizes S, M, L, XL, XXL. Which would you like?",
    "Your order 90129483, tracking number ZT674938621318, shipped on November 18 with ZTO Express.",
    "Once the returned item passes inspection, the refund goes back to the original payment method within 1 to 3 business days.",
    "I'm transferring you to a member of our team now, please hold.",
    "Your order has shipped and should arrive on November 20.",
    "The cushioned running shoes run half a size small, so go up half a size.",
]


SAMPLE = "the parcel left the warehouse on time today and it should reach you soon"


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def first_chunk_ms(chunks) -> tuple[float, float, str]:
    """Wall and CPU milliseconds (all of this process's threads) to the first chunk, and its text."""
    t0, c0 = time.perf_counter(), time.process_time()
    chunk = next(iter(chunks))
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, chunk.text


def median_of(runs: list[tuple[float, float, str]]) -> tuple[float, float, str]:
    wall = sorted(r[0] for r in runs)[len(runs) // 2]
    cpu = sorted(r[1] for r in runs)[len(runs) // 2]
    return wall, cpu, runs[0][2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="*", default=[1], help="ONNX intra-op threads to compare (e.g. 1 2)")
    ap.add_argument("--repeat", type=int, default=3, help="times each reply is made (the median counts)")
    ap.add_argument("--show", action="store_true", help="print each reply's first piece")
    args = ap.parse_args()

    config = Config()
    print(f"load average (1 min) {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for threads in args.threads:
        t0 = time.perf_counter()
        voice = PiperVoiceBackend(config.tts.en_voice, speed=config.tts.speed, threads=threads)
        print(f"== piper {voice.name}, intra-op threads {threads} (loaded in {time.perf_counter() - t0:.2f} s)")
        list(voice.synthesize("OK."))  # warm-up: the first run allocates
        cut, whole = [], []
        for text in REPLIES:
            cut.append(median_of([first_chunk_ms(synthesize_clauses(voice, text)) for _ in range(args.repeat)]))
            first = split_sentences(text)[0]
            whole.append(median_of([first_chunk_ms(voice.synthesize(first)) for _ in range(args.repeat)]))
            if args.show:
                print(f"  {cut[-1][0]:6.0f} ms (whole sentence {whole[-1][0]:6.0f} ms)  {cut[-1][2]!r}")
        for label, runs in (("first audio, reply cut as on a call", cut),
                            ("first sentence made whole (before)", whole)):
            wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
            words = [len(r[2].split()) for r in runs]
            print(f"{label:<37} wall p50 {percentile(wall, 0.5):5.0f} ms  p95 {percentile(wall, 0.95):5.0f} ms   "
                  f"CPU p50 {percentile(cpu, 0.5):5.0f} ms  p95 {percentile(cpu, 0.95):5.0f} ms   "
                  f"(first piece {percentile(words, 0.5):.0f} words p50, {max(words)} max)")
        per_word = []
        for words in (3, 6, 10):
            text = " ".join(SAMPLE.split()[:words]) + "."
            wall, cpu, _ = median_of([first_chunk_ms(voice.synthesize(text)) for _ in range(args.repeat)])
            per_word.append(f"{words} words {wall:.0f} ms (CPU {cpu:.0f})")
        print("piper by length: " + ", ".join(per_word))
    return 0


if __name__ == "__main__":
    sys.exit(main())
