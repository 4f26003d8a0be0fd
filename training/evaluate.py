"""Evaluation of the NLU on the held-out dev set (templates never used in training):
intent macro-F1 and accuracy, calibration (expected calibration error of the confidence), and
slot exact match. Used by benchmarks/eval_nlu.py and the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voiceagent.dialog.intents import INTENTS, SLOTS

from .nlu_data import load_rows


@dataclass
class NluReport:
    utterances: int
    accuracy: float
    macro_f1: float
    ece: float
    slot_exact_match: float
    per_intent_f1: dict[str, float] = field(default_factory=dict)
    by_language_f1: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[str, str, str]] = field(default_factory=list)


def macro_f1(gold: list[str], pred: list[str]) -> tuple[float, dict[str, float]]:
    per = {}
    for label in INTENTS:
        tp = sum(g == label and p == label for g, p in zip(gold, pred))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        if tp + fp + fn:
            per[label] = 2 * tp / (2 * tp + fp + fn)
    return float(np.mean(list(per.values()))), per


def expected_calibration_error(confidence: list[float], correct: list[bool], bins: int = 10) -> float:
    conf, ok = np.array(confidence), np.array(correct, dtype=float)
    ece = 0.0
    for lo in np.linspace(0, 1, bins, endpoint=False):
        mask = (conf > lo) & (conf <= lo + 1 / bins)
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - ok[mask].mean())
    return float(ece)


def evaluate(nlu, split: str = "dev") -> NluReport:
    rows = load_rows(split)
    gold, pred, conf, slot_ok = [], [], [], []
    errors = []
    for row in rows:
        u = nlu.understand(row["text"], row["lang"])
        gold.append(row["intent"])
        pred.append(u.intent)
        conf.append(u.confidence)
        predicted = {k: v for k, v in u.slots.items() if k in SLOTS}
        slot_ok.append(predicted == row["slots"])
        if u.intent != row["intent"]:
            errors.append((row["text"], row["intent"], u.intent))
    f1, per = macro_f1(gold, pred)
    by_lang = {}
    for lang in ("zh", "en"):
        idx = [i for i, r in enumerate(rows) if r["lang"] == lang]
        by_lang[lang] = round(macro_f1([gold[i] for i in idx], [pred[i] for i in idx])[0], 3)
    return NluReport(
        utterances=len(rows),
        accuracy=round(float(np.mean([g == p for g, p in zip(gold, pred)])), 3),
        macro_f1=round(f1, 3),
        ece=round(expected_calibration_error(conf, [g == p for g, p in zip(gold, pred)]), 3),
        slot_exact_match=round(float(np.mean(slot_ok)), 3),
        per_intent_f1={k: round(v, 3) for k, v in per.items()},
        by_language_f1=by_lang,
        errors=errors,
    )
