#!/usr/bin/env python3
"""NLU figures on the held-out dev set: intent macro-F1, accuracy, calibration error, slot exact
match, per intent and per language.

    .venv/bin/python benchmarks/eval_nlu.py [--errors]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voiceagent.config import Config  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from voiceagent.runtime import Runtime  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--errors", action="store_true", help="list the misclassified utterances")
    args = ap.parse_args()
    report = evaluate(Runtime.load(Config(), parts=("dialog",)).nlu)
    print(f"dev utterances {report.utterances}: intent macro-F1 {report.macro_f1}, accuracy {report.accuracy}, "
          f"ECE {report.ece}, slot exact match {report.slot_exact_match}")
    print("macro-F1 by language:", report.by_language_f1)
    for intent, f1 in sorted(report.per_intent_f1.items(), key=lambda kv: kv[1]):
        print(f"  {intent:<22}{f1}")
    if args.errors:
        for text, gold, pred in report.errors:
            print(f"{gold:>20} -> {pred:<20} {text}")


if __name__ == "__main__":
    main()
