"""The end-of-turn model on its held-out turns (templates training never saw), then on dev.

Per language: accuracy (P >= 0.5 against the label), finished turns judged finished (P >= high:
the short window), finished judged unfinished (P <= low: the long window), unfinished judged
finished (cut-offs: the caller would be cut off after the short window), and the mean silence
window of finished turns, against the word rules (turn_completion.completion, the old windows
500/800/1600 ms). Voiced turns (synthesised speech cut mid-sentence) are also shown with and
without their voice features. Last, the time of one call with 3 s of audio.

    .venv/bin/python benchmarks/eval_turn_end.py [--model models/turn_end/turn_end.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.train_turn_end import DATA, featurise, load_turns, predict, rates  # noqa: E402
from voiceagent.config import VadConfig  # noqa: E402
from voiceagent.turn_completion import Completion, completion  # noqa: E402
from voiceagent.turn_end import DEFAULT_MODEL, load_model  # noqa: E402

RULE_WINDOWS = {Completion.COMPLETE: 500, Completion.UNKNOWN: 800, Completion.INCOMPLETE: 1600}


def _windows(p: np.ndarray, high: float, low: float, vad: VadConfig) -> np.ndarray:
    share = np.clip((high - p) / (high - low), 0, 1)
    return vad.complete_silence_ms + share * (vad.incomplete_silence_ms - vad.complete_silence_ms)


def evaluate(split: str, turns: list[dict], model, vad: VadConfig) -> None:
    print(f"== {split}")
    for lang in ("en", "zh"):
        sub = [t for t in turns if t["lang"] == lang]
        voiced = [t for t in sub if t.get("audio")]
        for label, rows, audio in ((f"{lang} all (words)", sub, False), (f"{lang} voiced: words+voice", voiced, True),
                                   (f"{lang} voiced: words only", voiced, False)):
            if not rows:
                continue
            m = featurise(rows, with_audio=audio)
            p = predict(model, m)
            r = rates(p, m.y, model.high, model.low)
            wait = _windows(p[m.y == 1], model.high, model.low, vad).mean()
            print(f"  {label:26s} n={r['n']:5d} accuracy={r['accuracy']:.3f}  finished->finished={r['finished_judged_finished']:.3f}"
                  f"  finished->unfinished={r['finished_judged_unfinished']:.3f}"
                  f"  cut-offs={r['cutoff']:.3f}  mean wait finished={wait:.0f} ms")
        verdicts = [completion(t["text"], t.get("expecting_number", False)) for t in sub]
        y = np.array([t["label"] for t in sub])
        fin = [v for v, l in zip(verdicts, y) if l == 1]
        unf = [v for v, l in zip(verdicts, y) if l == 0]
        print(f"  {lang + ' word rules':26s} n={len(sub):5d}  finished->finished={np.mean([v is Completion.COMPLETE for v in fin]):.3f}"
              f"  finished->unfinished={np.mean([v is Completion.INCOMPLETE for v in fin]):.3f}"
              f"  cut-offs={np.mean([v is Completion.COMPLETE for v in unf]):.3f}"
              f"  mean wait finished={np.mean([RULE_WINDOWS[v] for v in fin]):.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    model, vad = load_model(args.model), VadConfig()
    turns = load_turns(DATA)
    print(f"model {args.model}: high {model.high}, low {model.low}; windows {vad.complete_silence_ms}.."
          f"{vad.incomplete_silence_ms} ms")
    evaluate("held-out (templates never trained on)", [t for t in turns if t["split"] == "heldout"], model, vad)
    evaluate("dev (chose the thresholds)", [t for t in turns if t["split"] == "dev"], model, vad)
    rng = np.random.default_rng(0)
    audio = (0.1 * np.sin(2 * np.pi * 140 * np.arange(48000) / 16000) + rng.normal(0, 0.01, 48000)).astype(np.float32)
    text = "Hi, I ordered a pair of running shoes last week. Can you tell me where my package is?"
    model.probability(text, "en", audio)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(200):
        model.probability(text, "en", audio)
    # CPU time too: on a loaded machine the wall time counts the waits for a core
    print(f"one call (words + 3 s of audio): {(time.perf_counter() - t0) / 200 * 1000:.2f} ms wall, "
          f"{(time.process_time() - c0) / 200 * 1000:.2f} ms CPU")


if __name__ == "__main__":
    main()
