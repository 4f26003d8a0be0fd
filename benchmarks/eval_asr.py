#!/usr/bin/env python3
"""ASR on the sample turns: Whisper's padded 30 s window (the long path) against the short window.

    .venv/bin/python benchmarks/eval_asr.py               # median of 3 decodes per turn
    .venv/bin/python benchmarks/eval_asr.py --repeat 5
    .venv/bin/python benchmarks/eval_asr.py --pad 2.0     # try another silence pad (WINDOW_PAD_S)

Turns are cut by the same VAD/endpointing as `voiceagent transcribe`. For every turn it prints the
reference, both transcripts and their decode times (language pinned), then mean ms per turn, the
short path with language detection included, detection accuracy, and the corpus error rates
against samples/audio/transcripts.json: WER for English, CER for Mandarin (lowercased, punctuation
dropped, spoken digits turned into digits on both sides). Figures go to stdout and to
benchmarks/results/eval_asr.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent import asr as asr_module  # noqa: E402
from voiceagent.audio import load_audio  # noqa: E402
from voiceagent.config import Config  # noqa: E402
from voiceagent.textnorm import join_digit_groups, spoken_digits_to_arabic, to_simplified  # noqa: E402
from voiceagent.transcription import speech_segments  # noqa: E402

SAMPLES = ROOT / "samples" / "audio"


def units(text: str, language: str) -> list[str]:
    """Words (en) or characters (zh), lowercased, without punctuation, digits kept."""
    text = join_digit_groups(spoken_digits_to_arabic(to_simplified(text).lower()))
    if language == "zh":
        return re.findall(r"[\u4e00-\u9fff0-9a-z]", text)
    return re.findall(r"[a-z0-9']+", text)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref[i - 1] != hyp[j - 1]))
    return row[-1]


def timed(asr, fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        asr._model.encode._key = None  # no encoder-cache hits from the previous repetition
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return out, statistics.median(times)


def full_window_language(asr, audio: np.ndarray) -> str:
    """Language as detected before the short window: on the padded 30 s window."""
    from faster_whisper.audio import pad_or_trim

    model = asr._model
    features = model.feature_extractor(audio)
    features = pad_or_trim(features[:, : min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)])
    with asr._decode_slots.hold():
        return asr._detect(features)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pad", type=float, default=asr_module.WINDOW_PAD_S)
    ap.add_argument("--config")
    args = ap.parse_args()

    asr_module.WINDOW_PAD_S = args.pad
    config = Config.load(args.config)
    asr = asr_module.WhisperASR(config.asr)
    asr.warm_up()
    scripts = json.loads((SAMPLES / "transcripts.json").read_text(encoding="utf-8"))

    rows = []
    for name, script in scripts.items():
        lang = script["language"]
        audio = load_audio(SAMPLES / name, 16000).samples
        turns = speech_segments(audio, config.vad)
        if len(turns) != len(script["turns"]):
            print(f"{name}: VAD cut {len(turns)} turns, the script has {len(script['turns'])}; skipped")
            continue
        for i, (turn, ref) in enumerate(zip(turns, script["turns"])):
            full, full_ms = timed(asr, lambda: asr._transcribe_long(turn.audio, lang, True), args.repeat)
            short, short_ms = timed(asr, lambda: asr.transcribe(turn.audio, lang), args.repeat)
            auto, auto_ms = timed(asr, lambda: asr.transcribe(turn.audio), args.repeat)
            ref_units = units(ref["text"], lang)
            row = {
                "file": name, "turn": i, "language": lang, "duration_s": round(len(turn.audio) / 16000, 2),
                "reference": ref["text"], "full": full.text, "short": short.text, "short_auto": auto.text,
                "full_ms": round(full_ms, 1), "short_ms": round(short_ms, 1), "short_auto_ms": round(auto_ms, 1),
                "detected_short": auto.language, "detected_full": full_window_language(asr, turn.audio),
                "ref_units": len(ref_units),
                "full_errors": edit_distance(ref_units, units(full.text, lang)),
                "short_errors": edit_distance(ref_units, units(short.text, lang)),
            }
            rows.append(row)
            print(f"{name}#{i} {row['duration_s']} s  full {full_ms:.0f} ms  short {short_ms:.0f} ms  "
                  f"(auto {auto_ms:.0f} ms, detected {auto.language})")
            print(f"  ref:   {ref['text']}\n  full:  {full.text}\n  short: {short.text}")

    def mean(key: str, subset=rows) -> float:
        return round(statistics.mean(r[key] for r in subset), 1)

    def error_rate(key: str, language: str) -> float:
        subset = [r for r in rows if r["language"] == language]
        return round(sum(r[key] for r in subset) / max(1, sum(r["ref_units"] for r in subset)), 4)

    result = {
        "window_pad_s": args.pad,
        "repeat": args.repeat,
        "turns": len(rows),
        "mean_ms": {"full": mean("full_ms"), "short": mean("short_ms"), "short_auto": mean("short_auto_ms")},
        "speedup": round(mean("full_ms") / mean("short_ms"), 2),
        "mean_ms_by_language": {
            lang: {"full": mean("full_ms", sub), "short": mean("short_ms", sub)}
            for lang in ("en", "zh") if (sub := [r for r in rows if r["language"] == lang])
        },
        "wer_en": {"full": error_rate("full_errors", "en"), "short": error_rate("short_errors", "en")},
        "cer_zh": {"full": error_rate("full_errors", "zh"), "short": error_rate("short_errors", "zh")},
        "language_detection_accuracy": {
            "short": round(statistics.mean(r["detected_short"] == r["language"] for r in rows), 3),
            "full": round(statistics.mean(r["detected_full"] == r["language"] for r in rows), 3),
        },
        "rows": rows,
    }
    print(f"\n{result['turns']} turns, median of {args.repeat} decodes each, pad {args.pad} s")
    print(f"mean ms/turn: full {result['mean_ms']['full']}  short {result['mean_ms']['short']}  "
          f"(x{result['speedup']})  short with detection {result['mean_ms']['short_auto']}")
    print(f"WER en: full {result['wer_en']['full']:.3f}  short {result['wer_en']['short']:.3f}")
    print(f"CER zh: full {result['cer_zh']['full']:.3f}  short {result['cer_zh']['short']:.3f}")
    print(f"language detection: short {result['language_detection_accuracy']['short']:.0%}  "
          f"full {result['language_detection_accuracy']['full']:.0%}")
    out = ROOT / "benchmarks" / "results" / "eval_asr.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
