"""The NLU on its held-out dev set, and the hygiene of that set."""

import hashlib

import numpy as np

from training.evaluate import evaluate
from training.nlu_data import load_rows, split_path
from voiceagent.dialog.intents import INTENTS
from voiceagent.dialog.nlu_model import MODEL_PATH, encoder_sha


def test_dev_set_is_kept_apart_from_training():
    train, dev = load_rows("train"), load_rows("dev")
    assert not {r["template"] for r in train} & {r["template"] for r in dev}
    assert not {r["text"] for r in train} & {r["text"] for r in dev}
    for rows in (train, dev):
        assert {r["intent"] for r in rows} == set(INTENTS)
        assert {r["lang"] for r in rows} == {"zh", "en"}


def test_shipped_model_was_trained_on_the_shipped_data():
    model = np.load(MODEL_PATH)
    assert str(model["train_sha"]) == hashlib.sha256(split_path("train").read_bytes()).hexdigest()
    assert str(model["encoder_sha"]) == encoder_sha()  # and on the shipped tuned encoder


def test_dev_figures(dialog_runtime):
    report = evaluate(dialog_runtime.nlu)
    # Measured on 4 119 held-out utterances: 0.910 macro-F1 (target 0.92 not reached yet), ECE 0.014,
    # slots 0.946, zh 0.922 / en 0.898. These floors catch regressions.
    assert report.macro_f1 >= 0.91
    assert report.ece <= 0.05  # confidence means what it says
    assert report.slot_exact_match >= 0.92
    assert min(report.by_language_f1.values()) >= 0.89
