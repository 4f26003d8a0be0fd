"""Trains the intent classifier: multinomial logistic regression on the intent encoder's sentence
embeddings (multilingual-e5-small with fine-tuned upper layers, finetune_encoder.py) and lexical
n-grams, with a temperature fitted on the templates the encoder was not tuned on, so that its
confidence is calibrated. Data: training/data/nlu_train.jsonl (make_nlu_data.py); nlu_dev.jsonl is
never seen here.

    .venv/bin/python -m training.train_intents      # writes models/nlu/intent_classifier.npz
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from voiceagent import paths
from voiceagent.lexical import lexical
from voiceagent.dialog.intents import INTENTS
from voiceagent.dialog.nlu_model import MODEL_PATH, encoder_sha, intent_encoder

from .nlu_data import held_out, load_rows, split_path


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-4, steps: int = 600, lr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent with momentum; class-balanced so rare intents count."""
    n, d = x.shape
    k = len(INTENTS)
    onehot = np.eye(k, dtype=np.float32)[y]
    weight = (n / (k * np.maximum(np.bincount(y, minlength=k), 1)))[y][:, None].astype(np.float32)
    w = np.zeros((d, k), np.float32)
    b = np.zeros(k, np.float32)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    scale = 20.0  # e5 embeddings are unit vectors with small spread; scaling speeds up learning
    xs = x * scale
    for _ in range(steps):
        p = softmax(xs @ w + b)
        g = weight * (p - onehot) / n
        gw = xs.T @ g + l2 * w
        gb = g.sum(axis=0)
        vw = 0.9 * vw - lr * gw
        vb = 0.9 * vb - lr * gb
        w += vw
        b += vb
    return w * scale, b


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    best_t, best_nll = 1.0, float("inf")
    for t in np.arange(0.3, 4.0, 0.05):
        p = softmax(logits / t)
        nll = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


LEXICAL_WEIGHT = 0.5  # lexical n-grams beside the sentence embedding (chosen on out-of-fold F1)
L2 = 1e-3


def featurize(embed, texts: list[str]) -> np.ndarray:
    return np.hstack([embed(texts), LEXICAL_WEIGHT * lexical(texts)])


def cached_embed(embed, name: str):
    """`embed`, remembering every sentence's vector under var/ (a retrain after adding templates
    embeds only the new sentences: minutes saved on two cores)."""
    path = paths.var_dir() / f"nlu-embeddings-{name.replace(':', '_')}.npz"

    def run(texts: list[str]) -> np.ndarray:
        known = dict(np.load(path)) if path.exists() else {}
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        todo = sorted({(k, t) for k, t in zip(keys, texts) if k not in known})
        if todo:
            for (k, _), vec in zip(todo, embed([t for _, t in todo])):
                known[k] = vec
            np.savez(path, **known)
        return np.stack([known[k] for k in keys])

    return run


def train(embed) -> dict:
    rows = load_rows("train")
    x = featurize(embed, [r["text"] for r in rows])
    y = np.array([INTENTS.index(r["intent"]) for r in rows])
    # Calibration on the templates the encoder never learnt from: on the others its embeddings
    # separate the intents better than they will on a caller's new sentence.
    held = np.array([held_out(r["template"]) for r in rows])
    w, b = fit(x[~held], y[~held], l2=L2)
    oof = x[held] @ w + b
    temperature = fit_temperature(oof, y[held])
    w, b = fit(x, y, l2=L2)
    return {"w": w, "b": b, "temperature": np.float32(temperature), "labels": np.array(INTENTS),
            "oof_accuracy": np.float32((oof.argmax(1) == y[held]).mean()), "lexical_weight": np.float32(LEXICAL_WEIGHT),
            "train_sha": hashlib.sha256(split_path("train").read_bytes()).hexdigest(),
            "encoder_sha": encoder_sha()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Fit the calibrated intent classifier on the tuned encoder's embeddings.")
    ap.add_argument("--threads", type=int, default=2, help="encoder threads (training is offline: all the cores)")
    ap.add_argument("--out", type=Path, default=MODEL_PATH, help="where to write the model (default: the shipped one)")
    args = ap.parse_args(argv)
    embedder = intent_encoder(threads=args.threads)
    model = train(cached_embed(embedder.embed, embedder.name))
    model["embedder"] = embedder.name
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **model)
    print(f"trained on {len(load_rows('train'))} utterances; temperature {float(model['temperature']):.2f}; "
          f"held-out accuracy {float(model['oof_accuracy']):.3f}; saved {args.out}")


if __name__ == "__main__":
    sys.exit(main())
