#!/usr/bin/env python3
"""Anger detection from the words on the labelled caller turns: recall and precision per language,
and the 5-way label accuracy.

    .venv/bin/python benchmarks/eval_emotion.py            # test set (tests/data/emotion/) and dev set
    .venv/bin/python benchmarks/eval_emotion.py --errors   # also list the turns it gets wrong
    .venv/bin/python benchmarks/eval_emotion.py --cues     # the cue lexicon alone, without the classifier

The test set was written by someone who never saw the detector, and neither training nor the
threshold saw it; the dev set chose the threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceagent.perception.text_emotion import detect_emotion  # noqa: E402

TEST = ROOT / "tests" / "data" / "emotion"
DEV = ROOT / "training" / "data" / "emotion" / "emotion_dev.jsonl"


def load(path: Path, lang: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r.setdefault("lang", lang)
    return rows


def test_rows() -> list[dict]:
    return load(TEST / "labelled_zh.jsonl", "zh") + load(TEST / "labelled_en.jsonl", "en")


def scores(rows: list[dict], classifier) -> dict[str, dict[str, float]]:
    """Per language: anger recall, precision, 5-way accuracy, and the wrong turns."""
    out = {}
    for lang in ("zh", "en"):
        tp = fp = fn = right = n = 0
        wrong = []
        for r in (r for r in rows if r["lang"] == lang):
            got = detect_emotion(r["text"], classifier)
            n += 1
            right += got.label == r["emotion"]
            if (got.label == "angry") != (r["emotion"] == "angry"):
                wrong.append((r["emotion"], got.label, got.anger, r["text"]))
            tp += got.label == "angry" and r["emotion"] == "angry"
            fp += got.label == "angry" and r["emotion"] != "angry"
            fn += got.label != "angry" and r["emotion"] == "angry"
        out[lang] = {"n": n, "recall": tp / max(1, tp + fn), "precision": tp / max(1, tp + fp),
                     "accuracy": right / max(1, n), "wrong": wrong}
    return out


def classifier_from_models():
    from voiceagent.dialog.nlu_model import intent_encoder
    from voiceagent.embeddings import Embedder
    from voiceagent.perception.text_emotion import load_anger_classifier

    return load_anger_classifier(Embedder("e5-small"), intent_encoder())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--errors", action="store_true")
    ap.add_argument("--cues", action="store_true", help="the cue lexicon alone")
    args = ap.parse_args()
    classifier = None if args.cues else classifier_from_models()
    for name, rows in (("test", test_rows()), ("dev", load(DEV))):
        t0 = time.perf_counter()
        result = scores(rows, classifier)
        ms = (time.perf_counter() - t0) * 1000 / max(1, len(rows))
        for lang, s in result.items():
            print(f"{name:4} {lang}: n={s['n']:3}  anger recall {s['recall']:.3f}  precision {s['precision']:.3f}  "
                  f"5-way accuracy {s['accuracy']:.3f}")
            if args.errors:
                for truth, got, anger, text in s["wrong"]:
                    print(f"      {truth:>9} -> {got:<9} {anger:.2f}  {text}")
        print(f"{name:4} {ms:.1f} ms a turn ({'cues alone' if classifier is None else 'classifier + cues'})")


if __name__ == "__main__":
    main()
