#!/usr/bin/env python3
"""LLM speed for both backends on the offline SmolLM2 GGUF: first-token latency and tokens per
second (median of a few runs), in-process through llama-cpp-python and over HTTP through the
OpenAI-compatible backend against a real `python -m llama_cpp.server` on a free loopback port.

    .venv/bin/python benchmarks/bench_llm.py [--runs 5] [--max-tokens 48] [--threads 1]

Greedy decoding, so both paths generate the same text; pieces are counted as tokens (both stream
one piece per generated token).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.config import LlmConfig  # noqa: E402
from voiceagent.errors import LlmUnavailable  # noqa: E402
from voiceagent.llm import LocalLlamaServer, create_llm  # noqa: E402
from voiceagent.provision import resolve  # noqa: E402

PROMPTS = [
    [{"role": "system", "content": "You are a phone customer-service agent for an online shop. "
                                   "Reply in one short, polite sentence."},
     {"role": "user", "content": "Hello, how are you today?"}],
    [{"role": "user", "content": "Thank you for your help, have a nice day."}],
    [{"role": "user", "content": "Can you tell me a little about yourself?"}],
]


def measure(llm, runs: int, max_tokens: int) -> dict:
    list(llm.stream(PROMPTS[0], max_tokens=4))  # warm-up: first evaluation, connection
    first, rate, counts = [], [], []
    for i in range(runs):
        t0 = time.perf_counter()
        t_first = None
        n = 0
        for _ in llm.stream(PROMPTS[i % len(PROMPTS)], max_tokens=max_tokens):
            if t_first is None:
                t_first = time.perf_counter()
            n += 1
        t_end = time.perf_counter()
        first.append((t_first - t0) * 1000)
        if n > 1:
            rate.append((n - 1) / (t_end - t_first))
        counts.append(n)
    return {"first_token_ms": statistics.median(first), "tokens_per_s": statistics.median(rate) if rate else 0.0,
            "tokens": statistics.median(counts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    path = resolve("smollm2-135m", "llm")
    gguf = next(iter(sorted(path.glob("*.gguf")))) if path.is_dir() else path
    cfg = dict(temperature=0.0, max_tokens=args.max_tokens, n_threads=args.threads)
    rows = []

    local = create_llm(LlmConfig(backend="llama-cpp", model=str(gguf), **cfg))
    rows.append((local.name, measure(local, args.runs, args.max_tokens)))
    local.close()

    try:
        with LocalLlamaServer(gguf, args.threads) as base, \
                create_llm(LlmConfig(backend="openai", base_url=base, model=gguf.stem, timeout_s=60, **cfg)) as remote:
            rows.append(("openai -> llama_cpp.server", measure(remote, args.runs, args.max_tokens)))
    except LlmUnavailable as e:
        raise SystemExit(str(e)) from None

    print(f"{gguf.name}, {args.threads} thread(s), max_tokens {args.max_tokens}, median of {args.runs} runs")
    print(f"{'backend':<44} {'first token ms':>14} {'tokens/s':>9} {'tokens':>7}")
    for name, m in rows:
        print(f"{name:<44} {m['first_token_ms']:>14.1f} {m['tokens_per_s']:>9.1f} {m['tokens']:>7.0f}")


if __name__ == "__main__":
    main()
