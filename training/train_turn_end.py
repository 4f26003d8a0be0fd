"""Train the end-of-turn model (voiceagent/turn_end.py) on training/data/turn_end/turns.jsonl.

Logistic regression in numpy (Adam on the class-balanced log loss, L2). Turns with voice features
are also seen without them, so the words alone stay calibrated for callers whose audio is missing.
The two thresholds are chosen on dev: `high` (P at or above: the short window) so that at most
1.5 % of unfinished dev turns in either language reach it, `low` (P at or below: the long window)
so that at most 3 % of finished ones fall to it. The held-out split is never looked at here.

    nice -n 10 .venv/bin/python -m training.train_turn_end
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceagent.turn_end import AUDIO_FEATURES, HASH_DIM, TEXT_FEATURES, TurnEndModel, text_features

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "training" / "data" / "turn_end" / "turns.jsonl"
MODEL = ROOT / "models" / "turn_end" / "turn_end.json"
N_DENSE = len(TEXT_FEATURES) + len(AUDIO_FEATURES)


def load_turns(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Matrix:
    dense: np.ndarray  # n x N_DENSE
    hashed: np.ndarray  # n x 3 indices
    y: np.ndarray
    lang: np.ndarray


def featurise(turns: list[dict], with_audio: bool = True) -> Matrix:
    dense, hashed = [], []
    for t in turns:
        d, h = text_features(t["text"], t["lang"], t.get("expecting_number", False))
        a = np.array(t["audio"]) if with_audio and t.get("audio") else np.zeros(len(AUDIO_FEATURES))
        dense.append(np.concatenate([d, a]))
        hashed.append(h)
    return Matrix(np.array(dense), np.array(hashed, dtype=np.int64), np.array([t["label"] for t in turns], float),
                  np.array([t["lang"] for t in turns]))


def stack(a: Matrix, b: Matrix) -> Matrix:
    return Matrix(*(np.concatenate([x, y]) for x, y in zip((a.dense, a.hashed, a.y, a.lang),
                                                             (b.dense, b.hashed, b.y, b.lang))))


def predict(model: TurnEndModel, m: Matrix) -> np.ndarray:
    z = model.bias + m.dense @ model.dense + model.hashed[m.hashed].sum(axis=1)
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def fit(m: Matrix, steps: int = 1500, lr: float = 0.05, l2_dense: float = 1e-4, l2_hash: float = 3e-4) -> TurnEndModel:
    # balance the classes within each language
    weight = np.ones(len(m.y))
    for lang in np.unique(m.lang):
        for label in (0, 1):
            sel = (m.lang == lang) & (m.y == label)
            weight[sel] = len(m.y) / (4 * max(1, sel.sum()))
    wd, wh, b = np.zeros(N_DENSE), np.zeros(HASH_DIM), 0.0
    params = [wd, wh, np.zeros(1)]
    mom = [np.zeros_like(p) for p in params]
    vel = [np.zeros_like(p) for p in params]
    for step in range(1, steps + 1):
        z = b + m.dense @ wd + wh[m.hashed].sum(axis=1)
        p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
        err = (p - m.y) * weight / len(m.y)
        g_h = np.zeros(HASH_DIM)
        np.add.at(g_h, m.hashed, err[:, None])
        grads = [m.dense.T @ err + l2_dense * wd, g_h + l2_hash * wh, np.array([err.sum()])]
        for i, (param, g) in enumerate(zip(params, grads)):
            mom[i] = 0.9 * mom[i] + 0.1 * g
            vel[i] = 0.999 * vel[i] + 0.001 * g * g
            step_ = lr * (mom[i] / (1 - 0.9 ** step)) / (np.sqrt(vel[i] / (1 - 0.999 ** step)) + 1e-8)
            if i == 2:
                b -= float(step_[0])
            else:
                param -= step_
    return TurnEndModel(wd, wh, b)


def choose_thresholds(model: TurnEndModel, dev: Matrix, max_cutoff: float = 0.015, max_slow: float = 0.03) -> None:
    p = predict(model, dev)
    grid = np.round(np.arange(0.50, 0.991, 0.01), 2)
    high = next((t for t in grid if all(np.mean(p[(dev.lang == lang) & (dev.y == 0)] >= t) <= max_cutoff
                                        for lang in np.unique(dev.lang))), 0.99)
    low_grid = np.round(np.arange(0.05, high - 0.0999, 0.01), 2)
    low = max((t for t in low_grid if all(np.mean(p[(dev.lang == lang) & (dev.y == 1)] <= t) <= max_slow
                                          for lang in np.unique(dev.lang))), default=0.05)
    model.high, model.low = float(high), float(low)


def rates(p: np.ndarray, y: np.ndarray, high: float, low: float) -> dict[str, float]:
    fin, unf = p[y == 1], p[y == 0]
    return {
        "n": len(y), "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "finished_judged_finished": float(np.mean(fin >= high)) if len(fin) else float("nan"),
        "finished_judged_unfinished": float(np.mean(fin <= low)) if len(fin) else float("nan"),
        "cutoff": float(np.mean(unf >= high)) if len(unf) else float("nan"),
        "unfinished_judged_unfinished": float(np.mean(unf <= low)) if len(unf) else float("nan"),
    }


def report(name: str, model: TurnEndModel, turns: list[dict]) -> None:
    for lang in ("en", "zh"):
        sub = [t for t in turns if t["lang"] == lang]
        voiced = [t for t in sub if t.get("audio")]
        for label, rows, audio in ((f"{lang} words", sub, False), (f"{lang} voiced+audio", voiced, True),
                                   (f"{lang} voiced, words only", voiced, False)):
            if not rows:
                continue
            m = featurise(rows, with_audio=audio)
            r = rates(predict(model, m), m.y, model.high, model.low)
            print(f"{name:8s} {label:26s} n={r['n']:5d} acc={r['accuracy']:.3f} "
                  f"finished->finished={r['finished_judged_finished']:.3f} "
                  f"finished->unfinished={r['finished_judged_unfinished']:.3f} "
                  f"cut-offs(unfinished->finished)={r['cutoff']:.3f}")


def main() -> None:
    turns = load_turns()
    train = [t for t in turns if t["split"] == "train"]
    dev = [t for t in turns if t["split"] == "dev"]
    voiced = [t for t in train if t.get("audio")]
    m = stack(featurise(train), featurise(voiced, with_audio=False))  # voiced turns also seen as words only
    model = fit(m)
    choose_thresholds(model, stack(featurise(dev), featurise([t for t in dev if t.get("audio")], with_audio=False)))
    MODEL.parent.mkdir(parents=True, exist_ok=True)
    MODEL.write_text(model.to_json({"trained_on": str(DATA.relative_to(ROOT)), "n_train": len(train)}) + "\n",
                     encoding="utf-8")
    print(f"wrote {MODEL.relative_to(ROOT)} (high {model.high}, low {model.low})")
    report("train", model, train)
    report("dev", model, dev)
    names = TEXT_FEATURES + AUDIO_FEATURES
    top = sorted(zip(model.dense, names), key=lambda x: -abs(x[0]))[:15]
    print("largest weights:", ", ".join(f"{n} {w:+.2f}" for w, n in top))


if __name__ == "__main__":
    main()
